//! Following on PostgreSQL: the twins of `crate::remotes`' store methods. The change feed
//! this store is followed by (for the store as a whole, or for one user of a team store:
//! what is for them or for everyone, with their own acknowledgements), and the remotes it
//! follows, whose changes are stored with their cursor in one transaction.

use postgres::Row;

use super::inbox::{from_row, View};
use super::{Pg, INBOX_LOCK};
use crate::clock::Millis;
use crate::remotes::{
    arrives_pending, local_copy, AckAllChange, AckChange, Applied, ChangedNotification, Changes, Cursor, NewRemote, QueuedAck, Remote,
    RemoteAccess, RemoteState, MAX_CHANGES,
};
use crate::store::StoreError;

fn remote_columns() -> String {
    format!(
        "name, url, enabled, deliver, state, unreachable_since, last_error, last_sync, created_at,
         (SELECT COUNT(*) FROM notifications WHERE origin = remotes.name AND {}),
         (SELECT COUNT(*) FROM remote_acks WHERE origin = remotes.name)",
        super::inbox::pending()
    )
}

fn remote_from_row(r: &Row) -> Remote {
    Remote {
        name: r.get(0),
        url: r.get(1),
        enabled: r.get(2),
        deliver: r.get(3),
        state: RemoteState::stored(r.get(2), r.get(4)),
        unreachable_since: r.get(5),
        last_error: r.get(6),
        last_sync: r.get(7),
        created_at: r.get(8),
        pending: r.get(9),
        acks_waiting: r.get(10),
    }
}

impl Pg {
    /// One statement in a transaction of its own that tells the change feed (a daemon's
    /// follower looks at the remotes when told); returns how many rows it changed.
    fn execute_notified(&self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        let n = tx.execute(sql, params)?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(n)
    }

    /// The changes after `after`, for the store as a whole (`None`) or as `user` sees them,
    /// read in one snapshot so that nothing falls between two pages. A user's cursor counts
    /// their own acknowledgements (`user_acks.log`) and "acknowledge all"s.
    pub(crate) fn changes(&self, user: Option<&str>, after: Cursor, limit: usize) -> Result<Changes, StoreError> {
        let limit = limit.clamp(1, MAX_CHANGES);
        let mut conn = self.conn();
        let mut tx = conn.client.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?;
        let page = (limit + 1) as i64;
        // This store's own notifications only: those it has from its remotes are theirs to
        // tell (two servers following each other would otherwise pass them back and forth).
        let view = user.map_or(View::Store, View::User);
        let rows = match user {
            None => tx.query(
                &format!("SELECT seq, {} FROM notifications WHERE seq > $1 AND origin IS NULL ORDER BY seq LIMIT $2", view.columns()),
                &[&after.seq, &page],
            )?,
            Some(user) => tx.query(
                &format!(
                    "SELECT seq, {} FROM notifications WHERE seq > $2 AND origin IS NULL AND {} ORDER BY seq LIMIT $3",
                    view.columns(),
                    view.visible()
                ),
                &[&user, &after.seq, &page],
            )?,
        };
        let mut notifications: Vec<ChangedNotification> =
            rows.iter().map(|r| ChangedNotification { seq: r.get(0), notification: from_row(r, 1) }).collect();
        let more = notifications.len() > limit;
        notifications.truncate(limit);
        let mut next = after;
        next.seq = notifications.last().map_or(after.seq, |n| n.seq);
        if !more {
            // Nothing after the page: later inserts start after the newest seq ever given
            // out (seq commits in order, see INBOX_LOCK).
            let last: i64 = tx.query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM notifications", &[])?.get(0);
            next.seq = next.seq.max(last);
        }
        let mut acks = Vec::new();
        let mut ack_alls = Vec::new();
        match user {
            None => {
                for r in tx.query("SELECT seq, notification_id, at FROM ack_log WHERE seq > $1 ORDER BY seq", &[&after.ack])? {
                    next.ack = r.get(0);
                    acks.push(AckChange { id: r.get(1), at: r.get(2) });
                }
                for r in tx.query("SELECT upto, at FROM ack_alls WHERE upto > $1 ORDER BY upto", &[&after.all])? {
                    next.all = r.get(0);
                    ack_alls.push(AckAllChange { upto: r.get(0), at: r.get(1) });
                }
            }
            Some(user) => {
                let sql = "SELECT k.log, n.id, k.at, n.origin IS NULL FROM user_acks k JOIN notifications n ON n.seq = k.seq
                            WHERE k.user_name = $1 AND k.log > $2 ORDER BY k.log";
                for r in tx.query(sql, &[&user, &after.ack])? {
                    next.ack = r.get(0);
                    // Acknowledgements of a remote's notifications are the remote's to hear.
                    if r.get::<_, bool>(3) {
                        acks.push(AckChange { id: r.get(1), at: r.get(2) });
                    }
                }
                let sql = "SELECT upto, at FROM user_ack_alls WHERE user_name = $1 AND upto > $2 ORDER BY upto";
                for r in tx.query(sql, &[&user, &after.all])? {
                    next.all = r.get(0);
                    ack_alls.push(AckAllChange { upto: r.get(0), at: r.get(1) });
                }
            }
        }
        tx.commit()?;
        Ok(Changes { notifications, acks, ack_alls, cursor: next.to_string(), more })
    }

