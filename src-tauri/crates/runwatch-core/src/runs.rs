//! Runs and the check-ins the detector remembers for them (the `runs` and `checkins` tables).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::store::{Store, StoreError};
use crate::RunState;

/// A watched run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Run {
    pub id: String,
    pub repo: Option<String>,
    pub name: Option<String>,
    pub state: RunState,
    /// The newest check-in (highest idx): its idx, flag and promise.
    pub checkin_idx: Option<i64>,
    pub checkin_flag: Option<String>,
    pub checkin_expect_next_in: Option<i64>,
    /// When that check-in was first seen, by the engine's clock.
    pub checkin_first_seen: Option<i64>,
    /// When the run turns stuck or crashed unless it checks in again.
    pub deadline: Option<i64>,
    /// The last Aim log-record step already turned into notifications.
    pub log_step: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The machine it reports from (HTTP check-ins).
    pub host: Option<String>,
    /// Free labels: Slurm job id, array job and task, sweep …
    #[ts(type = "Record<string, string>")]
    pub labels: BTreeMap<String, String>,
    /// Why it ended, e.g. "exit code 3".
    pub cause: Option<String>,
}

/// The newest check-in file of one flag of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckinRow<'a> {
    pub flag: &'a str,
    pub idx: i64,
    pub expect_next_in: i64,
    pub first_seen: i64,
}

const COLUMNS: &str = "id, repo, name, state, checkin_idx, checkin_flag, checkin_expect_next_in, checkin_first_seen, \
                       deadline, log_step, created_at, updated_at, host, labels, cause";

/// Saves what the detector concluded about a run: its repo, host (when given: the daemon
/// watching an Aim run), state, newest check-in and deadline, and its newest check-in of
/// each flag. Leaves the name and the log-record step alone.
pub fn save_detected(conn: &Connection, r: &crate::watch::Detected, now: Millis) -> Result<(), StoreError> {
    let newest = r.newest();
    conn.prepare_cached(
        "INSERT INTO runs (id, repo, state, checkin_idx, checkin_flag, checkin_expect_next_in, checkin_first_seen,
                           deadline, created_at, updated_at, host)
         VALUES (?1, NULLIF(?2, ''), ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET
           repo = excluded.repo, host = coalesce(excluded.host, runs.host), state = excluded.state,
           checkin_idx = excluded.checkin_idx, checkin_flag = excluded.checkin_flag,
           checkin_expect_next_in = excluded.checkin_expect_next_in, checkin_first_seen = excluded.checkin_first_seen,
           deadline = excluded.deadline, updated_at = excluded.updated_at",
    )?
    .execute(params![
        r.id,
        r.repo,
        r.state.as_str(),
        newest.map(|c| c.idx),
        newest.map(|c| c.flag),
        newest.map(|c| c.expect_next_in),
        newest.map(|c| c.first_seen),
        r.deadline,
        now,
        r.host
    ])?;
    for c in &r.checkins {
        upsert_checkin(conn, &r.id, c)?;
    }
    crate::noise::run_state_saved(conn, &r.id, r.state, now)?;
    Ok(())
}

/// Moves every remembered first-seen time and deadline by `delta` ms (the wall clock was
/// stepped by that much).
pub fn shift_times(conn: &Connection, delta: Millis) -> Result<(), StoreError> {
    conn.execute("UPDATE checkins SET first_seen = first_seen + ?1", [delta])?;
    conn.execute(
        "UPDATE runs SET checkin_first_seen = checkin_first_seen + ?1, deadline = deadline + ?1
         WHERE checkin_first_seen IS NOT NULL OR deadline IS NOT NULL",
        [delta],
    )?;
    Ok(())
}

/// Remembers the last Aim log-record step turned into notifications.
pub fn set_log_step(conn: &Connection, id: &str, step: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE runs SET log_step = ?2 WHERE id = ?1")?.execute(params![id, step])?;
    Ok(())
}

/// Makes sure a run row exists (for events about runs no check-in announced).
pub fn ensure(conn: &Connection, id: &str, now: Millis) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO runs (id, state, created_at, updated_at) VALUES (?1, 'running', ?2, ?2) ON CONFLICT (id) DO NOTHING")?
        .execute(params![id, now])?;
    Ok(())
}

