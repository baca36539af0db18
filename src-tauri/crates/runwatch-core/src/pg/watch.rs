//! The watcher's writes and reads on PostgreSQL: the twins of the store methods in
//! `crate::watch` (run states, check-ins the detector remembers, the HTTP check-in queue).

use super::Pg;
use crate::check_ins::{CheckInKind, QueuedCheckIn};
use crate::clock::Millis;
use crate::runs::StoredCheckin;
use crate::store::StoreError;
use crate::watch::WatchStep;

impl Pg {
    /// Everything of a watcher step but its notifications (stored before, see
    /// [`crate::Store::save_watch_step`]), in one transaction.
    pub(crate) fn save_watch_state(&self, step: &WatchStep, now: Millis) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let save_run = conn.prepare(
            "INSERT INTO runs (id, repo, state, checkin_idx, checkin_flag, checkin_expect_next_in, checkin_first_seen,
                               deadline, created_at, updated_at, host)
             VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, $7, $8, $9, $9, $10)
             ON CONFLICT (id) DO UPDATE SET
               repo = excluded.repo, host = coalesce(excluded.host, runs.host), state = excluded.state,
               checkin_idx = excluded.checkin_idx, checkin_flag = excluded.checkin_flag,
               checkin_expect_next_in = excluded.checkin_expect_next_in, checkin_first_seen = excluded.checkin_first_seen,
               deadline = excluded.deadline, updated_at = excluded.updated_at",
        )?;
        let save_checkin = conn.prepare(
            "INSERT INTO checkins (run_id, flag, idx, expect_next_in, first_seen) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (run_id, flag) DO UPDATE SET
               idx = excluded.idx, expect_next_in = excluded.expect_next_in, first_seen = excluded.first_seen",
        )?;
        let mut tx = conn.client.transaction()?;
        for r in &step.runs {
            let newest = r.newest();
            tx.execute(
                &save_run,
                &[
                    &r.id,
                    &r.repo,
                    &r.state.as_str(),
                    &newest.map(|c| c.idx),
                    &newest.map(|c| c.flag),
                    &newest.map(|c| c.expect_next_in),
                    &newest.map(|c| c.first_seen),
                    &r.deadline,
                    &now,
                    &r.host,
                ],
            )?;
            for c in &r.checkins {
                tx.execute(&save_checkin, &[&r.id, &c.flag, &c.idx, &c.expect_next_in, &c.first_seen])?;
            }
            super::noise::run_state_saved(&mut tx, &r.id, r.state.as_str(), now)?;
        }
        for (run, cause) in &step.causes {
            tx.execute("UPDATE runs SET cause = $2 WHERE id = $1", &[run, cause])?;
        }
        for (run, last) in &step.log_steps {
            super::tables::ensure_run(&mut tx, run, now)?;
            tx.execute("UPDATE runs SET log_step = $2 WHERE id = $1", &[run, last])?;
        }
        if let Some(upto) = step.taken_upto {
            tx.execute("UPDATE check_in_reports SET taken = TRUE WHERE NOT taken AND seq <= $1", &[&upto])?;
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn waiting_check_ins(&self, limit: usize) -> Result<Vec<QueuedCheckIn>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(
            "SELECT seq, run_id, kind, expect_next_in, exit_code, message, received_at, cause, title FROM check_in_reports
             WHERE NOT taken ORDER BY seq LIMIT $1",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(conn
            .client
            .query(&stmt, &[&limit])?
            .iter()
            .map(|r| QueuedCheckIn {
                seq: r.get(0),
                run_id: r.get(1),
                kind: CheckInKind::parse(r.get(2)),
                expect_next_in: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
                exit_code: r.get(4),
                message: r.get(5),
                received_at: r.get(6),
                cause: r.get(7),
                title: r.get(8),
            })
            .collect())
    }

    pub(crate) fn stored_checkins(&self) -> Result<Vec<StoredCheckin>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT run_id, flag, idx, expect_next_in, first_seen FROM checkins")?;
        Ok(conn
            .client
            .query(&stmt, &[])?
            .iter()
            .map(|r| StoredCheckin { run_id: r.get(0), flag: r.get(1), idx: r.get(2), expect_next_in: r.get(3), first_seen: r.get(4) })
            .collect())
    }

    /// Moves the times of the caller's runs only: the other daemons' clocks were not stepped.
    pub(crate) fn shift_run_times(&self, run_ids: &[String], delta: Millis) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("UPDATE checkins SET first_seen = first_seen + $2 WHERE run_id = ANY($1)", &[&run_ids, &delta])?;
        tx.execute(
            "UPDATE runs SET checkin_first_seen = checkin_first_seen + $2, deadline = deadline + $2
             WHERE id = ANY($1) AND (checkin_first_seen IS NOT NULL OR deadline IS NOT NULL)",
            &[&run_ids, &delta],
        )?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }
}