    /// False when the name is taken.
    pub(crate) fn add_remote(&self, r: &NewRemote, now: Millis) -> Result<bool, StoreError> {
        let n = self.execute_notified(
            "INSERT INTO remotes (name, url, token, ca_file, deliver, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (name) DO NOTHING",
            &[&r.name, &r.url, &r.token, &r.ca_file, &r.deliver, &now],
        )?;
        Ok(n == 1)
    }

    pub(crate) fn remotes(&self) -> Result<Vec<Remote>, StoreError> {
        let rows = self.conn().client.query(&format!("SELECT {} FROM remotes ORDER BY name", remote_columns()), &[])?;
        Ok(rows.iter().map(remote_from_row).collect())
    }

    pub(crate) fn remote(&self, name: &str) -> Result<Option<Remote>, StoreError> {
        let row = self.conn().client.query_opt(&format!("SELECT {} FROM remotes WHERE name = $1", remote_columns()), &[&name])?;
        Ok(row.as_ref().map(remote_from_row))
    }

    /// False when there is no such remote.
    pub(crate) fn remove_remote(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("DELETE FROM remote_acks WHERE origin = $1", &[&name])?;
        tx.execute("UPDATE notifications SET remote_seq = NULL WHERE origin = $1 AND remote_seq IS NOT NULL", &[&name])?;
        let n = tx.execute("DELETE FROM remotes WHERE name = $1", &[&name])?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// False when there is no such remote.
    pub(crate) fn set_remote(&self, name: &str, enabled: Option<bool>, deliver: Option<bool>, now: Millis) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        let n = tx.execute(
            "UPDATE remotes SET enabled = COALESCE($2, enabled), deliver = COALESCE($3, deliver), updated_at = $4,
                    state = CASE WHEN $2 AND NOT enabled THEN 'connecting' ELSE state END,
                    unreachable_since = CASE WHEN $2 AND NOT enabled THEN NULL ELSE unreachable_since END
              WHERE name = $1",
            &[&name, &enabled, &deliver, &now],
        )?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(n == 1)
    }

    pub(crate) fn remotes_to_follow(&self) -> Result<Vec<RemoteAccess>, StoreError> {
        let rows =
            self.conn().client.query("SELECT name, url, token, ca_file, deliver, cursor FROM remotes WHERE enabled ORDER BY name", &[])?;
        rows.iter()
            .map(|r| {
                let cursor: String = r.get(5);
                Ok(RemoteAccess {
                    name: r.get(0),
                    url: r.get(1),
                    token: r.get(2),
                    ca_file: r.get(3),
                    deliver: r.get(4),
                    cursor: cursor.parse()?,
                })
            })
            .collect()
    }

