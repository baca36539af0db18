//! The inbox: notifications kept until acknowledged or expired — insert, list with filters
//! and cursor paging, show, acknowledge, unread summary, expiry.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::event_ids::Tail;
use crate::store::{Store, StoreError};
use crate::Level;

/// One inbox item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Notification {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub level: Level,
    pub title: String,
    pub body: String,
    pub run_id: Option<String>,
    pub source: String,
    pub dedupe_key: Option<String>,
    pub event_id: Option<String>,
    /// How many more identical messages were folded into this one.
    pub repeat_count: i64,
    pub acked_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// The remote it came from (its name in `runwatch remotes`); `None` for this instance's own.
    #[serde(default)]
    pub origin: Option<String>,
    /// Hidden from the badge and the pending list until then (the largest time: until its
    /// run's state changes); see [`crate::noise`].
    #[serde(default)]
    pub snoozed_until: Option<i64>,
    /// The silence that matched it on arrival: stored, never popped up nor forwarded.
    #[serde(default)]
    pub silenced_by: Option<String>,
    /// When its alarm ended by itself (a stuck run checked in again).
    #[serde(default)]
    pub resolved_at: Option<i64>,
    /// Notifications with one group key arriving together make one popup and one message.
    #[serde(default)]
    pub group_key: Option<String>,
}

/// A notification to store; the inbox assigns id and times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewNotification {
    pub level: Option<Level>,
    pub title: String,
    pub body: String,
    pub run_id: Option<String>,
    pub source: String,
    /// One notification per event, across restarts: a second insert with the key is a no-op.
    pub dedupe_key: Option<String>,
    /// The client's id for its event: ingesting it twice stores it once (checked by
    /// [`Store::ingest_batch`], not by [`insert`]).
    pub event_id: Option<String>,
    pub repeat_count: i64,
    /// Who it is for (a team store): empty for everyone.
    pub audience: Vec<crate::users::Recipient>,
}

impl NewNotification {
    /// The notification as a backend stores it: under `id` at `now`, pending, with its fate
    /// under the noise rules.
    pub(crate) fn stored(
        &self,
        id: String,
        level: Level,
        now: Millis,
        expires_at: Option<Millis>,
        arrival: &crate::noise::Arrival,
    ) -> Notification {
        Notification {
            id,
            created_at: now,
            updated_at: now,
            level,
            title: self.title.clone(),
            body: self.body.clone(),
            run_id: self.run_id.clone(),
            source: self.source.clone(),
            dedupe_key: self.dedupe_key.clone(),
            event_id: self.event_id.clone(),
            repeat_count: self.repeat_count,
            acked_at: None,
            expires_at,
            origin: None,
            snoozed_until: arrival.snoozed_until,
            silenced_by: arrival.silenced_by.clone(),
            resolved_at: None,
            group_key: arrival.group_key.clone(),
        }
    }
}

/// Which notifications to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum AckState {
    /// Not yet acknowledged (the default view).
    #[default]
    Pending,
    Acked,
    All,
    /// Unacknowledged and snoozed now.
    Snoozed,
    /// Silenced on arrival (acknowledged or not).
    Silenced,
    /// Resolved by themselves (a stuck run that checked in again).
    Resolved,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only notifications at or above this level.
    pub min_level: Option<Level>,
    pub run_id: Option<String>,
    pub state: AckState,
    /// Items older than this cursor (from a previous page's `next_cursor`).
    pub cursor: Option<String>,
    /// Page size (default 50, at most 1000).
    pub limit: Option<usize>,
    /// Only from this followed server, or [`LOCAL_ORIGIN`] for this instance's own.
    pub origin: Option<String>,
    /// The time snoozes are compared with (default: the system clock's now).
    pub now: Option<Millis>,
}

