//! `runwatch start`: the headless daemon — the watcher on its own thread, the HTTP server
//! (API and UI) on the async runtime, notifications printed by the logger as they happen.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use runwatch_aim::repo::AimRepo;
use runwatch_core::clock::{format_local, SystemClock};
use runwatch_core::template::{Template, AIM_STUCK_TEMPLATE};
use runwatch_core::{DataDir, InstanceLock, Notification, Store};
use runwatch_watcher::Watcher;

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Address to serve the API and UI on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = runwatch_http::DEFAULT_ADDR)]
    http: SocketAddr,
}

pub fn start(data_dir: &DataDir, repos: &[PathBuf], args: &StartArgs) -> anyhow::Result<ExitCode> {
    let repos = resolve_repos(repos)?;
    let _lock = InstanceLock::acquire(data_dir)?;
    let store = Store::open(data_dir)?;
    println!("Runwatch {} — data in '{}'", env!("CARGO_PKG_VERSION"), store.path().display());

    let logger = Logger::new();
    let mut watcher = Watcher::new(Store::open(data_dir)?, repos.clone(), Arc::new(SystemClock))?
        .on_notification(move |n| logger.print(n));
    watcher.scan()?;
    if repos.is_empty() {
        println!("Not watching any Aim repository (pass --repo DIR); events sent to Runwatch are still received.");
    }
    for repo in &repos {
        println!("Watching '{}' …", repo.root().display());
    }
    println!("Tracking {} runs; notifications are printed here (logger).", watcher.run_count());
    let stop = watcher.stop_handle();
    let watcher_thread = std::thread::Builder::new()
        .name("watcher".into())
        .spawn(move || watcher.run())
        .context("cannot start the watcher thread")?;

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let served = runtime.block_on(async move {
        let server = runwatch_http::Server::bind(args.http)
            .await
            .with_context(|| format!("cannot listen on {} (is another program using it? try --http 127.0.0.1:0)", args.http))?;
        println!("Serving the UI at {}", server.url()?);
        println!("Press Ctrl+C to exit");
        server.serve(shutdown_signal()).await.context("HTTP server failed")
    });
    stop.stop();
    match watcher_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("runwatch: warning: the watcher stopped with an error: {e}"),
        Err(_) => eprintln!("runwatch: warning: the watcher thread failed"),
    }
    drop(store);
    served?;
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

/// The logger notifier: prints each notification on standard output. Stuck and crashed
/// runs are printed with the stuck-run template (Aim's by default), as Aim's logger does.
struct Logger {
    stuck: Template,
}

impl Logger {
    fn new() -> Self {
        Logger { stuck: Template::parse(AIM_STUCK_TEMPLATE).expect("Aim's template is valid") }
    }

    fn print(&self, n: &Notification) {
        let text = if n.source == "detector" {
            let values = std::collections::HashMap::from([
                ("run.hash", n.run_id.clone().unwrap_or_default()),
                ("title", n.title.clone()),
                ("message", n.body.clone()),
                ("level", n.level.to_string()),
            ]);
            format!("{} — {}", self.stuck.render(&values), n.title)
        } else {
            n.title.clone()
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{} {:<8} {}", format_local(n.created_at), n.level, text);
    }
}

/// Completes on Ctrl+C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
