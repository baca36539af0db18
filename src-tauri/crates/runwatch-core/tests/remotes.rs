//! The change feed and following it, on real stores (a SQLite file, a PostgreSQL
//! database): a server's store and a follower's, with the pages passed between them by
//! hand (the engine's follower does it over HTTP).

mod common;

use std::collections::HashSet;

use common::{store, Backend};
use runwatch_core::remotes::{Changes, Cursor, NewRemote, RemoteState};
use runwatch_core::users::Recipient;
use runwatch_core::{Inserted, Level, NewNotification, Store};

fn send(store: &mut Store, title: &str, at: i64) -> String {
    send_to(store, title, &[], at)
}

/// A notification for these users (everyone when none).
fn send_to(store: &mut Store, title: &str, users: &[&str], at: i64) -> String {
    let audience = users.iter().map(|u| Recipient { user: (*u).into(), host: String::new() }).collect();
    let n = NewNotification { level: Some(Level::Error), title: title.into(), source: "test".into(), audience, ..Default::default() };
    match store.insert_notification(&n, at).unwrap() {
        Inserted::New(n) => n.id,
        Inserted::Duplicate(id) => panic!("duplicate {id}"),
    }
}

fn follower(backend: Backend) -> (common::Place, Store) {
    let (place, mut store) = store(backend);
    store
        .add_remote(&NewRemote { name: "a".into(), url: "http://127.0.0.1:1".into(), token: "t".into(), ca_file: None, deliver: false }, 1)
        .unwrap();
    (place, store)
}

/// Reads every page after the follower's cursor and applies it, as the engine does.
fn sync(server: &Store, follower: &mut Store, page: usize, now: i64) -> Vec<Changes> {
    sync_as(server, None, follower, page, now)
}

/// [`sync`] with a user's feed (a follower that uses a user's token).
fn sync_as(server: &Store, user: Option<&str>, follower: &mut Store, page: usize, now: i64) -> Vec<Changes> {
    let mut pages = Vec::new();
    loop {
        let cursor = follower.remotes_to_follow().unwrap()[0].cursor;
        let changes = server.changes_as(user, cursor, page).unwrap();
        follower.apply_changes("a", false, &changes, now).unwrap();
        let more = changes.more;
        pages.push(changes);
        if !more {
            return pages;
        }
    }
}

fn pending_titles(store: &Store) -> Vec<String> {
    let filter = runwatch_core::inbox::ListFilter { limit: Some(1000), ..Default::default() };
    store.list_notifications(&filter).unwrap().items.into_iter().map(|n| n.title).collect()
}

#[test]
fn cursors_read_and_write_as_three_numbers() {
    let c: Cursor = "12.3.7".parse().unwrap();
    assert_eq!(c, Cursor { seq: 12, ack: 3, all: 7 });
    assert_eq!(c.to_string(), "12.3.7");
    for bad in ["", "1.2", "1.2.3.4", "a.b.c", "-1.0.0"] {
        assert!(bad.parse::<Cursor>().is_err(), "{bad}");
    }
}

fn pages_of_changes_bring_every_notification_once_and_acks_both_ways(backend: Backend) {
    let (_s, mut server) = store(backend);
    let (_f, mut follower) = follower(backend);
    let ids: Vec<String> = (0..25).map(|i| send(&mut server, &format!("n{i}"), 10 + i)).collect();
    server.ack(std::slice::from_ref(&ids[3]), 100).unwrap();

    let pages = sync(&server, &mut follower, 10, 200);
    assert_eq!(pages.len(), 3, "pages of 10, 10 and 5");
    assert_eq!(pending_titles(&follower).len(), 24, "n3 came acknowledged");
    assert_eq!(follower.unread_summary().unwrap().error, 24);
    // Applying a page again (a crash before the cursor was kept) stores nothing twice.
    follower.apply_changes("a", false, &pages[0], 300).unwrap();
    assert_eq!(follower.unread_summary().unwrap().total, 24);
    let remote = &follower.remotes().unwrap()[0];
    assert_eq!((remote.state, remote.pending), (RemoteState::Connected, 24));
    assert_eq!(follower.remotes_to_follow().unwrap()[0].cursor.to_string(), pages[2].cursor, "the cursor stays");

    // An ack on the server reaches the follower; one on the follower waits to be sent.
    server.ack(std::slice::from_ref(&ids[5]), 400).unwrap();
    sync(&server, &mut follower, 10, 500);
    assert_eq!(follower.unread_summary().unwrap().total, 23);
    let mine = follower.list_notifications(&Default::default()).unwrap().items.into_iter().find(|n| n.title == "n7").unwrap();
    assert_eq!(mine.origin.as_deref(), Some("a"));
    assert_eq!(follower.ack(&[mine.id], 600).unwrap(), 1);
    let queued = follower.queued_acks("a", 10).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].remote_id.as_deref(), Some(ids[7].as_str()));
    follower.acks_sent("a", queued[0].seq).unwrap();
    assert!(follower.queued_acks("a", 10).unwrap().is_empty());

    // The follower's feed holds its own notifications only, not the server's.
    let own = follower.changes(Cursor::default(), 1000).unwrap();
    assert!(own.notifications.is_empty(), "{own:?}");
}

