//! Noise control, the one rule engine behind popups, notifiers, the badge and the lists:
//! snoozes (a notification or a run, until a time or the run's next state change),
//! silences (Alertmanager-style matchers with a start and an end), per-notifier delay,
//! repeat and quiet hours, recovery (a stuck run that checks in again resolves its alarm)
//! and group keys (a burst becomes one popup and one message).
//!
//! Every rule is a function of the store and a time from the caller's clock: nothing here
//! sleeps or polls. What falls due later (a snooze's end, a delayed or repeated delivery,
//! the end of quiet hours, a group's window) is a time the dispatcher and the popups wait for.

use std::collections::BTreeMap;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::store::{Store, StoreError};
use crate::{Level, Notification, RunState};

/// `snoozed_until` of a notification snoozed until its run's next state change.
pub const UNTIL_CHANGE: Millis = Millis::MAX;

/// Errors in rules given by people (the CLI, the API): one clear line each.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("{0}")]
    Invalid(String),
    #[error("no silence with id '{0}'; list them with 'runwatch silences list'")]
    UnknownSilence(String),
    #[error("silence id '{0}' is ambiguous; give more characters")]
    AmbiguousSilence(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid<T>(m: impl Into<String>) -> Result<T, NoiseError> {
    Err(NoiseError::Invalid(m.into()))
}

// ---- snooze ----

/// How long a snooze lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum SnoozeUntil {
    /// Until this time (ms since the epoch).
    Time(i64),
    /// Until the run's state next changes (a notification without a run cannot).
    RunChange,
}

/// Where a snooze ends and, for one until the run's next state change, the run state it
/// waits to see change (`run_state` is asked only then). The one decision both backends
/// make for a snooze.
pub(crate) fn snooze_end(
    until: SnoozeUntil,
    now: Millis,
    run_state: impl FnOnce() -> Result<String, NoiseError>,
) -> Result<(Millis, Option<String>), NoiseError> {
    match until {
        SnoozeUntil::Time(t) if t <= now => invalid("a snooze must end in the future"),
        SnoozeUntil::Time(t) => Ok((t, None)),
        SnoozeUntil::RunChange => Ok((UNTIL_CHANGE, Some(run_state()?))),
    }
}

/// The run state a notification snoozed until its run changes waits on: an error for one
/// about no run.
pub(crate) fn notification_run_state(id: &str, run: Option<&str>, state: Option<String>) -> Result<String, NoiseError> {
    if run.is_none() {
        return invalid(format!("notification '{id}' is about no run: snooze it for a time instead"));
    }
    Ok(state.unwrap_or_else(|| RunState::Running.as_str().into()))
}

