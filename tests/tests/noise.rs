//! Noise control with real processes: a `runwatch start` daemon delivering to a fake Slack,
//! and the CLI as a user types it. A notifier's delay keeps what was acknowledged in time
//! from it, its repeats stop at the acknowledgement; 64 failures of one Slurm array job make
//! one message; snoozes and silences from the command line.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use runwatch_core::{deliveries, DataDir, Store};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::{binary, run_cli, runwatch, token_in, url_in, wait_until, Running, PATIENCE};
use serde_json::{json, Value};

fn start(data_dir: &Path) -> (Running, String) {
    let mut daemon = Running::spawn(Command::new(binary("runwatch")).arg("--data-dir").arg(data_dir).env("TZ", "UTC").args([
        "start",
        "--http",
        "127.0.0.1:0",
    ]));
    let url = url_in(&daemon.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at ")));
    daemon.wait_for_line("'Press Ctrl+C to exit'", |l| l == "Press Ctrl+C to exit");
    (daemon, url)
}

fn stop(daemon: Running) {
    daemon.signal_group("TERM");
    let (status, stdout, stderr) = daemon.finish();
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
}

fn cli(data_dir: &Path, args: &[&str]) -> String {
    let out = run_cli(runwatch(data_dir).args(["--notifications", "hidden"]).args(args));
    out.expect_code(0);
    out.stdout
}

fn send(data_dir: &Path, title: &str) -> String {
    cli(data_dir, &["send", "--level", "ERROR", title]).trim().to_string()
}

fn slack_texts(slack: &FakeServer) -> Vec<String> {
    slack.requests().iter().map(|r| r.json()["text"].as_str().unwrap_or_default().to_string()).collect()
}

/// The deliveries of a notification as the store has them: (state, sends).
fn deliveries_of(data_dir: &Path, id: &str) -> Vec<(String, i64)> {
    let store = Store::open(&DataDir::at(data_dir)).unwrap();
    let sends: Vec<i64> = store
        .conn()
        .prepare("SELECT sends FROM deliveries WHERE notification_id = ?1")
        .unwrap()
        .query_map([id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    deliveries::of_notification(store.conn(), id).unwrap().into_iter().zip(sends).map(|(d, s)| (d.state.to_string(), s)).collect()
}

fn api(url: &str, method: &str, path: &str, body: Value) -> Value {
    let base = url.split('#').next().unwrap().split('?').next().unwrap().trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut res = agent
        .run(
            ureq::http::Request::builder()
                .method(method)
                .uri(format!("{base}/api/v1/{path}"))
                .header("Authorization", format!("Bearer {}", token_in(url)))
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .unwrap(),
        )
        .unwrap();
    let text = res.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

#[test]
fn a_delayed_notifier_hears_only_of_what_is_still_unacknowledged_and_repeats_until_the_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let slack = FakeServer::start();
    let added =
        cli(data, &["notifiers", "add", "slack", "--webhook-url", &slack.url("/services/T/B/DELAY"), "--delay", "2s", "--repeat", "3s"]);
    assert!(added.contains("Rules: delay 2s, repeat 3s."), "{added}");
    let (daemon, _) = start(data);

    // Acknowledged before the delay ends: Slack never hears of it.
    let early = send(data, "acked in time");
    cli(data, &["notifications", "ack", "--item", &early]);
    let late = send(data, "left alone");
    let first = slack.wait_for(1, PATIENCE);
    assert!(first[0].json()["text"].as_str().unwrap().contains("left alone"), "{:?}", slack_texts(&slack));
    // The early one's delivery is gone once its time came: it was looked at and dropped.
    wait_until("the acknowledged one's delivery to be dropped", || deliveries_of(data, &early).is_empty().then_some(()));

    // Again at the interval while unacknowledged.
    let again = slack.wait_for(2, PATIENCE);
    assert!(again[1].json()["text"].as_str().unwrap().contains("left alone"));
    assert!(again[1].at - again[0].at >= Duration::from_millis(2500), "a repeat every 3 s, not sooner");
    wait_until("'show' to tell the repeats", || {
        let shown = cli(data, &["notifications", "show", &late]);
        (shown.contains("pending") && shown.contains(" unless acknowledged")).then_some(())
    });
    cli(data, &["notifications", "ack", "--item", &late]);
    // At the next repeat's time the dispatcher finds it acknowledged and stops for good.
    wait_until("the repeats to stop", || deliveries_of(data, &late).iter().all(|(state, _)| state == "sent").then_some(()));
    let heard = slack.requests().len();
    let sends = deliveries_of(data, &late)[0].1;
    assert_eq!(heard as i64, sends, "every send recorded: {:?}", slack_texts(&slack));
    assert!(slack_texts(&slack).iter().all(|t| !t.contains("acked in time")));
    stop(daemon);
    assert_eq!(slack.requests().len(), heard, "nothing after the ack");
}

#[test]
fn sixty_four_failures_of_one_array_job_make_one_slack_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let slack = FakeServer::start();
    cli(data, &["notifiers", "add", "slack", "--webhook-url", &slack.url("/services/T/B/ARRAY")]);
    let mut store = Store::open(&DataDir::at(data)).unwrap();
    runwatch_core::settings::patch(&mut store, &runwatch_core::SettingsPatch { group_window_secs: Some(10), ..Default::default() })
        .unwrap();
    drop(store);
    let (daemon, url) = start(data);

    for task in 0..64 {
        let report = json!({
            "run_id": format!("array-4242-{task}"),
            "failed": true,
            "exit_code": 1,
            "labels": { "slurm_array_job_id": "4242", "slurm_array_task_id": task.to_string() },
        });
        api(&url, "POST", "check-ins", report);
    }
    let got = slack.wait_for(1, PATIENCE);
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("64 runs of array 4242 failed: "), "{text}");
    // Each failure is still its own inbox item.
    let pending = api(&url, "GET", "notifications/summary", json!({}));
    assert_eq!(pending["error"], 64, "{pending}");
    runwatch_tests::wait_for_drained_outbox(data, PATIENCE);
    assert_eq!(slack.requests().len(), 1, "{:?}", slack_texts(&slack));
    stop(daemon);
}

#[test]
fn snooze_silence_and_their_lists_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let id = send(data, "loss is NaN");
    let short = &id[id.len() - 8..];
    let out = cli(data, &["notifications", "snooze", short, "--for", "1h"]);
    assert!(out.starts_with("Snoozed 1 notification until "), "{out}");
    assert_eq!(cli(data, &["notifications", "list"]), "There are no notifications.\n");
    assert!(cli(data, &["notifications", "list", "--snoozed"]).contains("loss is NaN (snoozed until "));
    // Snoozed: not pending, so the summary says nothing and the exit code is 0.
    let quiet = run_cli(runwatch(data).args(["notifications", "list"]));
    assert_eq!((quiet.code, quiet.stderr.as_str()), (Some(0), ""));
    assert_eq!(cli(data, &["notifications", "unsnooze", short]), "1 notification is back.\n");
    assert!(cli(data, &["notifications", "list"]).contains("loss is NaN"));

    let added = cli(data, &["silences", "add", "--match", "level<=WARNING", "--match", "text~disk", "--for", "2h", "--comment", "cleanup"]);
    assert!(added.starts_with("Added silence "), "{added}");
    cli(data, &["send", "--level", "WARNING", "disk almost full"]);
    let silenced = cli(data, &["notifications", "list", "--silenced"]);
    assert!(silenced.contains("disk almost full (silenced)"), "{silenced}");
    assert!(!cli(data, &["notifications", "list"]).contains("disk almost full"));
    let list = cli(data, &["silences", "list"]);
    assert!(list.contains("active") && list.contains("level<=WARNING text~disk") && list.contains("cleanup"), "{list}");
    let silence: Value = serde_json::from_str(&cli(data, &["--json", "silences", "list"])).unwrap();
    let sid = silence[0]["id"].as_str().unwrap();
    assert!(cli(data, &["silences", "expire", &sid[sid.len() - 8..]]).contains("expired"));
    assert!(cli(data, &["silences", "list"]).contains("expired"));

    for (args, says) in [
        (vec!["silences", "add", "--match", "colour=red", "--for", "1h"], "unknown matcher field 'colour'"),
        (vec!["silences", "add", "--match", "run=a"], "--for"),
        (vec!["notifications", "snooze", short, "--for", "soon"], "write a duration"),
        (vec!["notifications", "snooze", short, "--until", "someday"], "is not a time"),
        (vec!["notifiers", "set", "popups", "--quiet-hours", "25:00-07:00"], "not a time of day"),
    ] {
        let e = run_cli(runwatch(data).args(&args)).expect_one_line_error(2);
        assert!(e.contains(says), "{args:?}: {e}");
    }
}

