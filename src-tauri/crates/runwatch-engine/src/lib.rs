//! Runwatch's engine, put together in one place for `runwatch start` and the desktop app:
//! the watcher and the dispatcher on their threads, the HTTP server on an async runtime,
//! the wakes between them, and a shutdown that keeps its promise (stop taking in events,
//! finish the send in flight, join every part — within a bound). [`oneshot`] is the same
//! dispatcher for a command delivering its own notifications when no engine runs.

mod follow;
pub mod oneshot;
mod slurm;

pub use follow::recorded_api_url;
pub use runwatch_slurm::Mode as SlurmMode;
pub use slurm::SlurmOptions;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use runwatch_aim::repo::AimRepo;
use runwatch_core::changes::{ChangeFeed, ChangeFeedError};
use runwatch_core::clock::{SharedClock, SystemClock};
use runwatch_core::{DataDir, InstanceLock, Location, LockError, Notification, Store, StoreError};
use runwatch_http::{ApiConfig, Server};
use runwatch_notify::dispatcher::DispatcherHandle;
use runwatch_notify::send::{Sender, DEFAULT_TIMEOUT};
use runwatch_notify::Dispatcher;
use runwatch_watcher::{StopHandle, Watcher, WatcherError};

/// How long [`Engine::shutdown`] waits for the parts, unless told otherwise. Shorter than
/// the senders' timeout on purpose: a send that has not been answered by then is left
/// behind, and since its outcome is stored only once it is answered, the delivery stays
/// pending and is sent again at the next start. Nothing is lost; quitting stays quick.
pub const SHUTDOWN_WITHIN: Duration = Duration::from_secs(4);

/// How long the HTTP server waits for open requests once shutdown began. Some never end
/// by themselves (the UI's change stream), so they are cut after this.
const HTTP_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Watcher(#[from] WatcherError),
    #[error("cannot create the API token: {0}")]
    Token(#[source] io::Error),
    #[error("cannot listen on {addr} (is another program using it? try --http 127.0.0.1:0): {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Exposure(#[from] runwatch_http::ExposureError),
    #[error(transparent)]
    ChangeFeed(#[from] ChangeFeedError),
    #[error("the HTTP server failed: {0}")]
    Http(#[source] io::Error),
    #[error("cannot start the {what}: {source}")]
    Spawn { what: &'static str, source: io::Error },
    #[error("the {0} thread panicked")]
    Panicked(Part),
}

/// The parts of a running engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Watcher,
    Dispatcher,
    Http,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Watcher => "watcher",
            Part::Dispatcher => "dispatcher",
            Part::Http => "HTTP server",
        })
    }
}

type NotificationHook = Box<dyn FnMut(&Notification) + Send>;
type FailureHook = Box<dyn FnOnce(&EngineError) + Send>;
type ChangeHook = Box<dyn Fn() + Send + Sync>;

/// An engine being set up; it holds the data dir's instance lock from the start, so the
/// caller's own setup (adding the logger notifier, say) is done as the one watcher.
pub struct EngineBuilder {
    data_dir: DataDir,
    store: Location,
    lock: InstanceLock,
    repos: Vec<AimRepo>,
    http: SocketAddr,
    exposure: runwatch_http::Exposure,
    runtime: Option<tokio::runtime::Handle>,
    on_notification: Option<NotificationHook>,
    on_failure: Option<FailureHook>,
    on_change: Option<ChangeHook>,
    send_timeout: Duration,
    shutdown_within: Duration,
    slurm: SlurmOptions,
}

impl EngineBuilder {
    /// How the Slurm source runs: on by `forced` or by the `slurm_enabled` setting.
    pub fn slurm(mut self, options: SlurmOptions) -> Self {
        self.slurm = options;
        self
    }

    /// The store to work on, when not the data dir's SQLite file: a shared PostgreSQL store.
    /// There the engine serves the API, delivers (each delivery by one of the daemons
    /// sharing it), watches this host's repositories, and plays the store's roles one daemon
    /// at a time: taking the HTTP check-ins (see `Watcher`), following remotes (see
    /// `follow`) and polling Slurm (see `slurm`).
    pub fn store(mut self, location: Location) -> Self {
        self.store = location;
        self
    }

    /// Aim repositories to watch besides those in the settings.
    pub fn repos(mut self, repos: Vec<AimRepo>) -> Self {
        self.repos = repos;
        self
    }

