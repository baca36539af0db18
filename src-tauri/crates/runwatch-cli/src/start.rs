//! `runwatch start`: the headless daemon — the watcher on its own thread, the HTTP server
//! (API and UI) on the async runtime, and the dispatcher delivering notifications to the
//! notifiers (the logger prints them here as they happen).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use std::io::IsTerminal;

use anyhow::Context;
use runwatch_aim::repo::AimRepo;
use runwatch_core::clock::{Clock, SharedClock, SystemClock};
use runwatch_core::notifiers::Notifier;
use runwatch_core::{ChangeFeed, DataDir, InstanceLock, Level, NotifierStatus, Store};
use runwatch_http::ApiConfig;
use runwatch_notify::send::{Sender, DEFAULT_TIMEOUT};
use runwatch_notify::{Channel, Dispatcher};
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

    let mut setup = Store::open(data_dir)?;
    if setup.notifiers()?.is_empty() && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        offer_to_add_a_notifier(&mut setup)?;
    }
    if ensure_a_notifier(&mut setup)? {
        println!("No notifiers configured: using the logger, which prints notifications here. Add others with 'runwatch notifiers add'.");
    }
    drop(setup);

    let clock: SharedClock = Arc::new(SystemClock);
    let dispatcher = Dispatcher::new(Store::open(data_dir)?, clock.clone(), Sender::new(DEFAULT_TIMEOUT));
    let deliver = dispatcher.handle();
    let wake = deliver.clone();
    let deliver_api = deliver.clone();
    let mut watcher = Watcher::new(Store::open(data_dir)?, repos.clone(), clock)?.on_notification(move |_| wake.wake());
    watcher.scan()?;
    if repos.is_empty() {
        println!("Not watching any Aim repository (pass --repo DIR); events sent to Runwatch are still received.");
    }
    for repo in &repos {
        println!("Watching '{}' …", repo.root().display());
    }
    println!("Tracking {} runs.", watcher.run_count());
    let stop = watcher.stop_handle();
    // Commits by any process (the CLI's sends, settings, acks) wake the parts that care;
    // nothing polls. Lives until `start` returns (it ends with its last clone).
    let store_changes = ChangeFeed::watch(data_dir).context("cannot watch the store for changes")?;
    let (watcher_wake, dispatcher_wake) = (stop.clone(), deliver.clone());
    store_changes.subscribe(move || watcher_wake.wake());
    store_changes.subscribe(move || dispatcher_wake.wake());
    let watcher_thread =
        std::thread::Builder::new().name("watcher".into()).spawn(move || watcher.run()).context("cannot start the watcher thread")?;
    let dispatcher_thread = std::thread::Builder::new()
        .name("dispatcher".into())
        .spawn(move || dispatcher.run())
        .context("cannot start the dispatcher thread")?;

    let api = ApiConfig {
        store: Store::open(data_dir)?,
        token: data_dir.api_token().context("cannot create the API token")?,
        clock: Arc::new(SystemClock),
        on_stored: Box::new(move || deliver_api.wake()),
        store_changes: Some(store_changes.clone()),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let served = runtime.block_on(async move {
        let server = runwatch_http::Server::bind(args.http)
            .await
            .with_context(|| format!("cannot listen on {} (is another program using it? try --http 127.0.0.1:0)", args.http))?;
        let shutdown = shutdown_signal()?;
        println!("Serving the UI at {}", server.url(&api.token)?);
        println!("Press Ctrl+C to exit");
        server.serve(api, shutdown).await.context("HTTP server failed")
    });
    // Stop taking in new events, then let the dispatcher finish the send in flight.
    stop.stop();
    match watcher_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("runwatch: warning: the watcher stopped with an error: {e}"),
        Err(_) => eprintln!("runwatch: warning: the watcher thread failed"),
    }
    deliver.stop();
    if dispatcher_thread.join().is_err() {
        eprintln!("runwatch: warning: the dispatcher thread failed");
    }
    drop((store, store_changes));
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
    store.add_notifier(&Notifier {
        id: uuid::Uuid::new_v4().to_string(),
        kind: logger.kind().into(),
        status: NotifierStatus::Enabled,
        config: logger.config_json(),
        min_level: Level::Debug,
        created_at: now,
        updated_at: now,
    })?;
    Ok(true)
}

/// A future that completes on Ctrl+C (SIGINT) or SIGTERM. The handlers are installed
/// when this is called, so a signal that comes right after "Press Ctrl+C" is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle Ctrl+C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
