//! `runwatch`: the command line and the headless daemon (`runwatch start`).
//!
//! Every command but `start` and `completions` ends with the pending-notifications summary
//! (`summary.rs`). Errors are one line on stderr, `runwatch: error: …`: exit 2 for usage
//! errors (clap's, and the few checks clap cannot express), 1 for runtime failures, and
//! never a panic message or a backtrace. Bad input is rejected before anything is written.

mod checkin;
mod exec;
mod noise;
mod notifications;
mod notifiers;
mod output;
mod remote;
mod remotes;
mod runs;
mod send;
mod start;
mod summary;
mod why;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use runwatch_core::{DataDir, Location, Store};

use crate::summary::{Finished, NoticeMode};

/// The environment variable behind `--notifications`.
pub const NOTIFICATIONS_ENV: &str = "RUNWATCH_NOTIFICATIONS";

/// A usage error found after parsing: exit 2, like clap's own.
#[derive(Debug)]
pub struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error of `runwatch <command>`, pointing at that command's help.
pub fn usage_error(command: &str, message: &str) -> anyhow::Error {
    UsageError(format!("{message}; see 'runwatch {command} --help'")).into()
}

/// A failure with a specific exit code (`exec`: 126/127 when the command cannot start).
#[derive(Debug)]
pub struct ExitWith {
    code: u8,
    message: String,
}

impl ExitWith {
    pub fn new(code: u8, message: String) -> Self {
        Self { code, message }
    }
}

impl fmt::Display for ExitWith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitWith {}

/// Runwatch tells you when your training runs need attention.
#[derive(Debug, Parser)]
#[command(name = "runwatch", version, max_term_width = 100)]
struct Cli {
    /// Where the store lives [default: ~/.local/share/runwatch]
    #[arg(long, global = true, help_heading = "Global options", value_name = "DIR", env = runwatch_core::data_dir::HOME_ENV, hide_env_values = true)]
    data_dir: Option<PathBuf>,

    /// The store: a shared PostgreSQL database, postgresql://USER[:PASSWORD]@HOST[:PORT]/DB
    /// [default: the SQLite file in the data dir]
    #[arg(long, global = true, help_heading = "Global options", value_name = "URL", env = runwatch_core::store::STORE_ENV, hide_env_values = true)]
    store: Option<String>,

    /// An Aim repository, DIR or DIR/.aim; repeat for several with start [default: ./.aim]
    #[arg(long, global = true, help_heading = "Global options", value_name = "PATH")]
    repo: Vec<PathBuf>,

