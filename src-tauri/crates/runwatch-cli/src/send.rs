//! `runwatch send`: record a notification from a job or script (any language), and
//! [`record`], the one path by which the CLI's reporting commands (`send`, `exec`) store
//! events, and [`deliver_if_no_watcher`], which delivers them when no watcher runs.

use std::io::{Read, Write};

use clap::Args;
use std::time::Duration;

use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::ingest::Event;
use runwatch_core::{DataDir, Inserted, Level, Store};
use runwatch_engine::oneshot::{Delivered, Patience};

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
    /// Who it is for on a team store (--store postgresql://…): a user, or user@host;
    /// repeat for several [default: everyone]
    #[arg(long, value_name = "USER[@HOST]", value_parser = recipient)]
    to: Vec<String>,
    /// The message; '-' reads it from standard input
    #[arg(value_name = "MESSAGE")]
    message: String,
}

fn recipient(s: &str) -> Result<String, String> {
    runwatch_core::users::Recipient::parse(s).map(|_| s.to_string())
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
    let event = event(args)?;
    if !event.to.is_empty() {
        let known: Vec<String> = store.users()?.into_iter().map(|u| u.name).collect();
        for to in &event.to {
            let user = to.split('@').next().unwrap_or_default();
            if !known.iter().any(|k| k == user) {
                anyhow::bail!("--to {to}: there is no user '{user}' on this store; add one with 'runwatch users add {user}'");
            }
        }
    }
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

/// The event `send` reports, its message read from stdin when it is '-'.
pub fn event(args: SendArgs) -> anyhow::Result<Event> {
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
    Ok(Event {
        run_id: args.run,
        level: Some(args.level),
        title: args.title,
        message,
        event_id: args.event_id,
        source: "send".into(),
        to: args.to,
    })
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
    deliver_without_watcher(store, Patience::RetriesDueWithin(DELIVERY_PATIENCE));
}

/// Sends what is due now when no watcher runs, without waiting for retries (they wait for
/// the next delivery or the next watcher): for `exec` while its command runs, so a stall
/// reaches Slack while it matters, not when the command ends.
pub fn deliver_due_if_no_watcher(store: &Store) {
    deliver_without_watcher(store, Patience::DueNow);
}

fn deliver_without_watcher(store: &Store, patience: Patience) {
    // A team store is delivered from by its daemons (woken by the commit), each delivery by one.
    if store.is_postgres() {
        return;
    }
    let Some(dir) = store.path().parent() else { return };
    match runwatch_engine::oneshot::deliver_without_watcher(&DataDir::at(dir), store, patience) {
        Ok(Delivered::Done | Delivered::DueSent(_)) => {}
        Ok(Delivered::Left(left)) => {
            let _ = writeln!(
                output::stderr(),
                "runwatch: warning: {left} deliveries could not be made yet; they stay queued and the next watcher \
                 ('runwatch start' or the desktop app) will retry them (see 'runwatch notifications show ID')"
            );
        }
        Err(e) => {
            let _ = writeln!(output::stderr(), "runwatch: warning: cannot deliver now: {e}");
        }
    }
}
