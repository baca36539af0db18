//! Several daemons on one PostgreSQL store (`runwatch --store postgresql://… start`): what
//! is ingested through any of them is delivered once, by one of them; a daemon killed with
//! kill -9 mid-burst, a send in flight, leaves its leased deliveries to the others once the
//! leases run out: nothing is lost, and only that send is repeated.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use runwatch_core::notifiers::Notifier;
use runwatch_core::pg::fixture::Cluster;
use runwatch_core::{Level, NotifierStatus, Store};
use runwatch_tests::fake_http::{FakeServer, Reply};
use runwatch_tests::{runwatch, token_in, url_in, wait_until, Running, PATIENCE};

/// Short, so the test waits little for a dead daemon's leases.
const LEASE_MS: &str = "3000";

struct Daemon {
    running: Running,
    base: String,
    token: String,
}

fn daemon(dir: &Path, store: &str) -> Daemon {
    let mut running = Running::spawn(
        runwatch(dir)
            .args(["--store", store, "--notifications", "hidden", "start", "--http", "127.0.0.1:0"])
            .env(runwatch_core::pg::LEASE_ENV, LEASE_MS),
    );
    let line = running.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at"));
    let ui = url_in(&line);
    let token = token_in(&ui);
    let base = ui.split("/#").next().unwrap().trim_end_matches('/').to_string();
    Daemon { running, base, token }
}

/// Posts one event; the HTTP status, or 0 when the daemon cannot be reached.
fn post(agent: &ureq::Agent, d: &(String, String), i: usize) -> u16 {
    let body = serde_json::json!({ "message": format!("[e{i:04}] burst"), "level": "WARNING", "event_id": format!("ev-{i}") });
    match agent
        .post(format!("{}/api/v1/events", d.0))
        .header("Authorization", format!("Bearer {}", d.1))
        .header("Content-Type", "application/json")
        .send(body.to_string())
    {
        Ok(res) => res.status().as_u16(),
        Err(_) => 0,
    }
}

/// How often each event's tag appears in what Slack received.
fn seen(slack: &FakeServer, range: std::ops::Range<usize>) -> HashMap<usize, usize> {
    let bodies: Vec<String> = slack.requests().iter().map(|r| r.json()["text"].as_str().unwrap_or_default().to_string()).collect();
    range.map(|i| (i, bodies.iter().map(|b| b.matches(&format!("[e{i:04}]")).count()).sum())).collect()
}

/// Ingests `range` through the daemons in turn (4 clients) while `meanwhile` runs; an event
/// a daemon could not take (it was killed) is sent to the next one, as a client would.
fn ingest(targets: &[(String, String)], range: std::ops::Range<usize>, meanwhile: impl FnOnce()) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into();
    std::thread::scope(|scope| {
        let chunks: Vec<Vec<usize>> = (0..4).map(|c| range.clone().filter(|i| i % 4 == c).collect()).collect();
        let mut handles = Vec::new();
        for chunk in chunks {
            let agent = agent.clone();
            handles.push(scope.spawn(move || {
                for i in chunk {
                    let mut status = 0;
                    for attempt in 0..targets.len() * 3 {
                        status = post(&agent, &targets[(i + attempt) % targets.len()], i);
                        if status == 200 {
                            break;
                        }
                    }
                    assert_eq!(status, 200, "event {i} was not taken by any daemon");
                }
            }));
        }
        meanwhile();
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn two_daemons_deliver_each_notification_once_and_survive_a_kill_9() {
    let url = Cluster::shared().database().unwrap();
    let slack = FakeServer::start();
    let mut store = Store::connect(&url).unwrap();
    store
        .add_notifier(&Notifier {
            id: "5ac4".into(),
            kind: "slack".into(),
            status: NotifierStatus::Enabled,
            config: serde_json::json!({ "url": slack.url("/hook") }),
            min_level: Level::Debug,
            created_at: 0,
            updated_at: 0,
        })
        .unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = daemon(dir_a.path(), &url);
    let b = daemon(dir_b.path(), &url);
    let targets = vec![(a.base.clone(), a.token.clone()), (b.base.clone(), b.token.clone())];

    // 1,000 through both: each reaches Slack once.
    ingest(&targets, 0..1_000, || {});
    wait_until("Slack received the first thousand", || seen(&slack, 0..1_000).values().all(|n| *n >= 1).then_some(()));
    let first = seen(&slack, 0..1_000);
    let twice: Vec<_> = first.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    let by_daemon = store.delivery_counts().unwrap();
    assert_eq!(by_daemon, (0, 1_000, 0));

    // 1,000 more. Slack holds the next two requests: one send in flight from each daemon
    // (each waits for its answer), each holding the leases of what it sends. Daemon A is
    // killed with -9 then; B must send what A had leased once the leases run out.
    let before = slack.requests().len();
    slack.script([Reply::Held, Reply::Held]);
    let Daemon { running: killed, .. } = a;
    ingest(&targets, 1_000..2_000, || {
        slack.wait_for(before + 2, PATIENCE);
        killed.signal_group("KILL");
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let leased: i64 =
            client.query_one("SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND lease_until IS NOT NULL", &[]).unwrap().get(0);
        assert!(leased > 0, "the daemons' sends in flight hold leases");
        slack.release();
    });
    drop(killed);
    wait_until("Slack received all of the second thousand", || {
        let s = seen(&slack, 1_000..2_000);
        s.values().all(|n| *n >= 1).then_some(())
    });
    let second = seen(&slack, 1_000..2_000);
    let again = second.values().filter(|n| **n > 1).count();
    // What A had in flight reached Slack, but A died before storing that it had: B sends
    // it again after the lease (at least once, as any delivery whose sender dies mid-send).
    // That one digest (at most 50) is all that is repeated; nothing is lost.
    assert!((1..=50).contains(&again), "{again} sent more than once");
    assert!(second.values().all(|n| *n <= 2));
    wait_until("the outbox drained", || (store.delivery_counts().unwrap().0 == 0).then_some(()));
    assert_eq!(store.delivery_counts().unwrap(), (0, 2_000, 0));
    b.running.signal_group("TERM");
    let (status, _, stderr) = b.running.finish();
    assert!(status.success(), "{stderr}");
}