#[test]
fn a_stuck_run_that_checks_in_again_is_resolved_and_the_notifier_that_heard_the_alarm_hears_it_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let slack = FakeServer::start();
    cli(data, &["notifiers", "add", "slack", "--webhook-url", &slack.url("/services/T/B/STUCK"), "--min-level", "ERROR"]);
    let mut store = Store::open(&DataDir::at(data)).unwrap();
    runwatch_core::settings::patch(&mut store, &runwatch_core::SettingsPatch { grace_secs: Some(0), ..Default::default() }).unwrap();
    drop(store);
    let (daemon, url) = start(data);

    api(&url, "POST", "check-ins", json!({ "run_id": "train-1", "expect_next_in": 1 }));
    let alarm = slack.wait_for(1, PATIENCE);
    assert!(alarm[0].json()["text"].as_str().unwrap().contains("train-1"), "{:?}", slack_texts(&slack));
    assert_eq!(api(&url, "GET", "notifications/summary", json!({}))["error"], 1);

    api(&url, "POST", "check-ins", json!({ "run_id": "train-1", "expect_next_in": 600 }));
    let both = slack.wait_for(2, PATIENCE);
    let text = both[1].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("recovered"), "an INFO, below the notifier's level, because it heard the alarm: {text}");
    let summary = api(&url, "GET", "notifications/summary", json!({}));
    assert_eq!(summary["error"], 0, "resolved: {summary}");
    let resolved = api(&url, "GET", "notifications?state=resolved", json!({}));
    assert_eq!(resolved["items"].as_array().unwrap().len(), 1, "{resolved}");
    assert!(resolved["items"][0]["title"].as_str().unwrap().contains("is stuck"), "{resolved}");
    runwatch_tests::wait_for_drained_outbox(data, PATIENCE);
    assert_eq!(slack.requests().len(), 2, "{:?}", slack_texts(&slack));
    stop(daemon);
}
