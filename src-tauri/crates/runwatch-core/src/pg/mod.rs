//! The PostgreSQL backend of [`crate::Store`]: a shared store for several daemons and users
//! (`--store postgresql://…`). The same model as the SQLite store, with its own migration
//! list (migrations/postgres/NNNN_*.sql, version in `runwatch_schema`).
//!
//! Porting a SQLite store method: write its twin here (same name, same result), and let the
//! `impl Store` method call it when `self.pg()` is `Some`. Writes that change the inbox
//! take [`INBOX_LOCK`] first, which makes seq commit in order (see the first migration).

pub mod fixture;
mod inbox;
mod noise;
mod remotes;
mod roles;
mod tables;
mod tls;
mod users;
mod watch;

use std::cell::{RefCell, RefMut};
use std::collections::HashMap;
use std::time::Duration;

use postgres::{Client, Statement};

pub(crate) use inbox::View;

use crate::store::StoreError;

/// Schema migrations, in order; the version is the row in `runwatch_schema`.
const MIGRATION_SQL: &[&str] = &[
    include_str!("../../migrations/postgres/0001_initial.sql"),
    include_str!("../../migrations/postgres/0002_users.sql"),
    include_str!("../../migrations/postgres/0003_roles.sql"),
    include_str!("../../migrations/postgres/0004_noise.sql"),
    include_str!("../../migrations/postgres/0005_watch.sql"),
    include_str!("../../migrations/postgres/0006_remotes.sql"),
    include_str!("../../migrations/postgres/0007_user_counts.sql"),
];

/// The schema version of a fully migrated PostgreSQL store.
pub fn latest_schema_version() -> usize {
    MIGRATION_SQL.len()
}

/// The channel every write notifies on commit: the change feed of daemons and streams
/// sharing the store ([`crate::ChangeFeed::listen`]).
pub const CHANNEL: &str = "runwatch_changes";
pub(crate) const NOTIFY: &str = "NOTIFY runwatch_changes";

/// Advisory lock keys ("RW" and a number): held for a transaction.
const MIGRATE_LOCK: i64 = 0x5257_0001;
/// Taken by every write that inserts, acknowledges, snoozes or deletes notifications.
pub(crate) const INBOX_LOCK: i64 = 0x5257_0002;
/// Taken to add the first notifier of an empty store (see `Store::add_first_notifier`).
pub(crate) const FIRST_NOTIFIER_LOCK: i64 = 0x5257_0004;
/// With a notifier's id hashed, taken to lease its due deliveries: one daemon takes a
/// group's deliveries whole (see `tables.rs`, `take_due`).
pub(crate) const TAKE_LOCK: i32 = 0x5257_0003;

/// How long a connection attempt may take before the store is called unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `s` names a PostgreSQL store.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgresql://") || s.starts_with("postgres://")
}

/// The URL with its password (in the user info or a `password=` parameter) replaced by
/// `***`: the only form of it that is ever printed or logged.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return mask_params(url);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{}", mask_params(tail))
}

fn mask_params(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("password=") {
        let before_ok = i == 0 || rest[..i].ends_with(['?', '&', ' ']);
        out.push_str(&rest[..i + "password=".len()]);
        rest = &rest[i + "password=".len()..];
        if before_ok {
            let end = rest.find(['&', ' ']).unwrap_or(rest.len());
            out.push_str("***");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// The client settings of a store's URL and the TLS connector they need (see [`tls`]),
/// for a connection of its own (the change feed's listener).
pub(crate) fn connect_config(url: &str) -> Result<(postgres::Config, tls::Tls), String> {
    let (mut config, tls) = tls::config(url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("runwatch");
    }
    Ok((config, tls))
}

/// A PostgreSQL error as one line: the server's message when there is one, else the
/// client's with its cause (a refused connection, a timeout).
pub(crate) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(describe(&e))
    }
}

/// An open PostgreSQL store: one connection and its prepared statements.
///
/// The client needs `&mut` for every query while the store's readers take `&self`; a
/// `RefCell` bridges them (the SQLite store is not `Sync` either: one thread at a time).
pub struct Pg {
    /// `None` only while being dropped (see the `Drop`).
    conn: RefCell<Option<Conn>>,
    /// To connect again after losing the server (a restart): see [`Pg::conn`].
    config: postgres::Config,
    tls: tls::Tls,
    masked_url: String,
    /// Who holds the delivery leases this connection takes (random per connection).
    holder: String,
    /// How long a taken delivery stays leased.
    lease_ms: i64,
}

/// How long a daemon keeps the deliveries it took before another may send them: longer
/// than a send can take (its timeout), short enough that a dead daemon's wait is brief.
/// `RUNWATCH_DELIVERY_LEASE_MS` changes it (tests of a daemon killed mid-burst).
pub const DELIVERY_LEASE_MS: i64 = 60_000;
pub const LEASE_ENV: &str = "RUNWATCH_DELIVERY_LEASE_MS";
/// The most deliveries one take leases at once (the rest stay for the others).
pub(crate) const LEASE_PAGE: usize = 100;

pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    /// A statement prepared once per connection.
    pub(crate) fn prepare(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// The client closes its connection on its own runtime, which must not happen on a thread
/// that drives an async runtime (the API's store is dropped there when the server stops):
/// it is closed on a thread of its own.
impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.get_mut().take() {
            let closing = std::thread::Builder::new().name("store-close".into()).spawn(move || drop(conn));
            if let Ok(closing) = closing {
                let _ = closing.join();
            }
        }
    }
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("url", &self.masked_url).finish_non_exhaustive()
    }
}