    /// As SQLite's: the changes and the cursor in one transaction. The remote's row is
    /// locked first, so two daemons applying one page (a role changing hands mid-request)
    /// store it once, one after the other.
    pub(crate) fn apply_changes(&self, remote: &str, deliver: bool, changes: &Changes, now: Millis) -> Result<Applied, StoreError> {
        let cursor: Cursor = changes.cursor.parse()?;
        let expires_at = self.settings_expiry()?.map(|e| now.saturating_add(e));
        let mut conn = self.conn();
        let insert = conn.prepare(
            "INSERT INTO notifications (id, created_at, updated_at, level, title, body, run_id, source, repeat_count,
                                        acked_at, expires_at, origin, remote_id, remote_seq, silenced_by, resolved_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (origin, remote_id) WHERE origin IS NOT NULL DO NOTHING",
        )?;
        let enqueue = conn.prepare(
            "INSERT INTO deliveries (notification_id, notifier_id, state, attempts, next_attempt_at, updated_at)
             SELECT $1, id, 'pending', 0, $3, $3 FROM notifiers WHERE status = 'enabled' AND min_level <= $2 ORDER BY created_at, id",
        )?;
        let pending = super::inbox::pending();
        let ack = conn.prepare(&format!(
            "UPDATE notifications SET acked_at = $3, updated_at = $3 WHERE origin = $1 AND remote_id = $2 AND {pending}"
        ))?;
        let ack_upto = conn.prepare(&format!(
            "UPDATE notifications SET acked_at = $3, updated_at = $3 WHERE origin = $1 AND remote_seq <= $2 AND {pending}"
        ))?;
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])?;
        // Removed or disabled meanwhile: store nothing more of it.
        let stored = tx.query_opt("SELECT enabled, cursor FROM remotes WHERE name = $1 FOR UPDATE", &[&remote])?;
        let Some(stored) = stored.filter(|r| r.get::<_, bool>(0)) else { return Ok(Applied::default()) };
        let cursor = cursor.furthest(stored.get::<_, String>(1).parse()?);
        let mut applied = Applied::default();
        let mut counts = [0i64; 5];
        for c in &changes.notifications {
            let n = &c.notification;
            let id = uuid::Uuid::now_v7().to_string();
            let pending = arrives_pending(n);
            let inserted = tx.execute(
                &insert,
                &[
                    &id,
                    &n.created_at,
                    &n.updated_at.max(n.created_at),
                    &n.level.number(),
                    &n.title,
                    &n.body,
                    &n.run_id,
                    &n.source,
                    &n.repeat_count,
                    &n.acked_at,
                    &expires_at,
                    &remote,
                    &n.id,
                    &c.seq,
                    &n.silenced_by,
                    &n.resolved_at,
                ],
            )?;
            if inserted == 0 {
                continue;
            }
            applied.stored += 1;
            if !pending {
                continue;
            }
            counts[crate::Level::ALL.iter().position(|l| *l == n.level).unwrap_or(0)] += 1;
            if deliver {
                tx.execute(&enqueue, &[&id, &n.level.number(), &now])?;
            }
            applied.new_pending.push(local_copy(n, id, expires_at, remote));
        }
        for (level, added) in crate::Level::ALL.iter().zip(counts) {
            if added > 0 {
                tx.execute("UPDATE pending_counts SET n = n + $2 WHERE level = $1", &[&level.number(), &added])?;
            }
        }
        // Not written to `ack_log`: the feed holds this store's own notifications only.
        for a in &changes.acks {
            applied.acked += usize::try_from(tx.execute(&ack, &[&remote, &a.id, &a.at])?).unwrap_or(0);
        }
        for a in &changes.ack_alls {
            applied.acked += usize::try_from(tx.execute(&ack_upto, &[&remote, &a.upto, &a.at])?).unwrap_or(0);
        }
        tx.execute(
            "UPDATE remotes SET cursor = $2, last_sync = $3, state = 'connected', unreachable_since = NULL, last_error = NULL WHERE name = $1",
            &[&remote, &cursor.to_string(), &now],
        )?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(applied)
    }

    pub(crate) fn remote_unreachable(&self, remote: &str, error: &str, now: Millis) -> Result<(), StoreError> {
        self.execute_notified(
            "UPDATE remotes SET state = 'unreachable', unreachable_since = COALESCE(unreachable_since, $3), last_error = $2
              WHERE name = $1 AND enabled",
            &[&remote, &error, &now],
        )?;
        Ok(())
    }

    pub(crate) fn remote_reached(&self, remote: &str, now: Millis) -> Result<(), StoreError> {
        self.execute_notified(
            "UPDATE remotes SET state = 'connected', unreachable_since = NULL, last_error = NULL, last_sync = $2 WHERE name = $1 AND enabled",
            &[&remote, &now],
        )?;
        Ok(())
    }

    pub(crate) fn set_remote_warned(&self, remote: &str, warned: bool) -> Result<bool, StoreError> {
        Ok(self.execute_notified("UPDATE remotes SET warned = $2 WHERE name = $1 AND warned != $2", &[&remote, &warned])? > 0)
    }

    pub(crate) fn remotes_unreachable_since(&self, before: Millis) -> Result<Vec<(String, Millis)>, StoreError> {
        let rows = self.conn().client.query(
            "SELECT name, unreachable_since FROM remotes
              WHERE enabled AND NOT warned AND unreachable_since IS NOT NULL AND unreachable_since <= $1",
            &[&before],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(crate) fn remotes_back(&self) -> Result<Vec<String>, StoreError> {
        let rows = self.conn().client.query("SELECT name FROM remotes WHERE warned AND (state = 'connected' OR NOT enabled)", &[])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(crate) fn queued_acks(&self, remote: &str, limit: usize) -> Result<Vec<QueuedAck>, StoreError> {
        let rows = self
            .conn()
            .client
            .query("SELECT seq, remote_id, upto FROM remote_acks WHERE origin = $1 ORDER BY seq LIMIT $2", &[&remote, &(limit as i64)])?;
        Ok(rows.iter().map(|r| QueuedAck { seq: r.get(0), remote_id: r.get(1), upto: r.get(2) }).collect())
    }

    pub(crate) fn acks_sent(&self, remote: &str, upto_seq: i64) -> Result<(), StoreError> {
        self.execute_notified("DELETE FROM remote_acks WHERE origin = $1 AND seq <= $2", &[&remote, &upto_seq])?;
        Ok(())
    }
}
