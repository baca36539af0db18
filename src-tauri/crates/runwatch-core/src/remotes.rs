//! Remotes: other Runwatch servers this instance follows, and the change feed it is
//! followed by. A follower asks a server for [`changes`] after its [`Cursor`] and
//! [`apply`]s them to its own inbox, where each remote notification keeps its origin and
//! its id on the origin; its own acknowledgements of them wait in `remote_acks` until
//! they are sent (see migrations/0007_remotes.sql).

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::inbox::{from_row, COLUMNS, PENDING};
use crate::store::{Store, StoreError};
use crate::{Level, Notification};

/// How many notifications one page of changes holds at most.
pub const MAX_CHANGES: usize = 1000;

/// Where a follower stands in a server's changes: the last notification seq, `ack_log`
/// seq and `ack_alls` upto it has seen. Written `N.A.U`; opaque to clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub seq: i64,
    pub ack: i64,
    pub all: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.seq, self.ack, self.all)
    }
}

impl Cursor {
    /// The further of two cursors, part by part: a page applied again (a retry, or a page
    /// another daemon fetched too) never takes a stored cursor back.
    pub fn furthest(self, other: Cursor) -> Cursor {
        Cursor { seq: self.seq.max(other.seq), ack: self.ack.max(other.ack), all: self.all.max(other.all) }
    }
}

impl std::str::FromStr for Cursor {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadCursor(s.to_string());
        let mut parts = s.split('.').map(|p| p.parse::<i64>().map_err(|_| bad()));
        let cursor =
            Cursor { seq: parts.next().ok_or_else(bad)??, ack: parts.next().ok_or_else(bad)??, all: parts.next().ok_or_else(bad)?? };
        if parts.next().is_some() || cursor.seq < 0 || cursor.ack < 0 || cursor.all < 0 {
            return Err(bad());
        }
        Ok(cursor)
    }
}

/// A notification in the change feed, with its seq on this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct ChangedNotification {
    pub seq: i64,
    pub notification: Notification,
}

/// One notification acknowledged (by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct AckChange {
    pub id: String,
    pub at: i64,
}

/// "Acknowledge all": every notification with seq up to `upto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct AckAllChange {
    pub upto: i64,
    pub at: i64,
}

/// What changed after a cursor: new notifications (as they are now, acknowledged or not),
/// acknowledgements, "acknowledge all"s. Pass `cursor` to get what comes next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Changes {
    pub notifications: Vec<ChangedNotification>,
    pub acks: Vec<AckChange>,
    pub ack_alls: Vec<AckAllChange>,
    pub cursor: String,
    /// More notifications wait: ask again at once.
    pub more: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.notifications.is_empty() && self.acks.is_empty() && self.ack_alls.is_empty()
    }
}