/// Snoozes notifications: they leave the badge and the pending list until `until`. Returns
/// how many were snoozed; acknowledged ones are left alone.
pub fn snooze(conn: &Connection, ids: &[String], until: SnoozeUntil, now: Millis) -> Result<usize, NoiseError> {
    let mut n = 0;
    for id in ids {
        let row: Option<(Option<String>, Option<String>)> = conn
            .query_row("SELECT n.run_id, r.state FROM notifications n LEFT JOIN runs r ON r.id = n.run_id WHERE n.id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(StoreError::from)?;
        let Some((run, state)) = row else { continue };
        let (at, state) = snooze_end(until, now, || notification_run_state(id, run.as_deref(), state))?;
        n += conn
            .execute(
                &format!(
                    "UPDATE notifications SET snoozed_until = ?2, snooze_state = ?3, updated_at = ?4 WHERE id = ?1 AND {}",
                    crate::inbox::PENDING
                ),
                params![id, at, state, now],
            )
            .map_err(StoreError::from)?;
    }
    Ok(n)
}

/// Snoozes every notification pending now until `until` (the tray's "Snooze all"); returns
/// how many.
pub fn snooze_all(conn: &Connection, until: Millis, now: Millis) -> Result<usize, NoiseError> {
    if until <= now {
        return invalid("a snooze must end in the future");
    }
    Ok(conn
        .execute(
            &format!(
                "UPDATE notifications SET snoozed_until = ?1, snooze_state = NULL, updated_at = ?2
                 WHERE {} AND silenced_by IS NULL AND resolved_at IS NULL AND (snoozed_until IS NULL OR snoozed_until <= ?2)",
                crate::inbox::PENDING
            ),
            params![until, now],
        )
        .map_err(StoreError::from)?)
}

/// Ends snoozes now; returns how many were snoozed. Deliveries held for the snooze go now.
pub fn unsnooze(conn: &Connection, ids: &[String], now: Millis) -> Result<usize, StoreError> {
    let mut n = 0;
    for id in ids {
        let until: Option<Option<Millis>> =
            conn.query_row("SELECT snoozed_until FROM notifications WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        let Some(Some(until)) = until else { continue };
        conn.execute(
            "UPDATE notifications SET snoozed_until = NULL, snooze_state = NULL, updated_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        conn.execute(
            "UPDATE deliveries SET next_attempt_at = ?2 WHERE notification_id = ?1 AND state = 'pending' AND next_attempt_at = ?3",
            params![id, now, until],
        )?;
        n += usize::from(until > now);
    }
    Ok(n)
}

/// Snoozes a run: its pending notifications now, and those that arrive before the snooze
/// ends. Returns how many notifications were snoozed.
pub fn snooze_run(conn: &Connection, run_id: &str, until: SnoozeUntil, now: Millis) -> Result<usize, NoiseError> {
    let state: Option<String> =
        conn.query_row("SELECT state FROM runs WHERE id = ?1", [run_id], |r| r.get(0)).optional().map_err(StoreError::from)?;
    let Some(state) = state else { return invalid(format!("there is no run with id '{run_id}'")) };
    let (at, snooze_state) = snooze_end(until, now, || Ok(state))?;
    conn.execute(
        "INSERT INTO run_snoozes (run_id, until, state) VALUES (?1, ?2, ?3)
         ON CONFLICT (run_id) DO UPDATE SET until = excluded.until, state = excluded.state",
        params![run_id, at, snooze_state],
    )
    .map_err(StoreError::from)?;
    let n = conn
        .execute(
            &format!(
                "UPDATE notifications SET snoozed_until = ?2, snooze_state = ?3, updated_at = ?4 WHERE run_id = ?1 AND {}",
                crate::inbox::PENDING
            ),
            params![run_id, at, snooze_state, now],
        )
        .map_err(StoreError::from)?;
    Ok(n)
}

/// A run's state was saved: notifications (and the run) snoozed until it changed come back
/// if it did. Cheap when nothing is snoozed that way (the partial index on `snoozed_until`).
pub fn run_state_saved(conn: &Connection, run_id: &str, state: RunState, now: Millis) -> Result<(), StoreError> {
    let woken: Vec<String> = conn
        .prepare_cached(
            "UPDATE notifications SET snoozed_until = NULL, snooze_state = NULL, updated_at = ?4
             WHERE snoozed_until = ?3 AND run_id = ?1 AND snooze_state != ?2 RETURNING id",
        )?
        .query_map(params![run_id, state.as_str(), UNTIL_CHANGE, now], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in woken {
        conn.prepare_cached(
            "UPDATE deliveries SET next_attempt_at = ?2 WHERE notification_id = ?1 AND state = 'pending' AND next_attempt_at = ?3",
        )?
        .execute(params![id, now, UNTIL_CHANGE])?;
    }
    conn.prepare_cached("DELETE FROM run_snoozes WHERE run_id = ?1 AND state IS NOT NULL AND state != ?2")?
        .execute(params![run_id, state.as_str()])?;
    Ok(())
}

/// The earliest time a snoozed notification comes back after `now` (what the popups and
/// the badge wait for); a snooze until a state change has no time.
pub fn next_snooze_end(conn: &Connection, now: Millis) -> Result<Option<Millis>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT MIN(snoozed_until) FROM notifications WHERE snoozed_until > ?1 AND snoozed_until < ?2")?
        .query_row(params![now, UNTIL_CHANGE], |r| r.get(0))?)
}

/// Notifications whose snooze ended in `(after, upto]` and that are still pending: they
/// come back (the popups show them again).
pub fn returned(conn: &Connection, after: Millis, upto: Millis) -> Result<Vec<Notification>, StoreError> {
    let sql = format!(
        "SELECT {} FROM notifications WHERE snoozed_until > ?1 AND snoozed_until <= ?2 AND {} AND silenced_by IS NULL AND resolved_at IS NULL ORDER BY seq",
        crate::inbox::COLUMNS,
        crate::inbox::PENDING
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![after, upto], |r| crate::inbox::from_row(r, 0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

// ---- silences ----

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    /// A regular expression, found anywhere in the value.
    #[serde(rename = "~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl MatchOp {
    /// In the order they are looked for: two-character operators first.
    const SPELLINGS: [(&'static str, MatchOp); 9] = [
        ("<=", MatchOp::Le),
        (">=", MatchOp::Ge),
        ("!=", MatchOp::Ne),
        ("!~", MatchOp::NotRe),
        ("=~", MatchOp::Re),
        ("=", MatchOp::Eq),
        ("~", MatchOp::Re),
        ("<", MatchOp::Lt),
        (">", MatchOp::Gt),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "~",
            MatchOp::NotRe => "!~",
            MatchOp::Lt => "<",
            MatchOp::Le => "<=",
            MatchOp::Gt => ">",
            MatchOp::Ge => ">=",
        }
    }

    fn orders(self) -> bool {
        matches!(self, MatchOp::Lt | MatchOp::Le | MatchOp::Gt | MatchOp::Ge)
    }
}

/// One condition of a silence: `run=abc`, `level<=WARNING`, `label.sweep=lr`, `text~nan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Matcher {
    /// run, repo, host, source, level, text, or label.NAME
    pub field: String,
    pub op: MatchOp,
    pub value: String,
}

const FIELDS: &str = "run, repo, host, source, level, text or label.NAME";

impl Matcher {
    /// Parses `FIELD OP VALUE` (OP one of = != ~ !~ < <= > >=) and checks it.
    pub fn parse(s: &str) -> Result<Matcher, NoiseError> {
        let found = MatchOp::SPELLINGS.iter().filter_map(|(spelling, op)| s.find(spelling).map(|at| (at, spelling.len(), *op))).min_by_key(
            |(at, len, _)| (*at, usize::MAX - len), // the earliest, and at one place the longest
        );
        let Some((at, len, op)) = found else {
            return invalid(format!("matcher '{s}' has no operator: write FIELD=VALUE (or != ~ !~, or level<=LEVEL)"));
        };
        let m = Matcher { field: s[..at].trim().to_string(), op, value: s[at + len..].trim().to_string() };
        m.check()?;
        Ok(m)
    }

    /// Whether the field, operator and value go together.
    pub fn check(&self) -> Result<(), NoiseError> {
        let field = self.field.as_str();
        let known = matches!(field, "run" | "repo" | "host" | "source" | "level" | "text")
            || field.strip_prefix("label.").is_some_and(|l| !l.is_empty());
        if !known {
            return invalid(format!("unknown matcher field '{field}': use {FIELDS}"));
        }
        if field == "level" {
            self.value.parse::<Level>().map_err(|e| NoiseError::Invalid(e.to_string()))?;
        } else if self.op.orders() {
            return invalid(format!("'{}' compares levels only; for {field} use = != ~ or !~", self.op.as_str()));
        }
        if matches!(self.op, MatchOp::Re | MatchOp::NotRe) {
            regex::Regex::new(&self.value).map_err(|e| {
                // The regex crate's messages draw the error over several lines.
                let e = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
                NoiseError::Invalid(format!("invalid regular expression '{}': {e}", self.value))
            })?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.field, self.op.as_str(), self.value)
    }
}

/// What a silence is matched against: a notification and its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    pub level: Level,
    pub title: &'a str,
    pub body: &'a str,
    pub source: &'a str,
    pub run: Option<&'a str>,
    pub repo: Option<&'a str>,
    pub host: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
}

/// A silence: while active, notifications matching all of its matchers are stored as
/// silenced, never popped up nor forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub comment: String,
    pub created_at: i64,
}

