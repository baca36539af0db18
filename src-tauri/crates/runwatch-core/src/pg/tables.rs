//! Settings, notifiers, runs, check-ins and deliveries on PostgreSQL: the twins of the
//! store methods in `crate::settings`, `crate::notifiers`, `crate::runs`,
//! `crate::check_ins` and `crate::deliveries`.

use std::collections::{BTreeMap, HashMap};

use postgres::Row;

use super::Pg;
use crate::check_ins::CheckInReport;
use crate::clock::Millis;
use crate::deliveries::{Attempt, Delivery, Due};
use crate::inbox::{Inserted, NewNotification, Notification};
use crate::notifiers::Notifier;
use crate::runs::{Report, Run};
use crate::store::StoreError;
use crate::{DeliveryState, Level, NotifierStatus, RunState};

const NOTIFIER_COLUMNS: &str = "id, type, status, config, min_level, created_at, updated_at";
const RUN_COLUMNS: &str = "id, repo, name, state, checkin_idx, checkin_flag, checkin_expect_next_in, checkin_first_seen, \
                           deadline, log_step, created_at, updated_at, host, labels, cause";

fn notifier(r: &Row) -> Notifier {
    let status: String = r.get(2);
    let config: String = r.get(3);
    Notifier {
        id: r.get(0),
        kind: r.get(1),
        status: status.parse().unwrap_or(NotifierStatus::Disabled),
        config: serde_json::from_str(&config).unwrap_or(serde_json::Value::Null),
        min_level: Level::from_number(r.get(4)).unwrap_or(Level::Debug),
        created_at: r.get(5),
        updated_at: r.get(6),
    }
}

fn run(r: &Row) -> Run {
    let state: String = r.get(3);
    Run {
        id: r.get(0),
        repo: r.get(1),
        name: r.get(2),
        state: state.parse().unwrap_or(RunState::Running),
        checkin_idx: r.get(4),
        checkin_flag: r.get(5),
        checkin_expect_next_in: r.get(6),
        checkin_first_seen: r.get(7),
        deadline: r.get(8),
        log_step: r.get(9),
        created_at: r.get(10),
        updated_at: r.get(11),
        host: r.get(12),
        labels: r.get::<_, Option<String>>(13).and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default(),
        cause: r.get(14),
    }
}

impl Pg {
    /// Every stored setting as raw JSON text, by key.
    pub(crate) fn setting_rows(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT key, value FROM settings")?;
        Ok(conn.client.query(&stmt, &[])?.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(crate) fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT value FROM settings WHERE key = $1")?;
        Ok(conn.client.query_opt(&stmt, &[&key])?.map(|r| r.get(0)))
    }

    /// Writes settings in one transaction.
    pub(crate) fn put_settings(&self, rows: &[(&str, String)]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        for (key, value) in rows {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[key, value],
            )?;
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    /// Reads a setting, changes it with `f` and writes it back, in one transaction with the
    /// row locked (two daemons remembering repositories at once keep both).
    pub(crate) fn update_setting(
        &self,
        key: &str,
        f: impl FnOnce(Option<String>) -> Result<Option<String>, StoreError>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("INSERT INTO settings (key, value) VALUES ($1, 'null') ON CONFLICT (key) DO NOTHING", &[&key])?;
        let old: Option<String> = tx.query_opt("SELECT value FROM settings WHERE key = $1 FOR UPDATE", &[&key])?.map(|r| r.get(0));
        let old = old.filter(|v| v != "null");
        match f(old)? {
            Some(new) => {
                tx.execute("UPDATE settings SET value = $2 WHERE key = $1", &[&key, &new])?;
            }
            None => {
                tx.execute("DELETE FROM settings WHERE key = $1 AND value = 'null'", &[&key])?;
            }
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn settings_expiry(&self) -> Result<Option<Millis>, StoreError> {
        let raw = self.setting(crate::settings::EXPIRY_DAYS_KEY)?;
        Ok(crate::settings::expiry_from_raw(raw.as_deref()))
    }

    pub(crate) fn notifiers(&self) -> Result<Vec<Notifier>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!("SELECT {NOTIFIER_COLUMNS} FROM notifiers ORDER BY created_at, id"))?;
        Ok(conn.client.query(&stmt, &[])?.iter().map(notifier).collect())
    }

    pub(crate) fn notifier(&self, id: &str) -> Result<Option<Notifier>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!("SELECT {NOTIFIER_COLUMNS} FROM notifiers WHERE id = $1"))?;
        Ok(conn.client.query_opt(&stmt, &[&id])?.as_ref().map(notifier))
    }

