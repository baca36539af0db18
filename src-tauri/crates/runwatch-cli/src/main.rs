//! `runwatch`: the command line and the headless daemon (`runwatch start`).

mod start;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runwatch_core::DataDir;

/// Runwatch tells you when your training runs need attention.
#[derive(Debug, Parser)]
#[command(name = "runwatch", version, about, long_about = None)]
struct Cli {
    /// Where the store lives [default: the user data dir, e.g. ~/.local/share/runwatch]
    #[arg(long, global = true, value_name = "DIR", env = runwatch_core::data_dir::HOME_ENV)]
    data_dir: Option<PathBuf>,

    /// An Aim repository to watch: DIR or DIR/.aim (repeat for several) [default: ./.aim if present]
    #[arg(long, global = true, value_name = "PATH")]
    repo: Vec<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the watcher in the foreground (headless), serving the API and UI over HTTP
    Start(start::StartArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNWATCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
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
        Command::Start(args) => start::start(&data_dir, &cli.repo, &args),
    }
}
