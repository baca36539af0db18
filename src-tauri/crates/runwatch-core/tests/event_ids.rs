//! Idempotent ingest by client event id (schema 4: merged index + in-memory tail), on real
//! store files, with two connections standing in for two processes.

use runwatch_core::event_ids::MERGE_AT;
use runwatch_core::ingest::Event;
use runwatch_core::{DataDir, Inserted, Level, Store};
use rusqlite::{params, Connection};

const DAY: i64 = 86_400_000;

fn event(id: &str) -> Event {
    Event {
        run_id: Some("job-1".into()),
        level: Some(Level::Warning),
        message: format!("event {id}"),
        event_id: Some(id.into()),
        source: "api".into(),
        ..Default::default()
    }
}

fn new_id(i: Inserted) -> String {
    match i {
        Inserted::New(n) => n.id,
        Inserted::Duplicate(id) => panic!("expected a new notification, got a duplicate of {id}"),
    }
}

fn merged_upto(store: &Store) -> i64 {
    store.conn().query_row("SELECT upto FROM event_ids_merged", [], |r| r.get(0)).unwrap()
}

fn count(store: &Store) -> i64 {
    store.conn().query_row("SELECT COUNT(*) FROM notifications", [], |r| r.get(0)).unwrap()
}

#[test]
fn an_event_id_is_stored_once_in_the_tail_after_a_merge_and_within_a_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(&DataDir::at(tmp.path())).unwrap();

    let first = new_id(store.ingest(&event("a"), 1).unwrap());
    assert_eq!(store.ingest(&event("a"), 2).unwrap(), Inserted::Duplicate(first.clone()));

    // The same id twice in one batch: the second is the first's duplicate.
    let out = store.ingest_batch(&[event("b"), event("b"), event("a")], 3).unwrap();
    let b = match &out[0] {
        Inserted::New(n) => n.id.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(out[1], Inserted::Duplicate(b.clone()));
    assert_eq!(out[2], Inserted::Duplicate(first.clone()));

    // After a merge the ids are found in the index; new ones go to the tail again.
    store.merge_event_ids().unwrap();
    assert_eq!(merged_upto(&store), 2);
    let indexed: i64 = store.conn().query_row("SELECT COUNT(*) FROM event_ids", [], |r| r.get(0)).unwrap();
    assert_eq!(indexed, 2);
    assert_eq!(store.ingest(&event("a"), 4).unwrap(), Inserted::Duplicate(first));
    assert_eq!(store.ingest(&event("b"), 4).unwrap(), Inserted::Duplicate(b));
    new_id(store.ingest(&event("c"), 5).unwrap());
    assert_eq!(count(&store), 3);

    // A reopened store (a new process) reads the tail from the file.
    drop(store);
    let mut store = Store::open(&DataDir::at(tmp.path())).unwrap();
    assert!(matches!(store.ingest(&event("c"), 6).unwrap(), Inserted::Duplicate(_)));
    assert_eq!(count(&store), 3);
}

#[test]
fn two_connections_see_each_others_events_across_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::at(tmp.path());
    let mut one = Store::open(&dir).unwrap();
    let mut two = Store::open(&dir).unwrap();

    let a = new_id(one.ingest(&event("a"), 1).unwrap());
    assert_eq!(two.ingest(&event("a"), 2).unwrap(), Inserted::Duplicate(a.clone()));
    let b = new_id(two.ingest(&event("b"), 3).unwrap());
    assert_eq!(one.ingest(&event("b"), 4).unwrap(), Inserted::Duplicate(b.clone()));

    // `two` merges; `one`'s tail is out of date and must start over from the watermark.
    two.merge_event_ids().unwrap();
    let c = new_id(two.ingest(&event("c"), 5).unwrap());
    assert_eq!(one.ingest(&event("a"), 6).unwrap(), Inserted::Duplicate(a));
    assert_eq!(one.ingest(&event("b"), 6).unwrap(), Inserted::Duplicate(b));
    assert_eq!(one.ingest(&event("c"), 6).unwrap(), Inserted::Duplicate(c));
    assert_eq!(count(&one), 3);
}