    /// What to print about pending notifications after the command: nothing, one line (and
    /// exit 1 while warnings or errors are pending), or each of them
    #[arg(long, global = true, help_heading = "Global options", value_name = "MODE", value_enum, default_value_t = NoticeMode::Summary,
          env = NOTIFICATIONS_ENV, hide_env_values = true)]
    notifications: NoticeMode,

    /// Print JSON instead of text (commands that list or show things)
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,

    #[command(flatten)]
    remote: remote::ServerArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the watcher in the foreground (headless), serving the API and UI over HTTP
    Start(start::StartArgs),
    /// Configure where notifications go (Aim's notifier commands)
    #[command(subcommand)]
    Notifiers(notifiers::NotifiersCommand),
    /// Read and acknowledge notifications (the inbox)
    #[command(subcommand)]
    Notifications(notifications::Command),
    /// Silence notifications that match, for a while (stored, not popped up nor forwarded)
    #[command(subcommand)]
    Silences(noise::SilencesCommand),
    /// Record a notification from a job or script
    Send(send::SendArgs),
    /// Check a run in as Aim does, without Aim (for jobs in any language)
    CheckIn(checkin::CheckInArgs),
    /// Run a command as a watched run: started, finished or failed, stalled
    Exec(exec::ExecArgs),
    /// The runs known here: their state, why they ended, host and labels
    Runs,
    /// Print this data dir's API token (for scripts, and for jobs and followers elsewhere)
    Token,
    /// Follow other Runwatch servers: their notifications in this inbox, acks both ways
    #[command(subcommand)]
    Remotes(remotes::Command),
    /// What waits to be sent to a server (see --server); 'spool flush' sends it now
    Spool(SpoolArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Bring the store's schema up to date, or check it (for a shared PostgreSQL store)
    #[command(subcommand)]
    Store(StoreCommand),
    /// The users of a team store (--store postgresql://…), each with their own API token
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a user and print their API token (shown this once; only its hash is stored)
    Add {
        /// Letters, digits, '.', '_' and '-'
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// List the users
    List,
    /// Remove a user (their token stops working)
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Migrate the store to this Runwatch's schema (once for all daemons sharing it)
    Migrate,
    /// Check that the store can be reached and has this Runwatch's schema (exit 1 if not)
    Check,
}

#[derive(Debug, Args)]
struct SpoolArgs {
    #[command(subcommand)]
    action: Option<SpoolCommand>,
}

#[derive(Debug, Subcommand)]
enum SpoolCommand {
    /// Send what waits to the server now (exit 1 while it cannot be reached)
    Flush,
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
}

fn main() -> ExitCode {
    // A bug must still be one line, not a panic message with a backtrace hint.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let _ = writeln!(io::stderr(), "runwatch: internal error{at}: {}; please report this bug", one_line(&what));
    }));

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_failure(&e),
    };
    // Colour as the rest of the output: only on a terminal, never with NO_COLOR.
    let ansi = anstream::AutoStream::choice(&io::stderr()) != anstream::ColorChoice::Never;
    tracing_subscriber::fmt()
        .with_env_filter(runwatch_notify::send::log_filter())
        .with_writer(io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => failure(&err),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mode = cli.notifications;
    let json = cli.json;
    match cli.command {
        Command::Start(_) if cli.remote.server.is_some() => {
            Err(usage_error("start", "--server is for commands that report to a server; 'start' is the server"))
        }
        Command::Start(args) => {
            let data_dir = DataDir::resolve(cli.data_dir.as_deref())?;
            let at = location(&data_dir, cli.store.as_deref())?;
            start::start(&data_dir, &at, &cli.repo, &args)
        }
        Command::Store(_) if cli.remote.server.is_some() => {
            Err(usage_error("store", "--server does not apply: 'store' works on the store named by --store or the data dir"))
        }
        Command::Store(cmd) => store_command(&cmd, cli.data_dir.as_deref(), cli.store.as_deref(), json),
        Command::Users(_) if cli.remote.server.is_some() => {
            Err(usage_error("users", "--server does not apply: users are kept in the store named by --store"))
        }
        Command::Users(cmd) => users_command(cmd, cli.data_dir.as_deref(), cli.store.as_deref(), json),
        Command::Completions(args) => {
            if json {
                return Err(usage_error("completions", "--json does not apply to completion scripts"));
            }
            // Into memory first: clap_complete panics on a failed write (`… | head`).
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "runwatch", &mut script);
            let mut out = io::stdout().lock();
            out.write_all(&script)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Remotes(_) if cli.remote.server.is_some() => {
            Err(usage_error("remotes", "--server does not apply: remotes are followed by this data dir's daemon or app"))
        }
        Command::Remotes(cmd) => {
            let mut store = open_store(cli.data_dir.as_deref(), cli.store.as_deref())?;
            let done = remotes::run(cmd, &mut store, cli.remote.token_file.as_deref(), cli.remote.ca_file.as_deref(), json)?;
            Ok(ExitCode::from(summary::after(&store, mode, &done)?))
        }
        Command::Exec(_) if json => Err(usage_error("exec", "--json does not apply: exec passes its command's output through")),
        Command::Token => {
            let data_dir = DataDir::resolve(cli.data_dir.as_deref())?;
            data_dir.ensure().map_err(|e| anyhow::anyhow!("cannot use the data dir '{}': {e}", data_dir.path().display()))?;
            let token = data_dir.api_token().context("cannot read or create the API token")?;
            if json {
                // For followers over ssh: the token and where the daemon here serves the API.
                let api_url = runwatch_engine::recorded_api_url(&data_dir);
                writeln!(io::stdout(), "{}", serde_json::json!({ "token": token, "api_url": api_url }))?;
            } else {
                writeln!(io::stdout(), "{token}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        command => match cli.remote.target()? {
            Some(target) => {
                let data_dir = DataDir::resolve(cli.data_dir.as_deref())?;
                let remote = remote::Remote::new(target, data_dir)?;
                let done = match command {
                    Command::Send(args) => remote::send(&remote, &send::event(args)?, json)?,
                    Command::CheckIn(args) => remote::check_in(&remote, &checkin::report(&args)?, json)?,
                    Command::Exec(args) => exec::exec(exec::Out::Remote(&remote), args)?,
                    Command::Notifications(cmd) => notifications::run_remote(cmd, &remote, json)?,
                    Command::Spool(SpoolArgs { action: Some(SpoolCommand::Flush) }) => remote::spool_flush(&remote, json)?,
                    Command::Spool(SpoolArgs { action: None }) => remote::spool_list(&remote.dir, json)?,
                    other => {
                        let name = format!("{other:?}").split(['(', ' ']).next().unwrap_or_default().to_lowercase();
                        return Err(usage_error(
                            &name,
                            "--server applies to send, check-in, exec, notifications and spool; this command works on the local data dir",
                        ));
                    }
                };
                Ok(ExitCode::from(remote::after(&remote, mode, &done)))
            }
            None => local(command, &cli.data_dir, cli.store.as_deref(), &cli.repo, mode, json),
        },
    }
}

/// A command on the local data dir.
fn local(
    command: Command,
    data_dir: &Option<PathBuf>,
    store_url: Option<&str>,
    repos: &[PathBuf],
    mode: NoticeMode,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Spool(SpoolArgs { action: None }) => {
            let dir = DataDir::resolve(data_dir.as_deref())?;
            remote::spool_list(&dir, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Spool(SpoolArgs { action: Some(SpoolCommand::Flush) }) => {
            let dir = DataDir::resolve(data_dir.as_deref())?;
            if runwatch_remote::Spool::open(&dir)?.items(None)?.iter().all(|i| i.rejected) {
                writeln!(io::stdout(), "Nothing waits to be sent.")?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(usage_error("spool flush", "name the server to send to with --server URL (or RUNWATCH_SERVER)"))
        }
        command => {
            // check-in only touches the Aim repository; the store is for the summary.
            let needs_store = !(matches!(command, Command::CheckIn(_)) && mode == NoticeMode::Hidden);
            let mut store = if needs_store { Some(open_store(data_dir.as_deref(), store_url)?) } else { None };
            let done: Finished = match (command, store.as_mut()) {
                (Command::Notifications(cmd), Some(store)) => notifications::run(cmd, store, json)?,
                (Command::Notifiers(cmd), Some(store)) => notifiers::run(cmd, store, repos, json)?,
                (Command::Silences(cmd), Some(store)) => noise::run(cmd, store, json)?,
                (Command::Send(args), Some(store)) => send::send(store, args, json)?,
                (Command::Exec(args), Some(store)) => exec::exec(exec::Out::Local(store), args)?,
                (Command::Runs, Some(store)) => runs::list(store, json)?,
                (Command::CheckIn(args), _) => checkin::check_in(repos, &args, json)?,
                _ => anyhow::bail!("internal error: the store was not opened"),
            };
            let code = match &store {
                None => done.code,
                Some(store) => match summary::after(store, mode, &done) {
                    Ok(code) => code,
                    // The command's own work is done: its exit code stands.
                    Err(e) if done.passthrough => {
                        let _ =
                            writeln!(io::stderr(), "runwatch: warning: cannot read pending notifications: {}", one_line(&format!("{e:#}")));
                        done.code
                    }
                    Err(e) => return Err(e),
                },
            };
            Ok(ExitCode::from(code))
        }
    }
}

/// Where `--store` (or its absence) puts the store; a value that is not a PostgreSQL URL is
/// a usage error naming it (password masked).
fn location(data_dir: &DataDir, store: Option<&str>) -> anyhow::Result<Location> {
    Location::parse(store, data_dir).map_err(|e| UsageError(e).into())
}

/// `runwatch store migrate|check`.
fn store_command(cmd: &StoreCommand, data_dir: Option<&Path>, store: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let at = location(&dir, store)?;
    let latest = match &at {
        Location::DataDir(_) => runwatch_core::store::latest_schema_version(),
        Location::Postgres(_) => runwatch_core::pg::latest_schema_version(),
    };
    let mut holders = Vec::new();
    let (found, migrated) = match (cmd, &at) {
        (StoreCommand::Migrate, _) => {
            let before = match &at {
                Location::Postgres(url) => Store::connect_unmigrated(url)?.schema_version()?,
                Location::DataDir(_) => 0,
            };
            let s = match &at {
                Location::DataDir(_) => open_store(data_dir, store)?,
                Location::Postgres(url) => Store::connect(url)?,
            };
            (s.schema_version()?, before < latest && at.is_postgres())
        }
        (StoreCommand::Check, Location::Postgres(url)) => {
            let s = Store::connect_unmigrated(url)?;
            let found = s.schema_version()?;
            holders = role_holders(&s, found)?;
            (found, false)
        }
        (StoreCommand::Check, Location::DataDir(_)) => (open_store(data_dir, store)?.schema_version()?, false),
    };
    let ok = found == latest;
    let mut out = io::stdout().lock();
    if json {
        let roles: Vec<_> =
            holders.iter().map(|(role, holder, until)| serde_json::json!({ "role": role, "holder": holder, "until": until })).collect();
        let v =
            serde_json::json!({ "store": at.display(), "schema": found, "latest": latest, "ok": ok, "migrated": migrated, "roles": roles });
        writeln!(out, "{v}")?;
    } else if ok {
        let verb = if migrated { "migrated to" } else { "at" };
        writeln!(out, "The store {} is reachable, {verb} schema {found} (this Runwatch's).", at.display())?;
        let now = runwatch_core::clock::Clock::now(&runwatch_core::clock::SystemClock);
        for (role, holder, until) in &holders {
            let left = std::time::Duration::from_secs(u64::try_from((until - now).max(0) / 1000).unwrap_or(0));
            writeln!(out, "Role '{role}': played by {holder} (lease ends in {}).", humantime::format_duration(left))?;
        }
        if at.is_postgres() && holders.is_empty() && matches!(cmd, StoreCommand::Check) {
            writeln!(out, "No daemon plays a role (taking HTTP check-ins, following remotes, polling Slurm) right now.")?;
        }
    } else {
        writeln!(out, "The store {} is at schema {found}; this Runwatch needs {latest}: run 'runwatch store migrate'.", at.display())?;
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Who plays each role of a shared store now (a store older than the roles has none).
fn role_holders(store: &Store, schema: usize) -> anyhow::Result<Vec<(String, String, runwatch_core::clock::Millis)>> {
    const ROLES_SCHEMA: usize = 3;
    if schema < ROLES_SCHEMA {
        return Ok(Vec::new());
    }
    Ok(store.role_holders(runwatch_core::clock::Clock::now(&runwatch_core::clock::SystemClock))?)
}

/// `runwatch users add|list|remove`.
fn users_command(cmd: UsersCommand, data_dir: Option<&Path>, store: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    if !location(&dir, store)?.is_postgres() {
        return Err(runwatch_core::users::UserError::SingleUser.into());
    }
    let mut store = open_store(data_dir, store)?;
    let mut out = io::stdout().lock();
    match cmd {
        UsersCommand::Add { name } => {
            let token = store.add_user(&name, runwatch_core::clock::Clock::now(&runwatch_core::clock::SystemClock))?;
            if json {
                writeln!(out, "{}", serde_json::json!({ "name": name, "token": token }))?;
            } else {
                writeln!(out, "{token}")?;
                let _ = writeln!(
                    io::stderr(),
                    "The API token of '{name}', shown this once: give it to them (e.g. in a file for --token-file)."
                );
            }
        }
        UsersCommand::List => {
            let users = store.users()?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&users)?)?;
            } else if users.is_empty() {
                writeln!(out, "No users yet: add one with 'runwatch users add NAME'.")?;
            } else {
                for u in users {
                    writeln!(out, "{}", u.name)?;
                }
            }
        }
        UsersCommand::Remove { name } => {
            store.remove_user(&name)?;
            writeln!(out, "Removed user '{name}'.")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the store, with a clear message when the data dir cannot hold one.
fn open_store(explicit: Option<&Path>, store: Option<&str>) -> anyhow::Result<Store> {
    let data_dir = DataDir::resolve(explicit)?;
    if let Location::Postgres(url) = location(&data_dir, store)? {
        return Ok(Store::connect(&url)?);
    }
    let path = data_dir.path();
    if path.exists() && !path.is_dir() {
        anyhow::bail!(
            "the data dir '{}' is not a directory; pass --data-dir DIR (or set {}) to a directory",
            path.display(),
            runwatch_core::data_dir::HOME_ENV
        );
    }
    Ok(Store::open(&data_dir)?)
}

/// Reports a runtime failure on one line and picks the exit code.
fn failure(err: &anyhow::Error) -> ExitCode {
    // `runwatch … | head`: the reader left; say nothing, as if SIGPIPE had ended us.
    if err.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)) {
        return ExitCode::from(141);
    }
    let code = if err.is::<UsageError>() {
        2
    } else if let Some(e) = err.downcast_ref::<ExitWith>() {
        e.code
    } else {
        1
    };
    let _ = writeln!(output::stderr(), "{}", output::paint(output::RED, &format!("runwatch: error: {}", one_line(&format!("{err:#}")))));
    ExitCode::from(code)
}

/// Help and version go to stdout with exit 0; usage errors become one line with exit 2.
fn clap_failure(err: &clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        // A bare `runwatch` or `runwatch notifications`: the help is the best answer.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(2)
        }
        _ => {
            let _ = writeln!(output::stderr(), "{}", output::paint(output::RED, &format!("runwatch: error: {}", clap_line(err))));
            ExitCode::from(2)
        }
    }
}

/// clap's multi-line error as one line: the message, its continuation lines (missing
/// arguments, possible values), its tips, and where to read more.
fn clap_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let mut message = String::new();
    let mut tips = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("error: ") {
            message = rest.to_string();
        } else if let Some(rest) = line.strip_prefix("tip: ") {
            tips.push(rest.to_string());
        } else if line.starts_with("Usage: ") || line.starts_with("For more information") {
        } else if message.ends_with(':') {
            message.push(' ');
            message.push_str(line);
        } else if !message.is_empty() {
            message.push_str(if line.starts_with('[') { " " } else { ", " });
            message.push_str(line);
        }
    }
    if message.is_empty() {
        message = one_line(&text);
    }
    // A bad value can come from the environment rather than the command line.
    if message.contains("'--notifications") && !std::env::args().any(|a| a.starts_with("--notifications")) {
        message.push_str(&format!(" (from {NOTIFICATIONS_ENV})"));
    }
    for tip in tips {
        message.push_str(&format!(" ({tip})"));
    }
    format!("{message}; see '{} --help'", command_path(std::env::args().skip(1)))
}

