//! `--server URL`: the commands jobs run (`send`, `check-in`, `exec`) and `notifications
//! list|show|ack` act on a Runwatch server over HTTP(S) instead of the local store. What
//! cannot be sent waits in the data dir's spool (`runwatch spool`) and leaves, in order,
//! with the next command or `runwatch spool flush`. A job is never failed by the server
//! being away: only a refusal (a wrong token, a rejected request) is an error.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use runwatch_core::check_ins::CheckInReport;
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::inbox::{Page, UnreadSummary};
use runwatch_core::ingest::Event;
use runwatch_core::{DataDir, Level, Notification};
use runwatch_remote::{Client, Kind, Report, Reporter, Spool, Target};
use serde_json::{json, Value};

use crate::notifications::{write_item, ShortIds};
use crate::output;
use crate::summary::{Finished, NoticeMode};

/// How long one request to the server may take before what it carried is spooled.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The global options that point commands at a server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Act on this Runwatch server instead of the local store (send, check-in, exec,
    /// notifications list|show|ack), e.g. https://lab-server:8747
    #[arg(long, global = true, help_heading = "Global options", value_name = "URL", env = "RUNWATCH_SERVER", hide_env_values = true)]
    pub server: Option<String>,
    /// A file holding the server's API token ('runwatch token' on the server prints it);
    /// or set the token itself in RUNWATCH_TOKEN
    #[arg(long, global = true, help_heading = "Global options", value_name = "FILE", env = "RUNWATCH_TOKEN_FILE", hide_env_values = true)]
    pub token_file: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for the server's HTTPS, besides the usual ones
    #[arg(long, global = true, help_heading = "Global options", value_name = "FILE", env = "RUNWATCH_CA_FILE", hide_env_values = true)]
    pub ca_file: Option<PathBuf>,
}

impl ServerArgs {
    /// The server to act on, if one is named.
    pub fn target(&self) -> anyhow::Result<Option<Target>> {
        let Some(server) = &self.server else { return Ok(None) };
        let token = std::env::var("RUNWATCH_TOKEN").ok();
        Ok(Some(Target::new(server, token.as_deref(), self.token_file.as_deref(), self.ca_file.as_deref())?))
    }
}

/// A server and the local spool in front of it.
pub struct Remote {
    pub reporter: Reporter,
    pub dir: DataDir,
    /// A report of this command had to be spooled: the summary does not try the server
    /// again (a server that times out would hold the job up twice).
    spooled: std::cell::Cell<bool>,
}

impl Remote {
    pub fn new(target: Target, dir: DataDir) -> anyhow::Result<Remote> {
        let client = Client::new(target, TIMEOUT)?;
        Ok(Remote { reporter: Reporter::new(client, dir.clone()), dir, spooled: std::cell::Cell::new(false) })
    }

    /// Says that the server could not be reached during this command (see `spooled`).
    pub fn mark_unreachable(&self) {
        self.spooled.set(true);
    }

    fn client(&self) -> &Client {
        self.reporter.client()
    }

    fn server(&self) -> &str {
        self.client().target().server()
    }

    /// Sends a report (after whatever waits in the spool); tells on stderr when it had to
    /// wait. `Ok(None)`: spooled.
    pub fn report(&self, kind: Kind, body: Value) -> anyhow::Result<Option<Value>> {
        match self.reporter.report(kind, body, SystemClock.now())? {
            Report::Sent(answer) => Ok(Some(answer)),
            Report::Spooled { reason } => {
                self.spooled.set(true);
                let what = if kind == Kind::CheckIn { "check-in" } else { "event" };
                writeln!(
                    output::stderr(),
                    "runwatch: warning: {reason}; the {what} waits in the spool and goes with the next command or 'runwatch spool flush'"
                )?;
                Ok(None)
            }
        }
    }
}

