//! The outbox (the `deliveries` table): one row per notification × notifier, written with
//! the notification, updated by the dispatcher — how nothing is lost across restarts.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::store::StoreError;
use crate::{DeliveryState, Level};

/// One delivery as the dispatcher and `notifications show` see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Delivery {
    pub notification_id: String,
    pub notifier_id: String,
    /// The notifier's type, for display (it may have been removed since: then "removed").
    pub notifier_type: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub updated_at: i64,
    /// How many times it was sent (more than once: a repeating notifier).
    #[serde(default)]
    pub sends: i64,
}

/// A due delivery with what is needed to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub notification: crate::Notification,
    pub attempts: i64,
    /// How many times it was sent before (a repeat when more than 0).
    pub sends: i64,
    /// Held by quiet hours: it goes in the catch-up digest.
    pub held: bool,
}

/// The enabled notifiers and their minimum levels: who gets a delivery of a new notification.
pub(crate) fn recipients(conn: &Connection) -> Result<Vec<(String, Level)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, min_level FROM notifiers WHERE status = 'enabled'")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, min_level) = row?;
        out.push((id, Level::from_number(min_level).unwrap_or(Level::Debug)));
    }
    Ok(out)
}

/// Creates a pending delivery of a new notification, first tried at `at` (called by
/// `inbox`'s inserts).
pub(crate) fn enqueue(conn: &Connection, notification_id: &str, notifier_id: &str, at: Millis, now: Millis) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO deliveries (notification_id, notifier_id, state, attempts, next_attempt_at, updated_at)
         VALUES (?1, ?2, 'pending', 0, ?3, ?4)",
    )?
    .execute(params![notification_id, notifier_id, at, now])?;
    Ok(())
}

/// Pending deliveries of one notifier due at `now`, oldest notification first (so one
/// notifier's messages keep their order).
pub fn due(conn: &Connection, notifier_id: &str, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
    // Deliveries are created with their notification, so rowid order is notification
    // order; the partial index finds the pending ones without touching the others, and
    // only the page's notifications are read.
    let mut stmt = conn.prepare_cached(
        "SELECT notification_id, attempts, sends, held FROM deliveries
         WHERE notifier_id = ?1 AND state = 'pending' AND next_attempt_at <= ?2
         ORDER BY rowid LIMIT ?3",
    )?;
    let ids: Vec<(String, i64, i64, bool)> = stmt
        .query_map(params![notifier_id, now, limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, attempts, sends, held) in ids {
        if let Some(notification) = crate::inbox::get(conn, &id)? {
            out.push(Due { notification, attempts, sends, held });
        }
    }
    Ok(out)
}

/// The earliest pending attempt of a notifier, if any.
pub fn next_attempt(conn: &Connection, notifier_id: &str) -> Result<Option<Millis>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT MIN(next_attempt_at) FROM deliveries WHERE notifier_id = ?1 AND state = 'pending'")?
        .query_row([notifier_id], |r| r.get(0))?)
}

/// Notifiers with pending deliveries.
pub fn notifiers_with_pending(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT notifier_id FROM deliveries WHERE state = 'pending'")?;
    let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(ids)
}

pub fn mark_sent(conn: &Connection, notification_id: &str, notifier_id: &str, now: Millis) -> Result<(), StoreError> {
    mark_sent_again_at(conn, notification_id, notifier_id, None, now)
}

/// Records a send; with `again_at` (the notifier repeats) the delivery stays pending for
/// the repeat at that time.
pub fn mark_sent_again_at(
    conn: &Connection,
    notification_id: &str,
    notifier_id: &str,
    again_at: Option<Millis>,
    now: Millis,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET state = CASE WHEN ?3 IS NULL THEN 'sent' ELSE 'pending' END,
                attempts = CASE WHEN ?3 IS NULL THEN attempts + 1 ELSE 0 END, sends = sends + 1, held = 0,
                next_attempt_at = COALESCE(?3, next_attempt_at), last_error = NULL, updated_at = ?4
         WHERE notification_id = ?1 AND notifier_id = ?2",
    )?
    .execute(params![notification_id, notifier_id, again_at, now])?;
    Ok(())
}

