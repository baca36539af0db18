//! Noise control from the command line: `runwatch silences add|list|expire`, the notifier
//! rule options (`--delay`, `--repeat`, `--quiet-hours` …) shared by `notifiers add` and
//! `notifiers set`, and the duration and time arguments of snoozes and silences.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use runwatch_core::clock::{Clock, Millis, SystemClock};
use runwatch_core::noise::{NewSilence, NotifierRules, QuietHours, Silence};
use runwatch_core::{Level, Store};

use crate::output;
use crate::summary::Finished;

/// A duration such as 30s, 15m, 1h30m (humantime); zero is allowed (it turns a rule off).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write a duration such as 30s, 15m or 1h30m"))
}

/// A positive duration.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(d)
}

/// A time: `HH:MM` (the next one, local), `YYYY-MM-DD HH:MM` (local) or RFC 3339.
pub fn parse_time(s: &str, now: Millis) -> Result<Millis, String> {
    let s = s.trim();
    let tz = jiff::tz::TimeZone::system();
    let bad = || format!("'{s}' is not a time: write HH:MM, 'YYYY-MM-DD HH:MM' or 2026-12-01T08:00:00Z");
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Ok(dt) = s.replace(' ', "T").parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(tz).map(|z| z.timestamp().as_millisecond()).map_err(|_| bad());
    }
    let time: jiff::civil::Time = s.parse().map_err(|_| bad())?;
    let today = jiff::Timestamp::from_millisecond(now).map_err(|_| bad())?.to_zoned(tz.clone()).date();
    for day in [today, today.tomorrow().map_err(|_| bad())?] {
        let at = day.to_datetime(time).to_zoned(tz.clone()).map_err(|_| bad())?.timestamp().as_millisecond();
        if at > now {
            return Ok(at);
        }
    }
    Err(bad())
}

/// The rule options of `notifiers add` and `notifiers set`.
#[derive(Debug, Clone, Default, Args)]
pub struct RuleArgs {
    /// Send only if still unacknowledged after this long (e.g. 15m; 0 turns it off)
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Send again every DUR while unacknowledged (e.g. 1h; 0 turns it off)
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub repeat: Option<Duration>,
    /// Hold notifications from HH:MM to HH:MM local time and send them as one digest after ('off' turns it off)
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub quiet_hours: Option<String>,
    /// The days quiet hours start on, e.g. mon-fri [default: every day]
    #[arg(long, value_name = "DAYS", requires = "quiet_hours")]
    pub quiet_days: Option<String>,
    /// This level and above pass through quiet hours [default: CRITICAL]
    #[arg(long, value_name = "LEVEL", value_parser = crate::notifiers::parse_level, requires = "quiet_hours")]
    pub quiet_pass: Option<Level>,
}

impl RuleArgs {
    pub fn is_empty(&self) -> bool {
        self.delay.is_none() && self.repeat.is_none() && self.quiet_hours.is_none()
    }

    /// These options applied to `rules`.
    pub fn apply(&self, mut rules: NotifierRules) -> Result<NotifierRules, String> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if let Some(d) = self.delay {
            rules.delay_ms = (!d.is_zero()).then(|| ms(d));
        }
        if let Some(r) = self.repeat {
            rules.repeat_ms = (!r.is_zero()).then(|| ms(r));
        }
        if let Some(q) = &self.quiet_hours {
            rules.quiet = if q.trim() == "off" {
                None
            } else {
                Some(QuietHours::parse(q, self.quiet_days.as_deref(), self.quiet_pass).map_err(|e| e.to_string())?)
            };
        }
        rules.check().map_err(|e| e.to_string())?;
        Ok(rules)
    }

    /// The popups' quiet hours (`notifiers set popups …`): delay and repeat do not apply.
    pub fn popup_quiet_hours(&self) -> Result<Option<QuietHours>, String> {
        if self.delay.is_some() || self.repeat.is_some() {
            return Err("popups take --quiet-hours only (a delay or repeat is for notifiers)".into());
        }
        Ok(self.apply(NotifierRules::default())?.quiet)
    }
}

