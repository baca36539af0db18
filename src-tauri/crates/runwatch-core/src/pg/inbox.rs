//! The inbox on PostgreSQL: the twins of `crate::inbox`'s and `crate::ingest`'s store
//! methods. Inserts go in one statement per batch (arrays unnested), not one per row.

use std::collections::{HashMap, HashSet};

use postgres::types::ToSql;
use postgres::Row;

use super::users::{USER_ACKED_AT, USER_PENDING, VISIBLE};
use super::{Pg, INBOX_LOCK};
use crate::clock::Millis;
use crate::inbox::{
    AckState, Inserted, ListFilter, NewNotification, Notification, Page, UnreadSummary, DEFAULT_PAGE, LOCAL_ORIGIN, MAX_PAGE,
};
use crate::store::StoreError;
use crate::Level;

/// The newest seq an "acknowledge all" reached.
const ACKED_UPTO: &str = "(SELECT COALESCE(MAX(upto), 0) FROM ack_alls)";
/// When the first "acknowledge all" that reached a row ran (NULL if none).
const REACHED_AT: &str = "(SELECT at FROM ack_alls WHERE upto >= notifications.seq ORDER BY upto LIMIT 1)";
/// Among unacknowledged ones, those pending at the time in the one `?`: not silenced,
/// resolved or snoozed (as SQLite's `SHOWN`).
const SHOWN: &str = " AND silenced_by IS NULL AND resolved_at IS NULL AND (snoozed_until IS NULL OR snoozed_until <= ?)";
/// The noise control columns, last in both views (see `from_row`).
const NOISE_COLUMNS: &str = "snoozed_until, silenced_by, resolved_at, group_key";

pub(super) fn pending() -> String {
    format!("acked_at IS NULL AND seq > {ACKED_UPTO}")
}

/// Whose inbox is read: the store's (acknowledged on the rows, by anyone) or one user's
/// (what is for them or for everyone, acknowledged by them; the user is `$1`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum View<'a> {
    Store,
    User(&'a str),
}

impl View<'_> {
    /// As `crate::inbox::COLUMNS`: the acknowledgement that applies (on the row, or an
    /// "acknowledge all" that reached it; the user's own) is read into `acked_at` and
    /// `updated_at`.
    pub(super) fn columns(self) -> String {
        let head = "id, created_at";
        let body = "level, title, body, run_id, source, dedupe_key, event_id, repeat_count";
        match self {
            View::Store => format!(
                "{head}, CASE WHEN acked_at IS NULL THEN GREATEST(updated_at, {REACHED_AT}) ELSE updated_at END, {body}, \
                 COALESCE(acked_at, {REACHED_AT}), expires_at, origin, {NOISE_COLUMNS}"
            ),
            View::User(_) => {
                format!("{head}, GREATEST(updated_at, {USER_ACKED_AT}), {body}, {USER_ACKED_AT}, expires_at, origin, {NOISE_COLUMNS}")
            }
        }
    }

    /// The rows it sees.
    pub(super) fn visible(self) -> &'static str {
        match self {
            View::Store => "TRUE",
            View::User(_) => VISIBLE,
        }
    }

    /// Unacknowledged in it.
    pub(super) fn unacked(self) -> String {
        match self {
            View::Store => pending(),
            View::User(_) => USER_PENDING.to_string(),
        }
    }

    /// The parameters its SQL starts with.
    fn params(self) -> Vec<Box<dyn ToSql + Sync>> {
        match self {
            View::Store => Vec::new(),
            View::User(user) => vec![Box::new(user.to_string())],
        }
    }
}

pub(super) fn from_row(r: &Row, at: usize) -> Notification {
    Notification {
        id: r.get(at),
        created_at: r.get(at + 1),
        updated_at: r.get(at + 2),
        level: Level::from_number(r.get(at + 3)).unwrap_or(Level::Debug),
        title: r.get(at + 4),
        body: r.get(at + 5),
        run_id: r.get(at + 6),
        source: r.get(at + 7),
        dedupe_key: r.get(at + 8),
        event_id: r.get(at + 9),
        repeat_count: r.get(at + 10),
        acked_at: r.get(at + 11),
        expires_at: r.get(at + 12),
        origin: r.get(at + 13),
        snoozed_until: r.get(at + 14),
        silenced_by: r.get(at + 15),
        resolved_at: r.get(at + 16),
        group_key: r.get(at + 17),
    }
}