impl Pg {
    /// Connects (and migrates, when `migrate`); a wrong URL or a server that is down is one
    /// clear line naming the masked URL.
    pub(crate) fn connect(url: &str, migrate: bool) -> Result<Pg, StoreError> {
        let masked_url = mask_url(url);
        let unreachable = |reason: String| StoreError::Unreachable { url: masked_url.clone(), reason };
        let (config, tls) = connect_config(url).map_err(unreachable)?;
        let client = config.connect(tls.clone()).map_err(|e| unreachable(describe(&e)))?;
        let lease_ms = std::env::var(LEASE_ENV).ok().and_then(|v| v.parse().ok()).filter(|ms| *ms > 0).unwrap_or(DELIVERY_LEASE_MS);
        let pg = Pg {
            conn: RefCell::new(Some(Conn { client, statements: HashMap::new() })),
            config,
            tls,
            masked_url: masked_url.clone(),
            holder: uuid::Uuid::new_v4().to_string(),
            lease_ms,
        };
        if migrate {
            pg.migrate()?;
        } else {
            pg.check_version()?;
        }
        Ok(pg)
    }

    pub(crate) fn masked_url(&self) -> &str {
        &self.masked_url
    }

    /// The connection, made again first when the last one was lost (the server restarted):
    /// the call that lost it failed, and the caller's retry (a client resending its events,
    /// the dispatcher's next step) finds the store back. If the server is still away, the
    /// query on the closed connection fails with a clear error.
    pub(crate) fn conn(&self) -> RefMut<'_, Conn> {
        let mut conn = RefMut::map(self.conn.borrow_mut(), |c| c.as_mut().expect("a PostgreSQL store is used after it was dropped"));
        if conn.client.is_closed() {
            match self.config.connect(self.tls.clone()) {
                Ok(client) => {
                    tracing::warn!("connected to the PostgreSQL store {} again", self.masked_url);
                    conn.client = client;
                    conn.statements.clear();
                }
                Err(e) => tracing::debug!("the PostgreSQL store {} is still unreachable: {}", self.masked_url, describe(&e)),
            }
        }
        conn
    }

    /// The schema version recorded in the database (0 before the first migration).
    pub(crate) fn schema_version(&self) -> Result<usize, StoreError> {
        let client = &mut self.conn().client;
        let exists: bool = client.query_one("SELECT to_regclass('runwatch_schema') IS NOT NULL", &[])?.get(0);
        if !exists {
            return Ok(0);
        }
        let v: Option<i64> = client.query_opt("SELECT version FROM runwatch_schema", &[])?.map(|r| r.get(0));
        Ok(usize::try_from(v.unwrap_or(0)).unwrap_or(0))
    }

    fn check_version(&self) -> Result<(), StoreError> {
        let found = self.schema_version()?;
        let known = latest_schema_version();
        if found > known {
            return Err(StoreError::PgTooNew { url: self.masked_url.clone(), found, known });
        }
        Ok(())
    }

    /// Brings the schema to the latest version in one transaction, under an advisory lock:
    /// two daemons starting at once migrate once.
    pub(crate) fn migrate(&self) -> Result<usize, StoreError> {
        let known = latest_schema_version();
        let masked_url = self.masked_url.clone();
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS runwatch_schema (version BIGINT NOT NULL)")?;
        let found: Option<i64> = tx.query_opt("SELECT version FROM runwatch_schema", &[])?.map(|r| r.get(0));
        let found = usize::try_from(found.unwrap_or(0)).unwrap_or(0);
        if found > known {
            return Err(StoreError::PgTooNew { url: masked_url, found, known });
        }
        for sql in &MIGRATION_SQL[found..] {
            tx.batch_execute(sql)?;
        }
        if found < known {
            tx.execute("DELETE FROM runwatch_schema", &[])?;
            tx.execute("INSERT INTO runwatch_schema (version) VALUES ($1)", &[&(known as i64)])?;
            tracing::info!("migrated the PostgreSQL store {masked_url} from schema {found} to {known}");
        }
        tx.commit()?;
        Ok(known - found.min(known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_wherever_they_are() {
        assert_eq!(mask_url("postgresql://alice:s3cret@db.example:5432/rw"), "postgresql://alice:***@db.example:5432/rw");
        assert_eq!(mask_url("postgres://alice@db/rw?sslmode=disable"), "postgres://alice@db/rw?sslmode=disable");
        assert_eq!(mask_url("postgresql://db/rw?user=a&password=p%40ss&x=1"), "postgresql://db/rw?user=a&password=***&x=1");
        assert_eq!(mask_url("postgresql://a:b@c:d@host/db"), "postgresql://a:***@host/db");
        assert_eq!(mask_url("host=db password=hunter2 user=a"), "host=db password=*** user=a");
    }
}