/// The origin filter's name for this instance's own notifications (no remote has it).
pub const LOCAL_ORIGIN: &str = "local";

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Page {
    pub items: Vec<Notification>,
    /// Pass as `cursor` to get the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Unread (pending) counts by level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct UnreadSummary {
    pub total: i64,
    pub debug: i64,
    pub info: i64,
    pub warning: i64,
    pub error: i64,
    pub critical: i64,
    /// The most severe pending level, if any: what the tray badge is coloured by.
    pub highest: Option<Level>,
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New(Box<Notification>),
    /// The dedupe key or event id was already stored: nothing was written. Holds that id.
    Duplicate(String),
}

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;

/// One more occurrence of what notification `id` says (a burst folded into it): its
/// repeat count goes up; it stays pending.
pub fn count_repeat(conn: &Connection, id: &str, now: Millis) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE notifications SET repeat_count = repeat_count + 1, updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// The newest seq an "acknowledge all" reached (schema 5): rows up to it are acknowledged.
macro_rules! acked_upto {
    () => {
        "(SELECT COALESCE(MAX(upto), 0) FROM ack_alls)"
    };
}

/// When the first "acknowledge all" that reached a row of `notifications` ran (NULL if none).
macro_rules! reached_at {
    () => {
        "(SELECT at FROM ack_alls WHERE upto >= notifications.seq ORDER BY upto LIMIT 1)"
    };
}

/// Unacknowledged: neither acknowledged on its own nor reached by an "acknowledge all".
pub(crate) const PENDING: &str = concat!("acked_at IS NULL AND seq > ", acked_upto!());

/// Among unacknowledged ones, those pending now (`?6`): not silenced, resolved or snoozed.
const SHOWN: &str = "silenced_by IS NULL AND resolved_at IS NULL AND (snoozed_until IS NULL OR snoozed_until <= ?6)";

/// A notification as stored, with the acknowledgement an "acknowledge all" gave it read
/// into `acked_at` and `updated_at`.
pub(crate) const COLUMNS: &str = concat!(
    "id, created_at, ",
    "CASE WHEN acked_at IS NULL THEN COALESCE(max(updated_at, ",
    reached_at!(),
    "), updated_at) ELSE updated_at END, ",
    "level, title, body, run_id, source, dedupe_key, event_id, repeat_count, ",
    "COALESCE(acked_at, ",
    reached_at!(),
    "), ",
    "expires_at, origin, snoozed_until, silenced_by, resolved_at, group_key"
);

/// Stores a notification (inside the caller's transaction, so it commits with the state
/// change that caused it), once per dedupe key. Event ids are not checked here: events go
/// through [`Store::ingest_batch`] or [`Store::insert_notification`].
pub fn insert(conn: &Connection, n: &NewNotification, now: Millis, expires_at: Option<Millis>) -> Result<Inserted, StoreError> {
    let mut inserts = Inserts::new(None);
    let inserted = inserts.insert(conn, n, now, expires_at)?;
    inserts.finish(conn)?;
    Ok(inserted)
}

/// The inserts of one transaction. What they add up to is written once, by
/// [`Inserts::finish`] before the commit: pending counts by level (not a trigger, see
/// migrations/0004_event_ids.sql); and the notifiers that get deliveries are read once.
pub(crate) struct Inserts<'t> {
    /// Event ids to store at most once (see [`crate::event_ids`]), caught up in this
    /// transaction; `None` when the caller has none.
    tail: Option<&'t mut Tail>,
    /// New pending notifications by level, in [`Level::ALL`] order.
    pending: [i64; 5],
    /// Silences, grouping and the notifiers' levels and rules, read at the first insert.
    rules: Option<crate::noise::Rules>,
}

impl<'t> Inserts<'t> {
    pub(crate) fn new(tail: Option<&'t mut Tail>) -> Self {
        Self { tail, pending: [0; 5], rules: None }
    }