/// The rule engine's verdict on each due delivery of a notifier (see
/// [`crate::noise::verdict`]): those to send now, and what to write for the others (a
/// postponement keeps a held delivery held). The backends apply it, each in its SQL.
pub(crate) fn plan(
    rules: &crate::noise::NotifierRules,
    due: Vec<Due>,
    now: Millis,
    tz: &jiff::tz::TimeZone,
) -> (Vec<Due>, Vec<(String, crate::noise::Verdict)>) {
    use crate::noise::Verdict;
    let mut send = Vec::with_capacity(due.len());
    let mut changes = Vec::new();
    for d in due {
        match crate::noise::verdict(&d.notification, d.sends, rules, now, tz) {
            Verdict::Send => send.push(d),
            Verdict::Postpone { at, held } => changes.push((d.notification.id, Verdict::Postpone { at, held: held || d.held })),
            other => changes.push((d.notification.id, other)),
        }
    }
    (send, changes)
}

/// Applies the rule engine's verdict on each due delivery of a notifier (see [`plan`]) and
/// returns those to send now. Postponed ones wait for their time; one acknowledged before
/// the notifier was to hear of it is removed (it never does); a repeat of one acknowledged
/// since is over.
pub fn triage(
    conn: &Connection,
    notifier_id: &str,
    rules: &crate::noise::NotifierRules,
    due: Vec<Due>,
    now: Millis,
    tz: &jiff::tz::TimeZone,
) -> Result<Vec<Due>, StoreError> {
    use crate::noise::Verdict;
    let (send, changes) = plan(rules, due, now, tz);
    for (id, verdict) in changes {
        match verdict {
            Verdict::Send => {}
            Verdict::Postpone { at, held } => {
                conn.prepare_cached(
                    "UPDATE deliveries SET next_attempt_at = ?3, held = ?4, updated_at = ?5 WHERE notification_id = ?1 AND notifier_id = ?2",
                )?
                .execute(params![id, notifier_id, at, held, now])?;
            }
            Verdict::Drop => {
                conn.prepare_cached("DELETE FROM deliveries WHERE notification_id = ?1 AND notifier_id = ?2")?
                    .execute(params![id, notifier_id])?;
            }
            Verdict::Stop => {
                conn.prepare_cached(
                    "UPDATE deliveries SET state = 'sent', held = 0, updated_at = ?3 WHERE notification_id = ?1 AND notifier_id = ?2",
                )?
                .execute(params![id, notifier_id, now])?;
            }
        }
    }
    Ok(send)
}

/// How due deliveries go out: what quiet hours held as one catch-up digest, each group
/// (same group key) as one message, and the rest together (`together`, a paced notifier's
/// digest) or one by one. A digest holds at most `digest_max`; a group has no limit (its
/// message summarises it).
pub fn batches(send: Vec<Due>, together: bool, digest_max: usize) -> Vec<Vec<Due>> {
    let mut held = Vec::new();
    let mut groups: Vec<Vec<Due>> = Vec::new();
    let mut rest = Vec::new();
    for d in send {
        if d.held {
            held.push(d);
        } else if let Some(key) = d.notification.group_key.clone() {
            match groups.iter_mut().find(|g| g[0].notification.group_key.as_deref() == Some(key.as_str())) {
                Some(g) => g.push(d),
                None => groups.push(vec![d]),
            }
        } else {
            rest.push(d);
        }
    }
    let chunks = |v: Vec<Due>| {
        let mut out: Vec<Vec<Due>> = Vec::new();
        for d in v {
            match out.last_mut() {
                Some(last) if last.len() < digest_max.max(1) => last.push(d),
                _ => out.push(vec![d]),
            }
        }
        out
    };
    let mut out: Vec<Vec<Due>> = chunks(held);
    if together {
        out.extend(chunks(rest));
    } else {
        out.extend(rest.into_iter().map(|d| vec![d]));
    }
    out.extend(groups);
    out
}

/// Records a failed attempt: retried at `retry_at`, or failed for good when `None`.
pub fn mark_attempt_failed(
    conn: &Connection,
    notification_id: &str,
    notifier_id: &str,
    error: &str,
    retry_at: Option<Millis>,
    now: Millis,
) -> Result<(), StoreError> {
    let state = if retry_at.is_some() { "pending" } else { "failed" };
    conn.prepare_cached(
        "UPDATE deliveries SET state = ?3, attempts = attempts + 1, last_error = ?4,
                next_attempt_at = COALESCE(?5, next_attempt_at), updated_at = ?6
         WHERE notification_id = ?1 AND notifier_id = ?2",
    )?
    .execute(params![notification_id, notifier_id, state, error, retry_at, now])?;
    Ok(())
}

/// Fails every pending delivery of a notifier without sending it.
pub fn cancel_pending(conn: &Connection, notifier_id: &str, why: &str, now: Millis) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE deliveries SET state = 'failed', last_error = ?2, updated_at = ?3 WHERE notifier_id = ?1 AND state = 'pending'",
        params![notifier_id, why, now],
    )?)
}

