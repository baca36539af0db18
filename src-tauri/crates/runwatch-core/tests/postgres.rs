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
