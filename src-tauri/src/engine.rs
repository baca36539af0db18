//! The engine inside the app (runwatch-engine, as in `runwatch start`, on the app's async
//! runtime), with the app's hooks: new notifications wake the popups and the tray badge,
//! and a failing HTTP server exits the app.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use runwatch_aim::repo::AimRepo;
use runwatch_core::DataDir;
use tauri::AppHandle;

/// What runs for the app's whole life.
pub struct Engine {
    engine: runwatch_engine::Engine,
    /// Popups and the tray badge are woken here when the watcher stores something.
    pub wake: Arc<Mutex<Option<mpsc::Sender<()>>>>,
}

impl Deref for Engine {
    type Target = runwatch_engine::Engine;

    fn deref(&self) -> &Self::Target {
        &self.engine
    }
}

impl Engine {
    pub fn start(app: &AppHandle, data_dir: Option<&Path>, repos: &[PathBuf], http: SocketAddr) -> anyhow::Result<Engine> {
        let data_dir = DataDir::resolve(data_dir)?;
        // The watcher adds the repositories of the Settings (and follows their changes).
        let repos: Vec<AimRepo> = repos.iter().map(|p| AimRepo::open(p)).collect::<Result<_, _>>()?;
        let wake: Arc<Mutex<Option<mpsc::Sender<()>>>> = Arc::default();
        let popups = wake.clone();
        let app = app.clone();
        let engine = runwatch_engine::Engine::builder(data_dir)?
            .repos(repos)
            .http(http)
            .runtime(tauri::async_runtime::handle().inner().clone())
            .on_notification(move |_| {
                if let Some(tx) = popups.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                    let _ = tx.send(());
                }
            })
            .on_change({
                let popups = wake.clone();
                move || {
                    if let Some(tx) = popups.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                        let _ = tx.send(());
                    }
                }
            })
            .on_failure(move |_| app.exit(1))
            .start()?;
        println!("Runwatch app — data in '{}', API at {}", engine.data_dir().path().display(), engine.api_url());
        Ok(Engine { engine, wake })
    }

    /// On Quit: stops taking in events, lets the dispatcher finish the send in flight and
    /// waits for it (within the engine's bound; a send left unanswered stays queued).
    pub fn stop(&self) {
        println!("Runwatch app — stopping");
        let report = self.engine.shutdown();
        if report.unfinished.contains(&runwatch_engine::Part::Dispatcher) {
            tracing::warn!("a send was still waiting for an answer; its delivery stays queued and is sent again at the next start");
        }
        for e in &report.errors {
            tracing::warn!("{e}");
        }
        println!("Runwatch app — stopped");
    }
}
