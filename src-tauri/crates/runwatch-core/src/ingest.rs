//! Ingest: the one entry point for events from outside the Aim sources — the HTTP API,
//! `runwatch send` and `runwatch exec` all come through here.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::clock::Millis;
use crate::inbox::{Inserted, NewNotification};
use crate::store::{Store, StoreError};
use crate::{runs, Level};

/// An event reported by a job or a client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, TS)]
#[ts(export)]
pub struct Event {
    /// The run it concerns (created if unknown).
    pub run_id: Option<String>,
    /// Defaults to INFO.
    pub level: Option<Level>,
    /// A short line; defaults to the message's first line.
    pub title: Option<String>,
    pub message: String,
    /// The client's id for this event: sending it again stores nothing new.
    pub event_id: Option<String>,
    /// Who reported it: "api", "send", "exec" …
    #[serde(default)]
    pub source: String,
    /// Who it is for on a team store: users or `user@host`s; empty for everyone (or, sent
    /// with a user's token, for that user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
}

/// Longest title kept; the full text is in the body.
pub const MAX_TITLE_CHARS: usize = 200;

/// A title from the message's first line, shortened with an ellipsis when too long.
pub fn title_from(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    if first.chars().count() <= MAX_TITLE_CHARS {
        first.to_string()
    } else {
        let mut t: String = first.chars().take(MAX_TITLE_CHARS - 1).collect();
        t.push('…');
        t
    }
}

impl Store {
    /// Stores an event as a notification, idempotently by `event_id`.
    pub fn ingest(&mut self, event: &Event, now: Millis) -> Result<Inserted, StoreError> {
        Ok(self.ingest_batch(std::slice::from_ref(event), now)?.remove(0))
    }

    /// Stores events in one transaction: all or none.
    pub fn ingest_batch(&mut self, events: &[Event], now: Millis) -> Result<Vec<Inserted>, StoreError> {
        if let Some(pg) = self.pg() {
            let items: Vec<NewNotification> = events.iter().map(new_notification).collect();
            return pg.ingest_batch(&items, now);
        }
        let expires_at = self.expiry()?.map(|e| now.saturating_add(e));
        self.write_tracked(|tx, inserts| {
            let mut known_runs = HashSet::new();
            events
                .iter()
                .map(|e| {
                    if let Some(run) = &e.run_id {
                        // Once per run and batch: a batch mostly comes from a few runs.
                        if known_runs.insert(run.as_str()) {
                            runs::ensure(tx, run, now)?;
                        }
                    }
                    inserts.insert(tx, &new_notification(e), now, expires_at)
                })
                .collect()
        })
    }

    /// Moves every event id into the `event_ids` index now (see [`crate::event_ids`]);
    /// for tools that wrote notifications with SQL, like the benchmarks' seeding.
    pub fn merge_event_ids(&mut self) -> Result<(), StoreError> {
        if self.is_postgres() {
            // A unique index there: nothing to merge.
            return Ok(());
        }
        self.write_with_tail(|tx, tail| tail.merge(tx))
    }
}

fn new_notification(event: &Event) -> NewNotification {
    NewNotification {
        level: Some(event.level.unwrap_or(Level::Info)),
        title: event.title.clone().filter(|t| !t.trim().is_empty()).unwrap_or_else(|| title_from(&event.message)),
        body: event.message.clone(),
        run_id: event.run_id.clone(),
        source: if event.source.is_empty() { "ingest".into() } else { event.source.clone() },
        event_id: event.event_id.clone(),
        audience: event.to.iter().filter_map(|t| crate::users::Recipient::parse(t).ok()).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataDir;

    #[test]
    fn ingest_is_idempotent_by_event_id_and_creates_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(&DataDir::at(tmp.path())).unwrap();
        let event = Event {
            run_id: Some("job-7".into()),
            level: Some(Level::Error),
            message: "OOM at step 1200\ntraceback…".into(),
            event_id: Some("e-1".into()),
            source: "api".into(),
            ..Default::default()
        };
        let Inserted::New(n) = store.ingest(&event, 10).unwrap() else { panic!() };
        assert_eq!(n.title, "OOM at step 1200");
        assert_eq!(n.body, event.message);
        assert_eq!(store.ingest(&event, 11).unwrap(), Inserted::Duplicate(n.id));
        assert_eq!(store.run("job-7").unwrap().unwrap().state, crate::RunState::Running);
        assert_eq!(title_from(&"x".repeat(500)).chars().count(), MAX_TITLE_CHARS);
    }
}