fn acknowledging_all_reaches_each_side_for_what_it_has(backend: Backend) {
    let (_s, mut server) = store(backend);
    let (_f, mut follower) = follower(backend);
    for i in 0..5 {
        send(&mut server, &format!("early {i}"), 10 + i);
    }
    sync(&server, &mut follower, 1000, 100);
    // The follower acknowledges all it has; the server got two more meanwhile.
    send(&mut server, "late 0", 200);
    send(&mut server, "late 1", 201);
    send(&mut follower, "local", 202);
    assert_eq!(follower.ack_all(300).unwrap(), 6);
    let queued = follower.queued_acks("a", 10).unwrap();
    assert_eq!(queued.len(), 1);
    let upto = queued[0].upto.expect("an ack-all up to a seq");
    assert_eq!(server.ack_upto(upto, 310).unwrap(), 5);
    let mut left = pending_titles(&server);
    left.sort();
    assert_eq!(left, ["late 0", "late 1"]);
    assert_eq!(server.unread_summary().unwrap().total, 2);
    // Again, or an older one: nothing more.
    assert_eq!(server.ack_upto(upto, 320).unwrap(), 0);

    // The server's "acknowledge all" clears the follower, the late ones included.
    sync(&server, &mut follower, 1000, 400);
    assert_eq!(pending_titles(&follower).into_iter().collect::<HashSet<_>>(), HashSet::from(["late 0".to_string(), "late 1".to_string()]));
    server.ack_all(500).unwrap();
    sync(&server, &mut follower, 1000, 600);
    assert!(pending_titles(&follower).is_empty());
    assert_eq!(follower.unread_summary().unwrap().total, 0);
}

fn a_disabled_or_removed_remote_stores_nothing_more(backend: Backend) {
    let (_s, mut server) = store(backend);
    let (_f, mut follower) = follower(backend);
    send(&mut server, "one", 10);
    let changes = server.changes(Cursor::default(), 10).unwrap();
    follower.set_remote("a", Some(false), None, 20).unwrap();
    assert_eq!(follower.apply_changes("a", false, &changes, 30).unwrap().stored, 0);
    assert_eq!(follower.remotes().unwrap()[0].state, RemoteState::Disabled);
    follower.set_remote("a", Some(true), None, 40).unwrap();
    assert_eq!(follower.apply_changes("a", false, &changes, 50).unwrap().stored, 1);
    follower.remove_remote("a").unwrap();
    assert!(follower.remotes().unwrap().is_empty());
    assert_eq!(pending_titles(&follower), ["one"], "its notifications stay");
}

fn lists_filter_by_origin(backend: Backend) {
    let (_s, mut server) = store(backend);
    let (_f, mut follower) = follower(backend);
    send(&mut server, "theirs", 10);
    sync(&server, &mut follower, 1000, 20);
    send(&mut follower, "mine", 30);
    let titles = |origin: Option<&str>| -> Vec<String> {
        let filter = runwatch_core::inbox::ListFilter { origin: origin.map(Into::into), ..Default::default() };
        follower.list_notifications(&filter).unwrap().items.into_iter().map(|n| n.title).collect()
    };
    assert_eq!(titles(None), ["mine", "theirs"]);
    assert_eq!(titles(Some("a")), ["theirs"]);
    assert_eq!(titles(Some("local")), ["mine"]);
    assert!(titles(Some("b")).is_empty());
    assert!(runwatch_core::remotes::check_name("local").is_err(), "the name of this instance's own");
}

