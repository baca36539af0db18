//! `runwatch start`: the headless daemon — the engine (watcher, dispatcher, HTTP server;
//! see runwatch-engine) in the foreground until Ctrl+C or SIGTERM, with what a terminal
//! adds: the first-run notifier prompt and the lines saying what runs where (the logger
//! notifier prints notifications here as they happen).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use runwatch_aim::repo::AimRepo;
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::notifiers::Notifier;
use runwatch_core::{DataDir, Level, Location, NotifierStatus, Store};
use runwatch_engine::{Engine, EngineError, Part};
use runwatch_notify::Channel;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::output;

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Address to serve the API and UI on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = runwatch_http::DEFAULT_ADDR)]
    http: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM); needed to listen off loopback
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP off loopback anyway (tokens then cross the network in clear text)
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_http: bool,
    /// A name clients use for this server (its Host header), e.g. lab-server.example.org;
    /// repeat for several
    #[arg(long, value_name = "NAME")]
    public_name: Vec<String>,
    /// Follow Slurm jobs: each job is a run, and its start, end (with why) and nearing its
    /// time limit are notifications (also on with the setting slurm_enabled)
    #[arg(long)]
    pub(crate) slurm: bool,
    /// Whose Slurm jobs to follow [default: the user runwatch runs as]
    #[arg(long, value_name = "USER", value_parser = crate::send::non_empty("--slurm-user"))]
    slurm_user: Option<String>,
    /// How often to ask Slurm, e.g. 30s, 2m (one squeue/scontrol or sacct call each time)
    #[arg(long, value_name = "DURATION", value_parser = crate::exec::parse_duration, default_value = "30s")]
    slurm_interval: std::time::Duration,
}

impl StartArgs {
    fn exposure(&self) -> runwatch_http::Exposure {
        runwatch_http::Exposure {
            tls: self.tls_cert.clone().zip(self.tls_key.clone()).map(|(cert, key)| runwatch_http::TlsFiles { cert, key }),
            insecure_http: self.insecure_http,
            public_names: self.public_name.clone(),
        }
    }
}

pub fn start(data_dir: &DataDir, location: &Location, repos: &[PathBuf], args: &StartArgs) -> anyhow::Result<ExitCode> {
    // On a shared store too, each daemon watches the repositories of its own host.
    let repos = resolve_repos(repos)?;
    let engine = Engine::builder(data_dir.clone())?.store(location.clone());
    let mut setup = Store::open_at(location)?;
    println!("Runwatch {} — data in '{}'", env!("CARGO_PKG_VERSION"), setup.describe());
    if setup.notifiers()?.is_empty() && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        offer_to_add_a_notifier(&mut setup)?;
    }
    if ensure_a_notifier(&mut setup)? {
        println!("No notifiers configured: using the logger, which prints notifications here. Add others with 'runwatch notifiers add'.");
    }
    drop(setup);

    // Installed before anything is printed about running, so a signal that comes right
    // after "Press Ctrl+C" is not lost. A failing engine ends the wait too.
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot handle Ctrl+C and SIGTERM")?;
    let wait = signals.handle();
    let slurm = runwatch_engine::SlurmOptions {
        forced: args.slurm,
        user: args.slurm_user.clone(),
        interval: args.slurm_interval,
        ..Default::default()
    };
    let engine =
        engine.repos(repos.clone()).http(args.http).exposure(args.exposure()).slurm(slurm).on_failure(move |_| wait.close()).start()?;
    if location.is_postgres() {
        println!(
            "On the shared store as host '{}': this host's repositories are watched here; one daemon at a time takes the HTTP check-ins.",
            runwatch_core::roles::daemon_host()
        );
    }
    if repos.is_empty() {
        println!("Not watching any Aim repository (pass --repo DIR); events sent to Runwatch are still received.");
    }
    for repo in &repos {
        println!("Watching '{}' …", repo.root().display());
    }
    if args.slurm {
        let shared = if location.is_postgres() { ", by one daemon of the shared store at a time" } else { "" };
        println!("Following Slurm jobs (every {}{shared}).", humantime::format_duration(args.slurm_interval));
    }
    println!("Tracking {}.", output::count(engine.run_count() as i64, "run", "runs"));
    println!("Serving the UI at {}", engine.ui_url());
    println!("Press Ctrl+C to exit");

    let _ = signals.forever().next();
    println!("Stopping…");
    let report = engine.shutdown();
    for part in &report.unfinished {
        match part {
            Part::Dispatcher => eprintln!(
                "runwatch: warning: a send was still waiting for an answer; its delivery stays queued and is sent again at the next start"
            ),
            part => eprintln!("runwatch: warning: the {part} did not stop in time"),
        }
    }
    let mut failure = None;
    for e in report.errors {
        match e {
            EngineError::Http(_) => failure = Some(e),
            e => eprintln!("runwatch: warning: {e}"),
        }
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    println!("Stopped.");
    Ok(ExitCode::SUCCESS)
}

/// The repositories to watch: those named, else `./.aim` when there is one.
fn resolve_repos(paths: &[PathBuf]) -> anyhow::Result<Vec<AimRepo>> {
    if paths.is_empty() {
        return Ok(AimRepo::open(Path::new(".")).into_iter().collect());
    }
    let mut repos: Vec<AimRepo> = paths.iter().map(|p| AimRepo::open(p)).collect::<Result<_, _>>()?;
    repos.sort();
    repos.dedup();
    Ok(repos)
}

/// On a terminal, as `aim-watcher start` does: no notifiers yet, so add one now or go on
/// with the logger.
fn offer_to_add_a_notifier(store: &mut Store) -> anyhow::Result<()> {
    println!("No notifiers are configured.");
    let choice = dialoguer::Select::with_theme(&dialoguer::theme::ColorfulTheme::default())
        .with_prompt("Where should notifications go?")
        .items(["Add a notifier now (Slack, Workplace, webhook…)", "Just print them here (the logger)"])
        .default(0)
        .interact()?;
    if choice == 0 {
        crate::notifiers::interactive_add(store)?;
    }
    Ok(())
}

/// Adds the logger notifier when none is configured, as `aim-watcher start` does; true if
/// it did.
fn ensure_a_notifier(store: &mut Store) -> anyhow::Result<bool> {
    if !store.notifiers()?.is_empty() {
        return Ok(false);
    }
    let logger = Channel::Logger { message: None };
    let now = SystemClock.now();
    Ok(store.add_first_notifier(&Notifier {
        id: uuid::Uuid::new_v4().to_string(),
        kind: logger.kind().into(),
        status: NotifierStatus::Enabled,
        config: logger.config_json(),
        min_level: Level::Debug,
        created_at: now,
        updated_at: now,
    })?)
}
