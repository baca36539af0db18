//! `runwatch send`: record a notification from a job or script (any language), and
//! [`record`], the one path by which the CLI's reporting commands (`send`, `exec`) store
//! events — where delivering them when no watcher runs will hook in.

use std::io::{Read, Write};

use clap::Args;
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::ingest::Event;
use runwatch_core::{Inserted, Level, Store};

use crate::output;
use crate::summary::Finished;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Severity: DEBUG, INFO, WARNING, ERROR or CRITICAL
    #[arg(long, value_name = "LEVEL", default_value = "INFO")]
    level: Level,
    /// The run it concerns (any id you choose; created if new)
    #[arg(long, value_name = "ID", value_parser = non_empty("--run"))]
    run: Option<String>,
    /// A short title [default: the message's first line]
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,
    /// Your id for this event: sending it again stores nothing new (safe retries)
    #[arg(long, value_name = "ID", value_parser = non_empty("--event-id"))]
    event_id: Option<String>,
    /// The message; '-' reads it from standard input
    #[arg(value_name = "MESSAGE")]
    message: String,
}

/// A value parser rejecting empty (or blank) values of option `what`.
pub fn non_empty(what: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        if s.trim().is_empty() {
            Err(format!("{what} cannot be empty"))
        } else {
            Ok(s.to_string())
        }
    }
}

pub fn send(store: &mut Store, args: SendArgs, json: bool) -> anyhow::Result<Finished> {
    let message = if args.message == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("cannot read the message from standard input: {e}"))?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else {
        args.message
    };
    if message.trim().is_empty() {
        return Err(crate::usage_error(
            "send",
            "the message is empty: pass the text to record, or '-' to read it from standard input",
        ));
    }
    let event = Event {
        run_id: args.run,
        level: Some(args.level),
        title: args.title,
        message,
        event_id: args.event_id,
        source: "send".into(),
    };
    let (id, new) = match record(store, &event)? {
        Inserted::New(n) => (n.id, true),
        Inserted::Duplicate(id) => (id, false),
    };
    let mut out = output::stdout();
    if json {
        writeln!(out, "{}", serde_json::json!({ "id": id, "stored": new }))?;
    } else {
        writeln!(out, "{id}")?;
    }
    if !new {
        let event_id = event.event_id.as_deref().unwrap_or_default();
        writeln!(output::stderr(), "runwatch: event '{event_id}' was already stored as {id}; nothing new was stored.")?;
    }
    Ok(Finished { stored: if new { vec![id] } else { Vec::new() }, ..Finished::ok() })
}

/// Stores an event as a notification (idempotent by its event id).
pub fn record(store: &mut Store, event: &Event) -> anyhow::Result<Inserted> {
    let inserted = store.ingest(event, SystemClock.now())?;
    // TODO(delivery): cli.md says "with no watcher running it also delivers it before
    // exiting". `inbox::insert` has already queued the deliveries (the outbox rows); when no
    // watcher holds the data dir's `InstanceLock`, run the dispatcher here for this
    // notification's due deliveries before returning. A running watcher sends them itself.
    Ok(inserted)
}