    /// Stores `n` unless its dedupe key or event id is stored already.
    pub(crate) fn insert(
        &mut self,
        tx: &Connection,
        n: &NewNotification,
        now: Millis,
        expires_at: Option<Millis>,
    ) -> Result<Inserted, StoreError> {
        if let (Some(tail), Some(event_id)) = (self.tail.as_deref(), n.event_id.as_deref()) {
            if let Some(existing) = tail.find(tx, event_id)? {
                return Ok(Inserted::Duplicate(existing));
            }
        }
        if let Some(existing) = find_duplicate(tx, n)? {
            return Ok(Inserted::Duplicate(existing));
        }
        let level = n.level.unwrap_or(Level::Info);
        if self.rules.is_none() {
            self.rules = Some(crate::noise::Rules::load(tx, now)?);
        }
        let rules = self.rules.as_mut().expect("loaded above");
        let arrival = rules.arrive(tx, n, level, now)?;
        let rules = &*rules;
        // Time-ordered (UUIDv7): new ids go to the end of the id index instead of a random
        // page of it, which at a thousand notifications a batch is most of ingest's cost.
        let id = uuid::Uuid::now_v7().to_string();
        // Cached: an ingest batch runs this a thousand times in one transaction.
        tx.prepare_cached(
            "INSERT INTO notifications (id, created_at, updated_at, level, title, body, run_id, source, dedupe_key,
                                        event_id, repeat_count, expires_at, silenced_by, group_key, snoozed_until, snooze_state)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            id,
            now,
            level.number(),
            n.title,
            n.body,
            n.run_id,
            n.source,
            n.dedupe_key,
            n.event_id,
            n.repeat_count,
            expires_at,
            arrival.silenced_by,
            arrival.group_key,
            arrival.snoozed_until,
            arrival.snooze_state
        ])?;
        if let Some(tail) = self.tail.as_deref_mut() {
            tail.inserted(tx.last_insert_rowid(), n.event_id.as_deref());
        }
        if arrival.silenced_by.is_none() {
            self.pending[Level::ALL.iter().position(|l| *l == level).unwrap_or(0)] += 1;
        }
        // The outbox: one delivery per enabled notifier at or below this level (none when
        // silenced; later for a notifier's delay or a group's window), in the same
        // transaction, so a crash can never store a notification without its deliveries.
        for (notifier_id, at) in rules.deliveries(tx, level, &arrival, now)? {
            crate::deliveries::enqueue(tx, &id, notifier_id, at, now)?;
        }
        if let Some(run) = crate::noise::recovers(n) {
            crate::noise::recover(tx, run, &id, now)?;
        }
        Ok(Inserted::New(Box::new(n.stored(id, level, now, expires_at, &arrival))))
    }

    /// Writes the pending counts; call before the commit.
    pub(crate) fn finish(self, tx: &Connection) -> Result<(), StoreError> {
        for (level, added) in Level::ALL.iter().zip(self.pending) {
            if added > 0 {
                tx.prepare_cached("UPDATE pending_counts SET n = n + ?2 WHERE level = ?1")?.execute(params![level.number(), added])?;
            }
        }
        Ok(())
    }
}

fn find_duplicate(conn: &Connection, n: &NewNotification) -> Result<Option<String>, StoreError> {
    let Some(key) = &n.dedupe_key else { return Ok(None) };
    Ok(conn.prepare_cached("SELECT id FROM notifications WHERE dedupe_key = ?1")?.query_row([key], |r| r.get(0)).optional()?)
}

