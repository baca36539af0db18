//! `runwatch send`: record a notification from a job or script (any language), and
//! [`record`], the one path by which the CLI's reporting commands (`send`, `exec`) store
//! events, and [`deliver_if_no_watcher`], which delivers them when no watcher runs.

use std::io::{Read, Write};

use clap::Args;
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::ingest::Event;
use std::sync::Arc;
use std::time::Duration;

use runwatch_core::{deliveries, DataDir, Holder, Inserted, InstanceLock, Level, Store};
use runwatch_notify::send::{Sender, DEFAULT_TIMEOUT};
use runwatch_notify::Dispatcher;

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
        std::io::stdin().read_to_string(&mut text).map_err(|e| anyhow::anyhow!("cannot read the message from standard input: {e}"))?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else {
        args.message
    };
    if message.trim().is_empty() {
        return Err(crate::usage_error("send", "the message is empty: pass the text to record, or '-' to read it from standard input"));
    }
    let event =
        Event { run_id: args.run, level: Some(args.level), title: args.title, message, event_id: args.event_id, source: "send".into() };
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
    deliver_if_no_watcher(store);
    if !new {
        let event_id = event.event_id.as_deref().unwrap_or_default();
        writeln!(output::stderr(), "runwatch: event '{event_id}' was already stored as {id}; nothing new was stored.")?;
    }
    Ok(Finished { stored: if new { vec![id] } else { Vec::new() }, ..Finished::ok() })
}

/// Stores an event as a notification (idempotent by its event id).
pub fn record(store: &mut Store, event: &Event) -> anyhow::Result<Inserted> {
    Ok(store.ingest(event, SystemClock.now())?)
}

/// How long a command waits for its deliveries (retries included) when no watcher runs.
const DELIVERY_PATIENCE: Duration = Duration::from_secs(20);

/// With no watcher on this data dir, delivers what the outbox holds (this command's
/// notifications among them) before the command exits; a running watcher's dispatcher
/// does it otherwise. What cannot be delivered in time stays queued for the next watcher.
pub fn deliver_if_no_watcher(store: &Store) {
    deliver_without_watcher(store, Patience::UntilRetriesAreDue);
}

/// Sends what is due now when no watcher runs, without waiting for retries (they wait for
/// the next delivery or the next watcher): for `exec` while its command runs, so a stall
/// reaches Slack while it matters, not when the command ends.
pub fn deliver_due_if_no_watcher(store: &Store) {
    deliver_without_watcher(store, Patience::None);
}

#[derive(PartialEq)]
enum Patience {
    /// Wait for retries due within [`DELIVERY_PATIENCE`], then say what is left.
    UntilRetriesAreDue,
    None,
}

fn deliver_without_watcher(store: &Store, patience: Patience) {
    let Some(dir) = store.path().parent() else { return };
    let data_dir = DataDir::at(dir);
    let pending = |s: &Store| deliveries::counts(s.conn()).map_or(0, |(p, _, _)| p);
    if pending(store) == 0 {
        return; // before taking the lock: most calls have nothing to send
    }
    let Ok(outbox) = Store::open(&data_dir) else { return };
    let mut dispatcher = Dispatcher::new(outbox, Arc::new(SystemClock), Sender::new(DEFAULT_TIMEOUT));
    let give_up = SystemClock.now() + DELIVERY_PATIENCE.as_millis() as i64;
    loop {
        // Held for one round of sends at a time, so a watcher starting meanwhile waits
        // seconds at most; once one runs (the lock is a watcher's), the rest is its to send.
        let Ok(lock) = InstanceLock::try_acquire(&data_dir, Holder::Delivery) else { return };
        let next = match dispatcher.step() {
            Ok(next) => next,
            Err(e) => {
                let _ = writeln!(output::stderr(), "runwatch: warning: cannot deliver now: {e}");
                return;
            }
        };
        drop(lock);
        if pending(dispatcher.store()) == 0 || patience == Patience::None {
            return;
        }
        match next {
            Some(at) if at <= give_up => {
                let wait = (at - SystemClock.now()).clamp(0, 5_000);
                std::thread::sleep(Duration::from_millis(wait as u64)); // until the retry is due
            }
            _ => break,
        }
    }
    let left = pending(dispatcher.store());
    let _ = writeln!(
        output::stderr(),
        "runwatch: warning: {left} deliveries could not be made yet; they stay queued and the next watcher \
         ('runwatch start' or the desktop app) will retry them (see 'runwatch notifications show ID')"
    );
}