/// `send --server`: the event goes to the server's inbox.
pub fn send(remote: &Remote, event: &Event, json: bool) -> anyhow::Result<Finished> {
    let answer = remote.report(Kind::Event, serde_json::to_value(event)?)?;
    let id = answer.as_ref().and_then(|a| a.get("id")).and_then(Value::as_str).map(str::to_string);
    let mut out = output::stdout();
    match (&id, json) {
        (_, true) => writeln!(out, "{}", json!({ "id": id, "server": remote.server(), "spooled": answer.is_none() }))?,
        (Some(id), false) => writeln!(out, "{id}")?,
        (None, false) => {}
    }
    Ok(Finished { stored: id.into_iter().collect(), ..Finished::ok() })
}

/// `check-in --server`: an HTTP check-in, with this machine's name and cluster labels.
pub fn check_in(remote: &Remote, report: &CheckInReport, json: bool) -> anyhow::Result<Finished> {
    let answer = remote.report(Kind::CheckIn, serde_json::to_value(report)?)?;
    if json {
        writeln!(output::stdout(), "{}", json!({ "run": report.run_id, "server": remote.server(), "spooled": answer.is_none() }))?;
    }
    Ok(Finished::ok())
}

/// `notifications list --server`.
pub fn list(remote: &Remote, all: bool, level: Option<Level>, run: Option<&str>, limit: usize, json: bool) -> anyhow::Result<Finished> {
    let mut items: Vec<Notification> = Vec::new();
    let mut cursor: Option<String> = None;
    let state = if all { "all" } else { "pending" };
    let level_name = level.map(|l| l.name().to_string());
    loop {
        let page_size = if limit == 0 { 1000 } else { (limit - items.len()).min(1000) };
        let mut query: Vec<(&str, &str)> = vec![("state", state)];
        let page_size_text = page_size.to_string();
        query.push(("limit", &page_size_text));
        if let Some(l) = &level_name {
            query.push(("level", l));
        }
        if let Some(r) = run {
            query.push(("run", r));
        }
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let page: Page = serde_json::from_value(remote.client().get("notifications", &query)?)
            .context("the server's list of notifications is not what this runwatch expects")?;
        items.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() || (limit != 0 && items.len() >= limit) {
            break;
        }
    }
    let mut out = output::stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
    } else if items.is_empty() {
        writeln!(out, "No {} notifications on {}.", if all { "" } else { "pending" }, remote.server())?;
    } else {
        for n in &items {
            write_item(&mut out, n, &ShortIds::whole())?;
        }
    }
    Ok(Finished { shows_inbox: true, ..Finished::ok() })
}

/// `notifications show --server ID` (the whole id, as remote lists print it).
pub fn show(remote: &Remote, id: &str, json: bool) -> anyhow::Result<Finished> {
    let details = remote.client().get(&format!("notifications/{id}"), &[])?;
    let mut out = output::stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&details)?)?;
        return Ok(Finished::ok());
    }
    let n: Notification =
        serde_json::from_value(details["notification"].clone()).context("the server's notification is not what this runwatch expects")?;
    writeln!(out, "{} {}  {}", output::minute(n.created_at), n.level, n.title)?;
    writeln!(out, "Id: {}", n.id)?;
    if let Some(run) = &n.run_id {
        writeln!(out, "Run: {run}")?;
    }
    writeln!(out, "Server: {}", remote.server())?;
    writeln!(out, "State: {}", if n.acked_at.is_some() { "acknowledged" } else { "pending" })?;
    if !n.body.is_empty() {
        writeln!(out, "\n{}", n.body)?;
    }
    Ok(Finished::ok())
}

/// `notifications ack --server`.
pub fn ack(remote: &Remote, all: bool, ids: &[String], json: bool) -> anyhow::Result<Finished> {
    let body = if all { json!({ "all": true }) } else { json!({ "ids": ids }) };
    let answer = remote.client().post("notifications/ack", &body)?;
    let n = answer.get("acknowledged").and_then(Value::as_i64).unwrap_or(0);
    if json {
        writeln!(output::stdout(), "{answer}")?;
    } else {
        writeln!(output::stdout(), "Acknowledged {n} notification{} on {}.", if n == 1 { "" } else { "s" }, remote.server())?;
    }
    Ok(Finished { shows_inbox: true, ..Finished::ok() })
}