/// A page of notifications, newest first.
pub fn list(conn: &Connection, filter: &ListFilter) -> Result<Page, StoreError> {
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let cursor: Option<i64> = match &filter.cursor {
        Some(c) => Some(c.parse().map_err(|_| StoreError::BadCursor(c.clone()))?),
        None => None,
    };
    let mut sql = format!("SELECT seq, {COLUMNS} FROM notifications WHERE 1 = 1");
    match filter.state {
        AckState::Pending => sql.push_str(&format!(" AND {PENDING} AND {SHOWN}")),
        AckState::Acked => sql.push_str(&format!(" AND NOT ({PENDING}) AND ?6 IS NOT NULL")),
        AckState::All => sql.push_str(" AND ?6 IS NOT NULL"),
        AckState::Snoozed => sql.push_str(&format!(" AND {PENDING} AND snoozed_until > ?6")),
        AckState::Silenced => sql.push_str(" AND silenced_by IS NOT NULL AND ?6 IS NOT NULL"),
        AckState::Resolved => sql.push_str(" AND resolved_at IS NOT NULL AND ?6 IS NOT NULL"),
    }
    if filter.min_level.is_some() {
        sql.push_str(" AND level >= ?1");
    }
    if filter.run_id.is_some() {
        sql.push_str(" AND run_id = ?2");
    }
    if cursor.is_some() {
        sql.push_str(" AND seq < ?3");
    }
    match filter.origin.as_deref() {
        Some(LOCAL_ORIGIN) => sql.push_str(" AND origin IS NULL AND ?5 IS NOT NULL"),
        Some(_) => sql.push_str(" AND origin = ?5"),
        // Named all the same: SQLite counts parameters up to the highest one used.
        None => sql.push_str(" AND ?5 IS NULL"),
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?4");
    let mut stmt = conn.prepare_cached(&sql)?;
    // Unused numbered parameters are allowed by SQLite only when bound; bind all six.
    let now = filter.now.unwrap_or_else(|| crate::clock::Clock::now(&crate::clock::SystemClock));
    let rows = stmt
        .query_map(params![filter.min_level.map(Level::number), filter.run_id, cursor, (limit + 1) as i64, filter.origin, now], |r| {
            Ok((r.get::<_, i64>(0)?, from_row(r, 1)?))
        })?;
    let mut items = Vec::with_capacity(limit + 1);
    let mut last_seq = None;
    for row in rows {
        let (seq, n) = row?;
        if items.len() == limit {
            return Ok(Page { items, next_cursor: last_seq.map(|s: i64| s.to_string()) });
        }
        last_seq = Some(seq);
        items.push(n);
    }
    Ok(Page { items, next_cursor: None })
}

/// One notification by id.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Notification>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM notifications WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], |r| from_row(r, 0)).optional()?)
}

/// Ids equal to `prefix` or starting with it, in id order, at most `limit` of them: how
/// people name a notification by the first characters of its UUID. Ids are lowercase
/// UUIDs, so the prefix is matched case-insensitively; an empty prefix matches nothing.
pub fn ids_with_prefix(conn: &Connection, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
    prefixed_ids(conn, "notifications", &prefix.to_ascii_lowercase(), limit)
}