fn acknowledgements_wait_only_for_remotes_still_followed(backend: Backend) {
    let (_s, mut server) = store(backend);
    let (_f, mut follower) = follower(backend);
    send(&mut server, "one", 10);
    send(&mut server, "two", 11);
    sync(&server, &mut follower, 1000, 20);
    let ids: Vec<String> = follower.list_notifications(&Default::default()).unwrap().items.into_iter().map(|n| n.id).collect();
    follower.ack(&ids[..1], 30).unwrap();
    assert_eq!(follower.queued_acks("a", 10).unwrap().len(), 1);
    follower.remove_remote("a").unwrap();
    assert!(follower.queued_acks("a", 10).unwrap().is_empty());
    follower.ack(&ids[1..], 40).unwrap();
    assert!(follower.queued_acks("a", 10).unwrap().is_empty(), "nothing queued for a remote no longer followed");
}

/// With `deliver`, a remote's pending notifications go to this store's notifiers at or
/// below their level, once; without it, to none.
fn delivering_a_remote_queues_its_pending_notifications_once(backend: Backend) {
    let (_s, mut server) = store(backend);
    let (place, mut follower) = follower(backend);
    let notifier = runwatch_core::notifiers::Notifier {
        id: "slack".into(),
        kind: "slack".into(),
        status: runwatch_core::NotifierStatus::Enabled,
        config: serde_json::json!({ "url": "http://127.0.0.1:1" }),
        min_level: Level::Warning,
        created_at: 1,
        updated_at: 1,
    };
    follower.add_notifier(&notifier).unwrap();
    send(&mut server, "error", 10);
    let info = NewNotification { level: Some(Level::Info), title: "info".into(), source: "test".into(), ..Default::default() };
    server.insert_notification(&info, 11).unwrap();
    let acked = send(&mut server, "acked", 12);
    server.ack(&[acked], 13).unwrap();
    let changes = server.changes(Cursor::default(), 1000).unwrap();
    let applied = follower.apply_changes("a", true, &changes, 20).unwrap();
    assert_eq!((applied.stored, applied.new_pending.len()), (3, 2));
    assert_eq!(place.count("SELECT COUNT(*) FROM deliveries"), 1, "the pending ERROR only");
    follower.apply_changes("a", true, &changes, 30).unwrap();
    assert_eq!(place.count("SELECT COUNT(*) FROM deliveries"), 1, "a page applied again queues nothing more");
    send(&mut server, "not delivered", 40);
    let cursor = follower.remotes_to_follow().unwrap()[0].cursor;
    follower.apply_changes("a", false, &server.changes(cursor, 1000).unwrap(), 50).unwrap();
    assert_eq!(place.count("SELECT COUNT(*) FROM deliveries"), 1);
}

on_both!(
    delivering_a_remote_queues_its_pending_notifications_once,
    pages_of_changes_bring_every_notification_once_and_acks_both_ways,
    acknowledging_all_reaches_each_side_for_what_it_has,
    a_disabled_or_removed_remote_stores_nothing_more,
    lists_filter_by_origin,
    acknowledgements_wait_only_for_remotes_still_followed,
);

fn pending_for(server: &Store, user: &str) -> Vec<String> {
    let filter = runwatch_core::inbox::ListFilter { limit: Some(1000), ..Default::default() };
    let mut titles: Vec<String> = server.list_notifications_as(Some(user), &filter).unwrap().items.into_iter().map(|n| n.title).collect();
    titles.sort();
    titles
}

fn sorted(mut titles: Vec<String>) -> Vec<String> {
    titles.sort();
    titles
}