/// The pending summary after a command, from the server; nothing if it cannot be reached
/// (the command already said so).
pub fn after(remote: &Remote, mode: NoticeMode, done: &Finished) -> u8 {
    if mode == NoticeMode::Hidden || remote.spooled.get() {
        return done.code;
    }
    let Ok(summary) = remote.client().get("notifications/summary", &[]).and_then(|v| {
        serde_json::from_value::<UnreadSummary>(v)
            .map_err(|e| runwatch_remote::ClientError::Unreachable { server: remote.server().into(), reason: e.to_string() })
    }) else {
        return done.code;
    };
    let line = crate::summary::print_line(&summary);
    if done.code != 0 || done.passthrough || line.is_err() {
        return done.code;
    }
    // What this command stored itself does not turn success into failure.
    let serious = summary.warning + summary.error + summary.critical;
    let own = i64::try_from(done.stored.len()).unwrap_or(0);
    u8::from(serious - own > 0)
}

/// `runwatch spool`: what waits, oldest first.
pub fn spool_list(dir: &DataDir, json: bool) -> anyhow::Result<Finished> {
    let items = Spool::open(dir)?.items(None)?;
    let mut out = output::stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
        return Ok(Finished::ok());
    }
    if items.is_empty() {
        writeln!(out, "Nothing waits to be sent.")?;
        return Ok(Finished::ok());
    }
    let now = SystemClock.now();
    for i in &items {
        let age = humantime::format_duration(Duration::from_secs(u64::try_from((now - i.created_at) / 1000).unwrap_or(0)));
        let what = match i.kind {
            Kind::Event => i.body.get("title").or_else(|| i.body.get("message")).and_then(Value::as_str).unwrap_or("").to_string(),
            Kind::CheckIn => format!("check-in of run {}", i.body.get("run_id").and_then(Value::as_str).unwrap_or("?")),
        };
        let state = if i.rejected { "REJECTED" } else { "waiting" };
        writeln!(out, "{:>6}  {state:<8}  {}  {age} ago  {}", i.seq, i.server, cut(&what, 60))?;
        if let Some(e) = &i.last_error {
            writeln!(out, "        last error: {e}")?;
        }
    }
    let waiting = items.iter().filter(|i| !i.rejected).count();
    writeln!(out, "{waiting} waiting, {} rejected by the server (kept for you to see).", items.len() - waiting)?;
    Ok(Finished::ok())
}

/// `runwatch spool flush`: sends what waits for the server; exit 1 while it cannot.
pub fn spool_flush(remote: &Remote, json: bool) -> anyhow::Result<Finished> {
    let flushed = remote.reporter.flush()?;
    let mut out = output::stdout();
    if json {
        writeln!(
            out,
            "{}",
            json!({ "sent": flushed.sent, "rejected": flushed.rejected, "left": flushed.left,
                    "error": flushed.stopped.as_ref().map(ToString::to_string) })
        )?;
    } else {
        writeln!(out, "Sent {} to {}; {} left.", flushed.sent, remote.server(), flushed.left)?;
        if flushed.rejected > 0 {
            writeln!(out, "{} refused by the server for good: see 'runwatch spool'.", flushed.rejected)?;
        }
    }
    match flushed.stopped {
        Some(e) => {
            writeln!(output::stderr(), "runwatch: error: {e}; {} left in the spool", flushed.left)?;
            Ok(Finished { code: 1, ..Finished::ok() })
        }
        None => Ok(Finished::ok()),
    }
}

/// The first line of `text`, at most `max` characters (with an ellipsis when cut).
fn cut(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max {
        return line.to_string();
    }
    let mut t: String = line.chars().take(max - 1).collect();
    t.push('…');
    t
}
