//! `runwatch notifiers …`: Aim's notifier commands — add (interactive or by flags), list,
//! enable, disable, remove, test, set-log-level, get-log-level, import-aim.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use runwatch_aim::repo::AimRepo;
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::noise::{NotifierRules, QuietHours};
use runwatch_core::notifiers::Notifier;
use runwatch_core::settings::{self, Settings, SettingsPatch};
use runwatch_core::{Level, NotifierStatus, Store};
use runwatch_notify::dispatcher::send_test;
use runwatch_notify::send::{Outcome, Sender, DEFAULT_TIMEOUT};
use runwatch_notify::{aim_config, Channel};

use crate::summary::Finished;

#[derive(Debug, Subcommand)]
pub enum NotifiersCommand {
    /// Add a notifier: interactively on a terminal, or with a type and its flags
    Add {
        #[command(subcommand)]
        kind: Option<AddKind>,
    },
    /// List notifiers (secrets masked)
    List,
    /// Enable a notifier (ID or a unique prefix of it)
    Enable { id: String },
    /// Disable a notifier: it receives nothing from now on
    Disable { id: String },
    /// Remove a notifier (asks to confirm; --yes skips)
    Remove {
        id: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Send a test message to a notifier now and report the answer
    Test { id: String },
    /// Change a notifier's level and rules (delay, repeat, quiet hours); ID 'popups' sets the popups' quiet hours
    Set {
        /// The notifier (ID or a unique prefix of it), or 'popups'
        id: String,
        /// Send only notifications at or above this level
        #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
        min_level: Option<Level>,
        #[command(flatten)]
        rules: crate::noise::RuleArgs,
    },
    /// Set the level from which Aim log records are notified (default WARNING)
    SetLogLevel {
        #[arg(value_parser = parse_level)]
        level: Level,
    },
    /// Show the level from which Aim log records are notified
    GetLogLevel,
    /// Import notifiers and the log level from an Aim repository (--repo, default ./.aim)
    ImportAim,
}

#[derive(Debug, Subcommand)]
pub enum AddKind {
    /// A Slack incoming webhook
    Slack {
        /// The webhook URL (https://hooks.slack.com/services/…)
        #[arg(long, value_name = "URL")]
        webhook_url: String,
        #[command(flatten)]
        common: Common,
    },
    /// A Workplace group feed
    Workplace {
        /// The group's numeric id
        #[arg(long, value_name = "ID")]
        group_id: String,
        /// An access token with permission to post to the group
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
        /// The Graph API base URL
        #[arg(long, value_name = "URL", default_value = runwatch_notify::channel::WORKPLACE_DEFAULT_BASE)]
        base_url: String,
        #[command(flatten)]
        common: Common,
    },
    /// Print notifications in the watcher's output
    Logger {
        #[command(flatten)]
        common: Common,
    },
    /// Push to a phone through an ntfy server (ntfy.sh or your own)
    Ntfy {
        /// The ntfy server
        #[arg(long, value_name = "URL", default_value = runwatch_notify::channel::NTFY_DEFAULT_SERVER)]
        url: String,
        /// The topic the phone subscribes to (without a token, anyone who knows it can read it)
        #[arg(long, value_name = "TOPIC")]
        topic: String,
        /// A file holding an access token (tk_…) for a protected topic
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Runwatch's UI as the phone reaches it: a tap opens the notification's details there
        #[arg(long, value_name = "URL")]
        click_url: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// A JSON POST to any URL (Discord, Teams…)
    Webhook {
        #[arg(long, value_name = "URL")]
        url: String,
        /// A header to send, as 'Name: value' (repeatable)
        #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
pub struct Common {
    /// The stuck-run message template (placeholders: {run.hash}, {run.name}, {message}, {level}, {host}, …)
    #[arg(long, value_name = "TEMPLATE")]
    message: Option<String>,
    /// Send only notifications at or above this level
    #[arg(long, value_name = "LEVEL", value_parser = parse_level, default_value = "DEBUG")]
    min_level: Level,
    #[command(flatten)]
    rules: crate::noise::RuleArgs,
}

pub fn parse_level(s: &str) -> Result<Level, String> {
    s.parse().map_err(|e: runwatch_core::model::UnknownLevel| e.to_string())
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once(':').ok_or_else(|| format!("'{s}' is not 'Name: value'"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

pub fn run(cmd: NotifiersCommand, store: &mut Store, repos: &[PathBuf], json: bool) -> anyhow::Result<Finished> {
    let now = SystemClock.now();
    match cmd {
        NotifiersCommand::Add { kind: Some(kind) } => {
            let (channel, min_level, rule_args) = channel_from_flags(kind)?;
            let rules = rule_args
                .apply(NotifierRules::default())
                .map_err(|e| crate::usage_error(&format!("notifiers add {}", channel.kind()), &e))?;
            let n = add(store, channel, min_level, now)?;
            if !rules.is_empty() {
                store.set_notifier_rules(&n.id, &rules, now)?;
                println!("Rules: {}.", rules.describe());
            }
        }
        NotifiersCommand::Set { id, min_level, rules } => set(store, &id, min_level, &rules, now)?,
        NotifiersCommand::Add { kind: None } => {
            if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
                bail!(
                    "'notifiers add' asks questions on a terminal; in scripts use 'runwatch notifiers add slack --webhook-url URL', \
                     'add workplace --group-id ID --access-token TOKEN', 'add logger', 'add webhook --url URL' or 'add ntfy --topic TOPIC'"
                );
            }
            interactive_add(store)?;
        }
        NotifiersCommand::List => list(store, json)?,
        NotifiersCommand::Enable { id } => set_status(store, &id, NotifierStatus::Enabled, now)?,
        NotifiersCommand::Disable { id } => set_status(store, &id, NotifierStatus::Disabled, now)?,
        NotifiersCommand::Remove { id, yes } => {
            let n = store.resolve_notifier(&id)?;
            println!("{}", describe(&n));
            if !yes && !confirm(&format!("Remove this {} notifier?", n.kind))? {
                println!("Nothing removed.");
                return Ok(Finished::ok());
            }
            store.remove_notifier(&n.id)?;
            println!("Removed notifier {}.", n.id);
        }
        NotifiersCommand::Test { id } => {
            let n = store.resolve_notifier(&id)?;
            let channel = Channel::from_notifier(&n)?;
            print!("Sending a test message to {} notifier {} … ", n.kind, short(&n.id));
            match send_test(&Sender::new(DEFAULT_TIMEOUT), &channel) {
                Outcome::Sent => println!("sent."),
                Outcome::Retry { error, .. } | Outcome::Failed { error } => {
                    println!("failed.");
                    bail!("the test message to notifier {} was not delivered: {error}", short(&n.id));
                }
            }
        }
        NotifiersCommand::SetLogLevel { level } => {
            settings::patch(store, &SettingsPatch { log_level: Some(level), ..Default::default() })?;
            println!("Log level set to {level}: Aim log records at {level} and above are notified.");
        }
        NotifiersCommand::GetLogLevel => println!("{}", Settings::load(store)?.log_level),
        NotifiersCommand::ImportAim => import_aim(store, repos, now)?,
    }
    Ok(Finished::ok())
}

fn channel_from_flags(kind: AddKind) -> anyhow::Result<(Channel, Level, crate::noise::RuleArgs)> {
    Ok(match kind {
        AddKind::Slack { webhook_url, common } => {
            (Channel::Slack { url: webhook_url, message: common.message }, common.min_level, common.rules)
        }
        AddKind::Workplace { group_id, access_token, base_url, common } => {
            let base_url = (base_url != runwatch_notify::channel::WORKPLACE_DEFAULT_BASE).then_some(base_url);
            (Channel::Workplace { group_id, access_token, base_url, message: common.message }, common.min_level, common.rules)
        }
        AddKind::Logger { common } => (Channel::Logger { message: common.message }, common.min_level, common.rules),
        AddKind::Webhook { url, headers, common } => {
            (Channel::Webhook { url, headers: headers.into_iter().collect(), message: common.message }, common.min_level, common.rules)
        }
        AddKind::Ntfy { url, topic, token_file, click_url, common } => {
            let token = token_file.map(|f| read_token_file(&f)).transpose()?;
            (Channel::Ntfy { url, topic, token, click_url, message: common.message }, common.min_level, common.rules)
        }
    })
}

/// A token from a file (never from the command line, where `ps` and the shell's history see it).
fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the token file '{}'", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file '{}' is empty", path.display());
    }
    Ok(token.to_string())
}

/// `notifiers set ID …`: the level and the rules given; the others stay.
fn set(store: &mut Store, id: &str, min_level: Option<Level>, args: &crate::noise::RuleArgs, now: i64) -> anyhow::Result<()> {
    if id == "popups" {
        if min_level.is_some() {
            return Err(crate::usage_error("notifiers set", "the popups' level is the setting popup_level, not --min-level"));
        }
        if args.quiet_hours.is_none() {
            return Err(crate::usage_error("notifiers set", "say what to change: --quiet-hours HH:MM-HH:MM (or off)"));
        }
        let quiet = args.popup_quiet_hours().map_err(|e| crate::usage_error("notifiers set", &e))?;
        // An empty start turns them off (see SettingsPatch).
        let patch = quiet.clone().unwrap_or(QuietHours { start: String::new(), end: String::new(), days: vec![], pass: Level::Critical });
        settings::patch(store, &SettingsPatch { popup_quiet_hours: Some(patch), ..Default::default() })?;
        match quiet {
            Some(q) => println!("Popups are quiet {q}."),
            None => println!("Popups have no quiet hours."),
        }
        return Ok(());
    }
    if min_level.is_none() && args.is_empty() {
        return Err(crate::usage_error("notifiers set", "say what to change: --min-level, --delay, --repeat or --quiet-hours"));
    }
    let n = store.resolve_notifier(id)?;
    let rules = args.apply(store.notifier_rules(&n.id)?).map_err(|e| crate::usage_error("notifiers set", &e))?;
    if min_level.is_some() {
        store.update_notifier(&n.id, None, min_level, None, now)?;
    }
    store.set_notifier_rules(&n.id, &rules, now)?;
    let level = min_level.unwrap_or(n.min_level);
    let described = if rules.is_empty() { "no delay, repeat or quiet hours".to_string() } else { rules.describe() };
    println!("Notifier {} ({}): {level} and above; {described}.", n.id, n.kind);
    Ok(())
}

/// Validates and stores a notifier; nothing is saved when anything is wrong.
fn add(store: &mut Store, channel: Channel, min_level: Level, now: i64) -> anyhow::Result<Notifier> {
    channel.validate().map_err(|e| crate::usage_error(&format!("notifiers add {}", channel.kind()), &e.to_string()))?;
    let n = Notifier {
        id: uuid::Uuid::new_v4().to_string(),
        kind: channel.kind().into(),
        status: NotifierStatus::Enabled,
        config: channel.config_json(),
        min_level,
        created_at: now,
        updated_at: now,
    };
    store.add_notifier(&n)?;
    println!("Added {} notifier {} (enabled, {} and above).", n.kind, n.id, min_level);
    Ok(n)
}

pub(crate) fn interactive_add(store: &mut Store) -> anyhow::Result<()> {
    use dialoguer::{Confirm, Input, Select};
    let theme = dialoguer::theme::ColorfulTheme::default();
    loop {
        let kinds = ["slack", "workplace", "logger", "webhook", "ntfy"];
        let pick = Select::with_theme(&theme).with_prompt("Notifier type").items(kinds).default(0).interact()?;
        let message = || -> anyhow::Result<Option<String>> {
            let m: String = Input::with_theme(&theme)
                .with_prompt("Stuck-run message (empty for Aim's default)")
                .allow_empty(true)
                .validate_with(|s: &String| {
                    if s.is_empty() {
                        Ok(())
                    } else {
                        runwatch_core::template::Template::parse(s).map(|_| ()).map_err(|e| e.to_string())
                    }
                })
                .interact_text()?;
            Ok((!m.is_empty()).then_some(m))
        };
        let valid = |c: Channel| c.validate().map(|_| ()).map_err(|e| e.to_string());
        let channel = match kinds[pick] {
            "slack" => {
                let url: String = Input::with_theme(&theme)
                    .with_prompt("Slack webhook URL")
                    .validate_with(|u: &String| valid(Channel::Slack { url: u.clone(), message: None }))
                    .interact_text()?;
                Channel::Slack { url, message: message()? }
            }
            "workplace" => {
                let group_id: String = Input::with_theme(&theme)
                    .with_prompt("Workplace group id")
                    .validate_with(|g: &String| {
                        valid(Channel::Workplace { group_id: g.clone(), access_token: "x".into(), base_url: None, message: None })
                    })
                    .interact_text()?;
                let access_token: String = dialoguer::Password::with_theme(&theme).with_prompt("Access token").interact()?;
                Channel::Workplace { group_id, access_token, base_url: None, message: message()? }
            }
            "logger" => Channel::Logger { message: message()? },
            "ntfy" => {
                let ntfy = |url: String, topic: String| Channel::Ntfy { url, topic, token: None, click_url: None, message: None };
                let url: String = Input::with_theme(&theme)
                    .with_prompt("ntfy server")
                    .default(runwatch_notify::channel::NTFY_DEFAULT_SERVER.into())
                    .validate_with(|u: &String| valid(ntfy(u.clone(), "topic".into())))
                    .interact_text()?;
                let topic: String = Input::with_theme(&theme)
                    .with_prompt("Topic")
                    .validate_with(|t: &String| valid(ntfy(url.clone(), t.clone())))
                    .interact_text()?;
                let token: String = dialoguer::Password::with_theme(&theme)
                    .with_prompt("Access token (empty for none)")
                    .allow_empty_password(true)
                    .interact()?;
                let token = (!token.trim().is_empty()).then(|| token.trim().to_string());
                Channel::Ntfy { url, topic, token, click_url: None, message: message()? }
            }
            _ => {
                let url: String = Input::with_theme(&theme)
                    .with_prompt("Webhook URL")
                    .validate_with(|u: &String| valid(Channel::Webhook { url: u.clone(), headers: Default::default(), message: None }))
                    .interact_text()?;
                Channel::Webhook { url, headers: Default::default(), message: message()? }
            }
        };
        let levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
        let level = Select::with_theme(&theme).with_prompt("Send notifications from level").items(levels).default(0).interact()?;
        let min_level: Level = levels[level].parse().expect("listed levels parse");
        println!("{} notifier: {}", channel.kind(), channel.masked());
        if Confirm::with_theme(&theme).with_prompt("Add this notifier?").default(true).interact()? {
            add(store, channel, min_level, SystemClock.now())?;
        } else {
            println!("Not added.");
        }
        if !Confirm::with_theme(&theme).with_prompt("Add another notifier?").default(false).interact()? {
            return Ok(());
        }
    }
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} Confirmation needs a terminal; pass --yes to remove without asking");
    }
    Ok(dialoguer::Confirm::new().with_prompt(question).default(false).interact()?)
}

fn set_status(store: &mut Store, id: &str, status: NotifierStatus, now: i64) -> anyhow::Result<()> {
    let n = store.resolve_notifier(id)?;
    store.set_notifier_status(&n.id, status, now)?;
    println!("Notifier {} ({}) is {status}.", n.id, n.kind);
    Ok(())
}

fn list(store: &Store, json: bool) -> anyhow::Result<()> {
    let notifiers = store.notifiers()?;
    let rows: Vec<(&Notifier, serde_json::Value)> = notifiers
        .iter()
        .map(|n| (n, Channel::from_notifier(n).map_or_else(|e| serde_json::json!({"error": e.to_string()}), |c| c.masked())))
        .collect();
    if json {
        let mut out = Vec::new();
        for (n, masked) in &rows {
            let rules = store.notifier_rules(&n.id)?;
            out.push(serde_json::json!({"id": n.id, "type": n.kind, "status": n.status, "min_level": n.min_level, "config": masked, "rules": rules}));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("No notifiers. Add one with 'runwatch notifiers add'.");
        return Ok(());
    }
    println!("{:<36}  {:<9}  {:<8}  {:<9}  SETTINGS", "NOTIFIER ID", "TYPE", "STATUS", "LEVEL");
    for (n, masked) in rows {
        let mut line = settings_line(&masked);
        let rules = store.notifier_rules(&n.id)?;
        if !rules.is_empty() {
            line.push_str(&format!(" ({})", rules.describe()));
        }
        println!("{:<36}  {:<9}  {:<8}  {:<9}  {line}", n.id, n.kind, n.status, n.min_level);
    }
    Ok(())
}

fn settings_line(masked: &serde_json::Value) -> String {
    masked
        .as_object()
        .map(|m| {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect::<Vec<_>>().join(" ")
        })
        .unwrap_or_default()
}

fn describe(n: &Notifier) -> String {
    let masked = Channel::from_notifier(n).map(|c| c.masked()).unwrap_or_default();
    format!("{}  {}  {}  {}  {}", n.id, n.kind, n.status, n.min_level, settings_line(&masked))
}

fn import_aim(store: &mut Store, repos: &[PathBuf], now: i64) -> anyhow::Result<()> {
    let repo = match repos {
        [] => AimRepo::open(Path::new("."))?,
        [one] => AimRepo::open(one)?,
        _ => bail!("import-aim reads one repository; pass a single --repo"),
    };
    let path = repo.notifications_config();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read Aim's notifier config '{}' (has 'aim-watcher' been set up there?)", path.display()))?;
    let config = aim_config::parse(&text, now).with_context(|| format!("in '{}'", path.display()))?;
    let existing: Vec<String> = store.notifiers()?.into_iter().map(|n| n.id).collect();
    let mut added = 0;
    for n in &config.notifiers {
        if existing.contains(&n.id) {
            println!("Notifier {} ({}) is already imported.", n.id, n.kind);
            continue;
        }
        store.add_notifier(n)?;
        added += 1;
        println!("Imported {} notifier {} ({}).", n.kind, n.id, n.status);
    }
    for (id, why) in &config.skipped {
        eprintln!("runwatch: warning: skipped Aim notifier {id}: {why}");
    }
    if let Some(level) = config.log_level {
        settings::patch(store, &SettingsPatch { log_level: Some(level), ..Default::default() })?;
        println!("Log level set to {level}.");
    }
    println!("Imported {added} notifiers from '{}'.", path.display());
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}
