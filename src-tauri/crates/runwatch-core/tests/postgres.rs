//! What only the PostgreSQL store has: its own migrations, one clear line when it cannot be
//! reached (password masked), and event ids unique across daemons sharing it.

use runwatch_core::ingest::Event;
use runwatch_core::pg::fixture::Cluster;
use runwatch_core::{Inserted, Level, Store, StoreError};

fn event(id: &str) -> Event {
    Event {
        run_id: Some("job-1".into()),
        level: Some(Level::Warning),
        message: format!("event {id}"),
        event_id: Some(id.into()),
        ..Default::default()
    }
}

#[test]
fn migrating_is_idempotent_and_a_newer_schema_is_refused() {
    let url = Cluster::shared().database().unwrap();
    let store = Store::connect(&url).unwrap();
    assert_eq!(store.schema_version().unwrap(), runwatch_core::pg::latest_schema_version());
    drop(store);
    // Two daemons starting at once migrate once.
    let a = std::thread::spawn({
        let url = url.clone();
        move || Store::connect(&url).map(|_| ())
    });
    Store::connect(&url).unwrap();
    a.join().unwrap().unwrap();

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client.execute("UPDATE runwatch_schema SET version = version + 1", &[]).unwrap();
    let err = Store::connect(&url).unwrap_err();
    assert!(matches!(err, StoreError::PgTooNew { .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade Runwatch"), "{err}");
}

#[test]
fn a_server_that_is_down_is_one_line_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgresql://alice:hunter2@127.0.0.1:{port}/rw");
    let err = Store::connect(&url).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(text.contains(&format!("postgresql://alice:***@127.0.0.1:{port}/rw")), "{text}");
    assert!(!text.contains("hunter2") && !format!("{err:?}").contains("hunter2"), "{text}");
    assert!(!text.contains('\n'), "{text}");

    let err = Store::connect("postgresql://alice:hunter2@127.0.0.1:notaport/rw").unwrap_err();
    assert!(err.to_string().contains("not valid") && !err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn two_daemons_store_each_event_once() {
    let url = Cluster::shared().database().unwrap();
    let mut one = Store::connect(&url).unwrap();
    let mut two = Store::connect(&url).unwrap();
    let Inserted::New(a) = one.ingest(&event("a"), 1).unwrap() else { panic!("a is new") };
    assert_eq!(two.ingest(&event("a"), 2).unwrap(), Inserted::Duplicate(a.id.clone()));
    let out = two.ingest_batch(&[event("b"), event("b"), event("a")], 3).unwrap();
    let Inserted::New(b) = &out[0] else { panic!("{out:?}") };
    assert_eq!(out[1], Inserted::Duplicate(b.id.clone()));
    assert_eq!(out[2], Inserted::Duplicate(a.id.clone()));
    assert_eq!(one.run("job-1").unwrap().unwrap().state, runwatch_core::RunState::Running);

    // Both ingesting the same 2,000 events at once: each is stored once.
    let events: Vec<Event> = (0..2_000).map(|i| event(&format!("burst-{i}"))).collect();
    let t = std::thread::spawn({
        let events = events.clone();
        move || {
            let mut new = 0;
            for chunk in events.chunks(100) {
                new += one.ingest_batch(chunk, 10).unwrap().iter().filter(|i| matches!(i, Inserted::New(_))).count();
            }
            new
        }
    });
    let mut new = 0;
    for chunk in events.chunks(100).rev() {
        new += two.ingest_batch(chunk, 10).unwrap().iter().filter(|i| matches!(i, Inserted::New(_))).count();
    }
    new += t.join().unwrap();
    assert_eq!(new, 2_000);
    assert_eq!(two.unread_summary().unwrap().warning, 2_002);
}

fn slack(id: &str) -> runwatch_core::notifiers::Notifier {
    runwatch_core::notifiers::Notifier {
        id: id.into(),
        kind: "slack".into(),
        status: runwatch_core::NotifierStatus::Enabled,
        config: serde_json::json!({ "webhook_url": "http://127.0.0.1:9/hook" }),
        min_level: Level::Debug,
        created_at: 0,
        updated_at: 0,
    }
}

#[test]
fn each_delivery_is_taken_by_one_daemon_until_its_lease_runs_out() {
    use runwatch_core::deliveries::Attempt;
    let url = Cluster::shared().database().unwrap();
    let mut one = Store::connect(&url).unwrap();
    let mut two = Store::connect(&url).unwrap();
    one.add_notifier(&slack("n1")).unwrap();
    let events: Vec<Event> = (0..30).map(|i| event(&format!("e{i}"))).collect();
    one.ingest_batch(&events, 1_000).unwrap();

    // Both take at once: every delivery goes to one of them, none to both.
    let a = one.take_due("n1", 1_000, 20).unwrap();
    let b = two.take_due("n1", 1_000, 20).unwrap();
    assert_eq!((a.len(), b.len()), (20, 10));
    let ids = |d: &[runwatch_core::deliveries::Due]| d.iter().map(|d| d.notification.id.clone()).collect::<Vec<_>>();
    let (ia, ib) = (ids(&a), ids(&b));
    assert!(ia.iter().all(|id| !ib.contains(id)));
    assert!(ia.windows(2).all(|w| w[0] < w[1]), "in the order they were queued");
    assert!(one.take_due("n1", 1_000, 20).unwrap().len() == 20, "a daemon takes its own leases again");
    assert!(two.take_due("n1", 1_000, 20).unwrap().len() == 10);

    // `one` sends five and dies with the rest leased: `two` waits for the lease, then takes them.
    let sent: Vec<(&str, Attempt)> = ia[..5].iter().map(|id| (id.as_str(), Attempt::Sent)).collect();
    one.record_attempts("n1", &sent, None, 1_100).unwrap();
    drop(one);
    let done: Vec<(&str, Attempt)> = ib.iter().map(|id| (id.as_str(), Attempt::Sent)).collect();
    two.record_attempts("n1", &done, None, 1_200).unwrap();
    let lease_end = 1_000 + runwatch_core::pg::DELIVERY_LEASE_MS;
    assert!(two.take_due("n1", lease_end - 1, 100).unwrap().is_empty());
    assert_eq!(two.next_delivery_attempt("n1").unwrap(), Some(lease_end), "wakes when the lease runs out");
    let left = two.take_due("n1", lease_end, 100).unwrap();
    assert_eq!(ids(&left), ia[5..].to_vec());
    let failed: Vec<(&str, Attempt)> = left
        .iter()
        .map(|d| (d.notification.id.as_str(), Attempt::Failed { error: "HTTP 500".into(), retry_at: Some(lease_end + 10) }))
        .collect();
    two.record_attempts("n1", &failed, None, lease_end).unwrap();
    assert_eq!(two.next_delivery_attempt("n1").unwrap(), Some(lease_end + 10));
    assert_eq!(two.delivery_counts().unwrap(), (15, 15, 0));
}

#[test]
fn a_commit_by_another_daemon_wakes_the_feed_and_a_restart_is_survived() {
    use std::sync::mpsc;
    use std::time::Duration;
    let cluster = Cluster::start().unwrap();
    let url = cluster.database().unwrap();
    let mut writer = Store::connect(&url).unwrap();
    let feed = runwatch_core::ChangeFeed::listen(&url).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    feed.subscribe(move || {
        let _ = tx.lock().unwrap().send(());
    });
    writer.ingest(&event("a"), 1).unwrap();
    rx.recv_timeout(Duration::from_secs(10)).expect("a wake after the commit");
    while rx.recv_timeout(Duration::from_millis(300)).is_ok() {}

    cluster.stop().unwrap();
    cluster.resume().unwrap();
    while rx.recv_timeout(Duration::from_millis(1500)).is_ok() {} // the loss and the reconnection wake too
    let mut writer = Store::connect(&url).unwrap();
    writer.ingest(&event("b"), 2).unwrap();
    rx.recv_timeout(Duration::from_secs(10)).expect("a wake after the restart");
}
