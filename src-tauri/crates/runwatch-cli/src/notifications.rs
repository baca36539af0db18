//! `runwatch notifications list|show|ack`: the inbox from the command line (Kopia's design).
//!
//! Notifications are named by their UUID, a unique prefix of it, or a unique end of it.
//! Lists show the shortest end of at least 8 characters that names exactly one: ids are
//! UUIDv7, whose first characters are the creation time (shared by every notification of
//! the same minute) and whose last ones are random.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use anyhow::bail;
use clap::{Args, Subcommand};
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::inbox::{self, AckState, ListFilter};
use runwatch_core::{Level, Notification, Store};

use crate::output::{self, paint, BOLD, DIM};
use crate::summary::Finished;

/// How many characters of the end of an id lists show (more when that many are not unique).
pub const SHORT_ID: usize = 8;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List notifications, newest first: pending ones unless --all
    List(ListArgs),
    /// Show everything about one notification, including its deliveries
    Show(ShowArgs),
    /// Acknowledge notifications, so they are no longer pending
    Ack(AckArgs),
    /// Snooze notifications (or a run's): out of the badge and the list until they come back
    Snooze(SnoozeArgs),
    /// Bring snoozed notifications back now
    Unsnooze(UnsnoozeArgs),
}

#[derive(Debug, Args)]
pub struct SnoozeArgs {
    /// The notifications (ids, or unique starts or ends of them)
    #[arg(value_name = "ID", value_parser = non_empty_id, required_unless_present = "run")]
    ids: Vec<String>,
    /// Snooze a run instead: its pending notifications and those that arrive meanwhile
    #[arg(long, value_name = "RUN", conflicts_with = "ids")]
    run: Option<String>,
    /// For this long (e.g. 1h)
    #[arg(long = "for", value_name = "DUR", value_parser = crate::noise::parse_positive_duration,
          required_unless_present_any = ["until", "until_change"], conflicts_with_all = ["until", "until_change"])]
    for_: Option<std::time::Duration>,
    /// Until this time (HH:MM, 'YYYY-MM-DD HH:MM' or RFC 3339)
    #[arg(long, value_name = "TIME", conflicts_with = "until_change")]
    until: Option<String>,
    /// Until the run's next state change (it checks in again, finishes, fails …)
    #[arg(long)]
    until_change: bool,
}

#[derive(Debug, Args)]
pub struct UnsnoozeArgs {
    /// The notifications (ids, or unique starts or ends of them)
    #[arg(value_name = "ID", value_parser = non_empty_id, required = true)]
    ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include acknowledged notifications
    #[arg(long)]
    all: bool,
    /// Only notifications at this level or above (DEBUG, INFO, WARNING, ERROR, CRITICAL)
    #[arg(long, value_name = "LEVEL")]
    level: Option<Level>,
    /// Only notifications about this run (its id or a unique prefix of it)
    #[arg(long, value_name = "ID")]
    run: Option<String>,
    /// Only notifications from this followed server ('runwatch remotes'), or 'local'
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
    /// List the snoozed notifications instead
    #[arg(long, conflicts_with_all = ["all", "silenced"])]
    snoozed: bool,
    /// List the silenced notifications instead (see 'runwatch silences')
    #[arg(long, conflicts_with_all = ["all", "snoozed"])]
    silenced: bool,
    /// Acknowledge the pending notifications listed
    #[arg(long)]
    auto_ack: bool,
    /// List at most N notifications (0 for all)
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The notification's id, or a unique start or end of it (lists show ends)
    #[arg(value_name = "ID", value_parser = non_empty_id)]
    id: String,
}

#[derive(Debug, Args)]
pub struct AckArgs {
    /// Acknowledge every pending notification
    #[arg(long, conflicts_with = "item")]
    all: bool,
    /// Acknowledge these notifications (ids, or unique starts or ends of them)
    #[arg(long, value_name = "ID", num_args = 1.., value_parser = non_empty_id)]
    item: Vec<String>,
}