#[derive(Debug, Subcommand)]
pub enum SilencesCommand {
    /// Silence matching notifications for a while: stored, listed as silenced, never popped up nor forwarded
    Add(AddArgs),
    /// List silences (active, pending and expired)
    List,
    /// End a silence now (ID or a unique prefix of it)
    Expire { id: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// FIELD=VALUE (fields: run, repo, host, source, level, text, label.NAME; also != ~ !~, level<=LEVEL); repeat: all must match
    #[arg(long = "match", value_name = "MATCHER", required = true)]
    matchers: Vec<String>,
    /// How long it lasts, from now (e.g. 2h)
    #[arg(long = "for", value_name = "DUR", value_parser = parse_positive_duration, conflicts_with = "until", required_unless_present = "until")]
    for_: Option<Duration>,
    /// When it ends (HH:MM, 'YYYY-MM-DD HH:MM' or RFC 3339)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Why (shown in lists)
    #[arg(long, value_name = "TEXT")]
    comment: Option<String>,
}

pub fn run(cmd: SilencesCommand, store: &mut Store, json: bool) -> anyhow::Result<Finished> {
    let now = SystemClock.now();
    let mut out = output::stdout();
    match cmd {
        SilencesCommand::Add(args) => {
            let ends_at = match (&args.for_, &args.until) {
                (Some(d), _) => now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                (None, Some(t)) => parse_time(t, now).map_err(|e| crate::usage_error("silences add", &e))?,
                (None, None) => bail!("say how long: --for DUR or --until TIME"),
            };
            let new = NewSilence { matchers: args.matchers, starts_at: None, ends_at, comment: args.comment };
            let s = store.add_silence(&new, now).map_err(|e| crate::usage_error("silences add", &e.to_string()))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                writeln!(out, "Added silence {} until {}: {}.", s.id, output::second(s.ends_at), matchers(&s))?;
            }
        }
        SilencesCommand::List => {
            let all = store.silences()?;
            if json {
                let items: Vec<_> = all
                    .iter()
                    .map(|s| {
                        let mut v = serde_json::to_value(s).unwrap_or_default();
                        v["state"] = s.state(now).into();
                        v
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
            } else if all.is_empty() {
                writeln!(out, "There are no silences.")?;
            } else {
                let mut table = output::Table::new(["SILENCE", "STATE", "STARTS", "ENDS", "MATCHERS", "COMMENT"]);
                for s in &all {
                    table.row([
                        s.id.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect(),
                        s.state(now).to_string(),
                        output::minute(s.starts_at),
                        output::minute(s.ends_at),
                        matchers(s),
                        s.comment.clone(),
                    ]);
                }
                for line in table.render("") {
                    writeln!(out, "{line}")?;
                }
            }
        }
        SilencesCommand::Expire { id } => {
            let s = store.expire_silence(&resolve_silence_id(store, &id)?, now)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                writeln!(out, "Silence {} expired: {} is no longer silenced.", s.id, matchers(&s))?;
            }
        }
    }
    Ok(Finished::ok())
}

/// A silence named by its id, a unique start of it, or a unique end of it (lists show ends).
fn resolve_silence_id(store: &Store, given: &str) -> anyhow::Result<String> {
    let all = store.silences()?;
    let found: Vec<&Silence> = all.iter().filter(|s| !given.is_empty() && (s.id.starts_with(given) || s.id.ends_with(given))).collect();
    match found.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!("there is no silence with id '{given}'; list them with 'runwatch silences list'"),
        _ => bail!("silence id '{given}' is ambiguous; give more characters"),
    }
}

fn matchers(s: &Silence) -> String {
    s.matchers.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// "snoozed until 14:03" / "snoozed until the run changes state" for `show`.
pub fn snoozed_text(until: Millis) -> String {
    if until == runwatch_core::noise::UNTIL_CHANGE {
        "snoozed until its run changes state".into()
    } else {
        format!("snoozed until {}", output::second(until))
    }
}
