//! `runwatch remotes add|list|remove|enable|disable`: the Runwatch servers this instance
//! follows (the daemon or the app brings their notifications into the local inbox). The
//! token given with `--token-file` is kept in the store (mode 0600) and never printed.

use std::io::Write;
use std::path::Path;

use clap::{Args, Subcommand};
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::remotes::{NewRemote, RemoteState};
use runwatch_core::Store;

use crate::output;
use crate::summary::Finished;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow a Runwatch server: ssh://[user@]host[:port] (through the system ssh, which
    /// reads the token there), or https://host[:port] (http:// only to this machine) with
    /// its token in --token-file ('runwatch token' on the server prints it)
    Add(AddArgs),
    /// The servers followed: NAME URL STATE LAST-SYNC PENDING
    List,
    /// Stop following a server (its notifications stay in the inbox)
    Remove(NameArg),
    /// Follow a disabled server again
    Enable(NameArg),
    /// Stop following a server for now, keeping where it was
    Disable(NameArg),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A short name, shown as the origin of its notifications
    #[arg(value_name = "NAME")]
    name: String,
    /// The server, e.g. ssh://me@gpu-server or https://gpu-server:8747
    #[arg(value_name = "URL")]
    url: String,
    /// Also send its notifications to this instance's notifiers (the server's own
    /// notifiers already send them)
    #[arg(long)]
    deliver: bool,
}

#[derive(Debug, Args)]
pub struct NameArg {
    #[arg(value_name = "NAME")]
    name: String,
}

pub fn run(cmd: Command, store: &mut Store, token_file: Option<&Path>, ca_file: Option<&Path>, json: bool) -> anyhow::Result<Finished> {
    let now = SystemClock.now();
    let mut out = output::stdout();
    match cmd {
        Command::Add(args) => {
            runwatch_core::remotes::check_name(&args.name).map_err(|e| crate::usage_error("remotes add", &e.to_string()))?;
            let (url, token) = if runwatch_remote::ssh::is_ssh(&args.url) {
                // The token is read over ssh, each time the follower connects.
                runwatch_remote::ssh::parse_ssh_url(&args.url)?;
                if token_file.is_some() || ca_file.is_some() {
                    return Err(crate::usage_error(
                        "remotes add",
                        "--token-file and --ca-file are for https:// servers; over ssh the token is read with 'runwatch token' there",
                    ));
                }
                (args.url.trim().trim_end_matches('/').to_string(), String::new())
            } else {
                let Some(token_file) = token_file else {
                    return Err(crate::usage_error(
                        "remotes add",
                        "give the server's token with --token-file FILE ('runwatch token' on the server prints it), or use ssh://",
                    ));
                };
                // The same checks as --server: a token never goes in clear text over a network.
                let target = runwatch_remote::Target::new(&args.url, None, Some(token_file), ca_file)?;
                (target.server().to_string(), std::fs::read_to_string(token_file)?.trim().to_string())
            };
            let ca_file = ca_file.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string());
            let r = store.add_remote(&NewRemote { name: args.name, url, token, ca_file, deliver: args.deliver }, now)?;
            if json {
                serde_json::to_writer_pretty(&mut out, &r)?;
                writeln!(out)?;
            } else {
                writeln!(out, "Following '{}' at {} (the running daemon or app picks it up within seconds).", r.name, r.url)?;
            }
        }
        Command::List => {
            let remotes = store.remotes()?;
            if json {
                serde_json::to_writer_pretty(&mut out, &remotes)?;
                writeln!(out)?;
            } else if remotes.is_empty() {
                writeln!(out, "No servers are followed; add one with 'runwatch remotes add NAME URL --token-file FILE'.")?;
            } else {
                let mut table = output::Table::new(["NAME", "URL", "STATE", "LAST-SYNC", "PENDING"]);
                for r in &remotes {
                    let state = match (r.state, r.unreachable_since) {
                        (RemoteState::Unreachable, Some(since)) => format!(
                            "unreachable since {}{}",
                            output::second(since),
                            r.last_error.as_deref().map(|e| format!(": {}", e.replace('\n', " "))).unwrap_or_default()
                        ),
                        (s, _) => s.as_str().to_string(),
                    };
                    table.row([
                        r.name.clone(),
                        r.url.clone(),
                        state,
                        r.last_sync.map_or_else(|| "never".to_string(), output::second),
                        r.pending.to_string(),
                    ]);
                }
                for line in table.render("") {
                    writeln!(out, "{line}")?;
                }
            }
        }
        Command::Remove(NameArg { name }) => {
            store.remove_remote(&name)?;
            if json {
                writeln!(out, "{}", serde_json::json!({ "removed": name }))?;
            } else {
                writeln!(out, "No longer following '{name}'; its notifications stay in the inbox.")?;
            }
        }
        Command::Enable(NameArg { ref name }) | Command::Disable(NameArg { ref name }) => {
            let enable = matches!(cmd, Command::Enable(_));
            let name = name.clone();
            let r = store.set_remote(&name, Some(enable), None, now)?;
            if json {
                serde_json::to_writer_pretty(&mut out, &r)?;
                writeln!(out)?;
            } else if enable {
                writeln!(out, "Following '{name}' again.")?;
            } else {
                writeln!(out, "Not following '{name}' for now ('runwatch remotes enable {name}' resumes where it was).")?;
            }
        }
    }
    Ok(Finished::ok())
}
