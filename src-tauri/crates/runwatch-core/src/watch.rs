//! What the watcher stores, on either backend: the run detector decides (in
//! `runwatch-watcher`, free of any backend) and hands one [`WatchStep`] here; SQLite saves
//! it in one transaction, PostgreSQL (`crate::pg`) in an order that a crash cannot turn
//! into a loss or a duplicate.

use crate::check_ins::{self, QueuedCheckIn};
use crate::clock::Millis;
use crate::inbox::{self, Inserted, NewNotification, Notification};
use crate::runs::{self, CheckinRow, StoredCheckin};
use crate::store::{Store, StoreError};
use crate::RunState;

/// What the detector concluded about one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub id: String,
    /// The Aim repository it is read from; empty for a run that checks in over HTTP.
    pub repo: String,
    /// The daemon's host for an Aim run (whose detector judges it); `None` keeps what the
    /// run reported itself (HTTP check-ins name their machine).
    pub host: Option<String>,
    pub state: RunState,
    /// The newest check-in of each flag.
    pub checkins: Vec<CheckinRow<'static>>,
    pub deadline: Option<Millis>,
}

impl Detected {
    /// The newest check-in of all (highest idx), kept on the run's row.
    pub fn newest(&self) -> Option<&CheckinRow<'static>> {
        self.checkins.iter().max_by_key(|c| c.idx)
    }
}

/// One step of the watcher: run states, the notifications they caused, how far the Aim
/// log records were read, and how far the HTTP check-in queue was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchStep {
    pub runs: Vec<Detected>,
    /// Each with a dedupe key (a happening and its check-in, a log record and its step):
    /// stored at most once, however often a step is saved again.
    pub notifications: Vec<NewNotification>,
    /// Runs whose log records were read, and the last step read (the run is created if
    /// unknown).
    pub log_steps: Vec<(String, i64)>,
    /// Why runs that failed over HTTP ended.
    pub causes: Vec<(String, String)>,
    /// HTTP check-ins up to this seq were taken into the detector.
    pub taken_upto: Option<i64>,
}

impl WatchStep {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.notifications.is_empty()
            && self.log_steps.is_empty()
            && self.causes.is_empty()
            && self.taken_upto.is_none()
    }
}

impl Store {
    /// Saves a watcher step and returns the notifications that are new.
    ///
    /// On SQLite all of it is one transaction. On PostgreSQL the notifications are stored
    /// first (their dedupe keys make storing them again a no-op), then the rest in one
    /// transaction: a crash in between leaves the old run states, from which the detector
    /// finds the same happenings again, and stores nothing twice.
    pub fn save_watch_step(&mut self, step: &WatchStep, now: Millis) -> Result<Vec<Notification>, StoreError> {
        if step.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(pg) = self.pg() {
            let stored = if step.notifications.is_empty() { Vec::new() } else { pg.ingest_batch(&step.notifications, now)? };
            pg.save_watch_state(step, now)?;
            return Ok(stored
                .into_iter()
                .filter_map(|i| match i {
                    Inserted::New(n) => Some(*n),
                    Inserted::Duplicate(_) => None,
                })
                .collect());
        }
        let expires_at = self.expiry()?.map(|e| now.saturating_add(e));
        self.write(|tx| {
            for r in &step.runs {
                runs::save_detected(tx, r, now)?;
            }
            for (run, cause) in &step.causes {
                check_ins::set_cause(tx, run, cause)?;
            }
            for (run, _) in &step.log_steps {
                runs::ensure(tx, run, now)?;
            }
            let mut stored = Vec::new();
            for n in &step.notifications {
                if let Inserted::New(n) = inbox::insert(tx, n, now, expires_at)? {
                    stored.push(*n);
                }
            }
            for (run, last) in &step.log_steps {
                runs::set_log_step(tx, run, *last)?;
            }
            if let Some(upto) = step.taken_upto {
                check_ins::mark_taken(tx, upto)?;
            }
            Ok(stored)
        })
    }

    /// The oldest check-ins the detector has not taken yet, at most `limit`.
    pub fn waiting_check_ins(&self, limit: usize) -> Result<Vec<QueuedCheckIn>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.waiting_check_ins(limit);
        }
        check_ins::waiting(self.conn(), limit)
    }

    /// Every check-in the detector remembers, for rebuilding its memory.
    pub fn stored_checkins(&self) -> Result<Vec<StoredCheckin>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.stored_checkins();
        }
        runs::all_checkins(self.conn())
    }

    /// Moves the first-seen times and deadlines of these runs by `delta` ms (the wall
    /// clock was stepped by that much); on a shared store, only the caller's runs move.
    pub fn shift_run_times(&mut self, run_ids: &[String], delta: Millis) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.shift_run_times(run_ids, delta);
        }
        // The one daemon of a data dir judges every run there.
        self.write(|tx| runs::shift_times(tx, delta))
    }

    /// Something that changes when another connection commits to the store, to tell
    /// whether to read the settings again after a wake: SQLite's `data_version`; `None` on
    /// PostgreSQL, whose wakes come from NOTIFY and always read them.
    pub fn change_marker(&self) -> Result<Option<i64>, StoreError> {
        if self.pg().is_some() {
            return Ok(None);
        }
        Ok(Some(self.conn().pragma_query_value(None, "data_version", |r| r.get(0))?))
    }
}
