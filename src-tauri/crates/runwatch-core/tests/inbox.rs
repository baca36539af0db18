//! Inbox operations on a real store: a SQLite file, and a PostgreSQL database.

mod common;

use common::{store, Backend};
use runwatch_core::inbox::{AckState, ListFilter};
use runwatch_core::{Inserted, Level, NewNotification, SettingsPatch, Store};

fn note(level: Level, title: &str, run: Option<&str>) -> NewNotification {
    NewNotification { level: Some(level), title: title.into(), run_id: run.map(Into::into), source: "test".into(), ..Default::default() }
}

fn titles(page: &runwatch_core::inbox::Page) -> Vec<&str> {
    page.items.iter().map(|n| n.title.as_str()).collect()
}

fn dedupe_keys_and_event_ids_store_an_event_once(backend: Backend) {
    let (_place, mut store) = store(backend);
    let mut n = note(Level::Error, "stuck", Some("r1"));
    n.dedupe_key = Some("stuck:r1:5".into());
    let Inserted::New(first) = store.insert_notification(&n, 1_000).unwrap() else { panic!("first insert") };
    assert_eq!(store.insert_notification(&n, 2_000).unwrap(), Inserted::Duplicate(first.id.clone()));

    let mut e = note(Level::Warning, "from a client", None);
    e.event_id = Some("client-42".into());
    let Inserted::New(ev) = store.insert_notification(&e, 3_000).unwrap() else { panic!() };
    assert_eq!(store.insert_notification(&e, 4_000).unwrap(), Inserted::Duplicate(ev.id));
    assert_eq!(store.unread_summary().unwrap().total, 2);
    // Expiry defaults to 30 days after creation.
    assert_eq!(first.expires_at, Some(1_000 + 30 * 86_400_000));
}

fn list_is_newest_first_with_filters_and_cursor_paging(backend: Backend) {
    let (_place, mut store) = store(backend);
    for i in 0..7 {
        let level = if i % 2 == 0 { Level::Error } else { Level::Info };
        let run = if i < 4 { "a" } else { "b" };
        store.insert_notification(&note(level, &format!("n{i}"), Some(run)), i).unwrap();
    }
    let all = store.list_notifications(&ListFilter::default()).unwrap();
    assert_eq!(titles(&all), ["n6", "n5", "n4", "n3", "n2", "n1", "n0"]);
    assert_eq!(all.next_cursor, None);

    let errors = store.list_notifications(&ListFilter { min_level: Some(Level::Warning), ..Default::default() }).unwrap();
    assert_eq!(titles(&errors), ["n6", "n4", "n2", "n0"]);
    let run_a = store.list_notifications(&ListFilter { run_id: Some("a".into()), ..Default::default() }).unwrap();
    assert_eq!(titles(&run_a), ["n3", "n2", "n1", "n0"]);

    let mut filter = ListFilter { limit: Some(3), ..Default::default() };
    let mut pages = vec![];
    loop {
        let page = store.list_notifications(&filter).unwrap();
        pages.push(titles(&page).join(","));
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, ["n6,n5,n4", "n3,n2,n1", "n0"]);
    let bad = store.list_notifications(&ListFilter { cursor: Some("zzz".into()), ..Default::default() });
    assert!(bad.unwrap_err().to_string().contains("invalid cursor"));
}

fn ack_by_id_ack_all_and_the_unread_summary(backend: Backend) {
    let (_place, mut store) = store(backend);
    let mut ids = vec![];
    for (i, level) in [Level::Info, Level::Warning, Level::Error, Level::Error].into_iter().enumerate() {
        let Inserted::New(n) = store.insert_notification(&note(level, &format!("n{i}"), None), i as i64).unwrap() else { panic!() };
        ids.push(n.id);
    }
    let s = store.unread_summary().unwrap();
    assert_eq!((s.total, s.info, s.warning, s.error, s.highest), (4, 1, 1, 2, Some(Level::Error)));

    assert_eq!(store.ack(&[ids[2].clone(), ids[3].clone(), "no-such-id".into()], 100).unwrap(), 2);
    assert_eq!(store.ack(&[ids[2].clone()], 101).unwrap(), 0, "acking twice changes nothing");
    let s = store.unread_summary().unwrap();
    assert_eq!((s.total, s.error, s.highest), (2, 0, Some(Level::Warning)));
    assert_eq!(store.notification(&ids[2]).unwrap().unwrap().acked_at, Some(100));

    let acked = store.list_notifications(&ListFilter { state: AckState::Acked, ..Default::default() }).unwrap();
    assert_eq!(titles(&acked), ["n3", "n2"]);
    assert_eq!(store.ack_all(200).unwrap(), 2);
    assert_eq!(store.unread_summary().unwrap(), Default::default());
    assert!(store.list_notifications(&ListFilter::default()).unwrap().items.is_empty());
    assert_eq!(store.list_notifications(&ListFilter { state: AckState::All, ..Default::default() }).unwrap().items.len(), 4);
}

