//! `runwatch start` (and `make run` without a display) as a user runs it.

use std::process::Command;
use std::time::{Duration, Instant};

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_tests::fake_http::{FakeServer, Reply};
use runwatch_tests::{
    add_slack_notifier, binary, http_get, repo_root, run_cli, runwatch, token_in, url_in, wait_for_drained_outbox, Running, PATIENCE,
};

fn start(data_dir: &std::path::Path) -> Running {
    Running::spawn(Command::new(binary("runwatch")).arg("--data-dir").arg(data_dir).args(["start", "--http", "127.0.0.1:0"]))
}

fn assert_serves_ui(url: &str) {
    let base = url.split('#').next().unwrap();
    let (status, page) = http_get(url);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<title>Runwatch</title>"), "not the UI page:\n{page}");
    // The page's script is served too, so the page really renders.
    let script = page.split("src=\"").nth(1).and_then(|s| s.split('"').next()).expect("page has a script");
    let (status, js) = http_get(&format!("{}{}", base.trim_end_matches('/'), script));
    assert_eq!(status, 200);
    assert!(js.len() > 1000, "script too small: {} bytes", js.len());
    let (status, _) = http_get(&format!("{base}api/v1/health"));
    assert_eq!(status, 401, "the API needs the token");
    let (status, health) = http_get(&format!("{base}api/v1/health?token={}", token_in(url)));
    assert_eq!(status, 200);
    assert!(health.contains(r#""status":"ok""#), "{health}");
}

#[test]
fn start_serves_the_ui_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = start(tmp.path());
    let url = url_in(&daemon.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at ")));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    daemon.wait_for_line("'Press Ctrl+C to exit'", |l| l == "Press Ctrl+C to exit");
    assert_serves_ui(&url);
    assert!(tmp.path().join("runwatch.db").exists(), "the store was not created");

    daemon.signal_group("TERM");
    let (status, stdout, stderr) = daemon.finish();
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert!(stdout.ends_with("Stopped."), "{stdout}");
}

#[test]
fn a_second_start_on_the_same_data_dir_refuses_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut first = start(tmp.path());
    first.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at "));

    let out = Command::new(binary("runwatch")).arg("--data-dir").arg(tmp.path()).args(["start", "--http", "127.0.0.1:0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "expected one line:\n{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.child.id())), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));

    // The first one is unharmed.
    first.signal_group("INT");
    let (status, ..) = first.finish();
    assert!(status.success());
}

/// A command delivering its own notifications (no watcher was running) holds the watcher
/// lock for a round of sends: a watcher starting meanwhile waits for it instead of
/// refusing as if another watcher ran.
#[test]
fn start_waits_for_a_command_that_is_delivering() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeServer::start();
    slack.script([Reply::Hang]); // the send waits for its timeout (10 s), holding the lock
    add_slack_notifier(tmp.path(), "5ac4-start", &slack.url("/services/T/B/START"));
    let send =
        Running::spawn(Command::new(binary("runwatch")).arg("--data-dir").arg(tmp.path()).args(["send", "--level", "ERROR", "disk full"]));
    slack.wait_for(1, PATIENCE); // the send is in flight: the lock is held

    let mut daemon = start(tmp.path());
    daemon.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at "));
    let (status, _, stderr) = send.finish();
    assert!(status.success(), "{stderr}");
    // The daemon took over the retry.
    slack.wait_for(2, PATIENCE);
    daemon.signal_group("INT");
    assert!(daemon.finish().0.success());
}

#[test]
fn make_run_without_a_display_starts_the_headless_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = Running::spawn(
        Command::new("make")
            .args(["--no-print-directory", "-s", "-C"])
            .arg(repo_root())
            .args(["launch", "HTTP=127.0.0.1:0"])
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("RUNWATCH_HOME", tmp.path()),
    );
    run.wait_for_line("saying it starts headless", |l| l.contains("No display"));
    let url = url_in(&run.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at ")));
    assert_serves_ui(&url);
    run.signal_group("INT");
    let (_, stdout, stderr) = run.finish();
    assert!(stdout.contains("Stopped."), "{stdout}\n{stderr}");
}

