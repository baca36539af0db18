//! The change feed: notices commits to the store by any process (the CLI, the API, the
//! engine's own threads) without polling, and wakes whoever subscribed.
//!
//! Every commit appends to the store's write-ahead log (`runwatch.db-wal`; the store is
//! always in WAL mode), so an inotify watch on the data directory sees each one as a write
//! to that file. A process that exits closes the file too, which reports its last commit
//! once more, after it is complete. Nothing runs while nothing is written.
//!
//! Wakes are coalesced: one at once, then at most one per [`SETTLE`] while writes go on, and
//! always one more [`SETTLE`] after the last write, because a reader sees a commit only a
//! moment after its last write to the log (once the WAL index is updated in shared memory,
//! which inotify does not see). A woken subscriber must look at the store and do nothing
//! when nothing changed for it: its own writes wake it as well.
//!
//! On a PostgreSQL store ([`ChangeFeed::listen`]) every write transaction sends a NOTIFY
//! on [`crate::pg::CHANNEL`], delivered at its commit to every daemon LISTENing, with the
//! same coalescing. A lost connection (the server restarting) is a wake, then the feed
//! connects again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use postgres::fallible_iterator::FallibleIterator as _;

use crate::DataDir;

/// After a wake, further writes within this long are reported as one more wake, at its end.
pub const SETTLE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ChangeFeedError {
    #[error("cannot watch '{path}' for changes to the store: {source}")]
    Watch { path: PathBuf, source: notify::Error },
    #[error("cannot start the change feed's thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

type Subscriber = Box<dyn Fn() + Send + Sync>;
type Subscribers = Arc<Mutex<Vec<Subscriber>>>;

/// Watches the store for commits from any process; clones share one watch. Dropping the
/// last clone ends the watch and its thread.
#[derive(Clone)]
pub struct ChangeFeed {
    inner: Arc<Inner>,
}

struct Inner {
    subscribers: Subscribers,
    /// Kept for its watch; dropping it ends the feed's thread (its channel closes). `None`
    /// on PostgreSQL, whose listener ends when `stop` is set.
    _watcher: Option<notify::RecommendedWatcher>,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How often the PostgreSQL listener looks whether its feed was dropped, and waits before
/// connecting again after losing the server.
const LISTEN_TICK: Duration = Duration::from_millis(500);

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// Starts watching the store in `dir` (the directory is created if missing).
    pub fn watch(dir: &DataDir) -> Result<ChangeFeed, ChangeFeedError> {
        dir.ensure().map_err(|e| ChangeFeedError::Watch { path: dir.path().to_path_buf(), source: notify::Error::io(e) })?;
        let wal = wal_name(&dir.store_path());
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if is_a_commit(&res, &wal) {
                let _ = tx.send(());
            }
        })
        .map_err(|source| ChangeFeedError::Watch { path: dir.path().to_path_buf(), source })?;
        watcher
            .watch(dir.path(), RecursiveMode::NonRecursive)
            .map_err(|source| ChangeFeedError::Watch { path: dir.path().to_path_buf(), source })?;
        let subscribers: Subscribers = Arc::default();
        let subs = subscribers.clone();
        std::thread::Builder::new().name("store-changes".into()).spawn(move || relay(&rx, &subs))?;
        Ok(ChangeFeed { inner: Arc::new(Inner { subscribers, _watcher: Some(watcher), stop: Arc::default() }) })
    }

    /// The feed of the store at `location`: the data dir's file, or a PostgreSQL store.
    pub fn for_location(location: &crate::Location) -> Result<ChangeFeed, ChangeFeedError> {
        match location {
            crate::Location::DataDir(dir) => Self::watch(dir),
            crate::Location::Postgres(url) => Self::listen(url),
        }
    }

    /// Starts listening for commits to a PostgreSQL store (LISTEN on [`crate::pg::CHANNEL`]).
    /// The first connection is made here, so a wrong URL fails now; later losses are retried.
    pub fn listen(url: &str) -> Result<ChangeFeed, ChangeFeedError> {
        let client = listener(url)?;
        let (tx, rx) = mpsc::channel::<()>();
        let stop: Arc<AtomicBool> = Arc::default();
        let (url, halt) = (url.to_string(), stop.clone());
        std::thread::Builder::new().name("store-listen".into()).spawn(move || listen_loop(client, &url, &tx, &halt))?;
        let subscribers: Subscribers = Arc::default();
        let subs = subscribers.clone();
        std::thread::Builder::new().name("store-changes".into()).spawn(move || relay(&rx, &subs))?;
        Ok(ChangeFeed { inner: Arc::new(Inner { subscribers, _watcher: None, stop }) })
    }

    /// Calls `wake` after commits to the store (coalesced, see the module's notes). It runs
    /// on the feed's thread, so it must only signal (send on a channel and the like).
    pub fn subscribe(&self, wake: impl Fn() + Send + Sync + 'static) {
        self.inner.subscribers.lock().unwrap_or_else(PoisonError::into_inner).push(Box::new(wake));
    }

    /// Wakes every subscriber now, as a commit would (for a change made in this process
    /// that others must see without waiting for the file event).
    pub fn wake_all(&self) {
        fire(&self.inner.subscribers);
    }
}