/// A silence to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export, optional_fields)]
pub struct NewSilence {
    /// Matchers as written on the command line: `run=abc`, `level<=WARNING`, `text~nan`.
    pub matchers: Vec<String>,
    /// Default: now.
    pub starts_at: Option<i64>,
    pub ends_at: i64,
    #[serde(default)]
    pub comment: Option<String>,
}

impl Silence {
    pub fn active(&self, now: Millis) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// active, pending (starts later) or expired.
    pub fn state(&self, now: Millis) -> &'static str {
        if now >= self.ends_at {
            "expired"
        } else if now < self.starts_at {
            "pending"
        } else {
            "active"
        }
    }
}

/// A silence with its regular expressions compiled, for matching many notifications.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub id: String,
    matchers: Vec<(Matcher, Option<regex::Regex>, Option<Level>)>,
}

impl Compiled {
    pub fn new(s: &Silence) -> Compiled {
        let matchers = s
            .matchers
            .iter()
            .map(|m| {
                let re = matches!(m.op, MatchOp::Re | MatchOp::NotRe).then(|| regex::Regex::new(&m.value).ok()).flatten();
                (m.clone(), re, m.value.parse().ok())
            })
            .collect();
        Compiled { id: s.id.clone(), matchers }
    }

    /// Whether every matcher matches (a field the subject lacks is the empty string).
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.matchers.iter().all(|(m, re, level)| {
            if m.field == "level" {
                let Some(want) = level else { return false };
                return match m.op {
                    MatchOp::Eq | MatchOp::Re => s.level == *want,
                    MatchOp::Ne | MatchOp::NotRe => s.level != *want,
                    MatchOp::Lt => s.level < *want,
                    MatchOp::Le => s.level <= *want,
                    MatchOp::Gt => s.level > *want,
                    MatchOp::Ge => s.level >= *want,
                };
            }
            let text;
            let value: &str = match m.field.as_str() {
                "run" => s.run.unwrap_or(""),
                "repo" => s.repo.unwrap_or(""),
                "host" => s.host.unwrap_or(""),
                "source" => s.source,
                "text" => {
                    text = format!("{}\n{}", s.title, s.body);
                    &text
                }
                label => label.strip_prefix("label.").and_then(|l| s.labels.get(l)).map_or("", String::as_str),
            };
            match m.op {
                MatchOp::Eq => value == m.value,
                MatchOp::Ne => value != m.value,
                MatchOp::Re => re.as_ref().is_some_and(|re| re.is_match(value)),
                MatchOp::NotRe => re.as_ref().is_some_and(|re| !re.is_match(value)),
                // Rejected by `check` for anything but levels.
                MatchOp::Lt | MatchOp::Le | MatchOp::Gt | MatchOp::Ge => false,
            }
        })
    }
}

const SILENCE_COLUMNS: &str = "id, matchers, starts_at, ends_at, comment, created_at";

fn silence_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Silence> {
    let matchers: String = r.get(1)?;
    Ok(Silence {
        id: r.get(0)?,
        matchers: serde_json::from_str(&matchers).unwrap_or_default(),
        starts_at: r.get(2)?,
        ends_at: r.get(3)?,
        comment: r.get(4)?,
        created_at: r.get(5)?,
    })
}

