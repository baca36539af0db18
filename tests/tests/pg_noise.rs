//! Noise control on a PostgreSQL team store with real daemons (`runwatch --store URL
//! start`) and a fake Slack: a silence added with the CLI keeps what it matches from Slack
//! (and snoozes, silences and their lists work from the CLI there);
//! what is acknowledged before a notifier's delay never reaches it; a burst of failures
//! of one Slurm array, ingested through two daemons, is one Slack message.

use std::path::Path;

use runwatch_core::check_ins::CheckInReport;
use runwatch_core::pg::fixture::Cluster;
use runwatch_core::{SettingsPatch, Store};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::{run_cli, runwatch, token_in, url_in, wait_until, Running, PATIENCE};
use serde_json::{json, Value};

struct Daemon {
    running: Running,
    base: String,
    token: String,
}

fn daemon(dir: &Path, store: &str) -> Daemon {
    let mut running = Running::spawn(runwatch(dir).env("TZ", "UTC").args([
        "--store",
        store,
        "--notifications",
        "hidden",
        "start",
        "--http",
        "127.0.0.1:0",
    ]));
    let ui = url_in(&running.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at")));
    let token = token_in(&ui);
    let base = ui.split("/#").next().unwrap().trim_end_matches('/').to_string();
    Daemon { running, base, token }
}

impl Daemon {
    /// Posts one event; its notification's id.
    fn event(&self, body: Value) -> String {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut res = agent
            .post(format!("{}/api/v1/events", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        let text = res.body_mut().read_to_string().unwrap();
        assert_eq!(res.status().as_u16(), 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["id"].as_str().unwrap().to_string()
    }

    fn stop(self) {
        self.running.signal_group("TERM");
        let (status, stdout, stderr) = self.running.finish();
        assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    }
}

/// The CLI on the team store; its stdout.
fn cli(dir: &Path, store: &str, args: &[&str]) -> String {
    let out = run_cli(runwatch(dir).args(["--store", store, "--notifications", "hidden"]).args(args));
    out.expect_code(0);
    out.stdout
}

fn slack_texts(slack: &FakeServer) -> Vec<String> {
    slack.requests().iter().map(|r| r.json()["text"].as_str().unwrap_or_default().to_string()).collect()
}

fn wait_for_drained_outbox(store: &Store) {
    wait_until("the outbox drained", || (store.delivery_counts().unwrap().0 == 0).then_some(()));
}

#[test]
fn a_silence_added_with_the_cli_keeps_what_it_matches_from_slack() {
    let url = Cluster::shared().database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let slack = FakeServer::start();
    cli(dir.path(), &url, &["notifiers", "add", "slack", "--webhook-url", &slack.url("/services/T/B/SILENCE")]);
    let added = cli(dir.path(), &url, &["silences", "add", "--match", "text~disk", "--match", "level<=WARNING", "--for", "1h"]);
    assert!(added.starts_with("Added silence "), "{added}");
    let d = daemon(dir.path(), &url);

    d.event(json!({ "message": "disk almost full", "level": "WARNING" }));
    let loss = d.event(json!({ "message": "loss is NaN", "level": "ERROR" }));
    let got = slack.wait_for(1, PATIENCE);
    assert!(got[0].json()["text"].as_str().unwrap().contains("loss is NaN"), "{:?}", slack_texts(&slack));
    let store = Store::connect(&url).unwrap();
    wait_for_drained_outbox(&store);
    assert_eq!(store.delivery_counts().unwrap(), (0, 1, 0), "the silenced one has no delivery at all");
    assert!(slack_texts(&slack).iter().all(|t| !t.contains("disk")), "{:?}", slack_texts(&slack));
    let silenced = cli(dir.path(), &url, &["notifications", "list", "--silenced"]);
    assert!(silenced.contains("disk almost full (silenced)"), "{silenced}");
    assert!(!cli(dir.path(), &url, &["notifications", "list"]).contains("disk almost full"));
    let list = cli(dir.path(), &url, &["silences", "list"]);
    assert!(list.contains("active") && list.contains("text~disk level<=WARNING"), "{list}");
    let silences: Value = serde_json::from_str(&cli(dir.path(), &url, &["--json", "silences", "list"])).unwrap();
    let sid = silences[0]["id"].as_str().unwrap();
    assert!(cli(dir.path(), &url, &["silences", "expire", &sid[sid.len() - 8..]]).contains("expired"));
    assert!(cli(dir.path(), &url, &["silences", "list"]).contains("expired"));

    // Snoozed from the command line: out of the list until it is back.
    let short = &loss[loss.len() - 8..];
    let out = cli(dir.path(), &url, &["notifications", "snooze", short, "--for", "1h"]);
    assert!(out.starts_with("Snoozed 1 notification until "), "{out}");
    assert_eq!(cli(dir.path(), &url, &["notifications", "list"]), "There are no notifications.\n");
    assert!(cli(dir.path(), &url, &["notifications", "list", "--snoozed"]).contains("loss is NaN (snoozed until "));
    assert_eq!(cli(dir.path(), &url, &["notifications", "unsnooze", short]), "1 notification is back.\n");
    assert!(cli(dir.path(), &url, &["notifications", "list"]).contains("loss is NaN"));
    d.stop();
    assert_eq!(slack.requests().len(), 1, "{:?}", slack_texts(&slack));
}

#[test]
fn what_is_acknowledged_before_a_notifiers_delay_never_reaches_it() {
    let url = Cluster::shared().database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let slack = FakeServer::start();
    let added = cli(dir.path(), &url, &["notifiers", "add", "slack", "--webhook-url", &slack.url("/services/T/B/DELAY")]);
    let id = added.split_whitespace().nth(3).unwrap();
    // The level and the rules changed together, on the team store.
    let set = cli(dir.path(), &url, &["notifiers", "set", id, "--min-level", "WARNING", "--delay", "4s"]);
    assert_eq!(set, format!("Notifier {id} (slack): WARNING and above; delay 4s.\n"));
    let d = daemon(dir.path(), &url);

    let early = d.event(json!({ "message": "acked in time", "level": "ERROR" }));
    cli(dir.path(), &url, &["notifications", "ack", "--item", &early]);
    d.event(json!({ "message": "left alone", "level": "ERROR" }));
    let got = slack.wait_for(1, PATIENCE);
    assert!(got[0].json()["text"].as_str().unwrap().contains("left alone"), "{:?}", slack_texts(&slack));
    // Its time came, it was found acknowledged and dropped: no delivery is left of it.
    let store = Store::connect(&url).unwrap();
    wait_until("the acknowledged one's delivery to be dropped", || store.deliveries_of(&early).unwrap().is_empty().then_some(()));
    wait_for_drained_outbox(&store);
    d.stop();
    assert_eq!(slack_texts(&slack).len(), 1, "{:?}", slack_texts(&slack));
    assert!(slack_texts(&slack).iter().all(|t| !t.contains("acked in time")));
}

#[test]
fn sixteen_failures_of_one_array_through_two_daemons_make_one_slack_message() {
    let url = Cluster::shared().database().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let slack = FakeServer::start();
    cli(dir_a.path(), &url, &["notifiers", "add", "slack", "--webhook-url", &slack.url("/services/T/B/ARRAY"), "--min-level", "ERROR"]);
    let mut store = Store::connect(&url).unwrap();
    runwatch_core::settings::patch(&mut store, &SettingsPatch { group_window_secs: Some(3), ..Default::default() }).unwrap();
    // The array's tasks, with the labels their check-ins carry (SLURM_ARRAY_JOB_ID …).
    for task in 0..16 {
        let labels = [("slurm_array_job_id", "4242".to_string()), ("slurm_array_task_id", task.to_string())];
        let report = CheckInReport {
            run_id: format!("array-4242-{task}"),
            labels: labels.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Default::default()
        };
        store.record_check_in(&report, runwatch_core::clock::Clock::now(&runwatch_core::clock::SystemClock)).unwrap();
    }
    let daemons = [daemon(dir_a.path(), &url), daemon(dir_b.path(), &url)];

    // Each failure through one daemon or the other, each its own transaction.
    for task in 0..16 {
        let run = format!("array-4242-{task}");
        daemons[task % 2].event(json!({ "message": format!("Run '{run}' failed."), "level": "ERROR", "run_id": run }));
    }
    let got = slack.wait_for(1, PATIENCE);
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("16 runs of array 4242 failed: "), "{text}");
    wait_for_drained_outbox(&store);
    assert_eq!(store.delivery_counts().unwrap(), (0, 16, 0));
    for d in daemons {
        d.stop();
    }
    assert_eq!(slack.requests().len(), 1, "{:?}", slack_texts(&slack));
}
