//! Check-ins over HTTP: what jobs on other machines report (`POST /api/v1/check-ins`),
//! kept in arrival order for the watcher's detector — the same detector that reads Aim's
//! check-in files — and idempotent by the client's event id.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::runs;
use crate::store::{Store, StoreError};

/// Longest run id, host, label name or value accepted.
pub const MAX_FIELD_CHARS: usize = 200;
/// Most labels on one run.
pub const MAX_LABELS: usize = 32;
/// Longest message kept with a failure (the end of it: a stderr tail ends with the error).
pub const MAX_MESSAGE_CHARS: usize = 16_000;

/// A check-in from a job: alive (and when to expect the next one), finished, or failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct CheckInReport {
    /// The run's id (chosen by the client: letters, digits, '_', '-', '.').
    pub run_id: String,
    /// A name for the run in notifications.
    #[serde(default)]
    pub name: Option<String>,
    /// Promise the next check-in within this many seconds (absent or 0: no deadline).
    #[serde(default)]
    pub expect_next_in: Option<u64>,
    /// The run finished successfully.
    #[serde(default)]
    pub finished: bool,
    /// The run failed (with `exit_code` when it is a process).
    #[serde(default)]
    pub failed: bool,
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// What the run said last, e.g. the tail of its stderr; shown with a failure.
    #[serde(default)]
    pub message: Option<String>,
    /// Why it failed, e.g. "exit code 3" or "killed by the OOM killer (…)"; kept as the run's
    /// cause (default: "exit code N").
    #[serde(default)]
    pub cause: Option<String>,
    /// The failure notification's title, e.g. the exception that ended the run.
    #[serde(default)]
    pub title: Option<String>,
    /// The machine the run reports from.
    #[serde(default)]
    pub host: Option<String>,
    /// Free labels (Slurm job id, array job and task, sweep …), merged into the run's.
    #[serde(default)]
    #[ts(type = "Record<string, string>")]
    pub labels: BTreeMap<String, String>,
    /// The client's id for this check-in: sending it again changes nothing.
    #[serde(default)]
    pub event_id: Option<String>,
}

/// What a check-in says about its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckInKind {
    CheckIn,
    Finished,
    Failed,
}

impl CheckInKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckInKind::CheckIn => "check_in",
            CheckInKind::Finished => "finished",
            CheckInKind::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> CheckInKind {
        match s {
            "finished" => CheckInKind::Finished,
            "failed" => CheckInKind::Failed,
            _ => CheckInKind::CheckIn,
        }
    }
}

impl CheckInReport {
    pub fn kind(&self) -> CheckInKind {
        match (self.finished, self.failed) {
            (true, _) => CheckInKind::Finished,
            (_, true) => CheckInKind::Failed,
            _ => CheckInKind::CheckIn,
        }
    }

    /// Checks what a client sent; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_run_id(&self.run_id) {
            return Err("run_id: letters, digits, '_', '-' and '.' only, not starting with '.', at most 200".into());
        }
        if self.finished && self.failed {
            return Err("finished and failed: a check-in says one or the other".into());
        }
        if self.exit_code.is_some() && !self.failed {
            return Err("exit_code: only with failed".into());
        }
        if (self.cause.is_some() || self.title.is_some()) && !self.failed {
            return Err("cause and title: only with failed".into());
        }
        let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.chars().count() > MAX_FIELD_CHARS);
        if too_long(&self.cause) || self.title.as_ref().is_some_and(|t| t.chars().count() > crate::ingest::MAX_TITLE_CHARS) {
            return Err(format!("cause: at most {MAX_FIELD_CHARS} characters; title: at most {}", crate::ingest::MAX_TITLE_CHARS));
        }
        if too_long(&self.name) || too_long(&self.host) || too_long(&self.event_id) {
            return Err(format!("name, host and event_id: at most {MAX_FIELD_CHARS} characters"));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(format!("labels: at most {MAX_LABELS}"));
        }
        if self.labels.iter().any(|(k, v)| k.is_empty() || k.chars().count() > MAX_FIELD_CHARS || v.chars().count() > MAX_FIELD_CHARS) {
            return Err(format!("labels: names of 1 to {MAX_FIELD_CHARS} characters, values of at most {MAX_FIELD_CHARS}"));
        }
        Ok(())
    }
}

/// Run ids as Aim's check-in file names allow them, so every run id means the same everywhere.
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_FIELD_CHARS
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A check-in waiting for the detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCheckIn {
    /// Arrival order; also the check-in's idx for the detector (higher is newer).
    pub seq: i64,
    pub run_id: String,
    pub kind: CheckInKind,
    pub expect_next_in: u64,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    pub cause: Option<String>,
    pub title: Option<String>,
    pub received_at: Millis,
}