/// Records the newest check-in of a flag.
pub fn upsert_checkin(conn: &Connection, run_id: &str, c: &CheckinRow<'_>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO checkins (run_id, flag, idx, expect_next_in, first_seen) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (run_id, flag) DO UPDATE SET
           idx = excluded.idx, expect_next_in = excluded.expect_next_in, first_seen = excluded.first_seen",
    )?
    .execute(params![run_id, c.flag, c.idx, c.expect_next_in, c.first_seen])?;
    Ok(())
}

/// Run ids equal to `prefix` or starting with it (case-sensitive: run ids are chosen by
/// clients), in id order, at most `limit`; an empty prefix matches nothing.
pub fn ids_with_prefix(conn: &Connection, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
    crate::inbox::prefixed_ids(conn, "runs", prefix, limit)
}

/// Names a run (what `runwatch exec --name` reports), creating it if needed.
pub fn set_name(conn: &Connection, id: &str, name: &str, now: Millis) -> Result<(), StoreError> {
    ensure(conn, id, now)?;
    conn.prepare_cached("UPDATE runs SET name = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![id, name, now])?;
    Ok(())
}

/// Sets the state of a run that reports its own fate (a command run by `runwatch exec`),
/// creating it if needed. Aim runs get theirs from the detector (`save_detected`).
pub fn set_state(conn: &Connection, id: &str, state: RunState, now: Millis) -> Result<(), StoreError> {
    ensure(conn, id, now)?;
    conn.prepare_cached("UPDATE runs SET state = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![id, state.as_str(), now])?;
    crate::noise::run_state_saved(conn, id, state, now)?;
    Ok(())
}

/// What a source that watches runs from outside (the Slurm source) knows about one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reported {
    pub id: String,
    pub name: Option<String>,
    pub state: Option<RunState>,
    pub host: Option<String>,
    /// Merged into the run's labels.
    pub labels: BTreeMap<String, String>,
    /// Kept only when the run has none yet: the run's own report (`runwatch exec`) knows best.
    pub cause: Option<String>,
}

/// What a source stores about one run: the run, and the notification it makes, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub run: Reported,
    pub notification: Option<crate::NewNotification>,
}

/// Saves what a source reported about a run, creating it if needed.
pub fn save_reported(conn: &Connection, r: &Reported, now: Millis) -> Result<(), StoreError> {
    ensure(conn, &r.id, now)?;
    let labels = if r.labels.is_empty() {
        None
    } else {
        let old: Option<String> = conn.query_row("SELECT labels FROM runs WHERE id = ?1", [&r.id], |row| row.get(0))?;
        Some(merge_labels(old.as_deref(), &r.labels))
    };
    conn.prepare_cached(
        "UPDATE runs SET name = coalesce(?2, name), state = coalesce(?3, state), host = coalesce(?4, host),
                         labels = coalesce(?5, labels), cause = coalesce(cause, ?6), updated_at = ?7
         WHERE id = ?1",
    )?
    .execute(params![r.id, r.name, r.state.map(RunState::as_str), r.host, labels, r.cause, now])?;
    if let Some(state) = r.state {
        crate::noise::run_state_saved(conn, &r.id, state, now)?;
    }
    Ok(())
}

/// A run's stored labels (JSON text) with `new` merged in, as JSON text.
pub(crate) fn merge_labels(old: Option<&str>, new: &BTreeMap<String, String>) -> String {
    let mut merged: BTreeMap<String, String> = old.and_then(|l| serde_json::from_str(l).ok()).unwrap_or_default();
    merged.extend(new.clone());
    serde_json::to_string(&merged).unwrap_or_default()
}

/// Sets the state and cause of a run that reports its own end (`runwatch exec`).
pub fn set_end(conn: &Connection, id: &str, state: RunState, cause: Option<&str>, now: Millis) -> Result<(), StoreError> {
    ensure(conn, id, now)?;
    conn.prepare_cached("UPDATE runs SET state = ?2, cause = ?3, updated_at = ?4 WHERE id = ?1")?.execute(params![
        id,
        state.as_str(),
        cause,
        now
    ])?;
    crate::noise::run_state_saved(conn, id, state, now)?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Run>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM runs WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

/// Every run, most recently updated first.
pub fn list(conn: &Connection) -> Result<Vec<Run>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM runs ORDER BY updated_at DESC, id");
    let mut stmt = conn.prepare(&sql)?;
    let runs = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(runs)
}

