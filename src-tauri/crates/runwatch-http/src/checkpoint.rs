//! WAL checkpoints off the request path.
//!
//! SQLite appends commits to the write-ahead log; a checkpoint copies them into the database
//! file and waits for the disk (fsync). By default the connection that commits does that at
//! the end of its commit, so the request that acknowledged 500,000 notifications also waited
//! for 300 MB to reach the disk. Here the API's connection does not checkpoint: after each
//! commit a connection of its own does, on a blocking thread, while the answer goes out.
//!
//! The log must not grow without end under a stream of writes (SQLite starts it over only
//! when a write begins with every frame checkpointed), so writers that come back-to-back
//! (event ingest, acknowledgements) first wait for the checkpoint in flight
//! ([`Checkpointer::wait`]); reads never wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use runwatch_core::Store;

/// Page cache of the API's connection: big enough for much of the index pages an ingest
/// batch touches in a large inbox (SQLite's default is 2 MiB). Grows only with pages read.
const API_CACHE_KIB: i64 = 64 * 1024;

/// A log that grew past this (one ack all of half a million notifications writes 300 MB)
/// is cut back to it when it starts over, instead of keeping its largest size on disk.
const WAL_KEEP_BYTES: i64 = 64 * 1024 * 1024;

pub(crate) struct Checkpointer {
    store: Arc<Mutex<Store>>,
    /// Held while a checkpoint runs.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Something was committed that no checkpoint has started on yet.
    pending: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Sets up the API's connection for the bulk writes it serves and returns what
    /// checkpoints for it; `None` (with a warning) leaves it checkpointing itself.
    ///
    /// Besides checkpoints: statement journals in memory (every INSERT of an ingest batch
    /// runs the `pending_counts` triggers, so SQLite journals the pages it changes; on disk
    /// that is a system call per page), a larger page cache ([`API_CACHE_KIB`]) and a cap on
    /// the log file's size at rest ([`WAL_KEEP_BYTES`]).
    pub(crate) fn for_api(store: &Store) -> Option<Checkpointer> {
        let conn = store.conn();
        let tuned = conn
            .pragma_update(None, "temp_store", "MEMORY")
            .and_then(|()| conn.pragma_update(None, "cache_size", -API_CACHE_KIB))
            .and_then(|()| conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES));
        if let Err(e) = tuned {
            tracing::warn!("cannot tune the API's store connection: {e}");
        }
        let own = Store::open_path(store.path()).and_then(|own| {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            Ok(own)
        });
        match own {
            Ok(own) => Some(Checkpointer { store: Arc::new(Mutex::new(own)), gate: Arc::default(), pending: Arc::default() }),
            Err(e) => {
                tracing::warn!("checkpoints stay on the request path: {e}");
                None
            }
        }
    }

    /// After a commit: checkpoint in the background, or have the running checkpoint go on.
    pub(crate) fn after_commit(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let Ok(mut gate) = self.gate.clone().try_lock_owned() else { return };
        let (store, pending, lock) = (self.store.clone(), self.pending.clone(), self.gate.clone());
        tokio::task::spawn_blocking(move || loop {
            while pending.swap(false, Ordering::SeqCst) {
                let store = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // PASSIVE: copies what it can without blocking readers or writers.
                if let Err(e) = store.conn().pragma(None, "wal_checkpoint", "PASSIVE", |_| Ok(())) {
                    tracing::warn!("checkpoint failed: {e}");
                }
            }
            drop(gate);
            // A commit that came in as this one finished is not left for later.
            if !pending.load(Ordering::SeqCst) {
                return;
            }
            match lock.clone().try_lock_owned() {
                Ok(g) => gate = g,
                Err(_) => return,
            }
        });
    }

    /// Waits for the checkpoint in flight, if any.
    pub(crate) async fn wait(&self) {
        drop(self.gate.lock().await);
    }
}
