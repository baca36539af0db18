//! An idle `runwatch start` polls nothing, yet what other processes write to the store (the
//! CLI's sends and acknowledgements, settings) reaches it: the dispatcher delivers, the
//! stream tells its clients, the watcher follows the settings. The daemon's safety nets
//! (the dispatcher's and the watcher's rare wakes) are minutes apart, longer than these
//! tests wait, so passing means the change feed woke them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_core::{DataDir, Store};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::{add_slack_notifier, binary, run_cli, runwatch, token_in, url_in, wait_until, Running, PATIENCE};

const RUN: &str = "fedcba9876543210fedcba98";

fn start(data_dir: &Path, cwd: &Path) -> (Running, String) {
    let mut daemon = Running::spawn(Command::new(binary("runwatch")).current_dir(cwd).arg("--data-dir").arg(data_dir).args([
        "start",
        "--http",
        "127.0.0.1:0",
    ]));
    let url = url_in(&daemon.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at ")));
    daemon.wait_for_line("'Press Ctrl+C to exit'", |l| l == "Press Ctrl+C to exit");
    (daemon, url)
}

/// The `data:` lines of the API's event stream, read on a thread of their own.
fn stream(url: &str) -> mpsc::Receiver<String> {
    let base = url.split('#').next().unwrap().trim_end_matches('/');
    let url = format!("{base}/api/v1/stream?token={}", token_in(url));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        let res = agent.get(&url).call().unwrap();
        for line in BufReader::new(res.into_body().into_reader()).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("data:") && tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a stream message that `matches` accepts (earlier ones may be coalesced or
/// report the daemon's own writes).
fn next_matching(rx: &mpsc::Receiver<String>, what: &str, matches: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if matches(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("no stream message {what} within {PATIENCE:?}: {e}"),
        }
    }
}

#[test]
fn a_send_and_an_ack_from_the_cli_reach_the_running_daemon_and_its_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let slack = FakeServer::start();
    add_slack_notifier(&data, "5ac4-changes", &slack.url("/services/T/B/CHANGES"));
    let (daemon, url) = start(&data, tmp.path());
    let events = stream(&url);
    next_matching(&events, "on connecting", |l| l.contains("\"total\":0"));

    // The CLI only queues while a daemon runs (it holds the lock); the daemon delivers.
    let sent = run_cli(runwatch(&data).args(["send", "--level", "ERROR", "disk full"]));
    assert_eq!(sent.code, Some(0), "{}", sent.stderr);
    let requests = slack.wait_for(1, PATIENCE);
    assert!(requests[0].body.contains("disk full"), "{:?}", requests[0]);
    next_matching(&events, "with the sent notification", |l| l.contains("\"total\":1") && l.contains("\"highest\":\"ERROR\""));

    let acked = run_cli(runwatch(&data).args(["notifications", "ack", "--all"]));
    assert_eq!(acked.code, Some(0), "{}", acked.stderr);
    next_matching(&events, "after the acknowledgement", |l| l.contains("\"total\":0"));

    daemon.signal_group("TERM");
    assert!(daemon.finish().0.success());
}

#[test]
fn a_settings_change_by_another_process_is_followed_by_the_watcher() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let repo = tmp.path().join("later");
    std::fs::create_dir_all(repo.join(".aim/check_ins")).unwrap();
    let (mut daemon, _) = start(&data, tmp.path());

    // This test process is the other process: it writes the setting to the store directly.
    let mut store = Store::open(&DataDir::at(&data)).unwrap();
    runwatch_core::settings::patch(
        &mut store,
        &runwatch_core::settings::SettingsPatch { watched_repos: Some(vec![repo.display().to_string()]), ..Default::default() },
    )
    .unwrap();
    wait_until("the daemon to scan the repository added in the settings", || {
        runwatch_core::settings::known_repos(&store).unwrap().iter().any(|r| r.ends_with("later")).then_some(())
    });
    let c = CheckIn { run_hash: RUN.into(), idx: 1, flag: Flag::Starting, utc_time: 1_795_268_411.34, expect_next_in: 0 };
    std::fs::write(repo.join(".aim/check_ins").join(c.file_name()), b"").unwrap();
    daemon.wait_for_line("'started'", |l| l.ends_with(&format!("Run '{RUN}' started.")));

    daemon.signal_group("TERM");
    assert!(daemon.finish().0.success());
}
