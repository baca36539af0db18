//! PostgreSQL restarted (an immediate shutdown, as a crash) while a daemon ingests 10,000
//! events from four clients: every event acknowledged with a 2xx is stored exactly once,
//! and the daemon takes events again once the server is back, without a restart of its own.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use runwatch_core::pg::fixture::Cluster;
use runwatch_tests::{runwatch, token_in, url_in, wait_until, Running};

const EVENTS: usize = 10_000;
const BATCH: usize = 50;
const CLIENTS: usize = 4;

#[test]
fn a_postgresql_restart_mid_ingest_loses_nothing_acknowledged() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon =
        Running::spawn(runwatch(dir.path()).args(["--store", &url, "--notifications", "hidden", "start", "--http", "127.0.0.1:0"]));
    let ui = url_in(&daemon.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at")));
    let token = token_in(&ui);
    let base = ui.split("/#").next().unwrap().trim_end_matches('/').to_string();

    let acknowledged = Mutex::new(HashSet::new());
    let (acked_count, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let (base, token, acknowledged, acked_count, refused) = (&base, &token, &acknowledged, &acked_count, &refused);
            scope.spawn(move || {
                let agent: ureq::Agent =
                    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into();
                let batches = (0..EVENTS / BATCH).filter(|b| b % CLIENTS == c);
                for b in batches {
                    let ids: Vec<String> = (b * BATCH..(b + 1) * BATCH).map(|i| format!("ev-{i}")).collect();
                    let events: Vec<_> =
                        ids.iter().map(|id| serde_json::json!({ "message": format!("event {id}"), "event_id": id })).collect();
                    let body = serde_json::json!({ "events": events }).to_string();
                    // As a client with a spool: resent until taken, the event ids keep it once.
                    loop {
                        let sent = agent
                            .post(format!("{base}/api/v1/events/batch"))
                            .header("Authorization", format!("Bearer {token}"))
                            .header("Content-Type", "application/json")
                            .send(body.as_str());
                        match sent {
                            Ok(res) if res.status().is_success() => break,
                            Ok(res) => assert_eq!(res.status().as_u16(), 503, "the store's absence is a 503"),
                            Err(e) => panic!("the daemon itself must stay up: {e}"),
                        }
                        refused.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50)); // the client's pause before resending
                    }
                    acknowledged.lock().unwrap().extend(ids);
                    acked_count.fetch_add(BATCH, Ordering::Relaxed);
                }
            });
        }
        wait_until("a third of the events in", || (acked_count.load(Ordering::Relaxed) >= EVENTS / 3).then_some(()));
        cluster.stop().unwrap();
        wait_until("a batch refused while the server is down", || (refused.load(Ordering::Relaxed) > 0).then_some(()));
        cluster.resume().unwrap();
    });
    assert!(acked_count.load(Ordering::Relaxed) == EVENTS);

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let repeated: i64 = client
        .query_one("SELECT COUNT(*) FROM (SELECT event_id FROM notifications GROUP BY event_id HAVING COUNT(*) > 1) x", &[])
        .unwrap()
        .get(0);
    assert_eq!(repeated, 0, "an event stored twice");
    let stored: HashSet<String> =
        client.query("SELECT event_id FROM notifications WHERE event_id IS NOT NULL", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let acknowledged = acknowledged.into_inner().unwrap();
    assert_eq!(acknowledged.len(), EVENTS);
    let lost: Vec<_> = acknowledged.difference(&stored).take(5).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert_eq!(stored.len(), EVENTS);

    daemon.signal_group("TERM");
    let (status, _, stderr) = daemon.finish();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stderr.contains("panicked"), "{stderr}");
}