/// What one batch of inserts needs besides the notifications.
pub(crate) struct Batch<'a> {
    pub(crate) items: &'a [NewNotification],
    /// Runs to create if unknown (events about runs no check-in announced).
    pub(crate) runs: Vec<&'a str>,
    pub(crate) now: Millis,
    pub(crate) expires_at: Option<Millis>,
}

impl Pg {
    /// How long notifications are kept, read in its own statement.
    fn expiry(&self) -> Result<Option<Millis>, StoreError> {
        self.settings_expiry()
    }

    /// Stores a batch in one transaction: the inbox lock, the runs, the duplicates (by event
    /// id and dedupe key, within the batch too), the rows, their deliveries and the pending
    /// counts.
    pub(crate) fn insert_batch(&self, batch: &Batch<'_>) -> Result<Vec<Inserted>, StoreError> {
        let mut conn = self.conn();
        let insert = conn.prepare(
            "INSERT INTO notifications (id, created_at, updated_at, level, title, body, run_id, source, dedupe_key,
                                        event_id, repeat_count, expires_at, addressed, silenced_by, group_key, snoozed_until, snooze_state)
             SELECT u.id, $1, $1, u.level, u.title, u.body, u.run_id, u.source, u.dedupe_key, u.event_id, u.repeat_count, $2, u.addressed,
                    u.silenced_by, u.group_key, u.snoozed_until, u.snooze_state
               FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[],
                           $12::bool[], $13::text[], $14::text[], $15::bigint[], $16::text[])
                    WITH ORDINALITY AS u(id, level, title, body, run_id, source, dedupe_key, event_id, repeat_count, addressed,
                                         silenced_by, group_key, snoozed_until, snooze_state, ord)
              ORDER BY u.ord",
        )?;
        let deliveries = conn.prepare(
            "INSERT INTO deliveries (notification_id, notifier_id, state, attempts, next_attempt_at, updated_at)
             SELECT u.id, u.notifier_id, 'pending', 0, u.at, $1
               FROM unnest($2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS u(id, notifier_id, at, ord)
              ORDER BY u.ord",
        )?;
        let mut tx = conn.client.transaction()?;
        // Silences, grouping, notifiers and the batch's runs, read once: the same rules
        // (crate::noise::Rules) as SQLite's inserts. Read before the inbox lock, which the
        // other daemons' inserts wait for.
        let mut rules = super::noise::load_rules(&mut tx, batch.now)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])?;
        super::noise::know_runs(&mut tx, &mut rules, batch.items, batch.now)?;
        if !batch.runs.is_empty() {
            tx.execute(
                "INSERT INTO runs (id, state, created_at, updated_at) SELECT DISTINCT unnest($1::text[]), 'running', $2::bigint, $2::bigint
                 ON CONFLICT (id) DO NOTHING",
                &[&batch.runs, &batch.now],
            )?;
        }
        let event_ids: Vec<&str> = batch.items.iter().filter_map(|n| n.event_id.as_deref()).collect();
        let keys: Vec<&str> = batch.items.iter().filter_map(|n| n.dedupe_key.as_deref()).collect();
        let mut by_event: HashMap<String, String> = HashMap::new();
        if !event_ids.is_empty() {
            for r in tx.query("SELECT event_id, id FROM notifications WHERE event_id = ANY($1)", &[&event_ids])? {
                by_event.insert(r.get(0), r.get(1));
            }
        }
        let mut by_key: HashMap<String, String> = HashMap::new();
        if !keys.is_empty() {
            for r in tx.query("SELECT dedupe_key, id FROM notifications WHERE dedupe_key = ANY($1)", &[&keys])? {
                by_key.insert(r.get(0), r.get(1));
            }
        }
        let mut out = Vec::with_capacity(batch.items.len());
        let mut cols = Columns::default();
        let mut pending = [0i64; 5];
        let mut arrivals = Vec::new();
        for n in batch.items {
            let known = n.event_id.as_ref().and_then(|e| by_event.get(e)).or_else(|| n.dedupe_key.as_ref().and_then(|k| by_key.get(k)));
            if let Some(existing) = known {
                out.push(Inserted::Duplicate(existing.clone()));
                continue;
            }
            let level = n.level.unwrap_or(Level::Info);
            let id = uuid::Uuid::now_v7().to_string();
            if let Some(e) = &n.event_id {
                by_event.insert(e.clone(), id.clone());
            }
            if let Some(k) = &n.dedupe_key {
                by_key.insert(k.clone(), id.clone());
            }
            let arrival = rules.arrival(n, level);
            if arrival.silenced_by.is_none() {
                pending[Level::ALL.iter().position(|l| *l == level).unwrap_or(0)] += 1;
            }
            cols.push(&id, level, n, &arrival);
            out.push(Inserted::New(Box::new(n.stored(id, level, batch.now, batch.expires_at, &arrival))));
            arrivals.push((level, arrival));
        }
        if !cols.id.is_empty() {
            tx.execute(
                &insert,
                &[
                    &batch.now,
                    &batch.expires_at,
                    &cols.id,
                    &cols.level,
                    &cols.title,
                    &cols.body,
                    &cols.run_id,
                    &cols.source,
                    &cols.dedupe_key,
                    &cols.event_id,
                    &cols.repeat_count,
                    &cols.addressed,
                    &cols.silenced_by,
                    &cols.group_key,
                    &cols.snoozed_until,
                    &cols.snooze_state,
                ],
            )?;
            if !cols.audience.0.is_empty() {
                tx.execute(
                    "INSERT INTO audiences (seq, user_name, host)
                     SELECT n.seq, u.user_name, u.host FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, user_name, host)
                       JOIN notifications n ON n.id = u.id
                     ON CONFLICT DO NOTHING",
                    &[&cols.audience.0, &cols.audience.1, &cols.audience.2],
                )?;
            }
            // The outbox: as SQLite's, one delivery per enabled notifier at or below the
            // level (none when silenced; later for a notifier's delay or a group's window).
            let firsts = super::noise::group_firsts(&mut tx, &rules, arrivals.iter().map(|(_, a)| a), batch.now)?;
            let (mut ids, mut notifiers, mut at) = (Vec::new(), Vec::new(), Vec::new());
            for (id, (level, arrival)) in cols.id.iter().zip(&arrivals) {
                let first = arrival.group_key.as_ref().and_then(|k| firsts.get(k)).copied();
                for (notifier, when) in rules.deliveries_after(*level, arrival, first, batch.now) {
                    ids.push(id.as_str());
                    notifiers.push(notifier);
                    at.push(when);
                }
            }
            if !ids.is_empty() {
                tx.execute(&deliveries, &[&batch.now, &ids, &notifiers, &at])?;
            }
            for (level, added) in Level::ALL.iter().zip(pending) {
                if added > 0 {
                    tx.execute("UPDATE pending_counts SET n = n + $2 WHERE level = $1", &[&level.number(), &added])?;
                }
            }
            for (n, inserted) in batch.items.iter().zip(&out) {
                if let (Some(run), Inserted::New(new)) = (crate::noise::recovers(n), inserted) {
                    super::noise::recover(&mut tx, run, &new.id, batch.now)?;
                }
            }
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(out)
    }

    pub(crate) fn insert_notification(&self, n: &NewNotification, now: Millis) -> Result<Inserted, StoreError> {
        let expires_at = self.expiry()?.map(|e| now.saturating_add(e));
        let runs = Vec::new();
        let mut out = self.insert_batch(&Batch { items: std::slice::from_ref(n), runs, now, expires_at })?;
        Ok(out.remove(0))
    }

    pub(crate) fn ingest_batch(&self, items: &[NewNotification], now: Millis) -> Result<Vec<Inserted>, StoreError> {
        let expires_at = self.expiry()?.map(|e| now.saturating_add(e));
        let mut seen = HashSet::new();
        let runs = items.iter().filter_map(|n| n.run_id.as_deref()).filter(|r| seen.insert(*r)).collect();
        self.insert_batch(&Batch { items, runs, now, expires_at })
    }

    pub(crate) fn list_notifications(&self, filter: &ListFilter) -> Result<Page, StoreError> {
        self.list_in(View::Store, filter)
    }

    /// A page of the notifications `view` sees, newest first, as SQLite's `inbox::list`.
    pub(super) fn list_in(&self, view: View<'_>, filter: &ListFilter) -> Result<Page, StoreError> {
        let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let cursor: Option<i64> = match &filter.cursor {
            Some(c) => Some(c.parse().map_err(|_| StoreError::BadCursor(c.clone()))?),
            None => None,
        };
        let now = filter.now.unwrap_or_else(|| crate::clock::Clock::now(&crate::clock::SystemClock));
        let mut sql = format!("SELECT seq, {} FROM notifications WHERE {}", view.columns(), view.visible());
        let mut params = view.params();
        let mut bind = |sql: &mut String, clause: &str, value: Box<dyn ToSql + Sync>| {
            params.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", params.len())));
        };
        match filter.state {
            AckState::Pending => {
                sql.push_str(&format!(" AND {}", view.unacked()));
                bind(&mut sql, SHOWN, Box::new(now));
            }
            AckState::Acked => sql.push_str(&format!(" AND NOT ({})", view.unacked())),
            AckState::All => {}
            AckState::Snoozed => {
                sql.push_str(&format!(" AND {}", view.unacked()));
                bind(&mut sql, " AND snoozed_until > ?", Box::new(now));
            }
            AckState::Silenced => sql.push_str(" AND silenced_by IS NOT NULL"),
            AckState::Resolved => sql.push_str(" AND resolved_at IS NOT NULL"),
        }
        if let Some(l) = filter.min_level {
            bind(&mut sql, " AND level >= ?", Box::new(l.number()));
        }
        if let Some(r) = &filter.run_id {
            bind(&mut sql, " AND run_id = ?", Box::new(r.clone()));
        }
        if let Some(c) = cursor {
            bind(&mut sql, " AND seq < ?", Box::new(c));
        }
        match filter.origin.as_deref() {
            Some(LOCAL_ORIGIN) => sql.push_str(" AND origin IS NULL"),
            Some(o) => bind(&mut sql, " AND origin = ?", Box::new(o.to_string())),
            None => {}
        }
        bind(&mut sql, " ORDER BY seq DESC LIMIT ?", Box::new((limit + 1) as i64));
        let mut conn = self.conn();
        let stmt = conn.prepare(&sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = conn.client.query(&stmt, &refs)?;
        let mut items = Vec::with_capacity(limit + 1);
        let mut last_seq = None;
        for row in rows {
            if items.len() == limit {
                return Ok(Page { items, next_cursor: last_seq.map(|s: i64| s.to_string()) });
            }
            last_seq = Some(row.get::<_, i64>(0));
            items.push(from_row(&row, 1));
        }
        Ok(Page { items, next_cursor: None })
    }

    pub(crate) fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!("SELECT {} FROM notifications WHERE id = $1", View::Store.columns()))?;
        Ok(conn.client.query_opt(&stmt, &[&id])?.map(|r| from_row(&r, 0)))
    }

    pub(crate) fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = prefix.to_ascii_lowercase();
        // The id column sorts bytewise (COLLATE "C"), so U+10FFFF bounds the range.
        let upper = format!("{prefix}\u{10FFFF}");
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT id FROM notifications WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3")?;
        Ok(conn.client.query(&stmt, &[&prefix, &upper, &(limit as i64)])?.iter().map(|r| r.get(0)).collect())
    }

    pub(crate) fn ids_with_suffix(&self, suffix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if suffix.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT id FROM notifications WHERE right(id, length($1)) = $1 ORDER BY id LIMIT $2")?;
        Ok(conn.client.query(&stmt, &[&suffix.to_ascii_lowercase(), &(limit as i64)])?.iter().map(|r| r.get(0)).collect())
    }

    /// As SQLite's: one pass, counted here (the ends asked for are few, the ids many).
    pub(crate) fn suffix_counts(&self, suffixes: &HashSet<String>) -> Result<HashMap<String, usize>, StoreError> {
        let mut counts = HashMap::new();
        let Some(len) = suffixes.iter().next().map(String::len) else { return Ok(counts) };
        let wanted: Vec<&str> = suffixes.iter().map(String::as_str).collect();
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT right(id, $1::int), COUNT(*) FROM notifications WHERE right(id, $1::int) = ANY($2) GROUP BY 1")?;
        for r in conn.client.query(&stmt, &[&(len as i32), &wanted])? {
            let n: i64 = r.get(1);
            counts.insert(r.get(0), usize::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    pub(crate) fn since(&self, after_seq: i64, min_level: Level, limit: usize) -> Result<Vec<(i64, Notification)>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!(
            "SELECT seq, {} FROM notifications WHERE seq > $1 AND level >= $2 ORDER BY seq LIMIT $3",
            View::Store.columns()
        ))?;
        let rows = conn.client.query(&stmt, &[&after_seq, &min_level.number(), &(limit as i64)])?;
        Ok(rows.iter().map(|r| (r.get(0), from_row(r, 1))).collect())
    }

    pub(crate) fn last_seq(&self) -> Result<i64, StoreError> {
        Ok(self.conn().client.query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM notifications", &[])?.get(0))
    }

    pub(crate) fn ack(&self, ids: &[String], now: Millis) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let update = conn.prepare(&format!(
            "UPDATE notifications SET acked_at = $2, updated_at = $2 WHERE id = $1 AND {} RETURNING origin, remote_id",
            pending()
        ))?;
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])?;
        let mut n = 0;
        for id in ids {
            let Some(row) = tx.query_opt(&update, &[id, &now])? else { continue };
            n += 1;
            let (origin, remote_id): (Option<String>, Option<String>) = (row.get(0), row.get(1));
            match (origin, remote_id) {
                (Some(origin), Some(remote_id)) => {
                    tx.execute(
                        "INSERT INTO remote_acks (origin, remote_id, at) SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM remotes WHERE name = $1)",
                        &[&origin, &remote_id, &now],
                    )?;
                }
                _ => {
                    tx.execute("INSERT INTO ack_log (notification_id, at) VALUES ($1, $2)", &[id, &now])?;
                }
            }
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(n)
    }

    pub(crate) fn ack_all(&self, now: Millis) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])?;
        let pending: i64 = tx.query_one("SELECT COALESCE(SUM(n), 0)::bigint FROM pending_counts", &[])?.get(0);
        if pending == 0 {
            return Ok(0);
        }
        tx.execute(
            &format!(
                "INSERT INTO ack_alls (upto, at) SELECT m, $1 FROM (SELECT MAX(seq) AS m FROM notifications) x WHERE m > {ACKED_UPTO}"
            ),
            &[&now],
        )?;
        tx.execute("UPDATE pending_counts SET n = 0", &[])?;
        tx.execute(
            "INSERT INTO remote_acks (origin, upto, at)
             SELECT origin, upto, $1 FROM (SELECT name AS origin,
                                                  (SELECT MAX(remote_seq) FROM notifications WHERE origin = remotes.name) AS upto
                                             FROM remotes) x
              WHERE upto IS NOT NULL",
            &[&now],
        )?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(usize::try_from(pending).unwrap_or(0))
    }

    pub(crate) fn ack_upto(&self, upto: i64, now: Millis) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])?;
        let before: i64 = tx.query_one("SELECT COALESCE(SUM(n), 0)::bigint FROM pending_counts", &[])?.get(0);
        let last: i64 = tx.query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM notifications", &[])?.get(0);
        let upto = upto.min(last);
        let inserted = tx.execute(&format!("INSERT INTO ack_alls (upto, at) SELECT $1, $2 WHERE $1 > {ACKED_UPTO}"), &[&upto, &now])?;
        if inserted == 0 {
            return Ok(0);
        }
        tx.execute(
            "UPDATE pending_counts SET n = (SELECT COUNT(*) FROM notifications
                                             WHERE seq > $1 AND acked_at IS NULL AND silenced_by IS NULL AND resolved_at IS NULL
                                               AND level = pending_counts.level)",
            &[&upto],
        )?;
        let after: i64 = tx.query_one("SELECT COALESCE(SUM(n), 0)::bigint FROM pending_counts", &[])?.get(0);
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(usize::try_from(before - after).unwrap_or(0))
    }

    /// Pending counts by level at `now` in `view`, as SQLite's `inbox::unread_summary`.
    /// The store's are the kept counts less what is snoozed now (few, found by their
    /// index); a user's are counted, as each sees a part of the inbox.
    pub(crate) fn unread_summary_in(&self, view: View<'_>, now: Millis) -> Result<UnreadSummary, StoreError> {
        let mut conn = self.conn();
        let rows = match view {
            View::Store => {
                let stmt = conn.prepare(&format!(
                    "SELECT level, SUM(n)::bigint FROM (
                        SELECT level, n FROM pending_counts WHERE n > 0
                        UNION ALL
                        SELECT level, -COUNT(*) FROM notifications
                         WHERE snoozed_until > $1 AND silenced_by IS NULL AND resolved_at IS NULL AND {}
                         GROUP BY level) c
                     GROUP BY level",
                    pending()
                ))?;
                conn.client.query(&stmt, &[&now])?
            }
            // The user's counts (kept by the triggers of schema 7), less what is snoozed now.
            View::User(user) => {
                let stmt = conn.prepare(&format!(
                    "SELECT level, SUM(n)::bigint FROM (
                        SELECT level, n FROM user_pending_counts WHERE user_name = $1 AND n <> 0
                        UNION ALL
                        SELECT level, -COUNT(*) FROM notifications
                         WHERE snoozed_until > $2 AND silenced_by IS NULL AND resolved_at IS NULL AND {VISIBLE} AND {USER_PENDING}
                         GROUP BY level) c
                     GROUP BY level"
                ))?;
                conn.client.query(&stmt, &[&user, &now])?
            }
        };
        Ok(UnreadSummary::from_counts(rows.iter().map(|r| (r.get(0), r.get(1)))))
    }

    pub(crate) fn expire(&self, now: Millis) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])?;
        let n = tx.execute("DELETE FROM notifications WHERE expires_at IS NOT NULL AND expires_at <= $1", &[&now])?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// The columns of new rows, as arrays for one `unnest`.