fn outbox(data_dir: &std::path::Path) -> (i64, i64, i64) {
    let store = runwatch_core::Store::open(&runwatch_core::DataDir::at(data_dir)).unwrap();
    runwatch_core::deliveries::counts(store.conn()).unwrap()
}

fn send_error(data_dir: &std::path::Path, message: &str) {
    let out = run_cli(runwatch(data_dir).args(["send", "--level", "ERROR", message]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// SIGTERM while Slack holds a request open: the daemon stops taking in events but waits
/// for the answer, records the delivery as sent, and only then exits.
#[test]
fn sigterm_lets_the_send_in_flight_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeServer::start();
    slack.script([Reply::Held]);
    add_slack_notifier(tmp.path(), "5ac4-held", &slack.url("/services/T/B/HELD"));
    let mut daemon = start(tmp.path());
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    send_error(tmp.path(), "disk full");
    slack.wait_for(1, PATIENCE); // in flight, held by Slack

    daemon.signal_group("TERM");
    daemon.wait_for_line("saying it stops", |l| l == "Stopping…");
    slack.release();
    let (status, stdout, stderr) = daemon.finish();
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert!(stdout.ends_with("Stopped."), "{stdout}");
    assert_eq!(outbox(tmp.path()), (0, 1, 0), "the send in flight was recorded as sent");
    assert_eq!(slack.requests().len(), 1, "nothing was sent twice");
}

/// SIGTERM while Slack never answers: the daemon does not wait out the 10 s send timeout;
/// the delivery stays pending and the next start sends it. Nothing is lost.
#[test]
fn sigterm_with_a_send_that_never_answers_exits_soon_and_the_next_start_sends_it() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeServer::start();
    slack.script([Reply::Hang]);
    add_slack_notifier(tmp.path(), "5ac4-hang", &slack.url("/services/T/B/HANG"));
    let mut daemon = start(tmp.path());
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    send_error(tmp.path(), "GPU fell off the bus");
    slack.wait_for(1, PATIENCE);

    let asked = Instant::now();
    daemon.signal_group("TERM");
    let (status, stdout, stderr) = daemon.finish();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?} to exit (the send timeout is 10 s)");
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert!(stderr.contains("sent again at the next start"), "{stderr}");
    assert_eq!(outbox(tmp.path()), (1, 0, 0), "the unanswered delivery stays pending");

    let mut again = start(tmp.path());
    again.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    let requests = slack.wait_for(2, PATIENCE);
    assert_eq!(requests[0].body, requests[1].body, "the same message again");
    wait_for_drained_outbox(tmp.path(), PATIENCE);
    assert_eq!(outbox(tmp.path()), (0, 1, 0));
    again.signal_group("TERM");
    assert!(again.finish().0.success());
}

/// `runwatch start > log`: no colour codes in what goes to a file or pipe, warnings
/// included, and counts read as English.
#[test]
fn start_writes_no_colour_codes_into_a_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let check_ins = repo.join(".aim/check_ins");
    std::fs::create_dir_all(&check_ins).unwrap();
    let c = CheckIn {
        run_hash: "0123456789abcdef01234567".into(),
        idx: 1,
        flag: Flag::Starting,
        utc_time: 1_795_268_411.34,
        expect_next_in: 0,
    };
    std::fs::write(check_ins.join(c.file_name()), b"").unwrap();
    let data = tmp.path().join("data");
    let slack = FakeServer::start();
    slack.script([Reply::status(500, "oops")]); // a warning on stderr
    add_slack_notifier(&data, "5ac4-500", &slack.url("/services/T/B/FAIL"));

    let mut daemon = Running::spawn(
        Command::new(binary("runwatch"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--repo")
            .arg(&repo)
            .args(["start", "--http", "127.0.0.1:0"])
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CLICOLOR"),
    );
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    send_error(&data, "disk full");
    slack.wait_for(1, PATIENCE); // answered 500
    daemon.signal_group("TERM");
    let (status, stdout, stderr) = daemon.finish();
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l == "Tracking 1 run."), "{stdout}");
    assert!(stderr.contains("WARN"), "the failed delivery is warned about: {stderr}");
    assert!(!stdout.contains('\x1b'), "colour codes in stdout: {stdout:?}");
    assert!(!stderr.contains('\x1b'), "colour codes in stderr: {stderr:?}");
}
