//! `runwatch`: the command line and the headless daemon (`runwatch start`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use runwatch_core::{DataDir, InstanceLock, Store};

/// Runwatch tells you when your training runs need attention.
#[derive(Debug, Parser)]
#[command(name = "runwatch", version, about, long_about = None)]
struct Cli {
    /// Where the store lives [default: the user data dir, e.g. ~/.local/share/runwatch]
    #[arg(long, global = true, value_name = "DIR", env = runwatch_core::data_dir::HOME_ENV)]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the watcher in the foreground (headless), serving the API and UI over HTTP
    Start {
        /// Address to serve the API and UI on (port 0 picks a free port)
        #[arg(long, value_name = "ADDR", default_value = runwatch_http::DEFAULT_ADDR)]
        http: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNWATCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("runwatch: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::resolve(cli.data_dir.as_deref())?;
    match cli.command {
        Command::Start { http } => start(&data_dir, http),
    }
}

fn start(data_dir: &DataDir, http: SocketAddr) -> anyhow::Result<ExitCode> {
    let _lock = InstanceLock::acquire(data_dir)?;
    let store = Store::open(data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = runwatch_http::Server::bind(http)
            .await
            .with_context(|| format!("cannot listen on {http} (is another program using it? try --http 127.0.0.1:0)"))?;
        println!("Runwatch {} — data in '{}'", env!("CARGO_PKG_VERSION"), store.path().display());
        println!("Serving the UI at {}", server.url()?);
        println!("Press Ctrl+C to exit");
        server.serve(shutdown_signal()).await.context("HTTP server failed")?;
        println!("Stopped.");
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on Ctrl+C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
