//! The engine inside the app: the watcher, the dispatcher and the HTTP API — the same
//! pieces as `runwatch start`, on threads of this process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use runwatch_aim::repo::AimRepo;
use runwatch_core::clock::{SharedClock, SystemClock};
use runwatch_core::{ChangeFeed, DataDir, InstanceLock, Store};
use runwatch_http::{ApiConfig, Server};
use runwatch_notify::dispatcher::DispatcherHandle;
use runwatch_notify::send::{Sender, DEFAULT_TIMEOUT};
use runwatch_notify::Dispatcher;
use runwatch_watcher::{StopHandle, Watcher};
use tauri::AppHandle;

/// What runs for the app's whole life.
pub struct Engine {
    pub data_dir: DataDir,
    pub api_url: String,
    pub token: String,
    watcher: StopHandle,
    dispatcher: DispatcherHandle,
    /// Popups and the tray badge are woken here when the watcher stores something, and
    /// on every commit to the store by any process (from the change feed).
    pub wake: Arc<Mutex<Option<std::sync::mpsc::Sender<()>>>>,
    /// Commits by any process wake the watcher, the dispatcher, the API's stream and the
    /// popups; nothing polls the store. Held for the app's life.
    _store_changes: ChangeFeed,
    _lock: InstanceLock,
}

impl Engine {
    pub fn start(app: &AppHandle, data_dir: Option<&Path>, repos: &[PathBuf], http: SocketAddr) -> anyhow::Result<Engine> {
        let data_dir = DataDir::resolve(data_dir)?;
        let lock = InstanceLock::acquire(&data_dir)?;
        let store = Store::open(&data_dir)?;
        // The watcher adds the repositories of the Settings (and follows their changes).
        let repos: Vec<AimRepo> = repos.iter().map(|p| AimRepo::open(p)).collect::<Result<_, _>>()?;
        let clock: SharedClock = Arc::new(SystemClock);
        let token = data_dir.api_token().context("cannot create the API token")?;
        let wake: Arc<Mutex<Option<std::sync::mpsc::Sender<()>>>> = Arc::default();

        let dispatcher = Dispatcher::new(Store::open(&data_dir)?, clock.clone(), Sender::new(DEFAULT_TIMEOUT));
        let deliver = dispatcher.handle();
        let (deliver_w, wake_w) = (deliver.clone(), wake.clone());
        let watcher = Watcher::new(Store::open(&data_dir)?, repos, clock.clone())?.on_notification(move |_| {
            deliver_w.wake();
            if let Some(tx) = wake_w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
                let _ = tx.send(());
            }
        });
        let stop = watcher.stop_handle();
        let store_changes = ChangeFeed::watch(&data_dir).context("cannot watch the store for changes")?;
        let (watcher_wake, dispatcher_wake, popups_wake) = (stop.clone(), deliver.clone(), wake.clone());
        store_changes.subscribe(move || watcher_wake.wake());
        store_changes.subscribe(move || dispatcher_wake.wake());
        store_changes.subscribe(move || {
            if let Some(tx) = popups_wake.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
                let _ = tx.send(());
            }
        });
        std::thread::Builder::new().name("watcher".into()).spawn(move || {
            if let Err(e) = watcher.run() {
                tracing::warn!("the watcher stopped: {e}");
            }
        })?;
        std::thread::Builder::new().name("dispatcher".into()).spawn(move || dispatcher.run())?;

        let server = tauri::async_runtime::block_on(Server::bind(http)).with_context(|| format!("cannot listen on {http}"))?;
        let api_url = format!("http://{}", server.local_addr()?);
        let deliver_api = deliver.clone();
        let config = ApiConfig {
            store,
            token: token.clone(),
            clock,
            on_stored: Box::new(move || deliver_api.wake()),
            store_changes: Some(store_changes.clone()),
        };
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            if let Err(e) = server.serve(config, std::future::pending()).await {
                tracing::warn!("the API server stopped: {e}");
                app.exit(1);
            }
        });
        println!("Runwatch app — data in '{}', API at {api_url}", data_dir.path().display());
        Ok(Engine { data_dir, api_url, token, watcher: stop, dispatcher: deliver, wake, _store_changes: store_changes, _lock: lock })
    }

    /// Stops taking in events and lets the dispatcher finish the send in flight.
    pub fn stop(&self) {
        self.watcher.stop();
        self.dispatcher.stop();
    }
}
