//! Users on PostgreSQL (migrations/postgres/0002_users.sql): their tokens (hashed), and the
//! inbox as one user sees it — what is for them or for everyone, acknowledged by them.

use super::inbox::{from_row, View};
use super::{Pg, INBOX_LOCK};
use crate::clock::Millis;
use crate::inbox::{ListFilter, Notification, Page, UnreadSummary};
use crate::store::StoreError;
use crate::users::User;

/// For the user in `$1`: the row is for them or for everyone.
pub(super) const VISIBLE: &str =
    "(NOT addressed OR EXISTS (SELECT 1 FROM audiences a WHERE a.seq = notifications.seq AND a.user_name = $1))";
/// For the user in `$1`: not acknowledged by them (on its own or by an "acknowledge all"),
/// nor, for a followed server's notification, acknowledged on that server (or by this
/// store, which tells the server): that is for every user.
pub(super) const USER_PENDING: &str = "(NOT EXISTS (SELECT 1 FROM user_acks k WHERE k.user_name = $1 AND k.seq = notifications.seq) \
     AND seq > (SELECT COALESCE(MAX(upto), 0) FROM user_ack_alls WHERE user_name = $1) \
     AND (origin IS NULL OR acked_at IS NULL))";
/// When the user in `$1` acknowledged the row, if they did (or its origin did).
pub(super) const USER_ACKED_AT: &str = "COALESCE((SELECT at FROM user_acks k WHERE k.user_name = $1 AND k.seq = notifications.seq), \
     (SELECT at FROM user_ack_alls u WHERE u.user_name = $1 AND u.upto >= notifications.seq ORDER BY upto LIMIT 1), \
     CASE WHEN origin IS NOT NULL THEN acked_at END)";

impl Pg {
    /// False when the name is taken.
    pub(crate) fn add_user(&self, name: &str, token_hash: &str, now: Millis) -> Result<bool, StoreError> {
        let n = self.conn().client.execute(
            "INSERT INTO users (name, token_hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            &[&name, &token_hash, &now],
        )?;
        Ok(n == 1)
    }

    pub(crate) fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = self.conn().client.query("SELECT name, created_at FROM users ORDER BY name", &[])?;
        Ok(rows.iter().map(|r| User { name: r.get(0), created_at: r.get(1) }).collect())
    }

    pub(crate) fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.conn().client.execute("DELETE FROM users WHERE name = $1", &[&name])? == 1)
    }

    pub(crate) fn user_for_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare("SELECT name FROM users WHERE token_hash = $1")?;
        Ok(conn.client.query_opt(&stmt, &[&token_hash])?.map(|r| r.get(0)))
    }

    pub(crate) fn list_as(&self, user: &str, filter: &ListFilter) -> Result<Page, StoreError> {
        self.list_in(View::User(user), filter)
    }

    pub(crate) fn notification_as(&self, user: &str, id: &str) -> Result<Option<Notification>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!("SELECT {} FROM notifications WHERE id = $2 AND {VISIBLE}", View::User(user).columns()))?;
        Ok(conn.client.query_opt(&stmt, &[&user, &id])?.map(|r| from_row(&r, 0)))
    }

    pub(crate) fn unread_summary_as(&self, user: &str, now: Millis) -> Result<UnreadSummary, StoreError> {
        self.unread_summary_in(View::User(user), now)
    }

    pub(crate) fn ack_as(&self, user: &str, ids: &[String], now: Millis) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let insert = conn.prepare(&format!(
            "INSERT INTO user_acks (user_name, seq, at)
             SELECT $1, seq, $3 FROM notifications WHERE id = $2 AND {VISIBLE} AND {USER_PENDING}
             ON CONFLICT DO NOTHING"
        ))?;
        let mut tx = conn.client.transaction()?;
        // Their log numbers commit in order, as seq does: a follower's cursor (see
        // `remotes`) passes none that commits later.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])?;
        let mut n = 0;
        for id in ids {
            n += tx.execute(&insert, &[&user, id, &now])?;
        }
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Everything the user sees now, acknowledged for them: one row, however many.
    pub(crate) fn ack_all_as(&self, user: &str, now: Millis) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        // Seq must not move under it (see INBOX_LOCK).
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])?;
        // Their counts (schema 7): what their badge says is what they acknowledge.
        let pending: i64 =
            tx.query_one("SELECT COALESCE(SUM(n), 0)::bigint FROM user_pending_counts WHERE user_name = $1", &[&user])?.get(0);
        if pending == 0 {
            return Ok(0);
        }
        tx.execute(
            "INSERT INTO user_ack_alls (user_name, upto, at) SELECT $1, MAX(seq), $2 FROM notifications ON CONFLICT DO NOTHING",
            &[&user, &now],
        )?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(usize::try_from(pending).unwrap_or(0))
    }

    /// What the user sees up to seq `upto`, acknowledged for them (their follower's
    /// "acknowledge all": what it has of this inbox, not what came after): one row.
    pub(crate) fn ack_upto_as(&self, user: &str, upto: i64, now: Millis) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])?;
        let last: i64 = tx.query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM notifications", &[])?.get(0);
        let upto = upto.min(last);
        let reached: i64 = tx.query_one("SELECT COALESCE(MAX(upto), 0)::bigint FROM user_ack_alls WHERE user_name = $1", &[&user])?.get(0);
        if upto <= reached {
            return Ok(0);
        }
        let pending: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM notifications WHERE seq <= $2 AND {VISIBLE} AND {USER_PENDING}"), &[&user, &upto])?
            .get(0);
        tx.execute("INSERT INTO user_ack_alls (user_name, upto, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", &[&user, &upto, &now])?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(usize::try_from(pending).unwrap_or(0))
    }
}
