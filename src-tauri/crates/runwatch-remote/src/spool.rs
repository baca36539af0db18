//! The spool: what a job reported while its server could not be reached, kept on disk and
//! sent later in the order it was reported, each item once.
//!
//! One SQLite file per data dir (`spool.db`, mode 0600, `synchronous=FULL`: an item the
//! job was told is spooled survives kill -9 and a power cut). Every item carries an event
//! id from the moment it is first tried, so an item sent again after a crash between the
//! server's answer and its removal here is recognised by the server and stored once.
//! One process flushes at a time (`spool.lock`), which keeps each client's order.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use runwatch_core::clock::Millis;
use runwatch_core::DataDir;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, ClientError};

/// Events sent in one request while draining (the API takes batches).
pub const FLUSH_BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool '{path}' cannot be used: {source}")]
    Sql { path: PathBuf, source: rusqlite::Error },
    #[error("the spool '{path}' cannot be used: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// What an item reports: it decides the API route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A notification (`send`, `exec`'s start and end): `POST /api/v1/events`.
    Event,
    /// A check-in (`check-in`, `exec`'s heartbeats): `POST /api/v1/check-ins`.
    CheckIn,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::CheckIn => "check-in",
        }
    }

    fn parse(s: &str) -> Kind {
        if s == "check-in" {
            Kind::CheckIn
        } else {
            Kind::Event
        }
    }

    pub fn route(self) -> &'static str {
        match self {
            Kind::Event => "events",
            Kind::CheckIn => "check-ins",
        }
    }
}

/// One waiting item.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub seq: i64,
    pub server: String,
    pub kind: Kind,
    pub event_id: String,
    pub body: Value,
    pub created_at: Millis,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// The server refused it for good (a 4xx): kept for the user to see, never resent.
    pub rejected: bool,
}

/// What a flush did.
#[derive(Debug, Default)]
pub struct Flushed {
    pub sent: usize,
    /// Refused by the server for a reason retrying cannot fix; kept, marked rejected.
    pub rejected: usize,
    /// Still waiting for this server.
    pub left: usize,
    /// Why the flush stopped early (the server is unreachable again).
    pub stopped: Option<ClientError>,
}

pub struct Spool {
    conn: Connection,
    path: PathBuf,
    lock_path: PathBuf,
}

impl Spool {
    /// Opens (creating) the data dir's spool. A file SQLite cannot read is moved aside
    /// (kept for inspection) with a warning, and a new spool is started, so one damaged
    /// file never stops a job from reporting.
    pub fn open(dir: &DataDir) -> Result<Spool, SpoolError> {
        dir.ensure().map_err(|source| SpoolError::Io { path: dir.path().to_path_buf(), source })?;
        let path = dir.path().join("spool.db");
        let lock_path = dir.path().join("spool.lock");
        match Self::open_path(&path) {
            Ok(conn) => Ok(Spool { conn, path, lock_path }),
            Err(SpoolError::Sql { source, .. }) if is_damage(&source) => {
                let aside = path.with_extension(format!("db.damaged-{}", std::process::id()));
                std::fs::rename(&path, &aside).map_err(|source| SpoolError::Io { path: path.clone(), source })?;
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                tracing::warn!("the spool '{}' was damaged ({source}); kept as '{}', starting a new one", path.display(), aside.display());
                let conn = Self::open_path(&path)?;
                Ok(Spool { conn, path, lock_path })
            }
            Err(e) => Err(e),
        }
    }