#[test]
fn a_tail_of_merge_at_rows_is_merged_by_the_next_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(&DataDir::at(tmp.path())).unwrap();
    let a = new_id(store.ingest(&event("a"), 1).unwrap());
    // Another writer's row far ahead (seq is AUTOINCREMENT, so the next one follows it).
    store
        .conn()
        .execute(
            "INSERT INTO notifications (seq, id, created_at, updated_at, level, title, source, event_id)
             VALUES (?1, 'far', 2, 2, 20, 'far', 'test', 'far-event')",
            [MERGE_AT + 1],
        )
        .unwrap();
    new_id(store.ingest(&event("b"), 3).unwrap());
    assert_eq!(merged_upto(&store), MERGE_AT + 1, "the tail was merged before the insert");
    assert_eq!(store.ingest(&event("a"), 4).unwrap(), Inserted::Duplicate(a));
    assert_eq!(store.ingest(&event("far-event"), 4).unwrap(), Inserted::Duplicate("far".into()));
    let seq_b: i64 = store.conn().query_row("SELECT seq FROM notifications WHERE event_id = 'b'", [], |r| r.get(0)).unwrap();
    assert_eq!(seq_b, MERGE_AT + 2);
}

#[test]
fn an_expired_notification_frees_its_event_id_and_seq_is_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(&DataDir::at(tmp.path())).unwrap();
    new_id(store.ingest(&event("old"), 0).unwrap());
    store.merge_event_ids().unwrap();
    new_id(store.ingest(&event("new"), 1).unwrap()); // in the tail
    assert_eq!(store.expire(31 * DAY).unwrap(), 2);

    let seq_before: i64 = store.conn().query_row("SELECT seq FROM sqlite_sequence WHERE name = 'notifications'", [], |r| r.get(0)).unwrap();
    new_id(store.ingest(&event("old"), 32 * DAY).unwrap());
    new_id(store.ingest(&event("new"), 32 * DAY).unwrap());
    let seqs: Vec<i64> = store
        .conn()
        .prepare("SELECT seq FROM notifications ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(seqs, [seq_before + 1, seq_before + 2], "seqs of deleted rows are not handed out again");
    store.merge_event_ids().unwrap();
    assert!(matches!(store.ingest(&event("old"), 33 * DAY).unwrap(), Inserted::Duplicate(_)));
    assert!(matches!(store.ingest(&event("new"), 33 * DAY).unwrap(), Inserted::Duplicate(_)));
}

/// A store written by the schema-3 Runwatch (unique event ids in the table) keeps its
/// notifications, deliveries, counts and event ids when it is opened by this one.
#[test]
fn a_schema_3_store_is_migrated_without_losing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::at(tmp.path());
    dir.ensure().unwrap();
    {
        let conn = Connection::open(dir.store_path()).unwrap();
        for sql in [
            include_str!("../migrations/0001_initial.sql"),
            include_str!("../migrations/0002_checkins.sql"),
            include_str!("../migrations/0003_pending_counts.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO notifiers (id, type, config, created_at, updated_at) VALUES ('n1', 'logger', '{}', 0, 0);",
        )
        .unwrap();
        for (seq, event_id, acked) in [(1, Some("e1"), None), (2, None, Some(5)), (7, Some("e7"), None)] {
            conn.execute(
                "INSERT INTO notifications (seq, id, created_at, updated_at, level, title, source, event_id, acked_at)
                 VALUES (?1, ?2, 0, 0, 40, 't', 'api', ?3, ?4)",
                params![seq, format!("id-{seq}"), event_id, acked],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO deliveries (notification_id, notifier_id, next_attempt_at, updated_at) VALUES (?1, 'n1', 0, 0)",
                [format!("id-{seq}")],
            )
            .unwrap();
        }
    }

    let mut store = Store::open(&dir).unwrap();
    assert_eq!(store.schema_version().unwrap(), runwatch_core::store::latest_schema_version());
    let deliveries: i64 = store.conn().query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)).unwrap();
    assert_eq!(deliveries, 3, "rebuilding notifications cascaded into deliveries");
    assert_eq!(store.unread_summary().unwrap().error, 2);
    assert_eq!(merged_upto(&store), 7);
    assert_eq!(store.ingest(&event("e7"), 10).unwrap(), Inserted::Duplicate("id-7".into()));
    assert_eq!(store.ingest(&event("e1"), 10).unwrap(), Inserted::Duplicate("id-1".into()));
    let Inserted::New(n) = store.ingest(&event("e8"), 10).unwrap() else { panic!() };
    let seq: i64 = store.conn().query_row("SELECT seq FROM notifications WHERE id = ?1", [&n.id], |r| r.get(0)).unwrap();
    assert_eq!(seq, 8);
    // The triggers came back with the table.
    store.ack(&[n.id], 11).unwrap();
    assert_eq!(store.unread_summary().unwrap().error, 2);
    assert_eq!(store.unread_summary().unwrap().warning, 0);
}
