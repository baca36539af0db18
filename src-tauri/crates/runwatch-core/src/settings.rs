//! The user's settings: one type ([`Settings`]) with every default written once, read with
//! [`Settings::load`] and changed only through [`patch`], which validates first. The engine's
//! own bookkeeping kept in the same table ([`known_repos`]) is apart from them.
//!
//! Only this module names the rows of the `settings` table. Each row holds one setting as
//! JSON under its own key (`log_level` = `"WARNING"`, `grace_secs` = `100`, …), the format
//! every earlier version wrote, so a store keeps its settings across upgrades.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::noise::QuietHours;
use crate::store::StoreError;
use crate::{Level, Store};

/// The rows of the `settings` table.
mod key {
    pub const LOG_LEVEL: &str = "log_level";
    pub const POPUP_LEVEL: &str = "popup_level";
    pub const GRACE_SECS: &str = "grace_secs";
    pub const EXPIRY_DAYS: &str = "expiry_days";
    pub const RESCAN_SECS: &str = "rescan_secs";
    pub const WATCHED_REPOS: &str = "watched_repos";
    pub const UNREACHABLE_WARN_SECS: &str = "unreachable_warn_secs";
    pub const SLURM_ENABLED: &str = "slurm_enabled";
    pub const SLURM_NEAR_LIMIT_SECS: &str = "slurm_near_limit_secs";
    pub const GROUP_WINDOW_SECS: &str = "group_window_secs";
    pub const GROUP_BY: &str = "group_by";
    pub const POPUP_QUIET_HOURS: &str = "popup_quiet_hours";
    /// Not a setting: the repositories whose history was already taken in (see [`super::known_repos`]).
    pub const KNOWN_REPOS: &str = "known_repos";
}

/// The longest grace: a week.
pub const MAX_GRACE_SECS: u64 = 7 * 86_400;
/// The longest expiry: a hundred years (longer is the same as 0, forever).
pub const MAX_EXPIRY_DAYS: u64 = 36_500;
/// The longest pause between full rescans: an hour.
pub const MAX_RESCAN_SECS: u64 = 3_600;
/// The longest a remote may be unreachable before the warning: a week.
pub const MAX_UNREACHABLE_WARN_SECS: u64 = 7 * 86_400;
/// The earliest warning before a Slurm job's time limit: a week.
pub const MAX_SLURM_NEAR_LIMIT_SECS: u64 = 7 * 86_400;

/// The longest grouping window: an hour.
pub const MAX_GROUP_WINDOW_SECS: u64 = 3_600;

/// The user's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Settings {
    /// Aim log records from this level are notified.
    pub log_level: Level,
    /// Desktop popups from this level.
    pub popup_level: Level,
    /// Seconds a promised check-in may be late.
    pub grace_secs: u64,
    /// Days notifications are kept (0: forever).
    pub expiry_days: u64,
    /// Seconds between full rescans of the watched repositories (they catch what
    /// file-system events miss).
    pub rescan_secs: u64,
    /// Aim repositories the watcher reads, besides those named on the command line:
    /// absolute paths, or `HOST:/path` for the daemon on HOST (on a shared store, where
    /// each daemon watches its own host's repositories, only these are watched).
    pub watched_repos: Vec<String>,
    /// Seconds a followed server may be unreachable before one WARNING says so.
    pub unreachable_warn_secs: u64,
    /// Follow this user's Slurm jobs (as `runwatch start --slurm` does).
    pub slurm_enabled: bool,
    /// Seconds before a running Slurm job's time limit when one WARNING says so.
    pub slurm_near_limit_secs: u64,
    /// Seconds a group's first notification waits for the rest of its burst (0: no grouping).
    pub group_window_secs: u64,
    /// Where group keys come from, first found wins: `label.NAME` (a run label) or `repo`.
    pub group_by: Vec<String>,
    /// Quiet hours of the desktop popups.
    pub popup_quiet_hours: Option<QuietHours>,
}

impl Default for Settings {
    /// The defaults: the only place they are written.
    fn default() -> Self {
        Settings {
            log_level: Level::Warning,
            popup_level: Level::Error,
            // Aim's own grace.
            grace_secs: 100,
            expiry_days: 30,
            rescan_secs: 300,
            watched_repos: Vec::new(),
            unreachable_warn_secs: 300,
            slurm_enabled: false,
            slurm_near_limit_secs: 600,
            group_window_secs: 30,
            group_by: vec!["label.slurm_array_job_id".into(), "label.sweep".into()],
            popup_quiet_hours: None,
        }
    }
}

