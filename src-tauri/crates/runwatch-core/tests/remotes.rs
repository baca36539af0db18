//! The change feed and following it, on real store files: a server's store and a
//! follower's, with the pages passed between them by hand (the engine's follower does it
//! over HTTP).

use std::collections::HashSet;

use runwatch_core::remotes::{Changes, Cursor, NewRemote, RemoteState};
use runwatch_core::{DataDir, Inserted, Level, NewNotification, Store};

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&DataDir::at(tmp.path())).unwrap();
    (tmp, store)
}

fn send(store: &mut Store, title: &str, at: i64) -> String {
    let n = NewNotification { level: Some(Level::Error), title: title.into(), source: "test".into(), ..Default::default() };
    match store.insert_notification(&n, at).unwrap() {
        Inserted::New(n) => n.id,
        Inserted::Duplicate(id) => panic!("duplicate {id}"),
    }
}

fn follower() -> (tempfile::TempDir, Store) {
    let (tmp, mut store) = store();
    store
        .add_remote(&NewRemote { name: "a".into(), url: "http://127.0.0.1:1".into(), token: "t".into(), ca_file: None, deliver: false }, 1)
        .unwrap();
    (tmp, store)
}

/// Reads every page after the follower's cursor and applies it, as the engine does.
fn sync(server: &Store, follower: &mut Store, page: usize, now: i64) -> Vec<Changes> {
    let mut pages = Vec::new();
    loop {
        let cursor = follower.remotes_to_follow().unwrap()[0].cursor;
        let changes = server.changes(cursor, page).unwrap();
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

#[test]
fn pages_of_changes_bring_every_notification_once_and_acks_both_ways() {
    let (_s, mut server) = store();
    let (_f, mut follower) = follower();
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

#[test]
fn acknowledging_all_reaches_each_side_for_what_it_has() {
    let (_s, mut server) = store();
    let (_f, mut follower) = follower();
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

#[test]
fn a_disabled_or_removed_remote_stores_nothing_more() {
    let (_s, mut server) = store();
    let (_f, mut follower) = follower();
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

#[test]
fn lists_filter_by_origin() {
    let (_s, mut server) = store();
    let (_f, mut follower) = follower();
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

#[test]
fn acknowledgements_wait_only_for_remotes_still_followed() {
    let (_s, mut server) = store();
    let (_f, mut follower) = follower();
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
