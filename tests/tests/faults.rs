//! Faults with real processes: `kill -9` at random moments during ingest and delivery, a
//! full disk, a damaged store. Nothing acknowledged is lost; nothing stored is damaged.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runwatch_core::{DataDir, Store};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::{add_slack_notifier, binary, token_in, url_in, wait_for_drained_outbox, Running, PATIENCE};

/// Kill rounds: 50 in `make test`; `RUNWATCH_SOAK_ROUNDS` sets more (`make soak`).
fn rounds() -> usize {
    std::env::var("RUNWATCH_SOAK_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(50)
}

fn start(data: &std::path::Path, wrap: Option<&str>) -> (Running, String, String) {
    let bin = binary("runwatch");
    let mut cmd = match wrap {
        // A shell that sets limits, then becomes runwatch.
        Some(prefix) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("{prefix}; exec \"$0\" --data-dir \"$1\" start --http 127.0.0.1:0")).arg(&bin).arg(data);
            c
        }
        None => {
            let mut c = Command::new(&bin);
            c.arg("--data-dir").arg(data).args(["start", "--http", "127.0.0.1:0"]);
            c
        }
    };
    let mut daemon = Running::spawn(&mut cmd);
    let url = url_in(&daemon.wait_for_line("the URL", |l| l.starts_with("Serving the UI at ")));
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    let base = url.split('#').next().unwrap().trim_end_matches('/').to_string();
    (daemon, base, token_in(&url))
}

fn post(agent: &ureq::Agent, base: &str, token: &str, body: &serde_json::Value) -> Result<u16, String> {
    agent
        .post(format!("{base}/api/v1/events"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn integrity(data: &std::path::Path) -> String {
    let store = Store::open(&DataDir::at(data)).unwrap();
    store.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

#[test]
fn kill_9_at_random_moments_during_ingest_and_delivery_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let slack = FakeServer::start();
    add_slack_notifier(&data, "5ac4-fault", &slack.url("/services/T/B/FAULTS"));
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build().into();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut next_event = 0usize;
    let mut kills_during_ingest = 0;
    let rounds = rounds();
    for _round in 0..rounds {
        let (daemon, base, token) = start(&data, None);
        let stop = Arc::new(AtomicBool::new(false));
        // A client ingesting as fast as it can; an event whose answer it never got is sent
        // again next round with the same event id (idempotent), as a real client retries.
        let client = {
            let (stop, acked, agent, base, token) = (stop.clone(), acked.clone(), agent.clone(), base.clone(), token.clone());
            let first = next_event;
            std::thread::spawn(move || {
                let mut i = first;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("ev-{i:05}");
                    let body = serde_json::json!({"message": format!("fault {id}"), "level": "ERROR", "event_id": id});
                    match post(&agent, &base, &token, &body) {
                        Ok(200) => {
                            acked.lock().unwrap().insert(id);
                            i += 1;
                        }
                        _ => break,
                    }
                }
                i
            })
        };
        std::thread::sleep(Duration::from_millis(rng.u64(0..250))); // the random moment of the kill
        daemon.signal_group("KILL");
        let ingesting = !client.is_finished();
        stop.store(true, Ordering::SeqCst);
        next_event = client.join().unwrap();
        kills_during_ingest += usize::from(ingesting);
        let _ = daemon.finish();
    }
    assert_eq!(integrity(&data), "ok");

    // A last, clean run drains the outbox.
    let (daemon, ..) = start(&data, None);
    wait_for_drained_outbox(&data, PATIENCE * 3);
    daemon.signal_group("TERM");
    assert!(daemon.finish().0.success());

    let acked = acked.lock().unwrap().clone();
    let store = Store::open(&DataDir::at(&data)).unwrap();
    let stored: HashMap<String, i64> = {
        let mut stmt = store.conn().prepare("SELECT event_id, COUNT(*) FROM notifications GROUP BY event_id").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains_key(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(stored.values().all(|n| *n == 1), "an event was stored twice");
    let texts: String = slack.requests().iter().map(|r| r.json()["text"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>().join("\n");
    let undelivered: Vec<_> = stored.keys().filter(|id| !texts.contains(&format!("fault {id}"))).collect();
    assert!(undelivered.is_empty(), "never reached Slack: {undelivered:?}");
    assert_eq!(integrity(&data), "ok");
    assert!(acked.len() > rounds, "the client hardly ingested anything: {}", acked.len());
    println!(
        "kill -9 loop: {rounds} rounds ({kills_during_ingest} kills mid-ingest), {} events acknowledged, {} stored, \
         {} Slack requests, 0 lost, integrity ok",
        acked.len(),
        stored.len(),
        slack.requests().len()
    );
}

#[test]
fn a_full_disk_is_a_clear_error_and_nothing_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    // Some history first, with room to spare.
    let (daemon, base, token) = start(&data, None);
    for i in 0..20 {
        let body = serde_json::json!({"message": format!("before {i}"), "event_id": format!("b{i}")});
        assert_eq!(post(&agent, &base, &token, &body), Ok(200));
    }
    daemon.signal_group("TERM");
    assert!(daemon.finish().0.success());
    let size =
        std::fs::metadata(data.join("runwatch.db")).unwrap().len() + std::fs::metadata(data.join("runwatch.db-wal")).map_or(0, |m| m.len());

    // Now a disk with almost no room: files may not grow past about what they are.
    let blocks = size / 1024 + 8;
    let (daemon, base, token) = start(&data, Some(&format!("trap '' XFSZ; ulimit -f {blocks}")));
    let big = "x".repeat(60_000);
    let mut refused = None;
    for i in 0..100 {
        let body = serde_json::json!({"message": format!("{big} {i}"), "event_id": format!("f{i}")});
        let res = agent
            .post(format!("{base}/api/v1/events"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        if res.status().as_u16() != 200 {
            refused = Some((res.status().as_u16(), res.into_body().read_to_string().unwrap()));
            break;
        }
    }
    let (status, body) = refused.expect("the disk never filled up");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("full"), "the error says the disk is full: {body}");
    daemon.signal_group("TERM");
    let (code, _, stderr) = daemon.finish();
    assert!(code.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Room again: the history is intact and new writes work.
    assert_eq!(integrity(&data), "ok");
    let (daemon, base, token) = start(&data, None);
    assert_eq!(post(&agent, &base, &token, &serde_json::json!({"message": "after", "event_id": "a1"})), Ok(200));
    daemon.signal_group("TERM");
    assert!(daemon.finish().0.success());
    let store = Store::open(&DataDir::at(&data)).unwrap();
    let before: i64 = store.conn().query_row("SELECT COUNT(*) FROM notifications WHERE event_id LIKE 'b%'", [], |r| r.get(0)).unwrap();
    assert_eq!(before, 20);
    assert_eq!(integrity(&data), "ok");
}

#[test]
fn a_damaged_store_is_one_clear_error_and_is_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let garbage = b"SQLite format 3\0 but then nonsense ".repeat(500);
    std::fs::write(data.join("runwatch.db"), &garbage).unwrap();
    let out = Command::new(binary("runwatch")).arg("--data-dir").arg(&data).args(["start", "--http", "127.0.0.1:0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("corrupt") && stderr.contains("runwatch.db"), "{stderr}");
    assert!(!stderr.contains("panicked"));
    assert_eq!(std::fs::read(data.join("runwatch.db")).unwrap(), garbage, "the file was changed");
}