/// A team store followed with a user's token: the feed holds what is for that user or for
/// everyone, with that user's acknowledgements; what the follower acknowledges is that
/// user's alone. The follower is on `backend`; the team store is PostgreSQL.
fn a_users_feed_holds_what_is_for_them_with_their_acks(backend: Backend) {
    let (place, mut server) = store(Backend::Postgres);
    let (_f, mut follower) = follower(backend);
    server.add_user("alice", 1).unwrap();
    server.add_user("bob", 1).unwrap();
    let everyone = send(&mut server, "everyone", 10);
    let for_alice = send_to(&mut server, "for alice", &["alice"], 11);
    send_to(&mut server, "for bob", &["bob"], 12);
    let both = send_to(&mut server, "for both", &["alice", "bob"], 13);
    // Bob's acknowledgement is his: alice's feed brings it pending.
    assert_eq!(server.ack_as(Some("bob"), std::slice::from_ref(&both), 20).unwrap(), 1);

    sync_as(&server, Some("alice"), &mut follower, 2, 30);
    assert_eq!(sorted(pending_titles(&follower)), ["everyone", "for alice", "for both"]);

    // Alice acknowledges on the server: it reaches her follower. Bob's does not.
    server.ack_as(Some("alice"), std::slice::from_ref(&for_alice), 40).unwrap();
    server.ack_as(Some("bob"), std::slice::from_ref(&everyone), 41).unwrap();
    let pages = sync_as(&server, Some("alice"), &mut follower, 1000, 50);
    assert_eq!(pages[0].acks.len(), 1, "{pages:?}");
    assert_eq!(sorted(pending_titles(&follower)), ["everyone", "for both"]);

    // The follower's acknowledgement lands as alice's: bob's view stays as it was.
    let local = follower.list_notifications(&Default::default()).unwrap().items;
    let mine = local.iter().find(|n| n.title == "for both").unwrap();
    follower.ack(std::slice::from_ref(&mine.id), 60).unwrap();
    let queued = follower.queued_acks("a", 10).unwrap();
    let ids: Vec<String> = queued.iter().filter_map(|q| q.remote_id.clone()).collect();
    assert_eq!(ids, std::slice::from_ref(&both));
    assert_eq!(server.ack_as(Some("alice"), &ids, 70).unwrap(), 1);
    follower.acks_sent("a", queued[0].seq).unwrap();
    assert_eq!(pending_for(&server, "alice"), ["everyone"]);
    assert_eq!(pending_for(&server, "bob"), ["for bob"]);

    // The follower's "acknowledge all" reaches what alice had, not what came after, and not bob.
    send(&mut server, "late", 80);
    assert_eq!(follower.ack_all(90).unwrap(), 1);
    let upto = follower.queued_acks("a", 10).unwrap()[0].upto.expect("an ack-all up to a seq");
    assert_eq!(server.ack_upto_as(Some("alice"), upto, 100).unwrap(), 1);
    assert_eq!(server.ack_upto_as(Some("alice"), upto, 101).unwrap(), 0, "again: nothing more");
    assert_eq!(pending_for(&server, "alice"), ["late"]);
    assert_eq!(pending_for(&server, "bob"), ["for bob", "late"]);

    // Alice's "acknowledge all" on the server clears her follower; bob's feed never had hers.
    sync_as(&server, Some("alice"), &mut follower, 1000, 110);
    assert_eq!(pending_titles(&follower), ["late"]);
    server.ack_all_as(Some("alice"), 120).unwrap();
    let cursor = follower.remotes_to_follow().unwrap()[0].cursor;
    sync_as(&server, Some("alice"), &mut follower, 1000, 130);
    assert!(pending_titles(&follower).is_empty());
    let bobs = server.changes_as(Some("bob"), Cursor::default(), 1000).unwrap();
    let titles: HashSet<&str> = bobs.notifications.iter().map(|c| c.notification.title.as_str()).collect();
    assert_eq!(titles, HashSet::from(["everyone", "for bob", "for both", "late"]));
    assert!(bobs.ack_alls.is_empty(), "alice's acknowledge-alls are hers");
    assert_eq!(bobs.acks.len(), 2, "bob's own two: {bobs:?}");

    // Cursors are the store's: another connection (another daemon) reads the same feed.
    let other = place.open();
    assert_eq!(other.changes_as(Some("alice"), cursor, 1000).unwrap(), server.changes_as(Some("alice"), cursor, 1000).unwrap());
    let now = follower.remotes_to_follow().unwrap()[0].cursor;
    assert!(other.changes_as(Some("alice"), now, 1000).unwrap().is_empty());
}