impl NewSilence {
    /// Checks it and makes the silence to store (a new id, starting now unless it says).
    pub(crate) fn build(&self, now: Millis) -> Result<Silence, NoiseError> {
        if self.matchers.is_empty() {
            return invalid("a silence needs at least one matcher (--match FIELD=VALUE)");
        }
        let matchers = self.matchers.iter().map(|m| Matcher::parse(m)).collect::<Result<Vec<_>, _>>()?;
        let starts_at = self.starts_at.unwrap_or(now);
        if self.ends_at <= starts_at.max(now) {
            return invalid("a silence must end in the future and after it starts");
        }
        Ok(Silence {
            id: uuid::Uuid::now_v7().to_string(),
            matchers,
            starts_at,
            ends_at: self.ends_at,
            comment: self.comment.clone().unwrap_or_default(),
            created_at: now,
        })
    }
}

/// Checks and stores a silence.
pub fn add_silence(conn: &Connection, new: &NewSilence, now: Millis) -> Result<Silence, NoiseError> {
    let s = new.build(now)?;
    conn.execute(
        &format!("INSERT INTO silences ({SILENCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![s.id, serde_json::to_string(&s.matchers).unwrap_or_default(), s.starts_at, s.ends_at, s.comment, s.created_at],
    )
    .map_err(StoreError::from)?;
    Ok(s)
}

/// Every silence, newest first.
pub fn silences(conn: &Connection) -> Result<Vec<Silence>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {SILENCE_COLUMNS} FROM silences ORDER BY created_at DESC, id DESC"))?;
    let rows = stmt.query_map([], silence_from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The silences in force at `now`.
pub fn active_silences(conn: &Connection, now: Millis) -> Result<Vec<Silence>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE starts_at <= ?1 AND ends_at > ?1"))?;
    let rows = stmt.query_map([now], silence_from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The silence whose id is `id` or starts with it.
pub fn resolve_silence(conn: &Connection, id: &str) -> Result<Silence, NoiseError> {
    pick_silence(silences(conn)?, id)
}

/// Of `all`, the silence whose id is `id` or the one that starts with it.
pub(crate) fn pick_silence(all: Vec<Silence>, id: &str) -> Result<Silence, NoiseError> {
    let matches: Vec<Silence> = all.into_iter().filter(|s| !id.is_empty() && (s.id == id || s.id.starts_with(id))).collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one")),
        0 => Err(NoiseError::UnknownSilence(id.to_string())),
        _ if matches.iter().any(|s| s.id == id) => Ok(matches.into_iter().find(|s| s.id == id).expect("found")),
        _ => Err(NoiseError::AmbiguousSilence(id.to_string())),
    }
}

impl Silence {
    /// Ends it at `now` (one that has not started yet ends before it starts); false when it
    /// had ended already and nothing changed.
    pub(crate) fn expire(&mut self, now: Millis) -> bool {
        if self.ends_at <= now {
            return false;
        }
        self.ends_at = now;
        self.starts_at = self.starts_at.min(now);
        true
    }
}

/// Ends a silence now (one that has not started yet ends before it starts).
pub fn expire_silence(conn: &Connection, id: &str, now: Millis) -> Result<Silence, NoiseError> {
    let mut s = resolve_silence(conn, id)?;
    if s.expire(now) {
        conn.execute("UPDATE silences SET ends_at = ?2, starts_at = ?3 WHERE id = ?1", params![s.id, s.ends_at, s.starts_at])
            .map_err(StoreError::from)?;
    }
    Ok(s)
}

// ---- notifier rules: delay, repeat, quiet hours ----

/// A notifier's noise rules (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export, optional_fields)]
pub struct NotifierRules {
    /// Send only if the notification is still unacknowledged after this many ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<i64>,
    /// Send again every this many ms while it is unacknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<QuietHours>,
}

impl NotifierRules {
    pub fn is_empty(&self) -> bool {
        self == &NotifierRules::default()
    }

    /// Delay or repeat: deliveries go only while the notification is pending.
    pub fn escalates(&self) -> bool {
        self.delay_ms.is_some() || self.repeat_ms.is_some()
    }

    pub fn check(&self) -> Result<(), NoiseError> {
        if self.delay_ms.is_some_and(|d| d < 0) {
            return invalid("the delay cannot be negative");
        }
        if self.repeat_ms.is_some_and(|r| r < 1000) {
            return invalid("the repeat interval must be at least a second");
        }
        if let Some(q) = &self.quiet {
            q.check()?;
        }
        Ok(())
    }

    /// "delay 15m, repeat 1h, quiet 22:00-07:00 mon-fri (CRITICAL passes)" for lists.
    pub fn describe(&self) -> String {
        let dur = |ms: i64| humantime_short(ms);
        let mut parts = Vec::new();
        if let Some(d) = self.delay_ms {
            parts.push(format!("delay {}", dur(d)));
        }
        if let Some(r) = self.repeat_ms {
            parts.push(format!("repeat {}", dur(r)));
        }
        if let Some(q) = &self.quiet {
            parts.push(format!("quiet {q}"));
        }
        parts.join(", ")
    }
}

/// `90000` as "1m30s".
pub fn humantime_short(ms: i64) -> String {
    let mut s = ms.max(0) / 1000;
    if s == 0 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

/// Quiet hours: from `start` to `end` local time (across midnight when `end` is earlier),
/// on `days` (the day the quiet period starts; empty: every day). Notifications below
/// `pass` wait for the end and go then, as one catch-up digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct QuietHours {
    /// "HH:MM"
    pub start: String,
    /// "HH:MM"
    pub end: String,
    /// mon, tue, … (empty: every day)
    #[serde(default)]
    pub days: Vec<String>,
    /// This level and above pass through.
    pub pass: Level,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

impl QuietHours {
    /// `--quiet-hours HH:MM-HH:MM [--quiet-days mon-fri] [--quiet-pass LEVEL]`.
    pub fn parse(hours: &str, days: Option<&str>, pass: Option<Level>) -> Result<QuietHours, NoiseError> {
        let Some((start, end)) = hours.split_once('-') else {
            return invalid(format!("quiet hours '{hours}' are not HH:MM-HH:MM (e.g. 22:00-07:00)"));
        };
        let q = QuietHours {
            start: start.trim().to_string(),
            end: end.trim().to_string(),
            days: match days {
                Some(d) => parse_days(d)?,
                None => Vec::new(),
            },
            pass: pass.unwrap_or(Level::Critical),
        };
        q.check()?;
        Ok(q)
    }

    pub fn check(&self) -> Result<(), NoiseError> {
        let (start, end) = (parse_hhmm(&self.start)?, parse_hhmm(&self.end)?);
        if start == end {
            return invalid("quiet hours must start and end at different times");
        }
        for d in &self.days {
            if !DAYS.iter().any(|(name, _)| name == d) {
                return invalid(format!("unknown day '{d}': use mon, tue, wed, thu, fri, sat, sun"));
            }
        }
        Ok(())
    }

    /// If `at` falls in quiet hours (in time zone `tz`), when they end.
    pub fn quiet_until(&self, at: Millis, tz: &TimeZone) -> Option<Millis> {
        let (start, end) = (parse_hhmm(&self.start).ok()?, parse_hhmm(&self.end).ok()?);
        let local = jiff::Timestamp::from_millisecond(at).ok()?.to_zoned(tz.clone());
        let today = local.date();
        // The period that started today, or the one that started yesterday and crosses midnight.
        for day in [today, today.yesterday().ok()?] {
            if !self.days.is_empty() && !self.days.iter().any(|d| DAYS.iter().any(|(n, w)| n == d && *w == day.weekday())) {
                continue;
            }
            let end_day = if end <= start { day.tomorrow().ok()? } else { day };
            // A time a DST change skips is taken as the later one; a repeated one as the earlier.
            let from = day.to_datetime(start).to_zoned(tz.clone()).ok()?.timestamp().as_millisecond();
            let to = end_day.to_datetime(end).to_zoned(tz.clone()).ok()?.timestamp().as_millisecond();
            if from <= at && at < to {
                return Some(to);
            }
        }
        None
    }
}

impl std::fmt::Display for QuietHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)?;
        if !self.days.is_empty() {
            write!(f, " {}", self.days.join(","))?;
        }
        write!(f, " ({} passes)", self.pass)
    }
}