impl Store {
    /// Stores a check-in for the detector and the run's name, host and labels; `false` if
    /// its event id was stored before (nothing changes then).
    pub fn record_check_in(&mut self, report: &CheckInReport, now: Millis) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.record_check_in(report, now);
        }
        self.write(|tx| {
            if let Some(id) = &report.event_id {
                let seen = tx.query_row("SELECT 1 FROM check_in_reports WHERE event_id = ?1", [id], |_| Ok(())).optional()?;
                if seen.is_some() {
                    return Ok(false);
                }
            }
            runs::ensure(tx, &report.run_id, now)?;
            let labels = if report.labels.is_empty() {
                None
            } else {
                let old: Option<String> = tx.query_row("SELECT labels FROM runs WHERE id = ?1", [&report.run_id], |r| r.get(0))?;
                let mut merged: BTreeMap<String, String> = old.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default();
                merged.extend(report.labels.clone());
                Some(serde_json::to_string(&merged).unwrap_or_default())
            };
            tx.prepare_cached(
                "UPDATE runs SET name = coalesce(?2, name), host = coalesce(?3, host), labels = coalesce(?4, labels), updated_at = ?5
                 WHERE id = ?1",
            )?
            .execute(params![report.run_id, report.name, report.host, labels, now])?;
            let message = report.message.as_deref().map(tail_chars);
            tx.prepare_cached(
                "INSERT INTO check_in_reports (run_id, event_id, kind, expect_next_in, exit_code, message, received_at, cause, title)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                report.run_id,
                report.event_id,
                report.kind().as_str(),
                i64::try_from(report.expect_next_in.unwrap_or(0)).unwrap_or(i64::MAX),
                report.exit_code,
                message,
                now,
                report.cause,
                report.title
            ])?;
            Ok(true)
        })
    }
}

/// The oldest check-ins the detector has not taken yet, at most `limit`.
pub fn waiting(conn: &Connection, limit: usize) -> Result<Vec<QueuedCheckIn>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, run_id, kind, expect_next_in, exit_code, message, received_at, cause, title FROM check_in_reports
         WHERE taken = 0 ORDER BY seq LIMIT ?1",
    )?;
    let rows = stmt
        .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(QueuedCheckIn {
                seq: r.get(0)?,
                run_id: r.get(1)?,
                kind: CheckInKind::parse(&r.get::<_, String>(2)?),
                expect_next_in: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                exit_code: r.get(4)?,
                message: r.get(5)?,
                received_at: r.get(6)?,
                cause: r.get(7)?,
                title: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Marks check-ins up to `seq` as taken by the detector (in the transaction that saves
/// what it concluded, so a crash in between takes them again).
pub fn mark_taken(conn: &Connection, upto: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE check_in_reports SET taken = 1 WHERE taken = 0 AND seq <= ?1")?.execute([upto])?;
    Ok(())
}

/// Records why a run ended (and that it failed, when it did).
pub fn set_cause(conn: &Connection, run_id: &str, cause: &str) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE runs SET cause = ?2 WHERE id = ?1")?.execute(params![run_id, cause])?;
    Ok(())
}

pub(crate) fn tail_chars(s: &str) -> String {
    let n = s.chars().count();
    if n <= MAX_MESSAGE_CHARS {
        return s.to_string();
    }
    let mut t = String::from("…");
    t.extend(s.chars().skip(n - MAX_MESSAGE_CHARS + 1));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataDir;

    fn report(run: &str) -> CheckInReport {
        CheckInReport { run_id: run.into(), expect_next_in: Some(60), ..Default::default() }
    }

    #[test]
    fn check_ins_queue_in_order_once_per_event_id_and_label_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(&DataDir::at(tmp.path())).unwrap();
        let mut first = report("job-1");
        first.event_id = Some("e1".into());
        first.host = Some("gpu-17".into());
        first.labels = BTreeMap::from([("slurm_job_id".into(), "4242".into())]);
        assert!(store.record_check_in(&first, 1000).unwrap());
        assert!(!store.record_check_in(&first, 2000).unwrap(), "a resent check-in is a no-op");
        let mut failed = CheckInReport { run_id: "job-1".into(), failed: true, exit_code: Some(3), ..Default::default() };
        failed.labels = BTreeMap::from([("slurm_array_task_id".into(), "7".into())]);
        assert!(store.record_check_in(&failed, 3000).unwrap());

        let queued = waiting(store.conn(), 10).unwrap();
        assert_eq!(queued.iter().map(|q| q.kind).collect::<Vec<_>>(), [CheckInKind::CheckIn, CheckInKind::Failed]);
        assert_eq!((queued[0].expect_next_in, queued[0].received_at), (60, 1000));
        assert_eq!(queued[1].exit_code, Some(3));
        let run = store.run("job-1").unwrap().unwrap();
        assert_eq!(run.host.as_deref(), Some("gpu-17"));
        assert_eq!(run.labels.len(), 2, "labels merge: {:?}", run.labels);

        store.write(|tx| mark_taken(tx, queued[0].seq)).unwrap();
        assert_eq!(waiting(store.conn(), 10).unwrap().len(), 1);
    }

    #[test]
    fn bad_check_ins_name_the_field() {
        let bad = [
            CheckInReport { run_id: "../x".into(), ..Default::default() },
            CheckInReport { run_id: "r".into(), finished: true, failed: true, ..Default::default() },
            CheckInReport { run_id: "r".into(), exit_code: Some(1), ..Default::default() },
            CheckInReport { run_id: "r".into(), host: Some("h".repeat(300)), ..Default::default() },
            CheckInReport { run_id: "r".into(), cause: Some("exit code 3".into()), ..Default::default() },
            CheckInReport { run_id: "r".into(), failed: true, title: Some("t".repeat(300)), ..Default::default() },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
        assert!(report("ok_run-1.2").validate().is_ok());
        let why = CheckInReport { run_id: "r".into(), failed: true, cause: Some("killed by SIGTERM".into()), ..Default::default() };
        assert!(why.validate().is_ok());
    }
}