    pub(crate) fn add_notifier(&self, n: &Notifier) -> Result<(), StoreError> {
        insert_notifier(&mut self.conn().client, n)?;
        self.conn().client.batch_execute(super::NOTIFY)?;
        Ok(())
    }

    /// As `Store::add_first_notifier`: under a lock, so that two daemons starting at once
    /// do not each see an empty table.
    pub(crate) fn add_first_notifier(&self, n: &Notifier) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&super::FIRST_NOTIFIER_LOCK])?;
        let none: bool = tx.query_one("SELECT NOT EXISTS (SELECT 1 FROM notifiers)", &[])?.get(0);
        if none {
            insert_notifier(&mut tx, n)?;
            tx.batch_execute(super::NOTIFY)?;
        }
        tx.commit()?;
        Ok(none)
    }

    pub(crate) fn set_notifier_status(&self, id: &str, status: NotifierStatus, now: Millis) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        let changed = tx.execute("UPDATE notifiers SET status = $2, updated_at = $3 WHERE id = $1", &[&id, &status.as_str(), &now])?;
        if status == NotifierStatus::Disabled {
            fail_pending(&mut tx, id, now)?;
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(changed == 1)
    }

    pub(crate) fn update_notifier(
        &self,
        id: &str,
        config: Option<&serde_json::Value>,
        min_level: Option<Level>,
        status: Option<NotifierStatus>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        if let Some(config) = config {
            tx.execute("UPDATE notifiers SET config = $2, updated_at = $3 WHERE id = $1", &[&id, &config.to_string(), &now])?;
        }
        if let Some(level) = min_level {
            tx.execute("UPDATE notifiers SET min_level = $2, updated_at = $3 WHERE id = $1", &[&id, &level.number(), &now])?;
        }
        if let Some(status) = status {
            tx.execute("UPDATE notifiers SET status = $2, updated_at = $3 WHERE id = $1", &[&id, &status.as_str(), &now])?;
            if status == NotifierStatus::Disabled {
                fail_pending(&mut tx, id, now)?;
            }
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn remove_notifier(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.conn().client.execute("DELETE FROM notifiers WHERE id = $1", &[&id])? == 1;
        self.conn().client.batch_execute(super::NOTIFY)?;
        Ok(removed)
    }

    pub(crate) fn runs(&self) -> Result<Vec<Run>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY updated_at DESC, id"))?;
        Ok(conn.client.query(&stmt, &[])?.iter().map(run).collect())
    }

    pub(crate) fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))?;
        Ok(conn.client.query_opt(&stmt, &[&id])?.as_ref().map(run))
    }

    pub(crate) fn run_ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        // Run ids sort bytewise (COLLATE "C"), so U+10FFFF bounds the range.
        let upper = format!("{prefix}\u{10FFFF}");
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT id FROM runs WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3")?;
        Ok(conn.client.query(&stmt, &[&prefix, &upper, &(limit as i64)])?.iter().map(|r| r.get(0)).collect())
    }

    /// Sets a run's `name` (the column, chosen by the caller), creating the run; its state
    /// goes through `set_run_state` (see pg/noise.rs), which wakes snoozes.
    pub(crate) fn set_run(&self, id: &str, column: &'static str, value: &str, now: Millis) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        ensure_run(&mut tx, id, now)?;
        tx.execute(&format!("UPDATE runs SET {column} = $2, updated_at = $3 WHERE id = $1"), &[&id, &value, &now])?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    /// The states of those of `ids` that are known.
    pub(crate) fn run_states(&self, ids: &[String]) -> Result<HashMap<String, RunState>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT id, state FROM runs WHERE id = ANY($1)")?;
        Ok(conn
            .client
            .query(&stmt, &[&ids])?
            .iter()
            .map(|r| (r.get(0), r.get::<_, String>(1).parse().unwrap_or(RunState::Running)))
            .collect())
    }

    /// The twin of `Store::save_reports`'s SQLite side: the notifications first (one
    /// transaction, under the inbox lock), then the runs (another); see there why.
    pub(crate) fn save_reports(&self, reports: &[Report], now: Millis) -> Result<Vec<Notification>, StoreError> {
        let items: Vec<NewNotification> = reports.iter().filter_map(|r| r.notification.clone()).collect();
        let mut stored = Vec::new();
        if !items.is_empty() {
            let expires_at = self.settings_expiry()?.map(|e| now.saturating_add(e));
            let batch = super::inbox::Batch { items: &items, runs: Vec::new(), now, expires_at };
            for inserted in self.insert_batch(&batch)? {
                if let Inserted::New(n) = inserted {
                    stored.push(*n);
                }
            }
        }
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        for Report { run: r, .. } in reports {
            ensure_run(&mut tx, &r.id, now)?;
            let labels = if r.labels.is_empty() {
                None
            } else {
                let old: Option<String> = tx.query_one("SELECT labels FROM runs WHERE id = $1 FOR UPDATE", &[&r.id])?.get(0);
                Some(crate::runs::merge_labels(old.as_deref(), &r.labels))
            };
            tx.execute(
                "UPDATE runs SET name = coalesce($2, name), state = coalesce($3, state), host = coalesce($4, host),
                                 labels = coalesce($5, labels), cause = coalesce(cause, $6), updated_at = $7
                 WHERE id = $1",
                &[&r.id, &r.name, &r.state.map(RunState::as_str), &r.host, &labels, &r.cause, &now],
            )?;
            if let Some(state) = r.state {
                super::noise::run_state_saved(&mut tx, &r.id, state.as_str(), now)?;
            }
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(stored)
    }

    pub(crate) fn count_repeat(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("UPDATE notifications SET repeat_count = repeat_count + 1, updated_at = $2 WHERE id = $1", &[&id, &now])?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn set_run_end(&self, id: &str, state: &str, cause: Option<&str>, now: Millis) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        ensure_run(&mut tx, id, now)?;
        tx.execute("UPDATE runs SET state = $2, cause = $3, updated_at = $4 WHERE id = $1", &[&id, &state, &cause, &now])?;
        super::noise::run_state_saved(&mut tx, id, state, now)?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn record_check_in(&self, report: &CheckInReport, now: Millis) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        ensure_run(&mut tx, &report.run_id, now)?;
        // The run's row lock orders two daemons taking check-ins of one run.
        let old: Option<String> = tx.query_one("SELECT labels FROM runs WHERE id = $1 FOR UPDATE", &[&report.run_id])?.get(0);
        let message = report.message.as_deref().map(crate::check_ins::tail_chars);
        let expect = i64::try_from(report.expect_next_in.unwrap_or(0)).unwrap_or(i64::MAX);
        let inserted = tx.execute(
            "INSERT INTO check_in_reports (run_id, event_id, kind, expect_next_in, exit_code, message, received_at, cause, title)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING",
            &[
                &report.run_id,
                &report.event_id,
                &report.kind().as_str(),
                &expect,
                &report.exit_code,
                &message,
                &now,
                &report.cause,
                &report.title,
            ],
        )?;
        if inserted == 0 {
            return Ok(false);
        }
        let labels = if report.labels.is_empty() {
            None
        } else {
            let mut merged: BTreeMap<String, String> = old.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default();
            merged.extend(report.labels.clone());
            Some(serde_json::to_string(&merged).unwrap_or_default())
        };
        tx.execute(
            "UPDATE runs SET name = coalesce($2, name), host = coalesce($3, host), labels = coalesce($4, labels), updated_at = $5
             WHERE id = $1",
            &[&report.run_id, &report.name, &report.host, &labels, &now],
        )?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(true)
    }

    pub(crate) fn deliveries_of(&self, notification_id: &str) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(
            "SELECT d.notification_id, d.notifier_id, COALESCE(f.type, 'removed'), d.state, d.attempts,
                    d.next_attempt_at, d.last_error, d.updated_at, d.sends
             FROM deliveries d LEFT JOIN notifiers f ON f.id = d.notifier_id
             WHERE d.notification_id = $1 ORDER BY f.created_at, d.notifier_id",
        )?;
        Ok(conn
            .client
            .query(&stmt, &[&notification_id])?
            .iter()
            .map(|r| {
                let state: String = r.get(3);
                Delivery {
                    notification_id: r.get(0),
                    notifier_id: r.get(1),
                    notifier_type: r.get(2),
                    state: state.parse().unwrap_or(DeliveryState::Pending),
                    attempts: r.get(4),
                    sends: r.get(8),
                    next_attempt_at: r.get(5),
                    last_error: r.get(6),
                    updated_at: r.get(7),
                }
            })
            .collect())
    }

    pub(crate) fn delivery_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let r = self.conn().client.query_one(
            "SELECT COUNT(*) FILTER (WHERE state = 'pending'), COUNT(*) FILTER (WHERE state = 'sent'),
                    COUNT(*) FILTER (WHERE state = 'failed')
             FROM deliveries",
            &[],
        )?;
        Ok((r.get(0), r.get(1), r.get(2)))
    }

    /// Takes up to `limit` due deliveries of a notifier for this connection: pending, due,
    /// and not leased by another daemon (or leased by one whose lease ran out), with every
    /// due one of the groups they belong to, so a group goes out as one message however
    /// many daemons share the store. Takes of one notifier's deliveries are one at a time
    /// (an advisory lock on it): two daemons waking together for a group's window cannot
    /// each lease half of it.
    pub(crate) fn take_due(&self, notifier_id: &str, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
        let mut taken: Vec<(String, i64, i64, i64, bool)> = {
            let mut conn = self.conn();
            let stmt = conn.prepare(
                "WITH picked AS (
                    SELECT notification_id FROM deliveries
                     WHERE notifier_id = $1 AND state = 'pending' AND next_attempt_at <= $2
                       AND (lease_until IS NULL OR lease_until <= $2 OR lease_holder = $3)
                     ORDER BY queued LIMIT $4
                       FOR UPDATE SKIP LOCKED),
                 keys AS (
                    SELECT DISTINCT n.group_key FROM picked p JOIN notifications n ON n.id = p.notification_id
                     WHERE n.group_key IS NOT NULL),
                 whole AS (
                    SELECT notification_id FROM picked
                    UNION
                    SELECT d.notification_id FROM keys k
                      JOIN notifications n ON n.group_key = k.group_key
                      JOIN deliveries d ON d.notification_id = n.id AND d.notifier_id = $1
                     WHERE d.state = 'pending' AND d.next_attempt_at <= $2
                       AND (d.lease_until IS NULL OR d.lease_until <= $2 OR d.lease_holder = $3))
                 UPDATE deliveries d SET lease_until = $2 + $5, lease_holder = $3
                   FROM whole w
                  WHERE d.notification_id = w.notification_id AND d.notifier_id = $1
                 RETURNING d.notification_id, d.attempts, d.queued, d.sends, d.held",
            )?;
            let limit = limit.min(super::LEASE_PAGE) as i64;
            let mut tx = conn.client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&super::TAKE_LOCK, &notifier_id])?;
            let rows = tx.query(&stmt, &[&notifier_id, &now, &self.holder, &limit, &self.lease_ms])?;
            tx.commit()?;
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect()
        };
        taken.sort_by_key(|t| t.2);
        let mut out = Vec::with_capacity(taken.len());
        for (id, attempts, _, sends, held) in taken {
            if let Some(notification) = self.notification(&id)? {
                out.push(Due { notification, attempts, sends, held });
            }
        }
        Ok(out)
    }

    pub(crate) fn next_attempt(&self, notifier_id: &str) -> Result<Option<Millis>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(
            "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_holder <> $2 THEN GREATEST(next_attempt_at, lease_until)
                             ELSE next_attempt_at END)
               FROM deliveries WHERE notifier_id = $1 AND state = 'pending'",
        )?;
        Ok(conn.client.query_one(&stmt, &[&notifier_id, &self.holder])?.get(0))
    }

    /// As SQLite's `mark_sent_again_at` and `mark_attempt_failed`, ending the leases: a
    /// send of a repeating notifier (`again_at`) leaves the delivery pending until then.
    pub(crate) fn record_attempts(
        &self,
        notifier_id: &str,
        attempts: &[(&str, Attempt)],
        again_at: Option<Millis>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let sent = conn.prepare(
            "UPDATE deliveries SET state = $3, attempts = CASE WHEN $4::bigint IS NULL THEN attempts + 1 ELSE 0 END, sends = sends + 1,
                    held = FALSE, next_attempt_at = COALESCE($4, next_attempt_at), last_error = NULL, updated_at = $5,
                    lease_until = NULL, lease_holder = NULL
              WHERE notification_id = $1 AND notifier_id = $2",
        )?;
        let failed = conn.prepare(
            "UPDATE deliveries SET state = $3, attempts = attempts + 1, last_error = $4,
                    next_attempt_at = COALESCE($5, next_attempt_at), updated_at = $6, lease_until = NULL, lease_holder = NULL
              WHERE notification_id = $1 AND notifier_id = $2",
        )?;
        let mut tx = conn.client.transaction()?;
        for (id, attempt) in attempts {
            match attempt {
                Attempt::Sent => {
                    let state = if again_at.is_some() { "pending" } else { "sent" };
                    tx.execute(&sent, &[id, &notifier_id, &state, &again_at, &now])?;
                }
                Attempt::Failed { error, retry_at } => {
                    let state = if retry_at.is_some() { "pending" } else { "failed" };
                    tx.execute(&failed, &[id, &notifier_id, &state, error, retry_at, &now])?;
                }
            }
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    /// Pending deliveries of a notifier due at `now`, in the order they were queued.
    pub(crate) fn due(&self, notifier_id: &str, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
        let ids: Vec<(String, i64, i64, bool)> = {
            let mut conn = self.conn();
            let stmt = conn.prepare(
                "SELECT notification_id, attempts, sends, held FROM deliveries
                 WHERE notifier_id = $1 AND state = 'pending' AND next_attempt_at <= $2
                 ORDER BY queued LIMIT $3",
            )?;
            conn.client
                .query(&stmt, &[&notifier_id, &now, &(limit as i64)])?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect()
        };
        let mut out = Vec::with_capacity(ids.len());
        for (id, attempts, sends, held) in ids {
            if let Some(notification) = self.notification(&id)? {
                out.push(Due { notification, attempts, sends, held });
            }
        }
        Ok(out)
    }
}

fn insert_notifier(client: &mut impl postgres::GenericClient, n: &Notifier) -> Result<(), StoreError> {
    client.execute(
        &format!("INSERT INTO notifiers ({NOTIFIER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
        &[&n.id, &n.kind, &n.status.as_str(), &n.config.to_string(), &n.min_level.number(), &n.created_at, &n.updated_at],
    )?;
    Ok(())
}

/// A disabled notifier's deliveries still waiting will never be sent: failed, saying why.
fn fail_pending(tx: &mut postgres::Transaction<'_>, notifier_id: &str, now: Millis) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE deliveries SET state = 'failed', last_error = $2, updated_at = $3 WHERE notifier_id = $1 AND state = 'pending'",
        &[&notifier_id, &crate::notifiers::DISABLED_BEFORE_SENT, &now],
    )?;
    Ok(())
}

/// Creates run `id` (running) unless it is known, as the SQLite side's `runs::ensure` does.
pub(super) fn ensure_run(tx: &mut postgres::Transaction<'_>, id: &str, now: Millis) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO runs (id, state, created_at, updated_at) VALUES ($1, 'running', $2, $2) ON CONFLICT (id) DO NOTHING",
        &[&id, &now],
    )?;
    Ok(())
}