/// Settings to change; omitted ones stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export, optional_fields)]
pub struct SettingsPatch {
    pub log_level: Option<Level>,
    pub popup_level: Option<Level>,
    #[schema(maximum = 604_800)]
    pub grace_secs: Option<u64>,
    #[schema(maximum = 36_500)]
    pub expiry_days: Option<u64>,
    #[schema(minimum = 1, maximum = 3_600)]
    pub rescan_secs: Option<u64>,
    /// Absolute paths.
    pub watched_repos: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 604_800)]
    pub unreachable_warn_secs: Option<u64>,
    pub slurm_enabled: Option<bool>,
    #[schema(maximum = 604_800)]
    pub slurm_near_limit_secs: Option<u64>,
    #[schema(maximum = 3_600)]
    pub group_window_secs: Option<u64>,
    pub group_by: Option<Vec<String>>,
    /// Quiet hours of the popups; `start` empty turns them off.
    pub popup_quiet_hours: Option<QuietHours>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value the patch may not set; the message names the setting and the rule.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SettingsPatch {
    /// Checks every value against its rule, before anything is written.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |m: String| Err(SettingsError::Invalid(m));
        if self.grace_secs.is_some_and(|g| g > MAX_GRACE_SECS) {
            return invalid(format!("grace_secs must be at most a week ({MAX_GRACE_SECS})"));
        }
        if self.expiry_days.is_some_and(|d| d > MAX_EXPIRY_DAYS) {
            return invalid(format!("expiry_days must be at most {MAX_EXPIRY_DAYS} (0 keeps notifications forever)"));
        }
        if self.rescan_secs.is_some_and(|r| !(1..=MAX_RESCAN_SECS).contains(&r)) {
            return invalid(format!("rescan_secs must be 1 to {MAX_RESCAN_SECS}"));
        }
        if self.unreachable_warn_secs.is_some_and(|r| !(1..=MAX_UNREACHABLE_WARN_SECS).contains(&r)) {
            return invalid(format!("unreachable_warn_secs must be 1 to {MAX_UNREACHABLE_WARN_SECS}"));
        }
        if self.slurm_near_limit_secs.is_some_and(|r| r > MAX_SLURM_NEAR_LIMIT_SECS) {
            return invalid(format!("slurm_near_limit_secs must be at most a week ({MAX_SLURM_NEAR_LIMIT_SECS})"));
        }
        if self.group_window_secs.is_some_and(|w| w > MAX_GROUP_WINDOW_SECS) {
            return invalid(format!("group_window_secs must be at most {MAX_GROUP_WINDOW_SECS}"));
        }
        for source in self.group_by.iter().flatten() {
            crate::noise::check_group_source(source).map_err(SettingsError::Invalid)?;
        }
        if let Some(q) = self.popup_quiet_hours.as_ref().filter(|q| !q.start.is_empty()) {
            q.check().map_err(|e| SettingsError::Invalid(format!("popup_quiet_hours: {e}")))?;
        }
        for (i, repo) in self.watched_repos.iter().flatten().enumerate() {
            // A relative path would depend on where the daemon happened to start.
            let (host, path) = split_watched_repo(repo);
            let bad_host = host.is_some_and(|h| h.trim() != h || h.contains('/'));
            if bad_host || path.trim() != path || !std::path::Path::new(path).is_absolute() || repo.contains('\0') {
                return invalid(format!(
                    "watched_repos[{i}] must be an absolute path, or HOST:/absolute/path, without surrounding spaces: {repo:?}"
                ));
            }
        }
        Ok(())
    }
}

impl Settings {
    /// The stored settings, each one that was never set (or holds something unreadable, as
    /// a hand-edited store might) at its default.
    pub fn load(store: &Store) -> Result<Settings, StoreError> {
        let rows: HashMap<String, String> = match store.pg() {
            Some(pg) => pg.setting_rows()?.into_iter().collect(),
            None => {
                let mut stmt = store.conn().prepare_cached("SELECT key, value FROM settings")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
                rows
            }
        };
        let raw = |key: &str| rows.get(key).map(String::as_str);
        let d = Settings::default();
        Ok(Settings {
            log_level: level(raw(key::LOG_LEVEL)).unwrap_or(d.log_level),
            popup_level: level(raw(key::POPUP_LEVEL)).unwrap_or(d.popup_level),
            grace_secs: decode(key::GRACE_SECS, raw(key::GRACE_SECS)).unwrap_or(d.grace_secs),
            expiry_days: decode(key::EXPIRY_DAYS, raw(key::EXPIRY_DAYS)).unwrap_or(d.expiry_days),
            rescan_secs: decode(key::RESCAN_SECS, raw(key::RESCAN_SECS)).unwrap_or(d.rescan_secs),
            watched_repos: decode(key::WATCHED_REPOS, raw(key::WATCHED_REPOS)).unwrap_or(d.watched_repos),
            unreachable_warn_secs: decode(key::UNREACHABLE_WARN_SECS, raw(key::UNREACHABLE_WARN_SECS)).unwrap_or(d.unreachable_warn_secs),
            slurm_enabled: decode(key::SLURM_ENABLED, raw(key::SLURM_ENABLED)).unwrap_or(d.slurm_enabled),
            slurm_near_limit_secs: decode(key::SLURM_NEAR_LIMIT_SECS, raw(key::SLURM_NEAR_LIMIT_SECS)).unwrap_or(d.slurm_near_limit_secs),
            group_window_secs: decode(key::GROUP_WINDOW_SECS, raw(key::GROUP_WINDOW_SECS)).unwrap_or(d.group_window_secs),
            group_by: decode(key::GROUP_BY, raw(key::GROUP_BY)).unwrap_or(d.group_by),
            popup_quiet_hours: decode(key::POPUP_QUIET_HOURS, raw(key::POPUP_QUIET_HOURS)).unwrap_or(d.popup_quiet_hours),
        })
    }