fn parse_hhmm(s: &str) -> Result<Time, NoiseError> {
    let bad = || NoiseError::Invalid(format!("'{s}' is not a time of day HH:MM (00:00 to 23:59)"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

/// `mon-fri`, `sat,sun`, `mon-wed,fri` as day names.
pub fn parse_days(s: &str) -> Result<Vec<String>, NoiseError> {
    let index = |d: &str| {
        let d = d.trim().to_ascii_lowercase();
        DAYS.iter()
            .position(|(n, _)| d.starts_with(n))
            .ok_or_else(|| NoiseError::Invalid(format!("unknown day '{d}': use mon, tue, … sun")))
    };
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (index(a)?, index(b)?),
            None => (index(part)?, index(part)?),
        };
        let mut i = a;
        loop {
            let name = DAYS[i].0.to_string();
            if !out.contains(&name) {
                out.push(name);
            }
            if i == b {
                break;
            }
            i = (i + 1) % 7; // fri-mon wraps over the weekend
        }
    }
    if out.is_empty() {
        return invalid("no days given: e.g. mon-fri");
    }
    Ok(out)
}

/// Reads a notifier's rules (NULL: none).
pub fn rules(conn: &Connection, notifier_id: &str) -> Result<NotifierRules, StoreError> {
    let raw: Option<Option<String>> =
        conn.prepare_cached("SELECT rules FROM notifiers WHERE id = ?1")?.query_row([notifier_id], |r| r.get(0)).optional()?;
    Ok(NotifierRules::from_column(raw.flatten()))
}

impl NotifierRules {
    /// The rules a `notifiers.rules` value holds (NULL, or anything unreadable: none).
    pub(crate) fn from_column(raw: Option<String>) -> NotifierRules {
        raw.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default()
    }

    /// Checked, as a `notifiers.rules` value (NULL for none).
    pub(crate) fn to_column(&self) -> Result<Option<String>, NoiseError> {
        self.check()?;
        Ok((!self.is_empty()).then(|| serde_json::to_string(self).unwrap_or_default()))
    }
}

/// Replaces a notifier's rules.
pub fn set_rules(conn: &Connection, notifier_id: &str, rules: &NotifierRules, now: Millis) -> Result<bool, NoiseError> {
    let json = rules.to_column()?;
    Ok(conn
        .execute("UPDATE notifiers SET rules = ?2, updated_at = ?3 WHERE id = ?1", params![notifier_id, json, now])
        .map_err(StoreError::from)?
        == 1)
}

/// What to do with a delivery that fell due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Not now: at this time; `held` when quiet hours hold it (it goes in the catch-up digest).
    Postpone {
        at: Millis,
        held: bool,
    },
    /// Acknowledged (or resolved) before the notifier was to hear of it: it never does.
    Drop,
    /// Acknowledged (or resolved) after it was sent: no more repeats.
    Stop,
}