/// Notification ids that end with `suffix`, at most `limit`; an empty suffix matches
/// nothing. Short ids are ends of ids (the random part of a UUIDv7, whose start is its
/// creation time and shared by every notification of the same minute); this reads every id.
pub fn ids_with_suffix(conn: &Connection, suffix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
    if suffix.is_empty() {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached("SELECT id FROM notifications WHERE substr(id, -length(?1)) = ?1 ORDER BY id LIMIT ?2")?;
    let ids = stmt.query_map(params![suffix.to_ascii_lowercase(), limit as i64], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(ids)
}

/// How many notification ids end with each of `suffixes`, all of one length, in one pass.
pub fn suffix_counts(
    conn: &Connection,
    suffixes: &std::collections::HashSet<String>,
) -> Result<std::collections::HashMap<String, usize>, StoreError> {
    let mut counts = std::collections::HashMap::new();
    let Some(len) = suffixes.iter().next().map(String::len) else { return Ok(counts) };
    let mut stmt = conn.prepare_cached("SELECT substr(id, -?1) FROM notifications")?;
    let mut rows = stmt.query([len as i64])?;
    while let Some(row) = rows.next()? {
        let end: String = row.get(0)?;
        if suffixes.contains(&end) {
            *counts.entry(end).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// `ids_with_prefix` for any table keyed by a text `id`. A range on the id's index rather
/// than LIKE, whose wildcards `_` and `%` are legal in ids and which skips the index.
pub(crate) fn prefixed_ids(conn: &Connection, table: &str, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
    if prefix.is_empty() {
        return Ok(Vec::new());
    }
    // U+10FFFF sorts after every character in SQLite's byte-wise (BINARY) comparison.
    let upper = format!("{prefix}\u{10FFFF}");
    let sql = format!("SELECT id FROM {table} WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3");
    let mut stmt = conn.prepare_cached(&sql)?;
    let ids = stmt.query_map(params![prefix, upper, limit as i64], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Notifications stored after `after_seq` at or above `min_level`, oldest first, with their
/// sequence numbers: how a follower (the desktop popups) sees what is new.
pub fn since(conn: &Connection, after_seq: i64, min_level: Level, limit: usize) -> Result<Vec<(i64, Notification)>, StoreError> {
    let sql = format!("SELECT seq, {COLUMNS} FROM notifications WHERE seq > ?1 AND level >= ?2 ORDER BY seq LIMIT ?3");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![after_seq, min_level.number(), limit as i64], |r| Ok((r.get(0)?, from_row(r, 1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The newest sequence number (0 for an empty inbox).
pub fn last_seq(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM notifications", [], |r| r.get(0))?)
}

/// Acknowledges these notifications; returns how many were pending before. The
/// acknowledgement of one of this instance's own goes to the change feed its followers read
/// (`ack_log`); one of a remote's waits to be sent to its origin (`remote_acks`).
pub fn ack(conn: &Connection, ids: &[String], now: Millis) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE notifications SET acked_at = ?2, updated_at = ?2 WHERE id = ?1 AND {PENDING} RETURNING origin, remote_id"
    ))?;
    let mut n = 0;
    for id in ids {
        let acked: Option<(Option<String>, Option<String>)> =
            stmt.query_row(params![id, now], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        let Some((origin, remote_id)) = acked else { continue };
        n += 1;
        match (origin, remote_id) {
            (Some(origin), Some(remote_id)) => {
                // Only for a remote still followed (a removed one would keep it for ever).
                conn.prepare_cached(
                    "INSERT INTO remote_acks (origin, remote_id, at) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM remotes WHERE name = ?1)",
                )?
                .execute(params![origin, remote_id, now])?;
            }
            _ => {
                conn.prepare_cached("INSERT INTO ack_log (notification_id, at) VALUES (?1, ?2)")?.execute(params![id, now])?;
            }
        }
    }
    Ok(n)
}

/// Acknowledges every pending notification; returns how many. Writes a few small rows
/// however many there are (see migrations/0005_ack_all.sql): and, for each remote, one
/// "acknowledge up to" what we have of it, to send to it (migrations/0007_remotes.sql).
pub fn ack_all(conn: &Connection, now: Millis) -> Result<usize, StoreError> {
    let pending: i64 = conn.query_row("SELECT COALESCE(SUM(n), 0) FROM pending_counts", [], |r| r.get(0))?;
    if pending == 0 {
        return Ok(0);
    }
    conn.execute(
        concat!("INSERT INTO ack_alls (upto, at) SELECT m, ?1 FROM (SELECT MAX(seq) AS m FROM notifications) WHERE m > ", acked_upto!()),
        [now],
    )?;
    conn.execute("UPDATE pending_counts SET n = 0", [])?;
    conn.execute(
        "INSERT INTO remote_acks (origin, upto, at)
         SELECT origin, upto, ?1 FROM (SELECT name AS origin,
                                              (SELECT MAX(remote_seq) FROM notifications WHERE origin = remotes.name) AS upto
                                         FROM remotes)
          WHERE upto IS NOT NULL",
        [now],
    )?;
    Ok(usize::try_from(pending).unwrap_or(0))
}

/// Acknowledges every pending notification with seq up to `upto` (a follower's "acknowledge
/// all": what it has of this inbox, not what came after); returns how many. One row in
/// `ack_alls`; the pending counts are recounted over the rows after `upto` only.
pub fn ack_upto(conn: &Connection, upto: i64, now: Millis) -> Result<usize, StoreError> {
    let before: i64 = conn.query_row("SELECT COALESCE(SUM(n), 0) FROM pending_counts", [], |r| r.get(0))?;
    let upto = upto.min(last_seq(conn)?);
    let inserted = conn.execute(concat!("INSERT INTO ack_alls (upto, at) SELECT ?1, ?2 WHERE ?1 > ", acked_upto!()), params![upto, now])?;
    if inserted == 0 {
        return Ok(0);
    }
    conn.execute(
        "UPDATE pending_counts SET n = (SELECT COUNT(*) FROM notifications
                                         WHERE seq > ?1 AND acked_at IS NULL AND silenced_by IS NULL AND resolved_at IS NULL
                                           AND level = pending_counts.level)",
        [upto],
    )?;
    let after: i64 = conn.query_row("SELECT COALESCE(SUM(n), 0) FROM pending_counts", [], |r| r.get(0))?;
    Ok(usize::try_from(before - after).unwrap_or(0))
}

/// Pending counts by level: five rows kept with every insert, acknowledgement and deletion
/// (migrations 0003–0005, 0008), less the notifications snoozed at `now` (few, and found
/// by their own index), not a count.
pub fn unread_summary(conn: &Connection, now: Millis) -> Result<UnreadSummary, StoreError> {
    let mut counts: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    let mut stmt = conn.prepare_cached("SELECT level, n FROM pending_counts WHERE n > 0")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
        let (level, n) = row?;
        counts.insert(level, n);
    }
    if !counts.is_empty() {
        let mut snoozed = conn.prepare_cached(&format!(
            "SELECT level, COUNT(*) FROM notifications WHERE snoozed_until > ?1 AND silenced_by IS NULL AND resolved_at IS NULL AND {PENDING}
             GROUP BY level"
        ))?;
        for row in snoozed.query_map([now], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
            let (level, n) = row?;
            *counts.entry(level).or_default() -= n;
        }
    }
    Ok(UnreadSummary::from_counts(counts))
}

impl UnreadSummary {
    /// The summary of pending counts by level number (what is not a positive count of a
    /// known level is left out).
    pub(crate) fn from_counts(counts: impl IntoIterator<Item = (i64, i64)>) -> UnreadSummary {
        let mut s = UnreadSummary::default();
        for (level, count) in counts.into_iter().filter(|(_, n)| *n > 0) {
            let Some(level) = Level::from_number(level) else {
                continue;
            };
            *match level {
                Level::Debug => &mut s.debug,
                Level::Info => &mut s.info,
                Level::Warning => &mut s.warning,
                Level::Error => &mut s.error,
                Level::Critical => &mut s.critical,
            } += count;
            s.total += count;
            s.highest = s.highest.max(Some(level));
        }
        s
    }
}

/// Deletes notifications whose expiry time has passed; returns how many.
pub fn expire(conn: &Connection, now: Millis) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM notifications WHERE expires_at IS NOT NULL AND expires_at <= ?1", [now])?)
}

pub(crate) fn from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Notification> {
    let level: i64 = r.get(at + 3)?;
    Ok(Notification {
        id: r.get(at)?,
        created_at: r.get(at + 1)?,
        updated_at: r.get(at + 2)?,
        level: Level::from_number(level).unwrap_or(Level::Debug),
        title: r.get(at + 4)?,
        body: r.get(at + 5)?,
        run_id: r.get(at + 6)?,
        source: r.get(at + 7)?,
        dedupe_key: r.get(at + 8)?,
        event_id: r.get(at + 9)?,
        repeat_count: r.get(at + 10)?,
        acked_at: r.get(at + 11)?,
        expires_at: r.get(at + 12)?,
        origin: r.get(at + 13)?,
        snoozed_until: r.get(at + 14)?,
        silenced_by: r.get(at + 15)?,
        resolved_at: r.get(at + 16)?,
        group_key: r.get(at + 17)?,
    })
}

/// The inbox operations on an open store, each in its own transaction.
impl Store {
    /// One more occurrence folded into notification `id` (see [`count_repeat`]).
    pub fn count_repeat(&mut self, id: &str, now: Millis) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.count_repeat(id, now);
        }
        self.write(|tx| count_repeat(tx, id, now))
    }

    pub fn insert_notification(&mut self, n: &NewNotification, now: Millis) -> Result<Inserted, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.insert_notification(n, now);
        }
        let expires_at = self.expiry()?.map(|e| now.saturating_add(e));
        self.write_tracked(|tx, inserts| inserts.insert(tx, n, now, expires_at))
    }

    pub fn list_notifications(&self, filter: &ListFilter) -> Result<Page, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.list_notifications(filter);
        }
        list(self.conn(), filter)
    }

    pub fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.notification(id);
        }
        get(self.conn(), id)
    }

    pub fn ack(&mut self, ids: &[String], now: Millis) -> Result<usize, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.ack(ids, now);
        }
        self.write(|tx| ack(tx, ids, now))
    }

    pub fn ack_all(&mut self, now: Millis) -> Result<usize, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.ack_all(now);
        }
        self.write(|tx| ack_all(tx, now))
    }

    pub fn ack_upto(&mut self, upto: i64, now: Millis) -> Result<usize, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.ack_upto(upto, now);
        }
        self.write(|tx| ack_upto(tx, upto, now))
    }

    /// The unread summary now, by the system clock.
    pub fn unread_summary(&self) -> Result<UnreadSummary, StoreError> {
        self.unread_summary_at(crate::clock::Clock::now(&crate::clock::SystemClock))
    }

    /// The unread summary at `now` (snoozes end with time).
    pub fn unread_summary_at(&self, now: Millis) -> Result<UnreadSummary, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.unread_summary_in(crate::pg::View::Store, now);
        }
        unread_summary(self.conn(), now)
    }

    /// One statement, run on its own rather than in [`Store::write`]'s transaction: as its
    /// own (autocommit) transaction SQLite needs no statement journal for it, which for many
    /// rows would be a second copy of every page it changes. It still takes the write lock
    /// up front (a DELETE's first step) and waits for it like `write`.
    pub fn expire(&mut self, now: Millis) -> Result<usize, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.expire(now);
        }
        expire(self.conn(), now)
    }

    /// Notification ids equal to `prefix` or starting with it (see [`ids_with_prefix`]).
    pub fn notification_ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.ids_with_prefix(prefix, limit);
        }
        ids_with_prefix(self.conn(), prefix, limit)
    }

    /// Notification ids ending with `suffix` (see [`ids_with_suffix`]).
    pub fn notification_ids_with_suffix(&self, suffix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.ids_with_suffix(suffix, limit);
        }
        ids_with_suffix(self.conn(), suffix, limit)
    }

    /// How many notification ids end with each of `suffixes` (see [`suffix_counts`]).
    pub fn notification_suffix_counts(
        &self,
        suffixes: &std::collections::HashSet<String>,
    ) -> Result<std::collections::HashMap<String, usize>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.suffix_counts(suffixes);
        }
        suffix_counts(self.conn(), suffixes)
    }

    /// Notifications after `after_seq` (see [`since`]).
    pub fn notifications_since(&self, after_seq: i64, min_level: Level, limit: usize) -> Result<Vec<(i64, Notification)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.since(after_seq, min_level, limit);
        }
        since(self.conn(), after_seq, min_level, limit)
    }

    /// The newest sequence number (see [`last_seq`]).
    pub fn last_seq(&self) -> Result<i64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.last_seq();
        }
        last_seq(self.conn())
    }

    /// How long notifications are kept (setting `expiry_days`); `None` = forever.
    pub fn expiry(&self) -> Result<Option<Millis>, StoreError> {
        crate::settings::expiry(self)
    }
}
