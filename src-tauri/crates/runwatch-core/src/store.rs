//! The store: one facade, [`Store`], over two backends — one SQLite file per data dir (WAL,
//! a busy timeout, schema migrations, mode 0600; the default), or a shared PostgreSQL
//! database (`--store postgresql://…`, see [`crate::pg`]) for several daemons and users.
//!
//! Callers use `Store`'s methods; each one runs the SQLite code below or its PostgreSQL
//! twin in `crate::pg`. The raw SQLite connection ([`Store::conn`], [`Store::write`]) is
//! for SQLite-only code paths (the commands refuse a PostgreSQL store before reaching them).
//!
//! On SQLite, every write is an `IMMEDIATE` transaction: it takes the write lock up front, so two
//! processes writing at once wait for each other (busy timeout) instead of failing with
//! "database is locked" when a read lock cannot be upgraded.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};
use rusqlite_migration::{Migrations, M};

use crate::event_ids::Tail;
use crate::inbox::Inserts;
use crate::DataDir;

/// The environment variable `--store` reads.
pub const STORE_ENV: &str = "RUNWATCH_STORE";

/// How long a writer waits for another process's transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store '{path}': {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("the store '{path}' is not a Runwatch database or is corrupt ({source}); move it aside to start afresh")]
    Corrupt { path: PathBuf, source: rusqlite::Error },
    #[error("the store '{path}' has schema version {found}, newer than this Runwatch understands ({known}); upgrade Runwatch")]
    TooNew { path: PathBuf, found: usize, known: usize },
    #[error("store migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("store error: {0}")]
    Sql(rusqlite::Error),
    #[error("cannot write the store: the disk may be full ({0}); free some space and retry")]
    Unwritable(rusqlite::Error),
    #[error("invalid cursor '{0}': pass the next_cursor of a previous page")]
    BadCursor(String),
    #[error("setting '{key}' holds invalid JSON: {source}")]
    Setting { key: String, source: serde_json::Error },
    #[error("cannot reach the PostgreSQL store {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("PostgreSQL store error: {0}")]
    Postgres(String),
    #[error("the PostgreSQL store {url} has schema version {found}, newer than this Runwatch understands ({known}); upgrade Runwatch")]
    PgTooNew { url: String, found: usize, known: usize },
    #[error("{0} is not available on a PostgreSQL store yet")]
    Unsupported(&'static str),
}

impl From<rusqlite::Error> for StoreError {
    /// Tells a full disk (or a write the OS refused) from other database errors, because
    /// the person reading it can do something about that one.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
        match e.sqlite_error_code() {
            Some(DiskFull | SystemIoFailure) => StoreError::Unwritable(e),
            _ => StoreError::Sql(e),
        }
    }
}

/// Schema migrations, in order; the schema version is SQLite's `user_version`.
const MIGRATION_SQL: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_checkins.sql"),
    include_str!("../migrations/0003_pending_counts.sql"),
    include_str!("../migrations/0004_event_ids.sql"),
    include_str!("../migrations/0005_ack_all.sql"),
    include_str!("../migrations/0006_remote_runs.sql"),
    include_str!("../migrations/0007_remotes.sql"),
    include_str!("../migrations/0008_noise.sql"),
    include_str!("../migrations/0009_check_in_causes.sql"),
];

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(
        MIGRATION_SQL
            .iter()
            .enumerate()
            .map(|(i, sql)| match i + 1 {
                // Every delivery must still find its notification.
                REBUILDS_NOTIFICATIONS => M::up(sql).foreign_key_check(),
                _ => M::up(sql),
            })
            .collect(),
    )
});

/// The migration that rebuilds `notifications` (schema 4): slow on a big store.
const REBUILDS_NOTIFICATIONS: usize = 4;

/// The schema version of a fully migrated store.
pub fn latest_schema_version() -> usize {
    MIGRATION_SQL.len()
}

/// An open, migrated store.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Sqlite(Sqlite),
    Postgres(Box<crate::pg::Pg>),
}