#[derive(Default)]
struct Columns {
    id: Vec<String>,
    level: Vec<i64>,
    title: Vec<String>,
    body: Vec<String>,
    run_id: Vec<Option<String>>,
    source: Vec<String>,
    dedupe_key: Vec<Option<String>>,
    event_id: Vec<Option<String>>,
    repeat_count: Vec<i64>,
    addressed: Vec<bool>,
    silenced_by: Vec<Option<String>>,
    group_key: Vec<Option<String>>,
    snoozed_until: Vec<Option<Millis>>,
    snooze_state: Vec<Option<String>>,
    /// (notification id, user, host) of each recipient.
    audience: (Vec<String>, Vec<String>, Vec<String>),
}

impl Columns {
    fn push(&mut self, id: &str, level: Level, n: &NewNotification, arrival: &crate::noise::Arrival) {
        self.silenced_by.push(arrival.silenced_by.clone());
        self.group_key.push(arrival.group_key.clone());
        self.snoozed_until.push(arrival.snoozed_until);
        self.snooze_state.push(arrival.snooze_state.clone());
        self.id.push(id.to_string());
        self.level.push(level.number());
        self.title.push(n.title.clone());
        self.body.push(n.body.clone());
        self.run_id.push(n.run_id.clone());
        self.source.push(n.source.clone());
        self.dedupe_key.push(n.dedupe_key.clone());
        self.event_id.push(n.event_id.clone());
        self.repeat_count.push(n.repeat_count);
        self.addressed.push(!n.audience.is_empty());
        for r in &n.audience {
            self.audience.0.push(id.to_string());
            self.audience.1.push(r.user.clone());
            self.audience.2.push(r.host.clone());
        }
    }
}