    fn open_path(path: &Path) -> Result<Connection, SpoolError> {
        let sql = |source| SpoolError::Sql { path: path.to_path_buf(), source };
        runwatch_core::store::create_private(path).map_err(|source| SpoolError::Io { path: path.to_path_buf(), source })?;
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(runwatch_core::store::BUSY_TIMEOUT).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spool (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                server TEXT NOT NULL,
                kind TEXT NOT NULL,
                event_id TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                rejected INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX IF NOT EXISTS spool_waiting ON spool (server, seq) WHERE rejected = 0;",
        )
        .map_err(sql)?;
        Ok(conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps an item for later. The body must carry its `event_id` already.
    pub fn push(&mut self, server: &str, kind: Kind, body: &Value, error: Option<&str>, now: Millis) -> Result<(), SpoolError> {
        let event_id = body.get("event_id").and_then(Value::as_str).unwrap_or_default().to_string();
        self.conn
            .execute(
                "INSERT INTO spool (server, kind, event_id, body, created_at, attempts, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![server, kind.as_str(), event_id, body.to_string(), now, i64::from(error.is_some()), error],
            )
            .map(drop)
            .map_err(|source| self.sql(source))
    }

    /// Keeps many items for later in one transaction (one sync to disk), in order.
    pub fn push_all<'a>(
        &mut self,
        server: &str,
        items: impl IntoIterator<Item = (Kind, &'a Value)>,
        now: Millis,
    ) -> Result<(), SpoolError> {
        let path = self.path.clone();
        let sql = |source| SpoolError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut insert =
                tx.prepare("INSERT INTO spool (server, kind, event_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(sql)?;
            for (kind, body) in items {
                let event_id = body.get("event_id").and_then(Value::as_str).unwrap_or_default();
                insert.execute(params![server, kind.as_str(), event_id, body.to_string(), now]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Every item, oldest first (for one server, or all).
    pub fn items(&self, server: Option<&str>) -> Result<Vec<Item>, SpoolError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM spool WHERE ?1 IS NULL OR server = ?1 ORDER BY seq"))
            .map_err(|source| self.sql(source))?;
        let rows = stmt.query_map(params![server], item).and_then(Iterator::collect::<Result<Vec<_>, _>>);
        rows.map_err(|source| self.sql(source))
    }

    /// How many items wait to be sent to `server` (rejected ones aside).
    pub fn waiting(&self, server: &str) -> Result<usize, SpoolError> {
        self.conn
            .query_row("SELECT count(*) FROM spool WHERE server = ?1 AND rejected = 0", [server], |r| r.get::<_, i64>(0))
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|source| self.sql(source))
    }

    /// Holds the flush lock: one process sends from this spool at a time, so items leave
    /// in order. Waits for another flusher (its sends are bounded by the client timeout).
    pub fn lock(&self) -> Result<FlushLock, SpoolError> {
        let io = |source| SpoolError::Io { path: self.lock_path.clone(), source };
        let file = OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(&self.lock_path).map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; blocking is the intent.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        Ok(FlushLock { _file: file })
    }

    /// Sends what waits for the client's server, oldest first, and removes each item once
    /// the server has it. Stops at the first failure worth retrying; an item the server
    /// refuses for good is marked rejected and the rest go on. Call with the [`FlushLock`].
    pub fn flush(&mut self, _lock: &FlushLock, client: &Client) -> Result<Flushed, SpoolError> {
        let server = client.target().server().to_string();
        let mut done = Flushed::default();
        loop {
            let batch = self.next_batch(&server)?;
            let Some(first) = batch.first() else { break };
            let result = if first.kind == Kind::Event && batch.len() > 1 {
                let events: Vec<&Value> = batch.iter().map(|i| &i.body).collect();
                client.post("events/batch", &serde_json::json!({ "events": events }))
            } else {
                client.post(first.kind.route(), &first.body)
            };
            let sent: Vec<i64> =
                if first.kind == Kind::Event && batch.len() > 1 { batch.iter().map(|i| i.seq).collect() } else { vec![first.seq] };
            match result {
                Ok(_) => {
                    self.remove(&sent)?;
                    done.sent += sent.len();
                }
                Err(e) if e.is_retryable() => {
                    self.note_failure(&sent, &e.to_string(), false)?;
                    done.stopped = Some(e);
                    break;
                }
                Err(e) => {
                    // A batch refused as a whole: try its items one by one, so only the
                    // bad one is set aside.
                    if sent.len() > 1 {
                        match self.flush_singly(&batch, client)? {
                            (n, rejected, None) => {
                                done.sent += n;
                                done.rejected += rejected;
                            }
                            (n, rejected, Some(stop)) => {
                                done.sent += n;
                                done.rejected += rejected;
                                done.stopped = Some(stop);
                                break;
                            }
                        }
                    } else {
                        self.note_failure(&sent, &e.to_string(), true)?;
                        done.rejected += 1;
                    }
                }
            }
        }
        done.left = self.waiting(&server)?;
        Ok(done)
    }

    fn flush_singly(&mut self, batch: &[Item], client: &Client) -> Result<(usize, usize, Option<ClientError>), SpoolError> {
        let (mut sent, mut rejected) = (0, 0);
        for item in batch {
            match client.post(item.kind.route(), &item.body) {
                Ok(_) => {
                    self.remove(&[item.seq])?;
                    sent += 1;
                }
                Err(e) if e.is_retryable() => {
                    self.note_failure(&[item.seq], &e.to_string(), false)?;
                    return Ok((sent, rejected, Some(e)));
                }
                Err(e) => {
                    self.note_failure(&[item.seq], &e.to_string(), true)?;
                    rejected += 1;
                }
            }
        }
        Ok((sent, rejected, None))
    }

    /// The oldest waiting item and, when it is an event, the events right after it.
    fn next_batch(&self, server: &str) -> Result<Vec<Item>, SpoolError> {
        let first: Option<i64> = self
            .conn
            .query_row("SELECT min(seq) FROM spool WHERE server = ?1 AND rejected = 0", [server], |r| r.get(0))
            .optional()
            .map_err(|source| self.sql(source))?
            .flatten();
        let Some(first) = first else { return Ok(Vec::new()) };
        let mut items = Vec::new();
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM spool WHERE server = ?1 AND rejected = 0 AND seq >= ?2 ORDER BY seq LIMIT ?3"))
            .map_err(|source| self.sql(source))?;
        let mut rows = stmt.query(params![server, first, FLUSH_BATCH as i64]).map_err(|source| self.sql(source))?;
        while let Some(r) = rows.next().map_err(|source| self.sql(source))? {
            let item = item(r).map_err(|source| self.sql(source))?;
            // A check-in goes alone; events go together up to the next check-in.
            if !items.is_empty() && (item.kind != Kind::Event || items.first().is_some_and(|f: &Item| f.kind != Kind::Event)) {
                break;
            }
            items.push(item);
        }
        Ok(items)
    }

    fn remove(&mut self, seqs: &[i64]) -> Result<(), SpoolError> {
        let tx = self.conn.transaction().map_err(|source| SpoolError::Sql { path: self.path.clone(), source })?;
        for seq in seqs {
            tx.execute("DELETE FROM spool WHERE seq = ?1", [seq]).map_err(|source| SpoolError::Sql { path: self.path.clone(), source })?;
        }
        tx.commit().map_err(|source| SpoolError::Sql { path: self.path.clone(), source })
    }

    fn note_failure(&mut self, seqs: &[i64], error: &str, rejected: bool) -> Result<(), SpoolError> {
        let tx = self.conn.transaction().map_err(|source| SpoolError::Sql { path: self.path.clone(), source })?;
        for seq in seqs {
            tx.execute(
                "UPDATE spool SET attempts = attempts + 1, last_error = ?2, rejected = ?3 WHERE seq = ?1",
                params![seq, error, rejected],
            )
            .map_err(|source| SpoolError::Sql { path: self.path.clone(), source })?;
        }
        tx.commit().map_err(|source| SpoolError::Sql { path: self.path.clone(), source })
    }

    fn sql(&self, source: rusqlite::Error) -> SpoolError {
        SpoolError::Sql { path: self.path.clone(), source }
    }
}

/// Held while sending from the spool; released on drop (and by the OS if the process dies).
#[derive(Debug)]
pub struct FlushLock {
    _file: File,
}

const COLUMNS: &str = "seq, server, kind, event_id, body, created_at, attempts, last_error, rejected";

fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let body: String = r.get(4)?;
    Ok(Item {
        seq: r.get(0)?,
        server: r.get(1)?,
        kind: Kind::parse(&r.get::<_, String>(2)?),
        event_id: r.get(3)?,
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
        created_at: r.get(5)?,
        attempts: r.get(6)?,
        last_error: r.get(7)?,
        rejected: r.get(8)?,
    })
}

fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}
