//! The unread summary is read from `pending_counts` (kept by triggers, migration 0003):
//! after every kind of change it must equal a plain count of the pending notifications.

mod common;

use common::{Backend, Place};
use runwatch_core::inbox::UnreadSummary;
use runwatch_core::{Inserted, Level, NewNotification, SettingsPatch, Store};

/// The summary as a count over the notifications table, the way it was computed before.
fn counted(place: &Place) -> UnreadSummary {
    let mut s = UnreadSummary::default();
    let rows = place.pairs(
        "SELECT level, COUNT(*) FROM notifications
         WHERE acked_at IS NULL AND seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls) GROUP BY level",
    );
    for (level, n) in rows {
        let level = Level::from_number(level).unwrap();
        *match level {
            Level::Debug => &mut s.debug,
            Level::Info => &mut s.info,
            Level::Warning => &mut s.warning,
            Level::Error => &mut s.error,
            Level::Critical => &mut s.critical,
        } += n;
        s.total += n;
        s.highest = s.highest.max(Some(level));
    }
    s
}

fn note(level: Level, i: usize) -> NewNotification {
    NewNotification { level: Some(level), title: format!("n{i}"), source: "test".into(), ..Default::default() }
}

fn the_summary_follows_inserts_acks_ack_all_and_expiry(backend: Backend) {
    let (place, mut store) = common::store(backend);
    assert_eq!(store.unread_summary().unwrap(), UnreadSummary::default());

    let mut ids = Vec::new();
    for i in 0..40 {
        let level = Level::ALL[i % 5];
        let Inserted::New(n) = store.insert_notification(&note(level, i), 1_000 + i as i64).unwrap() else { panic!() };
        ids.push(n.id);
        assert_eq!(store.unread_summary().unwrap(), counted(&place));
    }
    assert_eq!(store.unread_summary().unwrap().total, 40);
    assert_eq!(store.unread_summary().unwrap().highest, Some(Level::Critical));

    // A duplicate stores nothing and counts nothing.
    let mut dup = note(Level::Error, 99);
    dup.dedupe_key = Some("k".into());
    store.insert_notification(&dup, 2_000).unwrap();
    store.insert_notification(&dup, 2_001).unwrap();
    assert_eq!(store.unread_summary().unwrap(), counted(&place));

    // Acknowledging some (twice: the second time changes nothing).
    let some: Vec<String> = ids.iter().step_by(3).cloned().collect();
    store.ack(&some, 3_000).unwrap();
    store.ack(&some, 3_001).unwrap();
    assert_eq!(store.unread_summary().unwrap(), counted(&place));

    // Events ingested in a batch.
    let events: Vec<_> = (0..10)
        .map(|i| runwatch_core::ingest::Event {
            level: Some(Level::ALL[i % 5]),
            message: format!("e{i}"),
            event_id: Some(format!("ev-{i}")),
            ..Default::default()
        })
        .collect();
    store.ingest_batch(&events, 4_000).unwrap();
    store.ingest_batch(&events, 4_001).unwrap();
    assert_eq!(store.unread_summary().unwrap(), counted(&place));

    // Expiry deletes pending and acknowledged ones alike.
    const DAY: i64 = 86_400_000;
    runwatch_core::settings::patch(&mut store, &SettingsPatch { expiry_days: Some(1), ..Default::default() }).unwrap();
    store.insert_notification(&note(Level::Warning, 100), 40 * DAY).unwrap();
    assert!(store.expire(35 * DAY).unwrap() > 0);
    assert_eq!(store.unread_summary().unwrap(), counted(&place));
    assert_eq!(store.unread_summary().unwrap().total, 1);

    assert_eq!(store.ack_all(40 * DAY).unwrap(), 1);
    assert_eq!(store.unread_summary().unwrap(), UnreadSummary::default());
    assert_eq!(counted(&place), UnreadSummary::default());
}

#[test]
fn migrating_a_full_inbox_counts_what_is_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("runwatch.db");
    {
        // A store at schema 2 with notifications in it, as an older Runwatch left it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/0001_initial.sql")).unwrap();
        conn.execute_batch(include_str!("../migrations/0002_checkins.sql")).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        for i in 0..25i64 {
            let level = [10, 20, 30, 40, 50][(i % 5) as usize];
            let acked = (i % 4 == 0).then_some(5i64);
            conn.execute(
                "INSERT INTO notifications (id, created_at, updated_at, level, title, source, acked_at)
                 VALUES (?1, 1, 1, ?2, 't', 'test', ?3)",
                rusqlite::params![format!("id-{i}"), level, acked],
            )
            .unwrap();
        }
    }
    let store = Store::open_path(&path).unwrap();
    let place = Place::sqlite_file(tmp);
    assert_eq!(store.schema_version().unwrap(), runwatch_core::store::latest_schema_version());
    let s = store.unread_summary().unwrap();
    assert_eq!(s, counted(&place));
    assert_eq!(s.total, 25 - 7);
}

fn ack_all_and_expiry_beside_another_writer_never_fail_and_keep_the_counts(backend: Backend) {
    // ack_all and expire run as single statements outside `Store::write`; they must still
    // wait for the write lock like it rather than fail with "database is locked".
    let (place, mut acker) = common::store(backend);
    let writer = std::thread::spawn({
        let location = place.location.clone();
        move || {
            let mut store = Store::open_at(&location).unwrap();
            for i in 0..300 {
                store.insert_notification(&note(Level::ALL[i % 5], i), 1_000 + i as i64).unwrap();
            }
        }
    });
    let mut acked = 0;
    for i in 0..100 {
        acked += acker.ack_all(2_000 + i).unwrap();
        acker.expire(0).unwrap();
    }
    writer.join().unwrap();
    acked += acker.ack_all(5_000).unwrap();
    assert_eq!(acked, 300);
    assert_eq!(acker.unread_summary().unwrap(), UnreadSummary::default());
    assert_eq!(counted(&place), UnreadSummary::default());
}

on_both!(the_summary_follows_inserts_acks_ack_all_and_expiry, ack_all_and_expiry_beside_another_writer_never_fail_and_keep_the_counts);
