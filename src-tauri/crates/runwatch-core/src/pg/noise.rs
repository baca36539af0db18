//! Noise control on PostgreSQL: the twins of `crate::noise`'s store operations (snoozes,
//! silences, notifier rules, the rule engine's verdicts, recovery), and what the inserts
//! read for the rules. The decisions are `crate::noise`'s; only the SQL is here.

use std::collections::{HashMap, HashSet};

use postgres::Transaction;

use super::inbox::{from_row, pending, View};
use super::{Pg, INBOX_LOCK};
use crate::clock::Millis;
use crate::noise::{self, Arrival, NewSilence, NoiseError, NotifierRules, Rules, Silence, SnoozeUntil, Verdict, UNTIL_CHANGE};
use crate::store::StoreError;
use crate::{Level, NewNotification, Notification, RunState};

const SILENCE_COLUMNS: &str = "id, matchers, starts_at, ends_at, comment, created_at";

fn silence(r: &postgres::Row) -> Silence {
    let matchers: String = r.get(1);
    Silence {
        id: r.get(0),
        matchers: serde_json::from_str(&matchers).unwrap_or_default(),
        starts_at: r.get(2),
        ends_at: r.get(3),
        comment: r.get(4),
        created_at: r.get(5),
    }
}

/// The rules of one batch of inserts: the silences active at `now`, the grouping settings
/// and the enabled notifiers (the facts of its runs come with [`know_runs`]).
pub(super) fn load_rules(tx: &mut Transaction<'_>, now: Millis) -> Result<Rules, StoreError> {
    let keys: Vec<&str> = crate::settings::NOISE_KEYS.to_vec();
    let settings: HashMap<String, String> =
        tx.query("SELECT key, value FROM settings WHERE key = ANY($1)", &[&keys])?.iter().map(|r| (r.get(0), r.get(1))).collect();
    let recipients = tx
        .query("SELECT id, min_level, rules FROM notifiers WHERE status = 'enabled' ORDER BY created_at, id", &[])?
        .iter()
        .map(|r| (r.get(0), Level::from_number(r.get(1)).unwrap_or(Level::Debug), r.get(2)))
        .collect();
    let active: Vec<Silence> = tx
        .query(&format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE starts_at <= $1 AND ends_at > $1"), &[&now])?
        .iter()
        .map(silence)
        .collect();
    Ok(Rules::new(&active, crate::settings::noise_from_rows(&settings), recipients))
}

/// What the rules need of the runs of a batch (labels, repository, host, a run snooze in
/// force), read under the inbox lock: a run snoozed just before reaches what is stored after.
pub(super) fn know_runs(tx: &mut Transaction<'_>, rules: &mut Rules, items: &[NewNotification], now: Millis) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    let runs: Vec<&str> = items.iter().filter_map(|n| n.run_id.as_deref()).filter(|r| seen.insert(*r)).collect();
    if !runs.is_empty() {
        let rows = tx.query(
            "SELECT r.id, r.repo, r.host, r.labels, s.until, s.state FROM runs r
               LEFT JOIN run_snoozes s ON s.run_id = r.id AND s.until > $2
              WHERE r.id = ANY($1)",
            &[&runs, &now],
        )?;
        for r in rows {
            let facts = rules.run_facts(r.get(1), r.get(2), r.get(3), (r.get(4), r.get(5)));
            rules.know_run(r.get(0), facts);
        }
    }
    Ok(())
}

/// When each group of `arrivals` began in the last window (see
/// `Rules::deliveries_after`): the oldest stored notification with its key.
pub(super) fn group_firsts<'a>(
    tx: &mut Transaction<'_>,
    rules: &Rules,
    arrivals: impl Iterator<Item = &'a Arrival>,
    now: Millis,
) -> Result<HashMap<String, Millis>, StoreError> {
    if rules.group_window() <= 0 {
        return Ok(HashMap::new());
    }
    let keys: HashSet<&str> = arrivals.filter(|a| a.silenced_by.is_none()).filter_map(|a| a.group_key.as_deref()).collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<&str> = keys.into_iter().collect();
    let rows = tx.query(
        "SELECT group_key, MIN(created_at) FROM notifications WHERE group_key = ANY($1) AND created_at > $2 GROUP BY group_key",
        &[&keys, &(now - rules.group_window())],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// As `crate::noise::recover`: run `run_id` recovered (its recovery `recovery_id` was just
/// stored in this transaction); its alarms stored before the recovery are resolved, and the
/// notifiers that heard one hear the recovery.
pub(super) fn recover(tx: &mut Transaction<'_>, run_id: &str, recovery_id: &str, now: Millis) -> Result<(), StoreError> {
    let alarms: Vec<String> = tx
        .query(
            &format!(
                "UPDATE notifications SET resolved_at = $3, updated_at = $3
                  WHERE run_id = $1 AND resolved_at IS NULL AND {} AND {}
                    AND seq < (SELECT seq FROM notifications WHERE id = $2)
                 RETURNING id",
                pending(),
                noise::ALARMS
            ),
            &[&run_id, &recovery_id, &now],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if alarms.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO deliveries (notification_id, notifier_id, state, attempts, next_attempt_at, updated_at)
         SELECT $2, h.notifier_id, 'pending', 0, $3, $3
           FROM (SELECT notifier_id, MIN(queued) AS first FROM deliveries
                  WHERE notification_id = ANY($1) AND (state = 'sent' OR sends > 0) GROUP BY notifier_id) h
          WHERE EXISTS (SELECT 1 FROM notifiers WHERE id = h.notifier_id AND status = 'enabled')
          ORDER BY h.first
         ON CONFLICT DO NOTHING",
        &[&alarms, &recovery_id, &now],
    )?;
    Ok(())
}

/// As `crate::noise::run_state_saved`: a run's state was saved in this transaction; what
/// was snoozed until it changed comes back if it did.
pub(super) fn run_state_saved(tx: &mut Transaction<'_>, run_id: &str, state: &str, now: Millis) -> Result<(), StoreError> {
    let woken: Vec<String> = tx
        .query(
            "UPDATE notifications SET snoozed_until = NULL, snooze_state = NULL, updated_at = $4
              WHERE snoozed_until = $3 AND run_id = $1 AND snooze_state <> $2 RETURNING id",
            &[&run_id, &state, &UNTIL_CHANGE, &now],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !woken.is_empty() {
        tx.execute(
            "UPDATE deliveries SET next_attempt_at = $2 WHERE notification_id = ANY($1) AND state = 'pending' AND next_attempt_at = $3",
            &[&woken, &now, &UNTIL_CHANGE],
        )?;
    }
    tx.execute("DELETE FROM run_snoozes WHERE run_id = $1 AND state IS NOT NULL AND state <> $2", &[&run_id, &state])?;
    Ok(())
}

impl Pg {
    /// A write that changes the inbox, in one transaction under the inbox lock, notifying
    /// the change feed on commit.
    fn inbox_write<T, E: From<StoreError>>(&self, f: impl FnOnce(&mut Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction().map_err(StoreError::from)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK]).map_err(StoreError::from)?;
        let out = f(&mut tx)?;
        tx.batch_execute(super::NOTIFY).map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    pub(crate) fn snooze(&self, ids: &[String], until: SnoozeUntil, now: Millis) -> Result<usize, NoiseError> {
        self.inbox_write(|tx| {
            let mut n = 0;
            for id in ids {
                let row = tx
                    .query_opt("SELECT n.run_id, r.state FROM notifications n LEFT JOIN runs r ON r.id = n.run_id WHERE n.id = $1", &[id])
                    .map_err(StoreError::from)?;
                let Some(row) = row else { continue };
                let (run, state): (Option<String>, Option<String>) = (row.get(0), row.get(1));
                let (at, state) = noise::snooze_end(until, now, || noise::notification_run_state(id, run.as_deref(), state))?;
                n += tx
                    .execute(
                        &format!(
                            "UPDATE notifications SET snoozed_until = $2, snooze_state = $3, updated_at = $4 WHERE id = $1 AND {}",
                            pending()
                        ),
                        &[id, &at, &state, &now],
                    )
                    .map_err(StoreError::from)?;
            }
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    pub(crate) fn snooze_all(&self, until: Millis, now: Millis) -> Result<usize, NoiseError> {
        noise::snooze_end(SnoozeUntil::Time(until), now, || Ok(String::new()))?;
        self.inbox_write(|tx| {
            let n = tx
                .execute(
                    &format!(
                        "UPDATE notifications SET snoozed_until = $1, snooze_state = NULL, updated_at = $2
                          WHERE {} AND silenced_by IS NULL AND resolved_at IS NULL AND (snoozed_until IS NULL OR snoozed_until <= $2)",
                        pending()
                    ),
                    &[&until, &now],
                )
                .map_err(StoreError::from)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    pub(crate) fn unsnooze(&self, ids: &[String], now: Millis) -> Result<usize, StoreError> {
        self.inbox_write(|tx| {
            let mut n = 0;
            for id in ids {
                let Some(row) = tx.query_opt("SELECT snoozed_until FROM notifications WHERE id = $1", &[id])? else { continue };
                let Some(until) = row.get::<_, Option<Millis>>(0) else { continue };
                tx.execute(
                    "UPDATE notifications SET snoozed_until = NULL, snooze_state = NULL, updated_at = $2 WHERE id = $1",
                    &[id, &now],
                )?;
                tx.execute(
                    "UPDATE deliveries SET next_attempt_at = $2 WHERE notification_id = $1 AND state = 'pending' AND next_attempt_at = $3",
                    &[id, &now, &until],
                )?;
                n += usize::from(until > now);
            }
            Ok(n)
        })
    }

    pub(crate) fn snooze_run(&self, run_id: &str, until: SnoozeUntil, now: Millis) -> Result<usize, NoiseError> {
        self.inbox_write(|tx| {
            let state: Option<String> =
                tx.query_opt("SELECT state FROM runs WHERE id = $1", &[&run_id]).map_err(StoreError::from)?.map(|r| r.get(0));
            let Some(state) = state else { return Err(NoiseError::Invalid(format!("there is no run with id '{run_id}'"))) };
            let (at, snooze_state) = noise::snooze_end(until, now, || Ok(state))?;
            tx.execute(
                "INSERT INTO run_snoozes (run_id, until, state) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id) DO UPDATE SET until = excluded.until, state = excluded.state",
                &[&run_id, &at, &snooze_state],
            )
            .map_err(StoreError::from)?;
            let n = tx
                .execute(
                    &format!(
                        "UPDATE notifications SET snoozed_until = $2, snooze_state = $3, updated_at = $4 WHERE run_id = $1 AND {}",
                        pending()
                    ),
                    &[&run_id, &at, &snooze_state, &now],
                )
                .map_err(StoreError::from)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    pub(crate) fn next_snooze_end(&self, now: Millis) -> Result<Option<Millis>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT MIN(snoozed_until) FROM notifications WHERE snoozed_until > $1 AND snoozed_until < $2")?;
        Ok(conn.client.query_one(&stmt, &[&now, &UNTIL_CHANGE])?.get(0))
    }

    pub(crate) fn snooze_returned(&self, after: Millis, upto: Millis) -> Result<Vec<Notification>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!(
            "SELECT {} FROM notifications
              WHERE snoozed_until > $1 AND snoozed_until <= $2 AND {} AND silenced_by IS NULL AND resolved_at IS NULL ORDER BY seq",
            View::Store.columns(),
            pending()
        ))?;
        Ok(conn.client.query(&stmt, &[&after, &upto])?.iter().map(|r| from_row(r, 0)).collect())
    }

    pub(crate) fn add_silence(&self, new: &NewSilence, now: Millis) -> Result<Silence, NoiseError> {
        let s = new.build(now)?;
        let matchers = serde_json::to_string(&s.matchers).unwrap_or_default();
        let mut conn = self.conn();
        let mut tx = conn.client.transaction().map_err(StoreError::from)?;
        tx.execute(
            &format!("INSERT INTO silences ({SILENCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[&s.id, &matchers, &s.starts_at, &s.ends_at, &s.comment, &s.created_at],
        )
        .map_err(StoreError::from)?;
        tx.batch_execute(super::NOTIFY).map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(s)
    }

    pub(crate) fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let rows = self.conn().client.query(&format!("SELECT {SILENCE_COLUMNS} FROM silences ORDER BY created_at DESC, id DESC"), &[])?;
        Ok(rows.iter().map(silence).collect())
    }

    pub(crate) fn expire_silence(&self, id: &str, now: Millis) -> Result<Silence, NoiseError> {
        let mut s = noise::pick_silence(self.silences()?, id)?;
        if s.expire(now) {
            let mut conn = self.conn();
            let mut tx = conn.client.transaction().map_err(StoreError::from)?;
            tx.execute("UPDATE silences SET ends_at = $2, starts_at = $3 WHERE id = $1", &[&s.id, &s.ends_at, &s.starts_at])
                .map_err(StoreError::from)?;
            tx.batch_execute(super::NOTIFY).map_err(StoreError::from)?;
            tx.commit().map_err(StoreError::from)?;
        }
        Ok(s)
    }

    pub(crate) fn notifier_rules(&self, notifier_id: &str) -> Result<NotifierRules, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT rules FROM notifiers WHERE id = $1")?;
        let raw: Option<Option<String>> = conn.client.query_opt(&stmt, &[&notifier_id])?.map(|r| r.get(0));
        Ok(NotifierRules::from_column(raw.flatten()))
    }

    pub(crate) fn set_notifier_rules(&self, notifier_id: &str, rules: &NotifierRules, now: Millis) -> Result<bool, NoiseError> {
        let json = rules.to_column()?;
        let mut conn = self.conn();
        let mut tx = conn.client.transaction().map_err(StoreError::from)?;
        let n = tx
            .execute("UPDATE notifiers SET rules = $2, updated_at = $3 WHERE id = $1", &[&notifier_id, &json, &now])
            .map_err(StoreError::from)?;
        tx.batch_execute(super::NOTIFY).map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(n == 1)
    }

    /// Writes the rule engine's verdicts on due deliveries of a notifier (see
    /// `crate::deliveries::plan`). A postponed one is no longer leased: whichever daemon is
    /// awake when it falls due sends it.
    pub(crate) fn apply_verdicts(&self, notifier_id: &str, changes: &[(String, Verdict)], now: Millis) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        for (id, verdict) in changes {
            match verdict {
                Verdict::Send => {}
                Verdict::Postpone { at, held } => {
                    tx.execute(
                        "UPDATE deliveries SET next_attempt_at = $3, held = $4, updated_at = $5, lease_until = NULL, lease_holder = NULL
                          WHERE notification_id = $1 AND notifier_id = $2",
                        &[id, &notifier_id, at, held, &now],
                    )?;
                }
                Verdict::Drop => {
                    tx.execute("DELETE FROM deliveries WHERE notification_id = $1 AND notifier_id = $2", &[id, &notifier_id])?;
                }
                Verdict::Stop => {
                    tx.execute(
                        "UPDATE deliveries SET state = 'sent', held = FALSE, updated_at = $3, lease_until = NULL, lease_holder = NULL
                          WHERE notification_id = $1 AND notifier_id = $2",
                        &[id, &notifier_id, &now],
                    )?;
                }
            }
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets a run's state (creating the run), and wakes what was snoozed until it changed.
    pub(crate) fn set_run_state(&self, id: &str, state: RunState, now: Millis) -> Result<(), StoreError> {
        self.inbox_write(|tx| {
            super::tables::ensure_run(tx, id, now)?;
            tx.execute("UPDATE runs SET state = $2, updated_at = $3 WHERE id = $1", &[&id, &state.as_str(), &now])?;
            run_state_saved(tx, id, state.as_str(), now)
        })
    }
}
