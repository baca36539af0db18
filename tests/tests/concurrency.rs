//! Many writers at once: 20 `runwatch send` processes start together (each sending several
//! events, two of them racing on every shared event id) while the daemon ingests over
//! HTTP and delivers to Slack. Every send succeeds, nothing says "database is locked",
//! and every event id is stored exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use runwatch_core::{DataDir, Store};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::{add_slack_notifier, runwatch, token_in, url_in, wait_for_drained_outbox, Running, PATIENCE};

const PROCESSES: usize = 20;
/// Sends per process after the shared one (`RUNWATCH_SOAK_SENDS` raises it for `make soak`).
fn sends_per_process() -> usize {
    std::env::var("RUNWATCH_SOAK_SENDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}
/// Events the test itself posts to the daemon's API meanwhile.
const API_EVENTS: usize = 50;

fn send(data: &std::path::Path, event_id: &str, message: &str) -> std::process::Output {
    let mut cmd: Command = runwatch(data);
    cmd.args(["send", "--level", "INFO", "--event-id", event_id, message]);
    cmd.output().unwrap()
}

#[test]
fn twenty_concurrent_senders_store_every_event_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let slack = FakeServer::start();
    add_slack_notifier(&data, "5ac4-concurrency", &slack.url("/services/T/B/CONCURRENCY"));

    let mut cmd = runwatch(&data);
    cmd.args(["start", "--http", "127.0.0.1:0"]);
    let mut daemon = Running::spawn(&mut cmd);
    let url = url_in(&daemon.wait_for_line("the URL", |l| l.starts_with("Serving the UI at ")));
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    let base = url.split('#').next().unwrap().trim_end_matches('/').to_string();
    let token = token_in(&url);

    // All writers start at the same moment.
    let sends_each = sends_per_process();
    let barrier = Arc::new(Barrier::new(PROCESSES + 2)); // the senders, the API client, this thread
    let started = Instant::now();
    let workers: Vec<_> = (0..PROCESSES)
        .map(|w| {
            let (data, barrier) = (data.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // Two processes race to store each shared id; then this worker's own ids.
                let mut outputs =
                    vec![(format!("shared-{}", w / 2), send(&data, &format!("shared-{}", w / 2), &format!("shared {}", w / 2)))];
                for i in 0..sends_each {
                    let id = format!("w{w:02}-{i}");
                    outputs.push((id.clone(), send(&data, &id, &format!("message {id}"))));
                }
                // A retry of an id already stored: a duplicate, not an error.
                let again = format!("w{w:02}-0");
                outputs.push((again.clone(), send(&data, &again, &format!("message {again}"))));
                outputs
            })
        })
        .collect();
    let api = {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            let agent: ureq::Agent =
                ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into();
            barrier.wait();
            (0..API_EVENTS)
                .map(|i| {
                    let body = serde_json::json!({"message": format!("api {i}"), "level": "INFO", "event_id": format!("api-{i:02}")});
                    let mut res = agent
                        .post(format!("{base}/api/v1/events"))
                        .header("Authorization", format!("Bearer {token}"))
                        .header("Content-Type", "application/json")
                        .send(body.to_string())
                        .unwrap();
                    (res.status().as_u16(), res.body_mut().read_to_string().unwrap())
                })
                .collect::<Vec<_>>()
        })
    };
    barrier.wait();

    let mut sends = 0;
    let mut duplicates = 0;
    for worker in workers {
        for (id, out) in worker.join().unwrap() {
            sends += 1;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "send {id} failed:\nstdout: {stdout}\nstderr: {stderr}");
            for word in ["locked", "busy", "error", "panicked"] {
                assert!(!stderr.to_lowercase().contains(word), "send {id} says {word:?}: {stderr}");
            }
            duplicates += usize::from(stderr.contains("was already stored"));
        }
    }
    for (status, body) in api.join().unwrap() {
        assert_eq!(status, 200, "{body}");
    }
    let elapsed = started.elapsed();
    // Each worker retried one of its ids; each shared id lost one race.
    assert_eq!(duplicates, PROCESSES + PROCESSES / 2, "duplicates reported");

    // The daemon delivers everything, then stops cleanly and logged no lock errors.
    wait_for_drained_outbox(&data, PATIENCE * 2);
    daemon.signal_group("TERM");
    let (status, _, stderr) = daemon.finish();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("locked") && !stderr.contains("busy"), "{stderr}");

    let store = Store::open(&DataDir::at(&data)).unwrap();
    let stored: BTreeMap<String, i64> = store
        .conn()
        .prepare("SELECT event_id, COUNT(*) FROM notifications GROUP BY event_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: BTreeSet<String> = (0..PROCESSES / 2)
        .map(|k| format!("shared-{k}"))
        .chain((0..PROCESSES).flat_map(|w| (0..sends_each).map(move |i| format!("w{w:02}-{i}"))))
        .chain((0..API_EVENTS).map(|i| format!("api-{i:02}")))
        .collect();
    assert_eq!(stored.keys().cloned().collect::<BTreeSet<_>>(), expected, "stored event ids");
    assert!(stored.values().all(|n| *n == 1), "an event was stored twice: {stored:?}");
    let integrity: String = store.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    println!(
        "concurrency: {PROCESSES} processes, {sends} `runwatch send` runs + {API_EVENTS} API posts in {elapsed:.1?}: \
         {} notifications stored once each, {duplicates} duplicates recognised, 0 lock errors, {} Slack requests",
        stored.len(),
        slack.requests().len()
    );
}