/// The rule engine's answer for one due delivery of `n` to a notifier with `rules`, sent
/// `sends` times before.
pub fn verdict(n: &Notification, sends: i64, rules: &NotifierRules, now: Millis, tz: &TimeZone) -> Verdict {
    let pending = n.acked_at.is_none() && n.resolved_at.is_none() && n.silenced_by.is_none();
    if rules.escalates() && !pending {
        return if sends > 0 { Verdict::Stop } else { Verdict::Drop };
    }
    if rules.escalates() {
        if let Some(until) = n.snoozed_until.filter(|u| *u > now) {
            return Verdict::Postpone { at: until, held: false };
        }
    }
    if let Some(q) = &rules.quiet {
        if n.level < q.pass {
            if let Some(end) = q.quiet_until(now, tz) {
                return Verdict::Postpone { at: end, held: true };
            }
        }
    }
    Verdict::Send
}

// ---- grouping ----

/// The group key of a run: the first of `group_by` it has (`label.NAME` or `repo`), as
/// `NAME=value`.
pub fn group_key(group_by: &[String], repo: Option<&str>, labels: &BTreeMap<String, String>) -> Option<String> {
    group_by.iter().find_map(|source| match source.as_str() {
        "repo" => repo.filter(|r| !r.is_empty()).map(|r| format!("repo={r}")),
        other => {
            let name = other.strip_prefix("label.")?;
            labels.get(name).map(|v| format!("{name}={v}"))
        }
    })
}

/// Checks a group key source: `label.NAME` or `repo`.
pub fn check_group_source(s: &str) -> Result<(), String> {
    if s == "repo" || s.strip_prefix("label.").is_some_and(|l| !l.is_empty()) {
        Ok(())
    } else {
        Err(format!("group_by entries are label.NAME or repo, not '{s}'"))
    }
}

/// One line for a group: "12 runs of array 4242 failed: <first title> …".
pub fn group_title(key: &str, items: &[&Notification]) -> String {
    let mut runs: Vec<&str> = items.iter().filter_map(|n| n.run_id.as_deref()).collect();
    runs.sort_unstable();
    runs.dedup();
    let (name, value) = key.split_once('=').unwrap_or((key, ""));
    let what = match name {
        "slurm_array_job_id" => format!("array {value}"),
        "sweep" => format!("sweep {value}"),
        "repo" => format!("repository {value}"),
        other => format!("{other} {value}"),
    };
    let verb = ["failed", "crashed", "stuck", "finished", "recovered", "started"]
        .into_iter()
        .find(|w| items.iter().all(|n| n.title.contains(w)))
        .map_or_else(|| "reported".to_string(), |w| if w == "stuck" { "are stuck".into() } else { w.to_string() });
    let first = items.first().map_or("", |n| n.title.as_str());
    if runs.len() > 1 {
        format!("{} runs of {what} {verb}: {first} …", runs.len())
    } else {
        format!("{} notifications of {what}: {first} …", items.len())
    }
}

/// Settings the inserts read once a transaction.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    silences: Vec<Compiled>,
    group_by: Vec<String>,
    group_window: Millis,
    recipients: Vec<(String, Level, NotifierRules)>,
    /// What the rules need of each run, read once a transaction: a batch of a thousand
    /// events comes from a few runs.
    runs: std::collections::HashMap<String, RunFacts>,
}

/// A run as the rules see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunFacts {
    repo: Option<String>,
    host: Option<String>,
    labels: BTreeMap<String, String>,
    group_key: Option<String>,
    snoozed_until: Option<Millis>,
    snooze_state: Option<String>,
}

/// A new notification's fate under the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Arrival {
    pub silenced_by: Option<String>,
    pub group_key: Option<String>,
    pub snoozed_until: Option<Millis>,
    pub snooze_state: Option<String>,
}

/// The run's alarms a recovery resolves, as SQL on `notifications` (both dialects).
pub(crate) const ALARMS: &str = "(dedupe_key LIKE 'stuck:%' OR dedupe_key LIKE 'crashed:%')";