#[derive(Debug)]
struct Sqlite {
    conn: Connection,
    path: PathBuf,
    /// Event ids after the merge watermark (see [`crate::event_ids`]).
    event_tail: Tail,
}

/// Where a store lives, as `--store` / `RUNWATCH_STORE` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The SQLite file of a data dir (the default).
    DataDir(DataDir),
    /// A PostgreSQL database: `postgresql://…` or `postgres://…`.
    Postgres(String),
}

impl Location {
    /// `--store`'s value: a PostgreSQL URL, or (none given) the data dir's SQLite file.
    pub fn parse(store: Option<&str>, dir: &DataDir) -> Result<Location, String> {
        match store.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(Location::DataDir(dir.clone())),
            Some(url) if crate::pg::is_url(url) => Ok(Location::Postgres(url.to_string())),
            Some(other) => Err(format!(
                "--store '{}' is not a PostgreSQL URL: give postgresql://USER@HOST:PORT/DATABASE, or leave it out for the SQLite store in the data dir",
                crate::pg::mask_url(other)
            )),
        }
    }

    /// How to name it in messages: the file, or the URL with its password masked.
    pub fn display(&self) -> String {
        match self {
            Location::DataDir(dir) => dir.store_path().display().to_string(),
            Location::Postgres(url) => crate::pg::mask_url(url),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

impl Store {
    /// Opens the store at `location`, migrating it to the latest schema.
    pub fn open_at(location: &Location) -> Result<Self, StoreError> {
        match location {
            Location::DataDir(dir) => Self::open(dir),
            Location::Postgres(url) => Self::connect(url),
        }
    }

    /// Connects to a PostgreSQL store and migrates it to the latest schema.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self { backend: Backend::Postgres(Box::new(crate::pg::Pg::connect(url, true)?)) })
    }

    /// Connects to a PostgreSQL store without migrating it (`runwatch store check`).
    pub fn connect_unmigrated(url: &str) -> Result<Self, StoreError> {
        Ok(Self { backend: Backend::Postgres(Box::new(crate::pg::Pg::connect(url, false)?)) })
    }

    /// The PostgreSQL backend, when this store is one.
    pub(crate) fn pg(&self) -> Option<&crate::pg::Pg> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg().is_some()
    }

    /// Where the store is, for messages: the SQLite file, or the masked PostgreSQL URL.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(s) => s.path.display().to_string(),
            Backend::Postgres(pg) => pg.masked_url().to_string(),
        }
    }

    /// Opens (creating if needed) the store of a data dir and migrates it to the latest schema.
    pub fn open(dir: &DataDir) -> Result<Self, StoreError> {
        dir.ensure().map_err(|source| StoreError::Open { path: dir.path().to_path_buf(), source })?;
        Self::open_path(&dir.store_path())
    }

    /// Opens the store file at `path`; see [`Store::open`].
    pub fn open_path(path: &Path) -> Result<Self, StoreError> {
        create_private(path).map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        let corrupt = |source| StoreError::Corrupt { path: path.to_path_buf(), source };
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The first statement that reads the file tells a foreign or damaged file apart.
        set_wal(&conn).map_err(corrupt)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Foreign keys are enforced after migrating: a migration that rebuilds a table
        // (schema 4) must not cascade its DROP into the tables that reference it. (The
        // bundled SQLite turns them on by default.)
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        migrate(&mut conn, path)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Self { backend: Backend::Sqlite(Sqlite { conn, path: path.to_path_buf(), event_tail: Tail::default() }) })
    }

    /// The SQLite file (empty for a PostgreSQL store).
    pub fn path(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite(s) => &s.path,
            Backend::Postgres(_) => Path::new(""),
        }
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => user_version(&s.conn),
            Backend::Postgres(pg) => pg.schema_version(),
        }
    }

    /// The raw SQLite connection, for the engine's modules that own their tables.
    ///
    /// # Panics
    /// On a PostgreSQL store: the code paths that call it are SQLite-only, and every
    /// command refuses a PostgreSQL store before reaching one (see `crate::pg`).
    pub fn conn(&self) -> &Connection {
        match &self.backend {
            Backend::Sqlite(s) => &s.conn,
            Backend::Postgres(_) => panic!("a SQLite-only code path was reached on a PostgreSQL store"),
        }
    }

    fn sqlite_mut(&mut self) -> &mut Sqlite {
        match &mut self.backend {
            Backend::Sqlite(s) => s,
            Backend::Postgres(_) => panic!("a SQLite-only code path was reached on a PostgreSQL store"),
        }
    }

    /// Runs `f` in an `IMMEDIATE` transaction (see the module docs), committing on `Ok`.
    /// SQLite only, like [`Store::conn`].
    pub fn write<T>(&mut self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // A command not yet ported to PostgreSQL says so rather than panicking.
        let Backend::Sqlite(sqlite) = &mut self.backend else { return Err(StoreError::Unsupported("this operation")) };
        let tx = sqlite.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// [`Store::write`] for operations with their own error type.
    pub fn write_with<T, E: From<StoreError>>(&mut self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        let Backend::Sqlite(sqlite) = &mut self.backend else { return Err(StoreError::Unsupported("this operation").into()) };
        let tx = sqlite.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// [`Store::write`] for inserting notifications: event ids checked against the tail
    /// (see [`crate::event_ids`]), pending counts written before the commit.
    pub(crate) fn write_tracked<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &mut Inserts<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_with_tail(|tx, tail| {
            let mut inserts = Inserts::new(Some(tail));
            let out = f(tx, &mut inserts)?;
            inserts.finish(tx)?;
            Ok(out)
        })
    }

    /// [`Store::write`] with the event-id tail caught up first. The tail is put back only
    /// after the commit: a failed transaction leaves an empty one, which the next write
    /// reads afresh.
    pub(crate) fn write_with_tail<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &mut Tail) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut tail = std::mem::take(&mut self.sqlite_mut().event_tail);
        let out = self.write(|tx| {
            tail.catch_up(tx)?;
            f(tx, &mut tail)
        })?;
        self.sqlite_mut().event_tail = tail;
        Ok(out)
    }
}

