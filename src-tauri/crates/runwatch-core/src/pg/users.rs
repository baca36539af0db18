//! Users on PostgreSQL (migrations/postgres/0002_users.sql): their tokens (hashed), and the
//! inbox as one user sees it — what is for them or for everyone, acknowledged by them.

use postgres::types::ToSql;

use super::{Pg, INBOX_LOCK};
use crate::clock::Millis;
use crate::inbox::{AckState, ListFilter, Notification, Page, UnreadSummary, DEFAULT_PAGE, LOCAL_ORIGIN, MAX_PAGE};
use crate::store::StoreError;
use crate::users::User;
use crate::Level;

/// For the user in `$1`: the row is for them or for everyone.
pub(super) const VISIBLE: &str =
    "(NOT addressed OR EXISTS (SELECT 1 FROM audiences a WHERE a.seq = notifications.seq AND a.user_name = $1))";
/// For the user in `$1`: not acknowledged by them (on its own or by an "acknowledge all"),
/// nor, for a followed server's notification, acknowledged on that server (or by this
/// store, which tells the server): that is for every user.
const USER_PENDING: &str = "(NOT EXISTS (SELECT 1 FROM user_acks k WHERE k.user_name = $1 AND k.seq = notifications.seq) \
     AND seq > (SELECT COALESCE(MAX(upto), 0) FROM user_ack_alls WHERE user_name = $1) \
     AND (origin IS NULL OR acked_at IS NULL))";
/// When the user in `$1` acknowledged the row, if they did (or its origin did).
const USER_ACKED_AT: &str = "COALESCE((SELECT at FROM user_acks k WHERE k.user_name = $1 AND k.seq = notifications.seq), \
     (SELECT at FROM user_ack_alls u WHERE u.user_name = $1 AND u.upto >= notifications.seq ORDER BY upto LIMIT 1), \
     CASE WHEN origin IS NOT NULL THEN acked_at END)";

pub(super) fn columns() -> String {
    format!(
        "id, created_at, GREATEST(updated_at, {USER_ACKED_AT}), level, title, body, run_id, source, dedupe_key, event_id, \
         repeat_count, {USER_ACKED_AT}, expires_at, origin"
    )
}

pub(super) fn from_row(r: &postgres::Row, at: usize) -> Notification {
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
        // Noise control is not on a PostgreSQL store yet: nothing is snoozed, silenced,
        // resolved or grouped there.
        snoozed_until: None,
        silenced_by: None,
        resolved_at: None,
        group_key: None,
    }
}

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
        let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let cursor: Option<i64> = match &filter.cursor {
            Some(c) => Some(c.parse().map_err(|_| StoreError::BadCursor(c.clone()))?),
            None => None,
        };
        let mut sql = format!("SELECT seq, {} FROM notifications WHERE {VISIBLE}", columns());
        let mut params: Vec<Box<dyn ToSql + Sync>> = vec![Box::new(user.to_string())];
        let mut bind = |sql: &mut String, clause: &str, value: Box<dyn ToSql + Sync>| {
            params.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", params.len())));
        };
        match filter.state {
            AckState::Pending => sql.push_str(&format!(" AND {USER_PENDING}")),
            AckState::Acked => sql.push_str(&format!(" AND NOT {USER_PENDING}")),
            AckState::All => {}
            // Nothing is snoozed, silenced or resolved on a PostgreSQL store (yet).
            AckState::Snoozed | AckState::Silenced | AckState::Resolved => sql.push_str(" AND FALSE"),
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

    pub(crate) fn notification_as(&self, user: &str, id: &str) -> Result<Option<Notification>, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!("SELECT {} FROM notifications WHERE id = $2 AND {VISIBLE}", columns()))?;
        Ok(conn.client.query_opt(&stmt, &[&user, &id])?.map(|r| from_row(&r, 0)))
    }

    /// Counted: a team's users each see a part of the inbox.
    pub(crate) fn unread_summary_as(&self, user: &str) -> Result<UnreadSummary, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(&format!("SELECT level, COUNT(*) FROM notifications WHERE {VISIBLE} AND {USER_PENDING} GROUP BY level"))?;
        let mut s = UnreadSummary::default();
        for row in conn.client.query(&stmt, &[&user])? {
            let Some(level) = Level::from_number(row.get(0)) else { continue };
            let count: i64 = row.get(1);
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
        Ok(s)
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
        let pending: i64 =
            tx.query_one(&format!("SELECT COUNT(*) FROM notifications WHERE {VISIBLE} AND {USER_PENDING}"), &[&user])?.get(0);
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