/// The changes after `after`, at most `limit` notifications (and every acknowledgement),
/// read in one transaction so that nothing falls between two pages.
pub fn changes(conn: &Connection, after: Cursor, limit: usize) -> Result<Changes, StoreError> {
    let limit = limit.clamp(1, MAX_CHANGES);
    let tx = conn.unchecked_transaction()?;
    // This instance's own notifications only: those it has from its remotes are theirs to
    // tell (two servers following each other would otherwise pass them back and forth).
    let sql = format!("SELECT seq, {COLUMNS} FROM notifications WHERE seq > ?1 AND origin IS NULL ORDER BY seq LIMIT ?2");
    let mut notifications: Vec<ChangedNotification> = tx
        .prepare_cached(&sql)?
        .query_map(params![after.seq, (limit + 1) as i64], |r| Ok(ChangedNotification { seq: r.get(0)?, notification: from_row(r, 1)? }))?
        .collect::<Result<_, _>>()?;
    let more = notifications.len() > limit;
    notifications.truncate(limit);
    let mut next = after;
    next.seq = notifications.last().map_or(after.seq, |n| n.seq);
    if !more {
        // Nothing after the page: later inserts start after the newest seq ever given out.
        next.seq = next.seq.max(tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM notifications", [], |r| r.get(0))?);
    }
    let mut acks = Vec::new();
    for row in tx
        .prepare_cached("SELECT seq, notification_id, at FROM ack_log WHERE seq > ?1 ORDER BY seq")?
        .query_map([after.ack], |r| Ok((r.get::<_, i64>(0)?, AckChange { id: r.get(1)?, at: r.get(2)? })))?
    {
        let (seq, ack) = row?;
        next.ack = seq;
        acks.push(ack);
    }
    let mut ack_alls = Vec::new();
    for row in tx
        .prepare_cached("SELECT upto, at FROM ack_alls WHERE upto > ?1 ORDER BY upto")?
        .query_map([after.all], |r| Ok(AckAllChange { upto: r.get(0)?, at: r.get(1)? }))?
    {
        let a = row?;
        next.all = a.upto;
        ack_alls.push(a);
    }
    tx.finish()?;
    Ok(Changes { notifications, acks, ack_alls, cursor: next.to_string(), more })
}

/// Whether a remote is followed, and how that goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[serde(rename_all = "lowercase")]
#[ts(export)]
pub enum RemoteState {
    /// Enabled, not reached yet.
    Connecting,
    Connected,
    /// The last attempt failed (see `last_error` and `unreachable_since`).
    Unreachable,
    Disabled,
}

impl RemoteState {
    /// As stored: whether the remote is enabled, and its `state` column.
    pub(crate) fn stored(enabled: bool, state: &str) -> RemoteState {
        match (enabled, state) {
            (false, _) => RemoteState::Disabled,
            (true, "connected") => RemoteState::Connected,
            (true, "unreachable") => RemoteState::Unreachable,
            _ => RemoteState::Connecting,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RemoteState::Connecting => "connecting",
            RemoteState::Connected => "connected",
            RemoteState::Unreachable => "unreachable",
            RemoteState::Disabled => "disabled",
        }
    }
}

/// A remote as lists show it: everything but its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Remote {
    pub name: String,
    pub url: String,
    pub enabled: bool,
    /// Its notifications also go to this instance's notifiers.
    pub deliver: bool,
    pub state: RemoteState,
    pub unreachable_since: Option<i64>,
    pub last_error: Option<String>,
    pub last_sync: Option<i64>,
    /// Its notifications pending here.
    pub pending: i64,
    /// Acknowledgements made here that wait to be sent to it.
    pub acks_waiting: i64,
    pub created_at: i64,
}

/// What a follower needs to reach a remote (the token is in it: never print it).
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteAccess {
    pub name: String,
    pub url: String,
    pub token: String,
    pub ca_file: Option<String>,
    pub deliver: bool,
    pub cursor: Cursor,
}

impl std::fmt::Debug for RemoteAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAccess").field("name", &self.name).field("url", &self.url).field("token", &"****").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("bad remote name '{0}': use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit; not 'local')")]
    BadName(String),
    #[error("there is already a remote named '{0}'; remove it first or pick another name")]
    Exists(String),
    #[error("there is no remote named '{0}'; see 'runwatch remotes list'")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for RemoteError {
    fn from(e: rusqlite::Error) -> Self {
        RemoteError::Store(e.into())
    }
}

/// Checks a remote's name: it is shown as the origin of its notifications.
pub fn check_name(name: &str) -> Result<(), RemoteError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.eq_ignore_ascii_case(crate::inbox::LOCAL_ORIGIN);
    if ok {
        Ok(())
    } else {
        Err(RemoteError::BadName(name.to_string()))
    }
}

/// A remote to add (its URL already checked by the caller).
#[derive(Clone)]
pub struct NewRemote {
    pub name: String,
    pub url: String,
    pub token: String,
    pub ca_file: Option<String>,
    pub deliver: bool,
}

const REMOTE_COLUMNS: &str = "name, url, enabled, deliver, state, unreachable_since, last_error, last_sync, created_at,
     (SELECT COUNT(*) FROM notifications WHERE origin = remotes.name AND acked_at IS NULL
         AND seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)),
     (SELECT COUNT(*) FROM remote_acks WHERE origin = remotes.name)";

fn remote_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Remote> {
    let enabled: bool = r.get(2)?;
    let state: String = r.get(4)?;
    Ok(Remote {
        name: r.get(0)?,
        url: r.get(1)?,
        enabled,
        deliver: r.get(3)?,
        state: RemoteState::stored(enabled, &state),
        unreachable_since: r.get(5)?,
        last_error: r.get(6)?,
        last_sync: r.get(7)?,
        created_at: r.get(8)?,
        pending: r.get(9)?,
        acks_waiting: r.get(10)?,
    })
}