/// "Acknowledge all" writes how far it reached instead of every row (schema 5): what every
/// reader sees must be as if each row had been acknowledged.
fn ack_all_acknowledges_what_it_reached_and_nothing_after(backend: Backend) {
    let (_place, mut store) = store(backend);
    let add = |store: &mut Store, title: &str, at: i64| match store.insert_notification(&note(Level::Error, title, None), at).unwrap() {
        Inserted::New(n) => n.id,
        Inserted::Duplicate(_) => panic!(),
    };
    let a = add(&mut store, "a", 1);
    let b = add(&mut store, "b", 2);
    assert_eq!(store.ack(std::slice::from_ref(&a), 10).unwrap(), 1);
    assert_eq!(store.ack_all(20).unwrap(), 1);
    assert_eq!(store.ack_all(21).unwrap(), 0, "nothing left to acknowledge");
    let c = add(&mut store, "c", 30);

    let got = |store: &Store, id: &str| store.notification(id).unwrap().unwrap();
    assert_eq!((got(&store, &a).acked_at, got(&store, &a).updated_at), (Some(10), 10), "its own time stays");
    assert_eq!((got(&store, &b).acked_at, got(&store, &b).updated_at), (Some(20), 20));
    assert_eq!(got(&store, &c).acked_at, None);
    let list = |store: &Store, state| titles_of(&store.list_notifications(&ListFilter { state, ..Default::default() }).unwrap());
    assert_eq!(list(&store, AckState::Pending), ["c"]);
    assert_eq!(list(&store, AckState::Acked), ["b", "a"]);
    assert_eq!(list(&store, AckState::All), ["c", "b", "a"]);
    assert_eq!(store.unread_summary().unwrap().error, 1);

    // Acknowledging a row the ack-all reached changes nothing and counts nothing.
    assert_eq!(store.ack(std::slice::from_ref(&b), 40).unwrap(), 0);
    assert_eq!(got(&store, &b).acked_at, Some(20));
    assert_eq!(store.unread_summary().unwrap().error, 1);
    // A second ack-all reaches c; b keeps the first one's time.
    assert_eq!(store.ack_all(50).unwrap(), 1);
    assert_eq!(got(&store, &c).acked_at, Some(50));
    assert_eq!(got(&store, &b).acked_at, Some(20));
    let d = add(&mut store, "d", 60);
    // Expiring acknowledged rows leaves the count of the pending one alone.
    assert_eq!(store.expire(30 * 86_400_000 + 31).unwrap(), 3, "30 days after a, b and c");
    let s = store.unread_summary().unwrap();
    assert_eq!((s.total, s.error), (1, 1));
    assert_eq!(list(&store, AckState::Pending), ["d"]);
    assert_eq!(store.ack(&[d], 70).unwrap(), 1);
    assert_eq!(store.unread_summary().unwrap().total, 0);
}

fn titles_of(page: &runwatch_core::inbox::Page) -> Vec<String> {
    page.items.iter().map(|n| n.title.clone()).collect()
}

fn old_notifications_expire(backend: Backend) {
    let (_place, mut store) = store(backend);
    runwatch_core::settings::patch(&mut store, &SettingsPatch { expiry_days: Some(1), ..Default::default() }).unwrap();
    store.insert_notification(&note(Level::Error, "old", None), 0).unwrap();
    store.insert_notification(&note(Level::Error, "new", None), 86_400_000).unwrap();
    assert_eq!(store.expire(86_400_000 - 1).unwrap(), 0);
    assert_eq!(store.expire(86_400_000).unwrap(), 1);
    let left = store.list_notifications(&ListFilter::default()).unwrap();
    assert_eq!(titles(&left), ["new"]);
    runwatch_core::settings::patch(&mut store, &SettingsPatch { expiry_days: Some(0), ..Default::default() }).unwrap();
    let Inserted::New(n) = store.insert_notification(&note(Level::Info, "kept", None), 5).unwrap() else { panic!() };
    assert_eq!(n.expires_at, None);
}

on_both!(
    dedupe_keys_and_event_ids_store_an_event_once,
    list_is_newest_first_with_filters_and_cursor_paging,
    ack_by_id_ack_all_and_the_unread_summary,
    ack_all_acknowledges_what_it_reached_and_nothing_after,
    old_notifications_expire
);
