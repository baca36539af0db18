//! Aim's notifier configuration (`.aim/ext/notifications/config.json`), imported so that
//! `aim-watcher` users keep their Slack, Workplace and logger notifiers and log level.

use serde::Deserialize;

use runwatch_core::clock::Millis;
use runwatch_core::notifiers::Notifier;
use runwatch_core::{Level, NotifierStatus};

use crate::channel::Channel;

/// What an Aim config holds, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct AimConfig {
    /// Aim's `log_level`, if it names a level.
    pub log_level: Option<Level>,
    pub notifiers: Vec<Notifier>,
    /// Entries that could not be imported, with why (unknown type, bad URL…).
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AimConfigError {
    #[error("not an Aim notification config: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Deserialize)]
struct File {
    notifications: Section,
}

#[derive(Deserialize)]
struct Section {
    #[serde(default)]
    log_level: Option<i64>,
    #[serde(default)]
    notifiers: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    arguments: serde_json::Value,
}

/// Parses an Aim config file's text. Bad entries are skipped (and listed), not fatal.
pub fn parse(text: &str, now: Millis) -> Result<AimConfig, AimConfigError> {
    let file: File = serde_json::from_str(text)?;
    let mut notifiers = Vec::new();
    let mut skipped = Vec::new();
    for (key, value) in file.notifications.notifiers {
        let entry: Entry = match serde_json::from_value(value) {
            Ok(e) => e,
            Err(e) => {
                skipped.push((key, e.to_string()));
                continue;
            }
        };
        let id = entry.id.filter(|i| !i.is_empty()).unwrap_or(key);
        let channel = match Channel::from_parts(&entry.kind, &entry.arguments).and_then(|c| c.validate().map(|_| c)) {
            Ok(c) => c,
            Err(e) => {
                skipped.push((id, e.to_string()));
                continue;
            }
        };
        // Hand-edited files can repeat an id (or have an empty key); storing the second
        // would fail half-way through an import.
        if id.is_empty() || notifiers.iter().any(|n: &Notifier| n.id == id) {
            let why = if id.is_empty() { "it has no id" } else { "another notifier in this file has the same id" };
            skipped.push((id, why.to_string()));
            continue;
        }
        let status = match entry.status.as_deref() {
            Some("disabled") => NotifierStatus::Disabled,
            _ => NotifierStatus::Enabled,
        };
        notifiers.push(Notifier {
            id,
            kind: channel.kind().into(),
            status,
            config: channel.config_json(),
            min_level: Level::Debug,
            created_at: now,
            updated_at: now,
        });
    }
    notifiers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(AimConfig { log_level: file.notifications.log_level.and_then(Level::from_number), notifiers, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_what_aim_writes_and_skips_the_rest() {
        let text = r#"{"notifications": {"version": "1.0", "log_level": 40, "notifiers": {
            "11111111-1111-1111-1111-111111111111": {"id": "11111111-1111-1111-1111-111111111111", "type": "slack", "status": "enabled",
                "arguments": {"url": "https://hooks.slack.com/services/T/B/X", "message": "❗️ {run.hash}"}},
            "22222222-2222-2222-2222-222222222222": {"id": "22222222-2222-2222-2222-222222222222", "type": "workplace", "status": "disabled",
                "arguments": {"group_id": 123, "access_token": "tok", "message": "m"}},
            "33333333-3333-3333-3333-333333333333": {"id": "33333333-3333-3333-3333-333333333333", "type": "logger", "status": "enabled",
                "arguments": {"message": "x"}},
            "44444444-4444-4444-4444-444444444444": {"type": "pager", "arguments": {}},
            "55555555-5555-5555-5555-555555555555": {"type": "slack", "arguments": {"url": "not a url"}}
        }}}"#;
        let c = parse(text, 7).unwrap();
        assert_eq!(c.log_level, Some(Level::Error));
        let kinds: Vec<_> = c.notifiers.iter().map(|n| (n.kind.as_str(), n.status)).collect();
        assert_eq!(
            kinds,
            [("slack", NotifierStatus::Enabled), ("workplace", NotifierStatus::Disabled), ("logger", NotifierStatus::Enabled)]
        );
        assert_eq!(c.notifiers[1].config["group_id"], "123");
        assert_eq!(c.skipped.len(), 2, "{:?}", c.skipped);
        assert!(parse("{}", 0).is_err());
        assert!(parse("not json", 0).is_err());
    }
}
