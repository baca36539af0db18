//! Nothing is lost when the watcher is killed: 200 notifications queued for a fake Slack,
//! `kill -9` in the middle of the burst, a restart — every notification arrives, and only
//! the send in flight at the kill may arrive twice.

use std::collections::HashMap;
use std::process::Command;

use runwatch_core::deliveries;
use runwatch_core::{DataDir, Level, NewNotification, Store};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::{add_slack_notifier, binary, wait_for_drained_outbox, Running, PATIENCE};

const COUNT: usize = 200;

fn start(data: &std::path::Path) -> Running {
    let mut daemon = Running::spawn(Command::new(binary("runwatch")).arg("--data-dir").arg(data).args(["start", "--http", "127.0.0.1:0"]));
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    daemon
}

#[test]
fn kill_9_mid_burst_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let slack = FakeServer::start();
    add_slack_notifier(&data, "0c0ffee0-0000-4000-8000-000000000001", &slack.url("/services/T/B/CRASHTEST"));
    {
        let mut store = Store::open(&DataDir::at(&data)).unwrap();
        for i in 0..COUNT {
            let n = NewNotification {
                level: Some(Level::Error),
                title: format!("crash-test #{i:03}"),
                source: "test".into(),
                ..Default::default()
            };
            store.insert_notification(&n, 1_000 + i as i64).unwrap();
        }
    }

    let daemon = start(&data);
    slack.wait_for(2, PATIENCE);
    daemon.signal_group("KILL");
    let (status, ..) = daemon.finish();
    assert!(!status.success(), "killed");
    let at_kill = slack.requests().len();
    let (pending_after_kill, ..) = deliveries::counts(Store::open(&DataDir::at(&data)).unwrap().conn()).unwrap();
    assert!(pending_after_kill > 0, "the kill came too late to interrupt the burst");

    let daemon = start(&data);
    wait_for_drained_outbox(&data, PATIENCE);
    daemon.signal_group("TERM");
    assert!(daemon.finish().0.success());

    // Which request carried each notification.
    let requests = slack.requests();
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for (r, req) in requests.iter().enumerate() {
        let text = req.json()["text"].as_str().unwrap().to_string();
        for i in 0..COUNT {
            let title = format!("crash-test #{i:03}");
            if text.contains(&title) {
                seen.entry(title).or_default().push(r);
            }
        }
    }
    let missing: Vec<_> = (0..COUNT).map(|i| format!("crash-test #{i:03}")).filter(|t| !seen.contains_key(t)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let repeated: Vec<_> = seen.iter().filter(|(_, rs)| rs.len() > 1).collect();
    let first_sends: std::collections::HashSet<usize> = repeated.iter().map(|(_, rs)| rs[0]).collect();
    assert!(first_sends.len() <= 1, "more than the one in-flight send was repeated: {repeated:?}");
    assert!(repeated.iter().all(|(_, rs)| rs.len() == 2));
    println!(
        "crash test: {COUNT} notifications, {} requests ({at_kill} before kill -9), {} notifications delivered twice (the send in flight), 0 lost",
        requests.len(),
        repeated.len()
    );
}