pub fn run(cmd: Command, store: &mut Store, json: bool) -> anyhow::Result<Finished> {
    match cmd {
        Command::List(args) => list(store, &args, json),
        Command::Show(args) => show(store, &args, json),
        Command::Ack(args) => ack(store, &args, json),
        Command::Snooze(args) => snooze(store, &args, json),
        Command::Unsnooze(args) => unsnooze(store, &args, json),
    }
}

fn snooze(store: &mut Store, args: &SnoozeArgs, json: bool) -> anyhow::Result<Finished> {
    use runwatch_core::noise::SnoozeUntil;
    let now = SystemClock.now();
    let until = match (&args.for_, &args.until, args.until_change) {
        (Some(d), _, _) => SnoozeUntil::Time(now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
        (None, Some(t), _) => {
            SnoozeUntil::Time(crate::noise::parse_time(t, now).map_err(|e| crate::usage_error("notifications snooze", &e))?)
        }
        (None, None, _) => SnoozeUntil::RunChange,
    };
    let when = match until {
        SnoozeUntil::Time(t) => format!("until {}", output::second(t)),
        SnoozeUntil::RunChange => "until its run changes state".into(),
    };
    let mut out = output::stdout();
    if let Some(run) = &args.run {
        let run = resolve_run(store, run)?;
        let n = store.snooze_run(&run, until, now)?;
        if json {
            writeln!(out, "{}", serde_json::json!({ "run": run, "snoozed": n }))?;
        } else {
            writeln!(out, "Run '{run}' snoozed {when} ({}).", output::count(n as i64, "notification", "notifications"))?;
        }
        return Ok(Finished::ok());
    }
    let ids = resolve_all(store, &args.ids)?;
    let n = store.snooze(&ids, until, now).map_err(|e| anyhow::anyhow!("{e}"))?;
    if json {
        writeln!(out, "{}", serde_json::json!({ "snoozed": n, "ids": ids }))?;
    } else {
        let mut line = format!("Snoozed {} {when}.", output::count(n as i64, "notification", "notifications"));
        if n < ids.len() {
            line.push_str(&format!(" ({} already acknowledged.)", ids.len() - n));
        }
        writeln!(out, "{line}")?;
    }
    Ok(Finished::ok())
}

fn unsnooze(store: &mut Store, args: &UnsnoozeArgs, json: bool) -> anyhow::Result<Finished> {
    let ids = resolve_all(store, &args.ids)?;
    let n = store.unsnooze(&ids, SystemClock.now())?;
    let mut out = output::stdout();
    if json {
        writeln!(out, "{}", serde_json::json!({ "unsnoozed": n, "ids": ids }))?;
    } else {
        writeln!(out, "{} back.", output::count(n as i64, "notification is", "notifications are"))?;
    }
    Ok(Finished::ok())
}

/// Every id resolved first: one bad id changes nothing.
fn resolve_all(store: &Store, given: &[String]) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(given.len());
    for g in given {
        let id = resolve(store, g)?.id;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The same commands against a server (`--server`).
pub fn run_remote(cmd: Command, remote: &crate::remote::Remote, json: bool) -> anyhow::Result<Finished> {
    match cmd {
        Command::List(args) => {
            if args.auto_ack {
                return Err(crate::usage_error("notifications list", "--auto-ack does not apply with --server; use 'notifications ack'"));
            }
            if args.origin.is_some() {
                return Err(crate::usage_error("notifications list", "--origin does not apply with --server"));
            }
            if args.snoozed || args.silenced {
                return Err(crate::usage_error("notifications list", "--snoozed and --silenced do not apply with --server"));
            }
            crate::remote::list(remote, args.all, args.level, args.run.as_deref(), args.limit, json)
        }
        Command::Show(args) => crate::remote::show(remote, &args.id, json),
        Command::Snooze(_) | Command::Unsnooze(_) => {
            Err(crate::usage_error("notifications snooze", "snoozes are kept in the local inbox: run it without --server"))
        }
        Command::Ack(args) if !args.all && args.item.is_empty() => {
            Err(crate::usage_error("notifications ack", "name what to acknowledge: --item ID… or --all"))
        }
        Command::Ack(args) => crate::remote::ack(remote, args.all, &args.item, json),
    }
}

/// One notification as lists show it:
/// `2026-11-21 14:03 ERROR  Run 'be0ebd0c…' is stuck (no check-in for 105 s)` then
/// `  To see the details: runwatch notifications show 3f2a9c1e`, where `short` is from
/// [`short_ids`].
/// The level is padded to 5 so DEBUG, INFO and ERROR line up; two spaces follow it.
pub fn write_item(out: &mut impl Write, n: &Notification, short: &ShortIds) -> anyhow::Result<()> {
    write_item_from(out, n, short, 0)
}

/// [`write_item`] with an ORIGIN column `origin_width` wide after the level (when a list
/// holds notifications of followed servers; see [`origin_width`]): the server's name, or
/// "local".
pub fn write_item_from(out: &mut impl Write, n: &Notification, short: &ShortIds, origin_width: usize) -> anyhow::Result<()> {
    let level = paint(output::level_style(n.level), &format!("{:<5}", n.level));
    let mut title = short_title(n);
    if n.acked_at.is_some() {
        title.push_str(&paint(DIM, " (acknowledged)"));
    } else if n.resolved_at.is_some() {
        title.push_str(&paint(DIM, " (resolved)"));
    } else if n.silenced_by.is_some() {
        title.push_str(&paint(DIM, " (silenced)"));
    } else if let Some(until) = n.snoozed_until.filter(|u| *u > SystemClock.now()) {
        title.push_str(&paint(DIM, &format!(" ({})", crate::noise::snoozed_text(until))));
    }
    let origin = match origin_width {
        0 => String::new(),
        w => format!("{:<w$}  ", n.origin.as_deref().unwrap_or(LOCAL)),
    };
    writeln!(out, "{} {level}  {origin}{title}", output::minute(n.created_at))?;
    writeln!(out, "  To see the details: runwatch notifications show {}", short.of(&n.id))?;
    Ok(())
}

/// The origin of this instance's own notifications in lists.
pub const LOCAL: &str = "local";

/// How wide the ORIGIN column of a list is: 0 (no column) when all are local.
pub fn origin_width(items: &[Notification]) -> usize {
    match items.iter().filter_map(|n| n.origin.as_deref()).map(str::len).max() {
        None => 0,
        Some(w) => w.max(LOCAL.len()),
    }
}

/// The short ids of some notifications (see the module docs).
pub struct ShortIds(HashMap<String, String>);

impl ShortIds {
    /// No short ids: lists print whole ids (a server's inbox cannot be searched by ends here).
    pub fn whole() -> Self {
        ShortIds(HashMap::new())
    }

    /// The short id of `id`, or the whole id if it was not asked for.
    pub fn of<'a>(&'a self, id: &'a str) -> &'a str {
        self.0.get(id).map_or(id, String::as_str)
    }
}

/// The shortest end of each id, at least [`SHORT_ID`] characters, that names only it. One
/// pass over the inbox's ids for all of them; ends that more than one id shares (rare with
/// 32 random bits, but a big inbox has a few) grow one character at a time.
pub fn short_ids<'a>(store: &Store, ids: impl IntoIterator<Item = &'a str>) -> anyhow::Result<ShortIds> {
    let ids: Vec<&str> = ids.into_iter().collect();
    let end = |id: &str, len: usize| id.get(id.len().saturating_sub(len)..).unwrap_or(id).to_string();
    let wanted: HashSet<String> = ids.iter().map(|id| end(id, SHORT_ID)).collect();
    let counts = store.notification_suffix_counts(&wanted)?;
    let mut out = HashMap::new();
    for id in ids {
        let mut len = SHORT_ID.min(id.len());
        if counts.get(&end(id, len)).copied().unwrap_or(0) > 1 {
            len += 1;
            while len < id.len() && store.notification_ids_with_suffix(&end(id, len), 2)?.len() > 1 {
                len += 1;
            }
        }
        out.insert(id.to_string(), end(id, len));
    }
    Ok(ShortIds(out))
}

/// The notification whose id is `given`, starts with it or ends with it; an error naming
/// it when there is none, or listing the candidates when there are several.
pub fn resolve(store: &Store, given: &str) -> anyhow::Result<Notification> {
    if let Some(n) = store.notification(given)? {
        return Ok(n);
    }
    const SHOWN: usize = 10;
    let mut ids = store.notification_ids_with_prefix(given, SHOWN + 1)?;
    for id in store.notification_ids_with_suffix(given, SHOWN + 1)? {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    match ids.as_slice() {
        [] => bail!("there is no notification with id '{given}'; list them with 'runwatch notifications list --all'"),
        [one] => match store.notification(one)? {
            Some(n) => Ok(n),
            None => bail!("notification '{one}' vanished while reading it (expired?); try again"),
        },
        many => {
            let mut shown = many.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
            if many.len() > SHOWN {
                shown.push_str(", …");
            }
            bail!("notification id '{given}' is ambiguous: it matches {shown}; give more characters")
        }
    }
}

fn show(store: &mut Store, args: &ShowArgs, json: bool) -> anyhow::Result<Finished> {
    let n = resolve(store, &args.id)?;
    let deliveries = store.deliveries_of(&n.id)?;
    let mut out = output::stdout();
    if json {
        let mut value = serde_json::to_value(&n)?;
        value["deliveries"] = serde_json::to_value(&deliveries)?;
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
        return Ok(Finished { shows_inbox: true, ..Finished::ok() });
    }

    let level = paint(output::level_style(n.level), n.level.name());
    writeln!(out, "{}", paint(BOLD, &format!("Notification {}", n.id)))?;
    let mut fields: Vec<(&str, String)> = vec![("Level", level), ("Title", n.title.clone())];
    if let Some(run) = &n.run_id {
        let name = store.run(run)?.and_then(|r| r.name);
        fields.push((
            "Run",
            match name {
                Some(name) if name != *run => format!("{run} ({name})"),
                _ => run.clone(),
            },
        ));
    }
    fields.push(("Source", n.source.clone()));
    if let Some(origin) = &n.origin {
        fields.push(("Origin", origin.clone()));
    }
    fields.push(("Created", output::second(n.created_at)));
    if n.updated_at != n.created_at {
        fields.push(("Updated", output::second(n.updated_at)));
    }
    let now = SystemClock.now();
    fields.push((
        "Status",
        match (n.acked_at, n.resolved_at, n.snoozed_until) {
            (Some(at), _, _) => format!("acknowledged at {}", output::second(at)),
            (None, Some(at), _) => format!("resolved at {} (its run recovered)", output::second(at)),
            (None, None, Some(until)) if until > now => crate::noise::snoozed_text(until),
            _ => "pending".into(),
        },
    ));
    if let Some(silence) = &n.silenced_by {
        fields.push(("Silenced", format!("by silence {silence} (not popped up nor forwarded)")));
    }
    if let Some(key) = &n.group_key {
        fields.push(("Group", key.clone()));
    }
    if n.repeat_count > 0 {
        fields.push(("Repeated", format!("{} more messages logged", n.repeat_count)));
    }
    if let Some(event) = &n.event_id {
        fields.push(("Event id", event.clone()));
    }
    if let Some(at) = n.expires_at {
        fields.push(("Expires", output::second(at)));
    }
    for (name, value) in fields {
        writeln!(out, "{:<10} {value}", format!("{name}:"))?;
    }

    if !n.body.trim().is_empty() && n.body.trim() != n.title.trim() {
        writeln!(out)?;
        writeln!(out, "{}", paint(BOLD, "Message:"))?;
        for line in n.body.lines() {
            writeln!(out, "  {line}")?;
        }
    }

    writeln!(out)?;
    writeln!(out, "{}", paint(BOLD, "Deliveries:"))?;
    if deliveries.is_empty() {
        writeln!(out, "  No notifiers were configured when it was stored.")?;
    } else {
        let mut table = output::Table::new(["NOTIFIER", "TYPE", "STATE", "ATTEMPTS", "WHEN", "DETAILS"]);
        for d in &deliveries {
            let details = match d.state {
                runwatch_core::DeliveryState::Sent => String::new(),
                runwatch_core::DeliveryState::Failed => d.last_error.clone().unwrap_or_default(),
                runwatch_core::DeliveryState::Pending if d.sends > 0 => {
                    format!("sent {}; again {} unless acknowledged", times(d.sends), output::second(d.next_attempt_at))
                }
                runwatch_core::DeliveryState::Pending => {
                    let next = format!("next attempt {}", output::second(d.next_attempt_at));
                    match &d.last_error {
                        Some(e) => format!("{next}; last error: {e}"),
                        None => next,
                    }
                }
            };
            let id: String = d.notifier_id.chars().take(SHORT_ID).collect();
            table.row([
                id,
                d.notifier_type.clone(),
                d.state.to_string(),
                d.attempts.to_string(),
                output::second(d.updated_at),
                details.replace('\n', " "),
            ]);
        }
        for line in table.render("  ") {
            writeln!(out, "{line}")?;
        }
    }
    if n.acked_at.is_none() {
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            paint(DIM, &format!("To acknowledge it: runwatch notifications ack --item {}", short_ids(store, [n.id.as_str()])?.of(&n.id)))
        )?;
    }
    Ok(Finished { shows_inbox: true, ..Finished::ok() })
}

fn ack(store: &mut Store, args: &AckArgs, json: bool) -> anyhow::Result<Finished> {
    let now = SystemClock.now();
    let mut out = output::stdout();
    if args.all {
        let n = store.ack_all(now)?;
        if json {
            writeln!(out, "{}", serde_json::json!({ "acknowledged": n }))?;
        } else if n == 0 {
            writeln!(out, "There were no pending notifications.")?;
        } else {
            writeln!(out, "All pending notifications have been acknowledged.")?;
        }
        let followed = store.remotes()?.into_iter().filter(|r| r.enabled).count();
        if !json && n > 0 && followed > 0 {
            writeln!(out, "Followed servers are told within seconds (or when they can be reached).")?;
        }
        return Ok(Finished::ok());
    }
    if args.item.is_empty() {
        return Err(crate::usage_error(
            "notifications ack",
            "say what to acknowledge: --all, or --item ID… with ids from 'runwatch notifications list'",
        ));
    }
    // Resolve every id first: one bad id acknowledges nothing.
    let mut ids = Vec::with_capacity(args.item.len());
    for prefix in &args.item {
        let id = resolve(store, prefix)?.id;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let n = store.ack(&ids, now)?;
    if json {
        writeln!(out, "{}", serde_json::json!({ "acknowledged": n, "ids": ids }))?;
    } else {
        let already = ids.len() - n;
        let mut line = format!("Acknowledged {}.", output::count(n as i64, "notification", "notifications"));
        if already > 0 {
            line.pop();
            line.push_str(&format!(
                " ({} already acknowledged).",
                if already == 1 { "1 was".to_string() } else { format!("{already} were") }
            ));
        }
        writeln!(out, "{line}")?;
    }
    Ok(Finished::ok())
}

/// "once", "twice", "3 times".
fn times(n: i64) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// Rejects an empty id at parse time (it would match every notification).
fn non_empty_id(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an id cannot be empty; copy one from 'runwatch notifications list'".into());
    }
    Ok(s.to_string())
}

fn list(store: &mut Store, args: &ListArgs, json: bool) -> anyhow::Result<Finished> {
    // Everything that can fail on bad input is checked before anything is written.
    let run_id = args.run.as_deref().map(|r| resolve_run(store, r)).transpose()?;
    let want = if args.limit == 0 { usize::MAX } else { args.limit };
    let mut filter = ListFilter {
        min_level: args.level,
        run_id,
        state: if args.all {
            AckState::All
        } else if args.snoozed {
            AckState::Snoozed
        } else if args.silenced {
            AckState::Silenced
        } else {
            AckState::Pending
        },
        cursor: None,
        limit: Some(want.min(inbox::MAX_PAGE)),
        origin: args.origin.clone(),
        now: None,
    };
    let mut items: Vec<Notification> = Vec::new();
    let mut more = false;
    loop {
        let page = store.list_notifications(&filter)?;
        items.extend(page.items);
        match page.next_cursor {
            Some(cursor) if items.len() < want => {
                filter.limit = Some((want - items.len()).min(inbox::MAX_PAGE));
                filter.cursor = Some(cursor);
            }
            Some(_) => {
                more = true;
                break;
            }
            None => break,
        }
    }

    let mut out = output::stdout();
    if json {
        serde_json::to_writer_pretty(&mut out, &items)?;
        writeln!(out)?;
    } else if items.is_empty() {
        writeln!(
            out,
            "{}",
            match filter.state {
                AckState::Snoozed => "There are no snoozed notifications.",
                AckState::Silenced => "There are no silenced notifications.",
                _ => "There are no notifications.",
            }
        )?;
    } else {
        let short = short_ids(store, items.iter().map(|n| n.id.as_str()))?;
        let width = origin_width(&items);
        if width > 0 {
            writeln!(out, "{}", paint(DIM, &format!("{:<16} {:<5}  {:<width$}  TITLE", "CREATED", "LEVEL", "ORIGIN")))?;
        }
        for n in &items {
            write_item_from(&mut out, n, &short, width)?;
        }
        if more {
            writeln!(out, "{}", paint(DIM, &format!("(The newest {} are shown; use --limit 0 to list all.)", items.len())))?;
        }
    }
    out.flush()?;

    if args.auto_ack {
        let pending: Vec<String> = items.iter().filter(|n| n.acked_at.is_none()).map(|n| n.id.clone()).collect();
        let acked = store.ack(&pending, SystemClock.now())?;
        if !json && acked > 0 {
            writeln!(out, "Acknowledged {}.", output::count(acked as i64, "notification", "notifications"))?;
        }
    }
    Ok(Finished { shows_inbox: true, ..Finished::ok() })
}

/// The title with a long run id (an Aim hash) shortened to 8 characters and an ellipsis,
/// as in `Run 'be0ebd0c…' is stuck`; `show` prints it in full.
fn short_title(n: &Notification) -> String {
    match &n.run_id {
        Some(run) if run.chars().count() > 12 && n.title.contains(run.as_str()) => {
            let short: String = run.chars().take(SHORT_ID).collect();
            n.title.replace(run.as_str(), &format!("{short}…"))
        }
        _ => n.title.clone(),
    }
}

/// The run named by `prefix`: an exact id, else a unique prefix of one.
fn resolve_run(store: &Store, prefix: &str) -> anyhow::Result<String> {
    if prefix.is_empty() {
        bail!("--run needs a run id (or a unique prefix of one)");
    }
    if store.run(prefix)?.is_some() {
        return Ok(prefix.to_string());
    }
    let ids = store.run_ids_with_prefix(prefix, 11)?;
    match ids.as_slice() {
        [] => bail!("there is no run with id '{prefix}'; runs are known once they check in or report an event"),
        [one] => Ok(one.clone()),
        many => bail!(
            "run id '{prefix}' is ambiguous: it matches {}{}; give more characters",
            many.iter().take(10).cloned().collect::<Vec<_>>().join(", "),
            if many.len() > 10 { ", …" } else { "" }
        ),
    }
}