/// The run whose alarms `n` ends, when it is a recovery.
pub(crate) fn recovers(n: &crate::NewNotification) -> Option<&str> {
    match (&n.run_id, &n.dedupe_key) {
        (Some(run), Some(key)) if key.starts_with("recovered:") => Some(run),
        _ => None,
    }
}

impl Rules {
    /// The rules from what a store holds: the silences active now, the grouping settings
    /// and the enabled notifiers (id, minimum level, `rules` column).
    pub(crate) fn new(
        active: &[Silence],
        (group_by, group_window): (Vec<String>, Millis),
        recipients: Vec<(String, Level, Option<String>)>,
    ) -> Rules {
        Rules {
            silences: active.iter().map(Compiled::new).collect(),
            group_by,
            group_window,
            recipients: recipients.into_iter().map(|(id, level, rules)| (id, level, NotifierRules::from_column(rules))).collect(),
            runs: std::collections::HashMap::new(),
        }
    }

    pub(crate) fn load(conn: &Connection, now: Millis) -> Result<Rules, StoreError> {
        let settings = crate::settings::noise_settings(conn)?;
        let mut stmt = conn.prepare_cached("SELECT id, min_level, rules FROM notifiers WHERE status = 'enabled'")?;
        let recipients = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, Level::from_number(r.get(1)?).unwrap_or(Level::Debug), r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(Rules::new(&active_silences(conn, now)?, settings, recipients))
    }

    /// The facts of a run as stored: repository, host, labels (JSON) and the snooze in
    /// force on it, if any.
    pub(crate) fn run_facts(
        &self,
        repo: Option<String>,
        host: Option<String>,
        labels: Option<String>,
        snooze: (Option<Millis>, Option<String>),
    ) -> RunFacts {
        let labels: BTreeMap<String, String> = labels.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default();
        let group_key = group_key(&self.group_by, repo.as_deref(), &labels);
        RunFacts { repo, host, labels, group_key, snoozed_until: snooze.0, snooze_state: snooze.1 }
    }

    /// Silence, group key and run snooze of a notification about to be stored.
    pub(crate) fn arrive(
        &mut self,
        conn: &Connection,
        n: &crate::NewNotification,
        level: Level,
        now: Millis,
    ) -> Result<Arrival, StoreError> {
        if let Some(id) = n.run_id.as_deref().filter(|id| !self.runs.contains_key(*id)) {
            let run = conn
                .prepare_cached(
                    "SELECT r.repo, r.host, r.labels, s.until, s.state FROM runs r LEFT JOIN run_snoozes s ON s.run_id = r.id AND s.until > ?2
                     WHERE r.id = ?1",
                )?
                .query_row(params![id, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .optional()?;
            let (repo, host, labels, until, state) = run.unwrap_or_default();
            let facts = self.run_facts(repo, host, labels, (until, state));
            self.runs.insert(id.to_string(), facts);
        }
        Ok(self.arrival(n, level))
    }

    /// [`Rules::arrive`] once the facts of the notification's run are known
    /// ([`Rules::know_run`]): a run it does not know is one without labels or snooze.
    pub(crate) fn arrival(&self, n: &crate::NewNotification, level: Level) -> Arrival {
        let empty = RunFacts::default();
        let facts = n.run_id.as_ref().and_then(|id| self.runs.get(id)).unwrap_or(&empty);
        let mut arrival = Arrival {
            group_key: facts.group_key.clone(),
            snoozed_until: facts.snoozed_until,
            snooze_state: facts.snooze_state.clone(),
            ..Arrival::default()
        };
        if !self.silences.is_empty() {
            let subject = Subject {
                level,
                title: &n.title,
                body: &n.body,
                source: &n.source,
                run: n.run_id.as_deref(),
                repo: facts.repo.as_deref(),
                host: facts.host.as_deref(),
                labels: &facts.labels,
            };
            arrival.silenced_by = self.silences.iter().find(|s| s.matches(&subject)).map(|s| s.id.clone());
        }
        arrival
    }

    /// Remembers what the rules need of a run (read by the caller, for a whole batch).
    pub(crate) fn know_run(&mut self, id: String, facts: RunFacts) {
        self.runs.insert(id, facts);
    }

    /// How long a group's messages wait, from its first notification (0: they do not).
    pub(crate) fn group_window(&self) -> Millis {
        self.group_window
    }

    /// The deliveries of a new notification: (notifier, first attempt).
    pub(crate) fn deliveries(
        &self,
        conn: &Connection,
        level: Level,
        arrival: &Arrival,
        now: Millis,
    ) -> Result<Vec<(&str, Millis)>, StoreError> {
        let first = match &arrival.group_key {
            Some(key) if self.group_window > 0 && arrival.silenced_by.is_none() => conn
                .prepare_cached("SELECT MIN(created_at) FROM notifications WHERE group_key = ?1 AND created_at > ?2")?
                .query_row(params![key, now - self.group_window], |r| r.get(0))?,
            _ => None,
        };
        Ok(self.deliveries_after(level, arrival, first, now))
    }

    /// [`Rules::deliveries`] given when the notification's group began, if it did in the
    /// last window (`first`, the oldest `created_at` with its group key after
    /// `now - group_window`).
    pub(crate) fn deliveries_after(&self, level: Level, arrival: &Arrival, first: Option<Millis>, now: Millis) -> Vec<(&str, Millis)> {
        if arrival.silenced_by.is_some() {
            return Vec::new();
        }
        // A group's messages wait for its window, counted from its first notification.
        let group_due = match &arrival.group_key {
            Some(_) if self.group_window > 0 => first.unwrap_or(now) + self.group_window,
            _ => now,
        };
        self.recipients
            .iter()
            .filter(|(_, min, _)| *min <= level)
            .map(|(id, _, rules)| (id.as_str(), now.saturating_add(rules.delay_ms.unwrap_or(0)).max(group_due)))
            .collect()
    }
}

// ---- recovery ----

/// A run recovered (its recovery notification `recovery_id` was just stored): its pending
/// stuck and crashed alarms are resolved, and every notifier that heard one of them gets
/// the recovery too, whatever its minimum level. Returns the notifiers added.
pub(crate) fn recover(conn: &Connection, run_id: &str, recovery_id: &str, now: Millis) -> Result<Vec<String>, StoreError> {
    let alarms: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT id FROM notifications WHERE run_id = ?1 AND resolved_at IS NULL AND {} AND {ALARMS}",
            crate::inbox::PENDING
        ))?
        .query_map([run_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut told = Vec::new();
    for id in &alarms {
        conn.prepare_cached("UPDATE notifications SET resolved_at = ?2, updated_at = ?2 WHERE id = ?1")?.execute(params![id, now])?;
        let heard: Vec<String> = conn
            .prepare_cached("SELECT notifier_id FROM deliveries WHERE notification_id = ?1 AND (state = 'sent' OR sends > 0)")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for notifier in heard {
            let added = conn
                .prepare_cached(
                    "INSERT INTO deliveries (notification_id, notifier_id, state, attempts, next_attempt_at, updated_at)
                     SELECT ?1, ?2, 'pending', 0, ?3, ?3 WHERE EXISTS (SELECT 1 FROM notifiers WHERE id = ?2 AND status = 'enabled')
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![recovery_id, notifier, now])?;
            if added == 1 {
                told.push(notifier);
            }
        }
    }
    Ok(told)
}

/// The noise operations on an open store, each in its own transaction.
impl Store {
    pub fn snooze(&mut self, ids: &[String], until: SnoozeUntil, now: Millis) -> Result<usize, NoiseError> {
        if let Some(pg) = self.pg() {
            return pg.snooze(ids, until, now);
        }
        self.write_with(|tx| snooze(tx, ids, until, now))
    }

    pub fn snooze_all(&mut self, until: Millis, now: Millis) -> Result<usize, NoiseError> {
        if let Some(pg) = self.pg() {
            return pg.snooze_all(until, now);
        }
        self.write_with(|tx| snooze_all(tx, until, now))
    }

    pub fn unsnooze(&mut self, ids: &[String], now: Millis) -> Result<usize, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.unsnooze(ids, now);
        }
        self.write(|tx| unsnooze(tx, ids, now))
    }