/// A stored check-in with its run, as loaded at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckin {
    pub run_id: String,
    pub flag: String,
    pub idx: i64,
    pub expect_next_in: i64,
    pub first_seen: i64,
}

/// Every stored check-in, for the detector to rebuild its memory at start.
pub fn all_checkins(conn: &Connection) -> Result<Vec<StoredCheckin>, StoreError> {
    let mut stmt = conn.prepare("SELECT run_id, flag, idx, expect_next_in, first_seen FROM checkins")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(StoredCheckin { run_id: r.get(0)?, flag: r.get(1)?, idx: r.get(2)?, expect_next_in: r.get(3)?, first_seen: r.get(4)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let state: String = r.get(3)?;
    Ok(Run {
        id: r.get(0)?,
        repo: r.get(1)?,
        name: r.get(2)?,
        state: state.parse().unwrap_or(RunState::Running),
        checkin_idx: r.get(4)?,
        checkin_flag: r.get(5)?,
        checkin_expect_next_in: r.get(6)?,
        checkin_first_seen: r.get(7)?,
        deadline: r.get(8)?,
        log_step: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        host: r.get(12)?,
        labels: r.get::<_, Option<String>>(13)?.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default(),
        cause: r.get(14)?,
    })
}

impl Store {
    pub fn runs(&self) -> Result<Vec<Run>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.runs();
        }
        list(self.conn())
    }

    /// Run ids equal to `prefix` or starting with it (see [`ids_with_prefix`]).
    pub fn run_ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.run_ids_with_prefix(prefix, limit);
        }
        ids_with_prefix(self.conn(), prefix, limit)
    }

    /// Names a run, creating it if needed (see [`set_name`]).
    pub fn set_run_name(&mut self, id: &str, name: &str, now: Millis) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.set_run(id, "name", name, now);
        }
        self.write(|tx| set_name(tx, id, name, now))
    }

    /// Sets the state of a run that reports its own fate, creating it if needed (see [`set_state`]).
    pub fn set_run_state(&mut self, id: &str, state: RunState, now: Millis) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.set_run_state(id, state, now);
        }
        self.write(|tx| set_state(tx, id, state, now))
    }

    /// Records how a run that reports its own fate ended (see [`set_end`]).
    pub fn set_run_end(&mut self, id: &str, state: RunState, cause: Option<&str>, now: Millis) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.set_run_end(id, state.as_str(), cause, now);
        }
        self.write(|tx| set_end(tx, id, state, cause, now))
    }

    /// Stores what a source that watches runs from outside (the Slurm source) reports about
    /// the runs `ids`: `decide` is given each one's index and state before (`None`: not
    /// known yet) and says what to store. The notifications newly stored are returned (one
    /// per dedupe key: a report made twice stores nothing new).
    ///
    /// On SQLite all of it is one transaction. On PostgreSQL the notifications are stored
    /// first, then the runs: a crash in between leaves the runs in their state before, which
    /// the next poll decides on again, and the notifications it makes again are found by
    /// their dedupe keys. Nothing is lost, nothing said twice.
    pub fn save_reports(
        &mut self,
        ids: &[String],
        now: Millis,
        mut decide: impl FnMut(usize, Option<RunState>) -> Option<Report>,
    ) -> Result<Vec<crate::Notification>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(pg) = self.pg() {
            let before = pg.run_states(ids)?;
            let reports: Vec<Report> = ids.iter().enumerate().filter_map(|(i, id)| decide(i, before.get(id).copied())).collect();
            return pg.save_reports(&reports, now);
        }
        let expires_at = self.expiry()?.map(|e| now.saturating_add(e));
        self.write(|tx| {
            let mut stored = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                let Some(report) = decide(i, get(tx, id)?.map(|r| r.state)) else { continue };
                save_reported(tx, &report.run, now)?;
                if let Some(n) = &report.notification {
                    if let crate::Inserted::New(n) = crate::inbox::insert(tx, n, now, expires_at)? {
                        stored.push(*n);
                    }
                }
            }
            Ok(stored)
        })
    }

    pub fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.run(id);
        }
        get(self.conn(), id)
    }
}