    /// The grace in milliseconds.
    pub fn grace(&self) -> Millis {
        crate::clock::secs(self.grace_secs)
    }

    /// How long notifications are kept; `None` = forever.
    pub fn expiry(&self) -> Option<Millis> {
        expiry_of(self.expiry_days)
    }

    /// The pause between full rescans (at least a second, whatever a store holds).
    pub fn rescan_every(&self) -> Duration {
        Duration::from_secs(self.rescan_secs.max(1))
    }
}

/// Applies `patch` (validated first) in one transaction and returns the settings after it.
pub fn patch(store: &mut Store, patch: &SettingsPatch) -> Result<Settings, SettingsError> {
    patch.validate()?;
    let mut rows: Vec<(&str, String)> = Vec::new();
    let mut put = |key, value: serde_json::Result<String>| {
        value.map(|v| rows.push((key, v))).map_err(|source| StoreError::Setting { key: key.into(), source })
    };
    // Levels are stored by name, as `Level`'s JSON spells them.
    if let Some(l) = patch.log_level {
        put(key::LOG_LEVEL, serde_json::to_string(&l))?;
    }
    if let Some(l) = patch.popup_level {
        put(key::POPUP_LEVEL, serde_json::to_string(&l))?;
    }
    if let Some(g) = patch.grace_secs {
        put(key::GRACE_SECS, serde_json::to_string(&g))?;
    }
    if let Some(d) = patch.expiry_days {
        put(key::EXPIRY_DAYS, serde_json::to_string(&d))?;
    }
    if let Some(r) = patch.rescan_secs {
        put(key::RESCAN_SECS, serde_json::to_string(&r))?;
    }
    if let Some(r) = patch.unreachable_warn_secs {
        put(key::UNREACHABLE_WARN_SECS, serde_json::to_string(&r))?;
    }
    if let Some(e) = patch.slurm_enabled {
        put(key::SLURM_ENABLED, serde_json::to_string(&e))?;
    }
    if let Some(r) = patch.slurm_near_limit_secs {
        put(key::SLURM_NEAR_LIMIT_SECS, serde_json::to_string(&r))?;
    }
    if let Some(w) = patch.group_window_secs {
        put(key::GROUP_WINDOW_SECS, serde_json::to_string(&w))?;
    }
    if let Some(g) = &patch.group_by {
        put(key::GROUP_BY, serde_json::to_string(g))?;
    }
    if let Some(q) = &patch.popup_quiet_hours {
        put(key::POPUP_QUIET_HOURS, serde_json::to_string(&Some(q).filter(|q| !q.start.is_empty())))?;
    }
    if let Some(r) = &patch.watched_repos {
        put(key::WATCHED_REPOS, serde_json::to_string(r))?;
    }
    if let Some(pg) = store.pg() {
        pg.put_settings(&rows)?;
    } else if !rows.is_empty() {
        store.write(|tx| {
            for (key, value) in &rows {
                put_row(tx, key, value)?;
            }
            Ok(())
        })?;
    }
    Ok(Settings::load(store)?)
}

/// An entry of `watched_repos`: `HOST:/path` (the repository of the daemon on HOST) or a
/// plain `/path` (of the daemon of a store of its own), as (host, path).
pub fn split_watched_repo(entry: &str) -> (Option<&str>, &str) {
    if entry.starts_with('/') {
        return (None, entry);
    }
    match entry.split_once(':') {
        Some((host, path)) if !host.is_empty() && path.starts_with('/') => (Some(host), path),
        _ => (None, entry),
    }
}

/// How long notifications are kept (`None` = forever): the one setting read on every
/// insert, so read alone.
pub fn expiry(store: &Store) -> Result<Option<Millis>, StoreError> {
    if let Some(pg) = store.pg() {
        return pg.settings_expiry();
    }
    let raw: Option<String> =
        store.conn().prepare_cached("SELECT value FROM settings WHERE key = ?1")?.query_row([key::EXPIRY_DAYS], |r| r.get(0)).optional()?;
    Ok(expiry_from_raw(raw.as_deref()))
}