/// The (sub)command the words name, e.g. "runwatch notifications ack": each word that is a
/// subcommand of the command so far descends into it; options and values are skipped.
fn command_path(words: impl IntoIterator<Item = String>) -> String {
    let mut cmd = Cli::command();
    let mut path = vec![cmd.get_name().to_string()];
    for word in words {
        if word == "--" {
            break;
        }
        if word.starts_with('-') {
            continue;
        }
        let Some(sub) = cmd.find_subcommand(&word).cloned() else { continue };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    path.join(" ")
}

/// Text on one line: line breaks become "; ".
fn one_line(text: &str) -> String {
    text.trim().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn clap_errors_become_one_line_naming_the_command() {
        let err = Cli::try_parse_from(["runwatch", "notifications", "list", "--level", "LOUD"]).unwrap_err();
        let line = clap_line(&err);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("'LOUD'") && line.contains("DEBUG, INFO"), "{line}");
        assert_eq!(command_path(["--json", "notifications", "list", "--level", "LOUD"].map(String::from)), "runwatch notifications list");
        assert_eq!(command_path(["exec", "--", "send"].map(String::from)), "runwatch exec");

        let err = Cli::try_parse_from(["runwatch", "check-in", "--finished"]).unwrap_err();
        let line = clap_line(&err);
        assert!(line.contains("required arguments were not provided: --run <ID>"), "{line}");
    }
}