fn listener(url: &str) -> Result<postgres::Client, crate::StoreError> {
    let masked = crate::pg::mask_url(url);
    let unreachable = |e: postgres::Error| crate::StoreError::Unreachable { url: masked.clone(), reason: crate::pg::describe(&e) };
    let (config, tls) = crate::pg::connect_config(url).map_err(|reason| crate::StoreError::Unreachable { url: masked.clone(), reason })?;
    let mut client = config.connect(tls).map_err(unreachable)?;
    client.batch_execute(&format!("LISTEN {}", crate::pg::CHANNEL)).map_err(unreachable)?;
    Ok(client)
}

/// The listener's thread: a signal per notification; a lost connection is a signal too
/// (something may have committed meanwhile), then it connects again until it can. Returns
/// when the feed is dropped.
fn listen_loop(mut client: postgres::Client, url: &str, tx: &mpsc::Sender<()>, stop: &AtomicBool) {
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        let mut lost = false;
        {
            let mut notifications = client.notifications();
            let mut iter = notifications.timeout_iter(LISTEN_TICK);
            loop {
                match iter.next() {
                    Ok(Some(_)) => {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        lost = true;
                        break;
                    }
                }
            }
        }
        if !lost && !client.is_closed() {
            continue;
        }
        let _ = tx.send(());
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(LISTEN_TICK);
            match listener(url) {
                Ok(c) => {
                    client = c;
                    if warned {
                        tracing::warn!("the store's change feed is connected again");
                    }
                    warned = false;
                    let _ = tx.send(());
                    break;
                }
                Err(e) if !warned => {
                    tracing::warn!("the store's change feed lost its connection: {e}; retrying");
                    warned = true;
                }
                Err(_) => {}
            }
        }
    }
}

fn wal_name(store: &Path) -> std::ffi::OsString {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push("-wal");
    name
}

/// Whether a file event may mean a new commit: a write to, or a writer closing, the log.
/// Lost events (an overflowed queue) and watch errors count as changes: better a wake too
/// many than one missed.
fn is_a_commit(res: &notify::Result<notify::Event>, wal: &std::ffi::OsStr) -> bool {
    let Ok(ev) = res else { return true };
    if ev.need_rescan() {
        return true;
    }
    let written = match ev.kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Any | EventKind::Access(_) | EventKind::Remove(_) | EventKind::Other => false,
    };
    written && ev.paths.iter().any(|p| p.file_name() == Some(wal))
}

/// The feed's thread: a wake at the first write, then one per [`SETTLE`] while writes go
/// on and one after they stop. Returns when the watch is dropped.
fn relay(rx: &mpsc::Receiver<()>, subscribers: &Subscribers) {
    while rx.recv().is_ok() {
        fire(subscribers);
        loop {
            let end = Instant::now() + SETTLE;
            let mut more = false;
            loop {
                match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                    Ok(()) => more = true,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            fire(subscribers);
            if !more {
                break;
            }
        }
    }
}

fn fire(subscribers: &Subscribers) {
    for wake in subscribers.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn counter(feed: &ChangeFeed) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        feed.subscribe(move || {
            let _ = tx.lock().unwrap().send(());
        });
        rx
    }

    #[test]
    fn a_commit_by_another_connection_wakes_subscribers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::at(tmp.path());
        let mut store = Store::open(&dir).unwrap();
        let feed = ChangeFeed::watch(&dir).unwrap();
        let woken = counter(&feed);
        crate::settings::patch(&mut store, &crate::settings::SettingsPatch { grace_secs: Some(5), ..Default::default() }).unwrap();
        woken.recv_timeout(Duration::from_secs(10)).expect("no wake after a commit");
    }

    #[test]
    fn reads_wake_nobody_and_the_feed_ends_with_its_last_clone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::at(tmp.path());
        let mut store = Store::open(&dir).unwrap();
        crate::settings::patch(&mut store, &crate::settings::SettingsPatch { grace_secs: Some(5), ..Default::default() }).unwrap();
        let feed = ChangeFeed::watch(&dir).unwrap();
        let woken = counter(&feed);
        // Reads by a connection that stays open write nothing to the log.
        let _ = crate::Settings::load(&store).unwrap();
        let _ = store.notifiers().unwrap();
        feed.wake_all();
        drop(feed);
        // Dropping the feed drops its subscriber, which closes the channel: what it holds
        // is every wake there was, and only the one made by hand.
        let mut wakes = 0;
        while woken.recv_timeout(Duration::from_secs(10)) == Ok(()) {
            wakes += 1;
        }
        assert_eq!(wakes, 1, "reads woke the feed");
    }

    #[test]
    fn lost_events_count_as_a_change_and_other_files_do_not() {
        let wal = std::ffi::OsString::from("runwatch.db-wal");
        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(is_a_commit(&Ok(overflow), &wal));
        let write = |p: &str| Ok(notify::Event::new(EventKind::Modify(notify::event::ModifyKind::Any)).add_path(p.into()));
        assert!(is_a_commit(&write("/d/runwatch.db-wal"), &wal));
        assert!(!is_a_commit(&write("/d/runwatch.db"), &wal), "a checkpoint is not a commit");
        assert!(!is_a_commit(&write("/d/api-token"), &wal));
        let opened = notify::Event::new(EventKind::Access(AccessKind::Open(AccessMode::Any))).add_path("/d/runwatch.db-wal".into());
        assert!(!is_a_commit(&Ok(opened), &wal));
    }
}
