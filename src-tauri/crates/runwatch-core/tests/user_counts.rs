//! Each user's summary on a team store comes from counts kept as things change (PostgreSQL
//! schema 7), not from counting the inbox. After every kind of change, each user's summary
//! must say what their pending list shows (the list counts the inbox itself).

mod common;

use common::{store, Backend};
use runwatch_core::inbox::{AckState, ListFilter};
use runwatch_core::noise::{NewSilence, SnoozeUntil};
use runwatch_core::remotes::NewRemote;
use runwatch_core::users::Recipient;
use runwatch_core::{Inserted, Level, NewNotification, Store};

const T0: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn note(level: Level, title: &str, to: &[&str]) -> NewNotification {
    let audience = to
        .iter()
        .map(|r| match r.split_once('@') {
            Some((user, host)) => Recipient { user: user.into(), host: host.into() },
            None => Recipient { user: (*r).into(), host: String::new() },
        })
        .collect();
    NewNotification { level: Some(level), title: title.into(), source: "test".into(), audience, ..Default::default() }
}

fn insert(store: &mut Store, n: &NewNotification, at: i64) -> String {
    match store.insert_notification(n, at).unwrap() {
        Inserted::New(n) => n.id,
        Inserted::Duplicate(id) => panic!("duplicate {id}"),
    }
}

/// The user's summary, and what their pending list says, by level (CRITICAL … DEBUG).
fn both(store: &Store, user: &str, now: i64) -> ([i64; 5], [i64; 5]) {
    let s = store.unread_summary_as(Some(user), now).unwrap();
    let summary = [s.critical, s.error, s.warning, s.info, s.debug];
    let filter = ListFilter { state: AckState::Pending, limit: Some(1000), now: Some(now), ..Default::default() };
    let mut listed = [0; 5];
    for n in store.list_notifications_as(Some(user), &filter).unwrap().items {
        let at = [Level::Critical, Level::Error, Level::Warning, Level::Info, Level::Debug].iter().position(|l| *l == n.level);
        listed[at.unwrap()] += 1;
    }
    (summary, listed)
}

#[track_caller]
fn agree(store: &Store, now: i64, step: &str) {
    for user in ["alice", "bob"] {
        if store.users().unwrap().iter().any(|u| u.name == user) {
            let (summary, listed) = both(store, user, now);
            assert_eq!(summary, listed, "{user}'s summary after {step}");
        }
    }
}

#[test]
fn each_users_summary_says_what_their_pending_list_shows_after_every_change() {
    let (_place, mut store) = store(Backend::Postgres);
    store.add_user("alice", T0).unwrap();

    // Before bob exists: he is counted when he is added.
    for (i, level) in [Level::Error, Level::Warning, Level::Info].into_iter().enumerate() {
        insert(&mut store, &note(level, &format!("early {i}"), &[]), T0);
    }
    let for_alice = insert(&mut store, &note(Level::Critical, "for alice", &["alice"]), T0);
    insert(&mut store, &note(Level::Error, "for alice on two hosts", &["alice@gpu-1", "alice@gpu-2"]), T0);
    insert(&mut store, &note(Level::Warning, "for bob", &["bob"]), T0);
    agree(&store, T0, "inserts");
    store.add_user("bob", T0).unwrap();
    agree(&store, T0, "adding bob");
    assert_eq!(both(&store, "alice", T0).0, [1, 2, 1, 1, 0]);
    assert_eq!(both(&store, "bob", T0).0, [0, 1, 2, 1, 0]);

    // A user's acknowledgements are theirs; one of something not theirs changes nothing.
    let broadcast = insert(&mut store, &note(Level::Error, "for everyone", &[]), T0 + 1);
    store.ack_as(Some("alice"), &[for_alice.clone(), broadcast.clone()], T0 + 2).unwrap();
    store.ack_as(Some("bob"), std::slice::from_ref(&for_alice), T0 + 2).unwrap();
    agree(&store, T0 + 2, "acknowledgements");
    assert_eq!(both(&store, "bob", T0 + 2).0, [0, 2, 2, 1, 0]);

    // Silenced on arrival: counted for no one.
    let silence = NewSilence { matchers: vec!["text~nan".into()], starts_at: None, ends_at: T0 + DAY, comment: None };
    store.add_silence(&silence, T0 + 3).unwrap();
    insert(&mut store, &note(Level::Error, "loss is nan", &[]), T0 + 4);
    agree(&store, T0 + 4, "a silenced arrival");

    // An alarm resolved by its run's recovery: no longer pending for anyone.
    let mut stuck = note(Level::Error, "Run 'r1' is stuck", &[]);
    (stuck.run_id, stuck.dedupe_key) = (Some("r1".into()), Some("stuck:r1:3".into()));
    insert(&mut store, &stuck, T0 + 5);
    agree(&store, T0 + 5, "an alarm");
    let mut back = note(Level::Info, "Run 'r1' recovered", &[]);
    (back.run_id, back.dedupe_key) = (Some("r1".into()), Some("recovered:r1:4".into()));
    insert(&mut store, &back, T0 + 6);
    agree(&store, T0 + 6, "a recovery");

    // Snoozed: out of the summary until it ends.
    let snoozed = insert(&mut store, &note(Level::Warning, "snoozed", &[]), T0 + 7);
    store.snooze(std::slice::from_ref(&snoozed), SnoozeUntil::Time(T0 + 100), T0 + 7).unwrap();
    agree(&store, T0 + 8, "a snooze");
    agree(&store, T0 + 100, "a snooze's end");

    // Alice acknowledges all; what comes after is new to her.
    store.ack_all_as(Some("alice"), T0 + 10).unwrap();
    agree(&store, T0 + 10, "alice's acknowledge all");
    assert_eq!(both(&store, "alice", T0 + 10).0, [0; 5]);
    insert(&mut store, &note(Level::Debug, "after", &[]), T0 + 11);
    agree(&store, T0 + 11, "an insert after acknowledge all");

    // A followed server's notifications, and their acknowledgement there.
    let (_server_place, mut server) = common::store(Backend::Postgres);
    let remote_id = insert(&mut server, &note(Level::Critical, "from the server", &[]), T0);
    store
        .add_remote(
            &NewRemote { name: "lab".into(), url: "http://127.0.0.1:1".into(), token: "t".into(), ca_file: None, deliver: false },
            T0,
        )
        .unwrap();
    let sync = |store: &mut Store, server: &Store, now| {
        let cursor = store.remotes_to_follow().unwrap()[0].cursor;
        store.apply_changes("lab", false, &server.changes(cursor, 100).unwrap(), now).unwrap();
    };
    sync(&mut store, &server, T0 + 12);
    agree(&store, T0 + 12, "a followed server's notification");
    server.ack(std::slice::from_ref(&remote_id), T0 + 13).unwrap();
    sync(&mut store, &server, T0 + 14);
    agree(&store, T0 + 14, "its acknowledgement on the server");

    // Expired: gone from every count, with the users' acknowledgements of it.
    insert(&mut store, &note(Level::Warning, "late", &["bob"]), T0 + 20 * DAY);
    store.expire(T0 + 31 * DAY).unwrap();
    agree(&store, T0 + 31 * DAY, "expiry");
    assert_eq!(both(&store, "bob", T0 + 31 * DAY).0, [0, 0, 1, 0, 0]);

    // A user removed and added again is counted afresh.
    store.remove_user("bob").unwrap();
    store.add_user("bob", T0 + 32 * DAY).unwrap();
    agree(&store, T0 + 32 * DAY, "bob added again");
}