/// Creates the file readable by the user only; tightens the mode of an existing one.
/// SQLite gives its `-wal` and `-shm` files the mode of the database file.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    let file: File = OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode != 0o600 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Puts the store in WAL mode. Switching needs the file to itself, and SQLite answers
/// "database is locked" at once (without its busy handler) while another process opens or
/// migrates a new store at the same moment: that is waited out, up to [`BUSY_TIMEOUT`].
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let give_up = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) && std::time::Instant::now() < give_up => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn user_version(conn: &Connection) -> Result<usize, StoreError> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(usize::try_from(v).unwrap_or(0))
}

/// Brings the schema to the latest version, in an `IMMEDIATE` transaction. When two
/// processes open a new store at once, both may see it unmigrated; the second then fails
/// inside its transaction (the tables exist) and finds the first one's work done.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let known = latest_schema_version();
    let found = user_version(conn).map_err(|e| match e {
        StoreError::Sql(source) => StoreError::Corrupt { path: path.to_path_buf(), source },
        other => other,
    })?;
    if found > known {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found, known });
    }
    if found == known {
        return Ok(());
    }
    // Said at warning level, which shows by default, because a minute of silence at the
    // start of a big store looks like a hang.
    if (1..REBUILDS_NOTIFICATIONS).contains(&found) {
        let rows: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM notifications", [], |r| r.get(0)).unwrap_or(0);
        if rows >= 100_000 {
            tracing::warn!(
                "upgrading the store '{}' (schema {found} to {known}, about {rows} notifications): once, and it may take a minute",
                path.display()
            );
        }
    }
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    let result = MIGRATIONS.to_latest(conn);
    conn.set_transaction_behavior(TransactionBehavior::Deferred);
    match result {
        Ok(()) => Ok(()),
        Err(_) if user_version(conn)? == known => Ok(()),
        Err(e) => Err(e.into()),
    }
}