/// The key of the one setting each backend reads on every insert.
pub(crate) const EXPIRY_DAYS_KEY: &str = key::EXPIRY_DAYS;

/// The expiry a stored `expiry_days` value means.
pub(crate) fn expiry_from_raw(raw: Option<&str>) -> Option<Millis> {
    expiry_of(decode(key::EXPIRY_DAYS, raw).unwrap_or(Settings::default().expiry_days))
}

/// What grouping needs on every insert: the key sources and the window in ms.
pub(crate) fn noise_settings(conn: &rusqlite::Connection) -> Result<(Vec<String>, Millis), StoreError> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM settings WHERE key IN (?1, ?2)")?;
    let rows: HashMap<String, String> =
        stmt.query_map([key::GROUP_BY, key::GROUP_WINDOW_SECS], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(noise_from_rows(&rows))
}

/// The settings keys [`noise_from_rows`] reads.
pub(crate) const NOISE_KEYS: [&str; 2] = [key::GROUP_BY, key::GROUP_WINDOW_SECS];

/// Group key sources and the group window (ms), from stored rows by key.
pub(crate) fn noise_from_rows(rows: &HashMap<String, String>) -> (Vec<String>, Millis) {
    let d = Settings::default();
    let group_by = decode(key::GROUP_BY, rows.get(key::GROUP_BY).map(String::as_str)).unwrap_or(d.group_by);
    let window: u64 = decode(key::GROUP_WINDOW_SECS, rows.get(key::GROUP_WINDOW_SECS).map(String::as_str)).unwrap_or(d.group_window_secs);
    (group_by, crate::clock::secs(window))
}

/// The repositories whose existing check-ins were already taken in (so the first scan of a
/// new one does not notify its whole history). Engine state, not a setting.
pub fn known_repos(store: &Store) -> Result<Vec<String>, StoreError> {
    if let Some(pg) = store.pg() {
        return Ok(decode(key::KNOWN_REPOS, pg.setting(key::KNOWN_REPOS)?.as_deref()).unwrap_or_default());
    }
    let raw: Option<String> =
        store.conn().prepare_cached("SELECT value FROM settings WHERE key = ?1")?.query_row([key::KNOWN_REPOS], |r| r.get(0)).optional()?;
    Ok(decode(key::KNOWN_REPOS, raw.as_deref()).unwrap_or_default())
}

/// Adds `repo` to [`known_repos`].
pub fn remember_repo(store: &mut Store, repo: &str) -> Result<(), StoreError> {
    if let Some(pg) = store.pg() {
        return pg.update_setting(key::KNOWN_REPOS, |raw| {
            let mut known: Vec<String> = decode(key::KNOWN_REPOS, raw.as_deref()).unwrap_or_default();
            if known.iter().any(|k| k == repo) {
                return Ok(raw);
            }
            known.push(repo.to_string());
            serde_json::to_string(&known).map(Some).map_err(|source| StoreError::Setting { key: key::KNOWN_REPOS.into(), source })
        });
    }
    store.write(|tx| {
        let raw: Option<String> = tx.query_row("SELECT value FROM settings WHERE key = ?1", [key::KNOWN_REPOS], |r| r.get(0)).optional()?;
        let mut known: Vec<String> = decode(key::KNOWN_REPOS, raw.as_deref()).unwrap_or_default();
        if !known.iter().any(|k| k == repo) {
            known.push(repo.to_string());
            let json = serde_json::to_string(&known).map_err(|source| StoreError::Setting { key: key::KNOWN_REPOS.into(), source })?;
            put_row(tx, key::KNOWN_REPOS, &json)?;
        }
        Ok(())
    })
}

fn put_row(tx: &rusqlite::Transaction<'_>, key: &str, value: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn expiry_of(days: u64) -> Option<Millis> {
    match days {
        0 => None,
        d => Some(Millis::try_from(d).unwrap_or(Millis::MAX).saturating_mul(86_400_000)),
    }
}

/// A level stored by name; older stores may hold any spelling `Level` parses ("warn").
fn level(raw: Option<&str>) -> Option<Level> {
    serde_json::from_str::<String>(raw?).ok()?.parse().ok()
}

/// A stored value, or `None` when absent or unreadable (said at debug level: the popup
/// loop reads the settings often, and the default is a fine answer).
fn decode<T: DeserializeOwned>(key: &str, raw: Option<&str>) -> Option<T> {
    match serde_json::from_str(raw?) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!("setting '{key}' holds {raw:?}, not a valid value ({e}); using the default");
            None
        }
    }
}
