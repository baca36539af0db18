//! `runwatch-tray`: what runs at login. The engine (as in `runwatch start`: watcher,
//! dispatcher, HTTP API), the tray icon with its badge and menu, and the popups, in one
//! process that links neither GTK nor WebKit. The window is another process, `runwatch-app
//! --window`, started on demand and pointed at this engine's API; closing it ends it.
//! `runwatch-app` (and `runwatch-app --hidden`, what "Start at login" runs) exec this.

mod popups;
mod tray;
mod window;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use clap::Parser;
use runwatch_aim::repo::AimRepo;
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::{DataDir, LockError, Store};
use runwatch_engine::EngineError;

/// Runwatch at login: the engine, a tray icon and popups; the window opens on demand.
#[derive(Debug, Parser)]
#[command(name = "runwatch-tray", version, about)]
struct Args {
    /// Where the store lives [default: the user data dir]
    #[arg(long, value_name = "DIR", env = runwatch_core::data_dir::HOME_ENV)]
    data_dir: Option<PathBuf>,

    /// An Aim repository to watch (repeatable) [default: the watched repos in Settings]
    #[arg(long, value_name = "PATH")]
    repo: Vec<PathBuf>,

    /// Address of the API the window (and scripts) use
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    http: SocketAddr,

    /// Start with no window (only the tray icon), as at login
    #[arg(long)]
    hidden: bool,
}

/// What the menu, the popups and the engine ask of the main thread.
#[derive(Debug)]
pub enum Command {
    /// Show the window (starting its process if none runs), at this page of the UI.
    Open(Option<String>),
    /// Acknowledge every pending notification.
    AckAll,
    /// Snooze every pending notification for an hour: it leaves the badge and comes back then.
    SnoozeAll,
    /// Finish the send in flight and exit.
    Quit,
    /// A part of the engine failed: exit with an error.
    Failed,
}

/// Wakes the popups loop (and with it the tray badge); set once the loop runs.
pub type Wake = Arc<Mutex<Option<mpsc::Sender<()>>>>;

pub fn wake(wake: &Wake) {
    if let Some(tx) = wake.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        let _ = tx.send(());
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    lean();
    // No colour codes in a log file or with NO_COLOR.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(runwatch_notify::send::log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("runwatch-app: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates an arena of its own, up to 8 per core; this
/// process has ~12 threads (tokio's workers: one per core) that allocate little after
/// start-up. Two arenas are plenty for that and keep each thread's few pages from pinning
/// a heap. Called before any thread exists.
fn lean() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; no allocation is in flight on
    // another thread, since none exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::resolve(args.data_dir.as_deref())?;
    let repos: Vec<AimRepo> = args.repo.iter().map(|p| AimRepo::open(p)).collect::<Result<_, _>>()?;
    let builder = match runwatch_engine::Engine::builder(data_dir.clone()) {
        Ok(b) => b,
        // Launched again while running: a plain launch opens a window on the running
        // engine (this app's, or a `runwatch start` on the same data dir).
        Err(EngineError::Lock(LockError::Held { .. })) if !args.hidden => {
            return window::open_on_running_engine(&data_dir).map(|()| ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    // One runtime for the API server, the tray's D-Bus connection and the popups'.
    let runtime = tokio_runtime()?;
    let (commands, received) = mpsc::channel::<Command>();
    let wake_popups: Wake = Arc::default();
    let on_stored = wake_popups.clone();
    let on_change = wake_popups.clone();
    let failed = commands.clone();
    let engine = builder
        .repos(repos)
        .http(args.http)
        .runtime(runtime.handle().clone())
        .on_notification(move |_| wake(&on_stored))
        .on_change(move || wake(&on_change))
        .on_failure(move |_| {
            let _ = failed.send(Command::Failed);
        })
        .start()?;
    // The desktop tests and `make run` read this line (as from the app before the split).
    println!("Runwatch app — data in '{}', API at {}", engine.data_dir().path().display(), engine.api_url());

    let pause = Arc::new(popups::Pause::default());
    let tray = {
        let _in_runtime = runtime.enter();
        tray::start(commands.clone(), pause.clone(), wake_popups.clone())?
    };
    popups::start(runtime.handle().clone(), engine.data_dir().clone(), tray.clone(), pause, wake_popups.clone(), commands.clone());
    quit_on_signals(commands.clone())?;

    let mut window = window::Window::new(engine.api_url().to_string(), engine.token().to_string());
    if !args.hidden {
        window.open(None);
    }
    let mut code = ExitCode::SUCCESS;
    for command in received {
        match command {
            Command::Open(route) => window.open(route.as_deref()),
            Command::AckAll => {
                match Store::open(engine.data_dir()).and_then(|mut s| s.ack_all(SystemClock.now())) {
                    Ok(n) => tracing::info!("acknowledged {n} notifications from the tray"),
                    Err(e) => tracing::warn!("cannot acknowledge: {e}"),
                }
                wake(&wake_popups);
            }
            Command::SnoozeAll => {
                let now = SystemClock.now();
                let snoozed = Store::open(engine.data_dir())
                    .map_err(runwatch_core::noise::NoiseError::from)
                    .and_then(|mut s| s.snooze_all(now + 3_600_000, now));
                match snoozed {
                    Ok(n) => tracing::info!("snoozed {n} notifications for an hour from the tray"),
                    Err(e) => tracing::warn!("cannot snooze: {e}"),
                }
                wake(&wake_popups);
            }
            Command::Quit => break,
            Command::Failed => {
                code = ExitCode::FAILURE;
                break;
            }
        }
    }
    // The window first: it is of no use without the engine, which may take a few seconds
    // to finish the send in flight.
    window.close();
    stop(&engine);
    tray.shutdown().wait();
    Ok(code)
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("runwatch-http").build()?)
}

/// SIGTERM and SIGINT (the session ending, Ctrl+C) quit as the menu's Quit does.
fn quit_on_signals(commands: mpsc::Sender<Command>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if signals.forever().next().is_some() {
            let _ = commands.send(Command::Quit);
        }
    })?;
    Ok(())
}

/// On Quit: stops taking in events, lets the dispatcher finish the send in flight and
/// waits for it (within the engine's bound; a send left unanswered stays queued).
fn stop(engine: &runwatch_engine::Engine) {
    println!("Runwatch app — stopping");
    let report = engine.shutdown();
    if report.unfinished.contains(&runwatch_engine::Part::Dispatcher) {
        tracing::warn!("a send was still waiting for an answer; its delivery stays queued and is sent again at the next start");
    }
    for e in &report.errors {
        tracing::warn!("{e}");
    }
    println!("Runwatch app — stopped");
}
