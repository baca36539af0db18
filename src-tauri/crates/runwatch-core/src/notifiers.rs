//! Notifiers as stored (the `notifiers` table): where notifications go. What the config
//! means for each type lives with the senders; here it is opaque JSON.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::store::{Store, StoreError};
use crate::{Level, NotifierStatus};

/// One configured notifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notifier {
    pub id: String,
    /// slack, workplace, logger, webhook, …
    #[serde(rename = "type")]
    pub kind: String,
    pub status: NotifierStatus,
    /// Type-specific settings (URL, token, group id, message template…); may hold secrets.
    pub config: serde_json::Value,
    /// Notifications below this level are not sent here.
    pub min_level: Level,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierLookupError {
    #[error("no notifier with id '{0}'; list them with 'runwatch notifiers list'")]
    Unknown(String),
    #[error("notifier id '{prefix}' is ambiguous: it starts {}; give more characters", candidates.join(", "))]
    Ambiguous { prefix: String, candidates: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

const COLUMNS: &str = "id, type, status, config, min_level, created_at, updated_at";

pub fn insert(conn: &Connection, n: &Notifier) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO notifiers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![n.id, n.kind, n.status.as_str(), n.config.to_string(), n.min_level.number(), n.created_at, n.updated_at],
    )?;
    Ok(())
}

pub fn list(conn: &Connection) -> Result<Vec<Notifier>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM notifiers ORDER BY created_at, id"))?;
    let rows = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Notifier>, StoreError> {
    Ok(conn.prepare_cached(&format!("SELECT {COLUMNS} FROM notifiers WHERE id = ?1"))?.query_row([id], from_row).optional()?)
}

/// The notifier whose id is `id` or starts with it (a unique prefix).
pub fn resolve(conn: &Connection, id: &str) -> Result<Notifier, NotifierLookupError> {
    if let Some(n) = get(conn, id)? {
        return Ok(n);
    }
    pick(id, list(conn)?)
}

/// The one notifier whose id starts with `id`.
fn pick(id: &str, all: Vec<Notifier>) -> Result<Notifier, NotifierLookupError> {
    let matches: Vec<Notifier> = all.into_iter().filter(|n| !id.is_empty() && n.id.starts_with(id)).collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().unwrap()),
        0 => Err(NotifierLookupError::Unknown(id.to_string())),
        _ => Err(NotifierLookupError::Ambiguous { prefix: id.to_string(), candidates: matches.into_iter().map(|n| n.id).collect() }),
    }
}

/// Why a delivery failed when its notifier was disabled first (on both backends).
pub(crate) const DISABLED_BEFORE_SENT: &str = "the notifier was disabled before this was sent";

/// Enables or disables a notifier. Disabling fails its pending deliveries at once (kept,
/// visible, never sent), so nothing reaches it from the moment the change is saved.
pub fn set_status(conn: &Connection, id: &str, status: NotifierStatus, now: Millis) -> Result<bool, StoreError> {
    let changed = conn.execute("UPDATE notifiers SET status = ?2, updated_at = ?3 WHERE id = ?1", params![id, status.as_str(), now])?;
    if status == NotifierStatus::Disabled {
        crate::deliveries::cancel_pending(conn, id, DISABLED_BEFORE_SENT, now)?;
    }
    Ok(changed == 1)
}

pub fn set_min_level(conn: &Connection, id: &str, level: Level, now: Millis) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE notifiers SET min_level = ?2, updated_at = ?3 WHERE id = ?1", params![id, level.number(), now])? == 1)
}

pub fn set_config(conn: &Connection, id: &str, config: &serde_json::Value, now: Millis) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE notifiers SET config = ?2, updated_at = ?3 WHERE id = ?1", params![id, config.to_string(), now])? == 1)
}

/// Removes a notifier and its deliveries (the notifications stay in the inbox).
pub fn remove(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM notifiers WHERE id = ?1", [id])? == 1)
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Notifier> {
    let status: String = r.get(2)?;
    let config: String = r.get(3)?;
    Ok(Notifier {
        id: r.get(0)?,
        kind: r.get(1)?,
        status: status.parse().unwrap_or(NotifierStatus::Disabled),
        config: serde_json::from_str(&config).unwrap_or(serde_json::Value::Null),
        min_level: Level::from_number(r.get(4)?).unwrap_or(Level::Debug),
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

impl Store {
    pub fn notifiers(&self) -> Result<Vec<Notifier>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.notifiers();
        }
        list(self.conn())
    }

    pub fn add_notifier(&mut self, n: &Notifier) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.add_notifier(n);
        }
        self.write(|tx| insert(tx, n))
    }

    /// Adds `n` only when the store has no notifier at all (the logger a daemon starts with):
    /// two daemons starting at once on an empty shared store add one between them.
    pub fn add_first_notifier(&mut self, n: &Notifier) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.add_first_notifier(n);
        }
        self.write(|tx| {
            let none: bool = tx.query_row("SELECT NOT EXISTS (SELECT 1 FROM notifiers)", [], |r| r.get(0))?;
            if none {
                insert(tx, n)?;
            }
            Ok(none)
        })
    }

    pub fn resolve_notifier(&self, id: &str) -> Result<Notifier, NotifierLookupError> {
        if let Some(pg) = self.pg() {
            if let Some(n) = pg.notifier(id)? {
                return Ok(n);
            }
            return pick(id, pg.notifiers()?);
        }
        resolve(self.conn(), id)
    }

    pub fn set_notifier_status(&mut self, id: &str, status: NotifierStatus, now: Millis) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.set_notifier_status(id, status, now);
        }
        self.write(|tx| set_status(tx, id, status, now))
    }

    /// Changes what is given of a notifier's config, minimum level and status, in one
    /// transaction (see [`set_status`] for what disabling does).
    pub fn update_notifier(
        &mut self,
        id: &str,
        config: Option<&serde_json::Value>,
        min_level: Option<Level>,
        status: Option<NotifierStatus>,
        now: Millis,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.update_notifier(id, config, min_level, status, now);
        }
        self.write(|tx| {
            if let Some(config) = config {
                set_config(tx, id, config, now)?;
            }
            if let Some(level) = min_level {
                set_min_level(tx, id, level, now)?;
            }
            if let Some(status) = status {
                set_status(tx, id, status, now)?;
            }
            Ok(())
        })
    }

    pub fn remove_notifier(&mut self, id: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.remove_notifier(id);
        }
        self.write(|tx| remove(tx, id))
    }
}