/// Every delivery of a notification.
pub fn of_notification(conn: &Connection, notification_id: &str) -> Result<Vec<Delivery>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.notification_id, d.notifier_id, COALESCE(f.type, 'removed'), d.state, d.attempts,
                d.next_attempt_at, d.last_error, d.updated_at, d.sends
         FROM deliveries d LEFT JOIN notifiers f ON f.id = d.notifier_id
         WHERE d.notification_id = ?1 ORDER BY f.created_at, d.notifier_id",
    )?;
    let rows = stmt
        .query_map([notification_id], |r| {
            let state: String = r.get(3)?;
            Ok(Delivery {
                notification_id: r.get(0)?,
                notifier_id: r.get(1)?,
                notifier_type: r.get(2)?,
                state: state.parse().unwrap_or(DeliveryState::Pending),
                attempts: r.get(4)?,
                next_attempt_at: r.get(5)?,
                last_error: r.get(6)?,
                updated_at: r.get(7)?,
                sends: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Outbox counts by state, for tests, benchmarks and health.
pub fn counts(conn: &Connection) -> Result<(i64, i64, i64), StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'sent'), 0), COALESCE(SUM(state = 'failed'), 0)
         FROM deliveries",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

/// What one attempt to deliver came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    /// Failed: retried at `retry_at`, or failed for good when `None`.
    Failed {
        error: String,
        retry_at: Option<Millis>,
    },
}

/// The outbox through the store, on either backend.
impl crate::Store {
    /// Due deliveries of one notifier, taken for this process to send: on PostgreSQL each is
    /// leased, so no other daemon sends it until the lease runs out (a daemon that dies
    /// leaves its deliveries to the others then). On SQLite one daemon owns the store.
    pub fn take_due(&self, notifier_id: &str, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.take_due(notifier_id, now, limit);
        }
        due(self.conn(), notifier_id, now, limit)
    }

    /// What the notifier's rules (delay, repeat, quiet hours) and snoozes make of due
    /// deliveries: what to send now (see [`triage`]).
    pub fn triage(
        &mut self,
        notifier_id: &str,
        rules: &crate::noise::NotifierRules,
        due: Vec<Due>,
        now: Millis,
        tz: &jiff::tz::TimeZone,
    ) -> Result<Vec<Due>, StoreError> {
        if let Some(pg) = self.pg() {
            let (send, changes) = plan(rules, due, now, tz);
            pg.apply_verdicts(notifier_id, &changes, now)?;
            return Ok(send);
        }
        self.write(|tx| triage(tx, notifier_id, rules, due, now, tz))
    }

    /// When this process may next have something to send to a notifier: its earliest
    /// pending attempt, or, for one leased by another daemon, when that lease runs out.
    pub fn next_delivery_attempt(&self, notifier_id: &str) -> Result<Option<Millis>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.next_attempt(notifier_id);
        }
        next_attempt(self.conn(), notifier_id)
    }

    /// Stores the outcomes of attempts to one notifier, in one transaction (and ends their
    /// leases).
    /// A sent delivery of a repeating notifier stays pending until `again_at`.
    pub fn record_attempts(
        &mut self,
        notifier_id: &str,
        attempts: &[(&str, Attempt)],
        again_at: Option<Millis>,
        now: Millis,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.record_attempts(notifier_id, attempts, again_at, now);
        }
        self.write(|tx| {
            for (id, attempt) in attempts {
                match attempt {
                    Attempt::Sent => mark_sent_again_at(tx, id, notifier_id, again_at, now)?,
                    Attempt::Failed { error, retry_at } => mark_attempt_failed(tx, id, notifier_id, error, *retry_at, now)?,
                }
            }
            Ok(())
        })
    }

    /// Every delivery of a notification (see [`of_notification`]).
    pub fn deliveries_of(&self, notification_id: &str) -> Result<Vec<Delivery>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.deliveries_of(notification_id);
        }
        of_notification(self.conn(), notification_id)
    }

    /// Outbox counts by state: pending, sent, failed (see [`counts`]).
    pub fn delivery_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.delivery_counts();
        }
        counts(self.conn())
    }

    /// Due deliveries of one notifier (see [`due`]).
    pub fn due_deliveries(&self, notifier_id: &str, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.due(notifier_id, now, limit);
        }
        due(self.conn(), notifier_id, now, limit)
    }
}