/// Each backend follows the other: a PostgreSQL store's feed applied to a SQLite store and
/// the other way round, acknowledgements both ways.
fn following_across_backends(backend: Backend) {
    let other = if backend == Backend::Sqlite { Backend::Postgres } else { Backend::Sqlite };
    let (_s, mut server) = store(other);
    let (_f, mut follower) = follower(backend);
    let ids: Vec<String> = (0..5).map(|i| send(&mut server, &format!("n{i}"), 10 + i)).collect();
    server.ack(std::slice::from_ref(&ids[0]), 20).unwrap();
    sync(&server, &mut follower, 2, 30);
    assert_eq!(follower.unread_summary().unwrap().total, 4);
    server.ack_all(40).unwrap();
    sync(&server, &mut follower, 2, 50);
    assert_eq!(follower.unread_summary().unwrap().total, 0);
    assert_eq!(follower.remotes().unwrap()[0].pending, 0);
}

/// What a server silenced arrives silenced: stored, shown with its silence, not pending;
/// what it did not silence arrives pending. Each backend follows the other.
fn silenced_on_the_server_arrives_silenced(backend: Backend) {
    let other = if backend == Backend::Sqlite { Backend::Postgres } else { Backend::Sqlite };
    let (_s, mut server) = store(other);
    let (_f, mut follower) = follower(backend);
    let silence = runwatch_core::noise::NewSilence {
        matchers: vec!["text~nan".into()],
        starts_at: None,
        ends_at: 1_000_000,
        comment: Some("known".into()),
    };
    let silence = server.add_silence(&silence, 5).unwrap();
    send(&mut server, "loss is nan", 10);
    send(&mut server, "disk full", 11);
    sync(&server, &mut follower, 10, 30);
    assert_eq!(pending_titles(&follower), ["disk full"]);
    assert_eq!(follower.unread_summary().unwrap().total, 1);
    let all = runwatch_core::inbox::ListFilter { limit: Some(10), state: runwatch_core::inbox::AckState::Silenced, ..Default::default() };
    let items = follower.list_notifications(&all).unwrap().items;
    let nan = items.iter().find(|n| n.title == "loss is nan").expect("the silenced one is stored");
    assert_eq!(nan.silenced_by.as_deref(), Some(silence.id.as_str()));
    assert_eq!(nan.acked_at, None, "silenced, not acknowledged");
}

on_both!(a_users_feed_holds_what_is_for_them_with_their_acks, following_across_backends, silenced_on_the_server_arrives_silenced);

/// A team store following a server: the server's notifications are for every user; one
/// acknowledged on the server (or by the store as a whole, which tells the server) is
/// acknowledged for every user, one a user acknowledges is theirs alone.
#[test]
fn a_team_store_follows_a_server_for_all_its_users() {
    let (_s, mut server) = store(Backend::Sqlite);
    let (_f, mut team) = follower(Backend::Postgres);
    team.add_user("alice", 1).unwrap();
    team.add_user("bob", 1).unwrap();
    let ids: Vec<String> = ["one", "two", "three"].iter().enumerate().map(|(i, t)| send(&mut server, t, 10 + i as i64)).collect();
    sync(&server, &mut team, 1000, 20);
    assert_eq!(pending_for(&team, "alice"), ["one", "three", "two"]);
    assert_eq!(team.unread_summary_as(Some("bob"), 20).unwrap().total, 3);

    let all = team.list_notifications(&Default::default()).unwrap().items;
    let local = |title: &str| all.iter().find(|n| n.title == title).unwrap().id.clone();
    let two = local("two");
    team.ack_as(Some("alice"), std::slice::from_ref(&two), 30).unwrap();
    assert!(team.queued_acks("a", 10).unwrap().is_empty(), "a user's acknowledgement stays on the team store");
    assert_eq!(pending_for(&team, "bob"), ["one", "three", "two"]);

    server.ack(std::slice::from_ref(&ids[0]), 40).unwrap();
    sync(&server, &mut team, 1000, 50);
    assert_eq!(pending_for(&team, "alice"), ["three"]);
    assert_eq!(pending_for(&team, "bob"), ["three", "two"]);
    let acked = team.notification_as(Some("bob"), &local("one")).unwrap().unwrap();
    assert_eq!(acked.acked_at, Some(40), "acknowledged when the server did");

    let three = local("three");
    team.ack(std::slice::from_ref(&three), 60).unwrap();
    assert_eq!(team.queued_acks("a", 10).unwrap()[0].remote_id.as_deref(), Some(ids[2].as_str()));
    assert_eq!(pending_for(&team, "bob"), ["two"]);
    assert_eq!(team.unread_summary_as(Some("alice"), 60).unwrap().total, 0);
}