    pub fn snooze_run(&mut self, run_id: &str, until: SnoozeUntil, now: Millis) -> Result<usize, NoiseError> {
        if let Some(pg) = self.pg() {
            return pg.snooze_run(run_id, until, now);
        }
        self.write_with(|tx| snooze_run(tx, run_id, until, now))
    }

    /// When a snoozed notification next comes back (see [`next_snooze_end`]).
    pub fn next_snooze_end(&self, now: Millis) -> Result<Option<Millis>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.next_snooze_end(now);
        }
        next_snooze_end(self.conn(), now)
    }

    /// Notifications whose snooze ended in `(after, upto]` (see [`returned`]).
    pub fn snooze_returned(&self, after: Millis, upto: Millis) -> Result<Vec<Notification>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.snooze_returned(after, upto);
        }
        returned(self.conn(), after, upto)
    }

    pub fn add_silence(&mut self, new: &NewSilence, now: Millis) -> Result<Silence, NoiseError> {
        if let Some(pg) = self.pg() {
            return pg.add_silence(new, now);
        }
        self.write_with(|tx| add_silence(tx, new, now))
    }

    pub fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.silences();
        }
        silences(self.conn())
    }

    pub fn expire_silence(&mut self, id: &str, now: Millis) -> Result<Silence, NoiseError> {
        if let Some(pg) = self.pg() {
            return pg.expire_silence(id, now);
        }
        self.write_with(|tx| expire_silence(tx, id, now))
    }

    pub fn notifier_rules(&self, notifier_id: &str) -> Result<NotifierRules, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.notifier_rules(notifier_id);
        }
        rules(self.conn(), notifier_id)
    }

    pub fn set_notifier_rules(&mut self, notifier_id: &str, r: &NotifierRules, now: Millis) -> Result<bool, NoiseError> {
        if let Some(pg) = self.pg() {
            return pg.set_notifier_rules(notifier_id, r, now);
        }
        self.write_with(|tx| set_rules(tx, notifier_id, r, now))
    }
}