/// A queued acknowledgement for a remote: one id, or everything up to a seq of its.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAck {
    pub seq: i64,
    pub remote_id: Option<String>,
    pub upto: Option<i64>,
}

/// What [`Store::apply_changes`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// New notifications stored pending (for popups).
    pub new_pending: Vec<Notification>,
    pub stored: usize,
    pub acked: usize,
}

impl Store {
    pub fn add_remote(&mut self, r: &NewRemote, now: Millis) -> Result<Remote, RemoteError> {
        check_name(&r.name)?;
        if let Some(pg) = self.pg() {
            if !pg.add_remote(r, now)? {
                return Err(RemoteError::Exists(r.name.clone()));
            }
            return self.remote(&r.name);
        }
        let added = self.write(|tx| {
            Ok(tx.execute(
                "INSERT OR IGNORE INTO remotes (name, url, token, ca_file, deliver, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![r.name, r.url, r.token, r.ca_file, r.deliver, now],
            )?)
        })?;
        if added == 0 {
            return Err(RemoteError::Exists(r.name.clone()));
        }
        self.remote(&r.name)
    }

    pub fn remotes(&self) -> Result<Vec<Remote>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.remotes();
        }
        let mut stmt = self.conn().prepare_cached(&format!("SELECT {REMOTE_COLUMNS} FROM remotes ORDER BY name"))?;
        let rows = stmt.query_map([], remote_from_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn remote(&self, name: &str) -> Result<Remote, RemoteError> {
        if let Some(pg) = self.pg() {
            return pg.remote(name)?.ok_or_else(|| RemoteError::NotFound(name.to_string()));
        }
        let sql = format!("SELECT {REMOTE_COLUMNS} FROM remotes WHERE name = ?1");
        self.conn().query_row(&sql, [name], remote_from_row).optional()?.ok_or_else(|| RemoteError::NotFound(name.to_string()))
    }

    /// Removes a remote and the acknowledgements waiting for it; its notifications stay, no
    /// longer tied to its seqs (a server added later under the same name has its own).
    pub fn remove_remote(&mut self, name: &str) -> Result<(), RemoteError> {
        if let Some(pg) = self.pg() {
            return if pg.remove_remote(name)? { Ok(()) } else { Err(RemoteError::NotFound(name.to_string())) };
        }
        let n = self.write(|tx| {
            tx.execute("DELETE FROM remote_acks WHERE origin = ?1", [name])?;
            tx.execute("UPDATE notifications SET remote_seq = NULL WHERE origin = ?1 AND remote_seq IS NOT NULL", [name])?;
            Ok(tx.execute("DELETE FROM remotes WHERE name = ?1", [name])?)
        })?;
        if n == 0 {
            return Err(RemoteError::NotFound(name.to_string()));
        }
        Ok(())
    }

    /// Enables or disables following a remote, and whether its notifications go to this
    /// instance's notifiers.
    pub fn set_remote(&mut self, name: &str, enabled: Option<bool>, deliver: Option<bool>, now: Millis) -> Result<Remote, RemoteError> {
        if let Some(pg) = self.pg() {
            if !pg.set_remote(name, enabled, deliver, now)? {
                return Err(RemoteError::NotFound(name.to_string()));
            }
            return self.remote(name);
        }
        let n = self.write(|tx| {
            Ok(tx.execute(
                "UPDATE remotes SET enabled = COALESCE(?2, enabled), deliver = COALESCE(?3, deliver), updated_at = ?4,
                        state = CASE WHEN ?2 = 1 AND enabled = 0 THEN 'connecting' ELSE state END,
                        unreachable_since = CASE WHEN ?2 = 1 AND enabled = 0 THEN NULL ELSE unreachable_since END
                  WHERE name = ?1",
                params![name, enabled, deliver, now],
            )?)
        })?;
        if n == 0 {
            return Err(RemoteError::NotFound(name.to_string()));
        }
        self.remote(name)
    }

    /// The enabled remotes and how to reach them.
    pub fn remotes_to_follow(&self) -> Result<Vec<RemoteAccess>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.remotes_to_follow();
        }
        let mut stmt =
            self.conn().prepare_cached("SELECT name, url, token, ca_file, deliver, cursor FROM remotes WHERE enabled = 1 ORDER BY name")?;
        let rows: Vec<(String, String, String, Option<String>, bool, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?.collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(name, url, token, ca_file, deliver, cursor)| {
                Ok(RemoteAccess { name, url, token, ca_file, deliver, cursor: cursor.parse()? })
            })
            .collect()
    }

    /// The changes after `after` (the server side of following).
    pub fn changes(&self, after: Cursor, limit: usize) -> Result<Changes, StoreError> {
        self.changes_as(None, after, limit)
    }

    /// The changes after `after` as `user` sees them on a team store: what is for them or
    /// for everyone, with their own acknowledgements (the store's whole feed for `None`,
    /// and on SQLite).
    pub fn changes_as(&self, user: Option<&str>, after: Cursor, limit: usize) -> Result<Changes, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.changes(user, after, limit);
        }
        changes(self.conn(), after, limit)
    }

    /// Stores a remote's changes and its new cursor in one transaction: a crash either
    /// keeps both or neither, so nothing is fetched into a gap or stored twice.
    pub fn apply_changes(&mut self, remote: &str, deliver: bool, changes: &Changes, now: Millis) -> Result<Applied, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.apply_changes(remote, deliver, changes, now);
        }
        let cursor: Cursor = changes.cursor.parse()?;
        let expires_at = self.expiry()?.map(|e| now.saturating_add(e));
        self.write(|tx| {
            // Removed or disabled meanwhile: store nothing more of it.
            let stored: Option<(bool, String)> =
                tx.query_row("SELECT enabled, cursor FROM remotes WHERE name = ?1", [remote], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            let Some((true, stored)) = stored else { return Ok(Applied::default()) };
            let cursor = cursor.furthest(stored.parse()?);
            let mut applied = Applied::default();
            let recipients = if deliver { crate::deliveries::recipients(tx)? } else { Vec::new() };
            for c in &changes.notifications {
                let n = &c.notification;
                let id = uuid::Uuid::now_v7().to_string();
                let inserted = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO notifications (id, created_at, updated_at, level, title, body, run_id, source, repeat_count,
                                                          acked_at, expires_at, origin, remote_id, remote_seq, silenced_by, resolved_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                    )?
                    .execute(params![
                        id,
                        n.created_at,
                        n.updated_at.max(n.created_at),
                        n.level.number(),
                        n.title,
                        n.body,
                        n.run_id,
                        n.source,
                        n.repeat_count,
                        n.acked_at,
                        expires_at,
                        remote,
                        n.id,
                        c.seq,
                        n.silenced_by,
                        n.resolved_at
                    ])?;
                if inserted == 0 {
                    continue;
                }
                applied.stored += 1;
                if !arrives_pending(n) {
                    continue;
                }
                tx.prepare_cached("UPDATE pending_counts SET n = n + 1 WHERE level = ?1")?.execute([n.level.number()])?;
                for (notifier_id, min_level) in &recipients {
                    if *min_level <= n.level {
                        crate::deliveries::enqueue(tx, &id, notifier_id, now, now)?;
                    }
                }
                applied.new_pending.push(local_copy(n, id, expires_at, remote));
            }
            // Not written to `ack_log`: the feed holds this instance's own notifications only.
            for a in &changes.acks {
                let sql = format!(
                    "UPDATE notifications SET acked_at = ?3, updated_at = ?3 WHERE origin = ?1 AND remote_id = ?2 AND {PENDING} RETURNING id"
                );
                applied.acked += tx.prepare_cached(&sql)?.query_map(params![remote, a.id, a.at], |r| r.get::<_, String>(0))?.count();
            }
            for a in &changes.ack_alls {
                let sql = format!(
                    "UPDATE notifications SET acked_at = ?3, updated_at = ?3 WHERE origin = ?1 AND remote_seq <= ?2 AND {PENDING} RETURNING id"
                );
                applied.acked += tx.prepare_cached(&sql)?.query_map(params![remote, a.upto, a.at], |r| r.get::<_, String>(0))?.count();
            }
            tx.execute(
                "UPDATE remotes SET cursor = ?2, last_sync = ?3, state = 'connected', unreachable_since = NULL, last_error = NULL WHERE name = ?1",
                params![remote, cursor.to_string(), now],
            )?;
            Ok(applied)
        })
    }

    /// Records that a remote could not be reached (`since` kept from the first failure).
    pub fn remote_unreachable(&mut self, remote: &str, error: &str, now: Millis) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.remote_unreachable(remote, error, now);
        }
        self.write(|tx| {
            tx.execute(
                "UPDATE remotes SET state = 'unreachable', unreachable_since = COALESCE(unreachable_since, ?3), last_error = ?2
                  WHERE name = ?1 AND enabled = 1",
                params![remote, error, now],
            )?;
            Ok(())
        })
    }

    /// Records that a remote answered again.
    pub fn remote_reached(&mut self, remote: &str, now: Millis) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.remote_reached(remote, now);
        }
        self.write(|tx| {
            tx.execute(
                "UPDATE remotes SET state = 'connected', unreachable_since = NULL, last_error = NULL, last_sync = ?2 WHERE name = ?1 AND enabled = 1",
                params![remote, now],
            )?;
            Ok(())
        })
    }

    /// Sets whether the "unreachable for long" warning was stored for a remote; returns
    /// whether it changed (so each warning and each "back" is stored once).
    pub fn set_remote_warned(&mut self, remote: &str, warned: bool) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.set_remote_warned(remote, warned);
        }
        self.write(|tx| Ok(tx.execute("UPDATE remotes SET warned = ?2 WHERE name = ?1 AND warned != ?2", params![remote, warned])? > 0))
    }

    /// Remotes unreachable since before `before` and not yet warned about.
    pub fn remotes_unreachable_since(&self, before: Millis) -> Result<Vec<(String, Millis)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.remotes_unreachable_since(before);
        }
        let mut stmt = self.conn().prepare_cached(
            "SELECT name, unreachable_since FROM remotes WHERE enabled = 1 AND warned = 0 AND unreachable_since IS NOT NULL AND unreachable_since <= ?1",
        )?;
        let rows = stmt.query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Remotes warned about that are reachable again.
    pub fn remotes_back(&self) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.remotes_back();
        }
        let mut stmt = self.conn().prepare_cached("SELECT name FROM remotes WHERE warned = 1 AND (state = 'connected' OR enabled = 0)")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Acknowledgements waiting to be sent to `remote`, oldest first.
    pub fn queued_acks(&self, remote: &str, limit: usize) -> Result<Vec<QueuedAck>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.queued_acks(remote, limit);
        }
        let mut stmt =
            self.conn().prepare_cached("SELECT seq, remote_id, upto FROM remote_acks WHERE origin = ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt
            .query_map(params![remote, limit as i64], |r| Ok(QueuedAck { seq: r.get(0)?, remote_id: r.get(1)?, upto: r.get(2)? }))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Forgets the queued acknowledgements up to `seq` (they were sent).
    pub fn acks_sent(&mut self, remote: &str, upto_seq: i64) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.acks_sent(remote, upto_seq);
        }
        self.write(|tx| {
            tx.execute("DELETE FROM remote_acks WHERE origin = ?1 AND seq <= ?2", params![remote, upto_seq])?;
            Ok(())
        })
    }
}

/// Whether a notification fetched from a remote is pending here: not when it was
/// acknowledged, silenced or resolved on its origin (kept, never pending here either).
pub(crate) fn arrives_pending(n: &Notification) -> bool {
    n.acked_at.is_none() && n.silenced_by.is_none() && n.resolved_at.is_none()
}

/// A remote's notification as stored pending here under `id` (what popups are shown).
pub(crate) fn local_copy(n: &Notification, id: String, expires_at: Option<Millis>, remote: &str) -> Notification {
    Notification {
        id,
        acked_at: None,
        expires_at,
        origin: Some(remote.to_string()),
        dedupe_key: None,
        event_id: None,
        snoozed_until: None,
        silenced_by: None,
        resolved_at: None,
        group_key: None,
        ..n.clone()
    }
}

/// The level of the notifications about a remote's reachability.
pub const UNREACHABLE_LEVEL: Level = Level::Warning;