    /// Where the API and UI are served (port 0 picks a free port) [default:
    /// [`runwatch_http::DEFAULT_ADDR`]].
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = addr;
        self
    }

    /// How the server may be reached from other machines: TLS, public names, or plain
    /// HTTP off loopback by explicit choice [default: loopback only].
    pub fn exposure(mut self, exposure: runwatch_http::Exposure) -> Self {
        self.exposure = exposure;
        self
    }

    /// Serve on this runtime (the app's) instead of one of the engine's own.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Called on the watcher's thread with every notification it stores (after the
    /// dispatcher was woken): the app's popups and badge.
    pub fn on_notification(mut self, hook: impl FnMut(&Notification) + Send + 'static) -> Self {
        self.on_notification = Some(Box::new(hook));
        self
    }

    /// Called on the change feed's thread after any process commits to the store (the
    /// app's badge and popups look then). It must only signal: it runs on the feed's thread.
    pub fn on_change(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_change = Some(Box::new(hook));
        self
    }

    /// Called once if a part stops by itself (the HTTP server failing): the caller should
    /// shut the engine down and exit.
    pub fn on_failure(mut self, hook: impl FnOnce(&EngineError) + Send + 'static) -> Self {
        self.on_failure = Some(Box::new(hook));
        self
    }

    /// How long a send may wait for an answer [default: the senders' 10 s].
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// How long [`Engine::shutdown`] waits [default: [`SHUTDOWN_WITHIN`]].
    pub fn shutdown_within(mut self, bound: Duration) -> Self {
        self.shutdown_within = bound;
        self
    }

    /// Starts every part: a first scan of the repositories (so [`Engine::run_count`] is
    /// known), the watcher and dispatcher threads, and the HTTP server, listening.
    pub fn start(self) -> Result<Engine, EngineError> {
        let data_dir = self.data_dir;
        let clock: SharedClock = Arc::new(SystemClock);
        let token = data_dir.api_token().map_err(EngineError::Token)?;
        let location = self.store;
        let api_store = Store::open_at(&location)?;
        let (done_tx, done) = mpsc::channel();
        let errors: Arc<Mutex<Vec<EngineError>>> = Arc::default();

        let dispatcher = Dispatcher::new(Store::open_at(&location)?, clock.clone(), Sender::new(self.send_timeout));
        let deliver = dispatcher.handle();

        // The wakes between the parts, all here: what the watcher stores and what the API
        // stores are sent at once; commits by any process (the CLI's sends, settings, acks,
        // HTTP check-ins) wake the watcher, the dispatcher, the API's stream and the
        // caller's hook through the change feed. Nothing polls the store.
        let hook: follow::SharedHook = Arc::new(Mutex::new(self.on_notification));
        let (wake, watcher_hook) = (deliver.clone(), hook.clone());
        // Each daemon watches its own host's repositories, on either store (see `Watcher`).
        let mut watcher = Watcher::new(Store::open_at(&location)?, self.repos, clock.clone())?.on_notification(move |n| {
            wake.wake();
            if let Some(hook) = watcher_hook.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                hook(n);
            }
        });
        let wake = deliver.clone();
        let on_stored = Box::new(move || wake.wake());

        let store_changes = ChangeFeed::for_location(&location)?;
        let stop_watcher = watcher.stop_handle();
        let (watcher_wake, dispatcher_wake) = (stop_watcher.clone(), deliver.clone());
        store_changes.subscribe(move || watcher_wake.wake());
        store_changes.subscribe(move || dispatcher_wake.wake());
        if let Some(hook) = self.on_change {
            store_changes.subscribe(hook);
        }

        watcher.scan()?;
        let run_count = watcher.run_count();
        let repos = watcher.repos().iter().map(|r| r.root().to_path_buf()).collect();

        // Bound before any thread starts, so a busy port fails the start with nothing to undo.
        let (own_runtime, runtime) = match self.runtime {
            Some(handle) => (None, handle),
            None => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("runwatch-http")
                    .build()
                    .map_err(|source| EngineError::Spawn { what: "async runtime", source })?;
                let handle = rt.handle().clone();
                (Some(rt), handle)
            }
        };
        let addr = self.http;
        let server = runtime.block_on(Server::bind_exposed(addr, &self.exposure)).map_err(|e| match e {
            runwatch_http::ExposureError::Listen { addr, source } => EngineError::Listen { addr, source },
            other => EngineError::Exposure(other),
        })?;
        let scheme = server.scheme();
        let local_addr = server.local_addr().map_err(|source| EngineError::Listen { addr, source })?;
        let ui_url = server.url(&token).map_err(|source| EngineError::Listen { addr, source })?;

        let mut threads = Vec::new();
        let finished = done_tx.clone();
        threads.push((
            Part::Watcher,
            spawn("watcher", move || {
                let _done = Finished(Part::Watcher, finished);
                watcher.run().err().map(|e| {
                    tracing::warn!("the watcher stopped: {e}");
                    EngineError::from(e)
                })
            })?,
        ));
        let finished = done_tx.clone();
        let dispatcher_thread = spawn("dispatcher", move || {
            let _done = Finished(Part::Dispatcher, finished);
            dispatcher.run();
            None
        });
        match dispatcher_thread {
            Ok(thread) => threads.push((Part::Dispatcher, thread)),
            Err(e) => {
                stop_watcher.stop();
                return Err(e);
            }
        }
        // The remotes this instance follows (see `follow`); it looks at the store when told.
        let followed = follow::start(&location, clock.clone(), hook.clone(), deliver.clone());
        let follower = match followed {
            Ok(f) => f,
            Err(e) => {
                stop_watcher.stop();
                deliver.stop();
                return Err(e);
            }
        };
        let bell = follower.bell();
        store_changes.subscribe(move || bell.ring());
        // On a shared store, one of its daemons polls Slurm at a time (the Slurm role).
        let slurm = slurm::start(&location, self.slurm, clock.clone(), hook.clone(), deliver.clone());
        let slurm = match slurm {
            Ok(s) => s,
            Err(e) => {
                stop_watcher.stop();
                follower.stop();
                deliver.stop();
                return Err(e);
            }
        };
        let slurm_wake = slurm.0.clone();
        store_changes.subscribe(move || slurm_wake.settings_changed());

        let (http_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ApiConfig { store: api_store, token: token.clone(), clock, on_stored, store_changes: Some(store_changes.clone()) };
        let (on_failure, failures) = (self.on_failure, errors.clone());
        runtime.spawn(async move {
            let _done = Finished(Part::Http, done_tx);
            let (begun_tx, begun) = tokio::sync::oneshot::channel::<()>();
            let serve = server.serve(config, async move {
                let _ = stopped.await; // asked to stop, or the engine is gone
                let _ = begun_tx.send(());
            });
            let cut = async move {
                if begun.await.is_ok() {
                    tokio::time::sleep(HTTP_GRACE).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let result = tokio::select! {
                result = serve => result,
                () = cut => Ok(()),
            };
            if let Err(e) = result {
                let e = EngineError::Http(e);
                tracing::warn!("{e}");
                if let Some(hook) = on_failure {
                    hook(&e);
                }
                failures.lock().unwrap_or_else(PoisonError::into_inner).push(e);
            }
        });

        let api_url = format!("{scheme}://{local_addr}");
        follow::record_api_url(&data_dir, &api_url);
        Ok(Engine {
            api_url,
            ui_url,
            local_addr,
            token,
            run_count,
            repos,
            data_dir,
            shutdown_within: self.shutdown_within,
            running: Mutex::new(Some(Running {
                watcher: stop_watcher,
                dispatcher: deliver,
                follower,
                slurm,
                http_stop,
                done,
                threads,
                runtime: own_runtime,
                errors,
                _store_changes: store_changes,
            })),
            _lock: self.lock,
        })
    }
}

fn spawn(
    name: &'static str,
    f: impl FnOnce() -> Option<EngineError> + Send + 'static,
) -> Result<JoinHandle<Option<EngineError>>, EngineError> {
    std::thread::Builder::new().name(name.into()).spawn(f).map_err(|source| EngineError::Spawn { what: name, source })
}

/// Tells the shutdown a part has ended, even by a panic.
struct Finished(Part, mpsc::Sender<Part>);

impl Drop for Finished {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

/// A running engine. Dropping it shuts it down.
pub struct Engine {
    data_dir: DataDir,
    api_url: String,
    ui_url: String,
    local_addr: SocketAddr,
    token: String,
    run_count: usize,
    repos: Vec<PathBuf>,
    shutdown_within: Duration,
    running: Mutex<Option<Running>>,
    /// Released last, after the parts stopped (or were left behind at exit).
    _lock: InstanceLock,
}

struct Running {
    watcher: StopHandle,
    dispatcher: DispatcherHandle,
    follower: follow::Follower,
    /// The Slurm source's stop and thread; a poll in flight is not waited for past the bound.
    slurm: (slurm::SlurmHandle, JoinHandle<()>),
    http_stop: tokio::sync::oneshot::Sender<()>,
    done: mpsc::Receiver<Part>,
    threads: Vec<(Part, JoinHandle<Option<EngineError>>)>,
    runtime: Option<tokio::runtime::Runtime>,
    errors: Arc<Mutex<Vec<EngineError>>>,
    /// Watches the store while the engine runs; dropped with the rest at shutdown.
    _store_changes: ChangeFeed,
}

/// How a shutdown went.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Parts still running when the bound was reached (the dispatcher waiting for an answer
    /// to a send: that delivery stays pending and is sent again at the next start).
    pub unfinished: Vec<Part>,
    /// Errors the parts stopped with.
    pub errors: Vec<EngineError>,
}

impl ShutdownReport {
    pub fn is_clean(&self) -> bool {
        self.unfinished.is_empty() && self.errors.is_empty()
    }
}

impl Engine {
    /// Takes the data dir's instance lock (waiting out a command delivering its own
    /// notifications, refusing if another watcher runs) and returns a builder.
    pub fn builder(data_dir: DataDir) -> Result<EngineBuilder, EngineError> {
        let lock = InstanceLock::acquire(&data_dir)?;
        let http = runwatch_http::DEFAULT_ADDR.parse().expect("the default address parses");
        Ok(EngineBuilder {
            store: Location::DataDir(data_dir.clone()),
            data_dir,
            lock,
            repos: Vec::new(),
            http,
            exposure: runwatch_http::Exposure::default(),
            runtime: None,
            on_notification: None,
            on_failure: None,
            on_change: None,
            send_timeout: DEFAULT_TIMEOUT,
            shutdown_within: SHUTDOWN_WITHIN,
            slurm: SlurmOptions::default(),
        })
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// The API's base URL, `http://ADDR` (the API is under `/api/v1`).
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The URL a person opens: the UI, with the token in the fragment.
    pub fn ui_url(&self) -> &str {
        &self.ui_url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The API's bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Runs known after the first scan.
    pub fn run_count(&self) -> usize {
        self.run_count
    }

    /// The repositories watched at start (named and from the settings).
    pub fn repos(&self) -> &[PathBuf] {
        &self.repos
    }

    /// Stops taking in events (the watcher stops, the HTTP server shuts down gracefully),
    /// lets the dispatcher finish the send in flight, and joins every part — waiting at
    /// most the bound set by [`EngineBuilder::shutdown_within`]. A part still running then
    /// is left behind (and ends with the process); nothing it was doing is lost, as every
    /// outcome is stored only once it is known. Later calls return an empty report.
    ///
    /// Call it from plain threads, not from async code (an engine-owned runtime is shut
    /// down here).
    pub fn shutdown(&self) -> ShutdownReport {
        let Some(running) = self.running.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return ShutdownReport::default();
        };
        let deadline = Instant::now() + self.shutdown_within;
        running.watcher.stop();
        running.follower.stop();
        let (slurm_stop, slurm_thread) = running.slurm;
        slurm_stop.stop();
        let _ = running.http_stop.send(());
        running.dispatcher.stop();

        let mut unfinished: Vec<Part> = running.threads.iter().map(|(part, _)| *part).chain([Part::Http]).collect();
        while !unfinished.is_empty() {
            match running.done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(part) => unfinished.retain(|p| *p != part),
                Err(_) => break,
            }
        }
        let mut errors = Vec::new();
        for (part, thread) in running.threads {
            if unfinished.contains(&part) {
                continue; // left behind: joining would wait for its send's timeout
            }
            match thread.join() {
                Ok(None) => {}
                Ok(Some(e)) => errors.push(e),
                Err(_) => errors.push(EngineError::Panicked(part)),
            }
        }
        while !slurm_thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if slurm_thread.is_finished() && slurm_thread.join().is_err() {
            tracing::warn!("the Slurm source panicked");
        }
        running.follower.wait(deadline);
        errors.append(&mut running.errors.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(runtime) = running.runtime {
            runtime.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        ShutdownReport { unfinished, errors }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
