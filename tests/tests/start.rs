//! `runwatch start` (and `make run` without a display) as a user runs it.

use std::process::Command;

use runwatch_tests::fake_http::{FakeServer, Reply};
use runwatch_tests::{add_slack_notifier, binary, http_get, repo_root, token_in, url_in, Running, PATIENCE};

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
