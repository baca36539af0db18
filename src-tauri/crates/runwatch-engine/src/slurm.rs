//! The Slurm source on its own thread: while it is on (`runwatch start --slurm`, or the
//! `slurm_enabled` setting), it polls Slurm every interval for all of the user's jobs and
//! stores what changed (see `runwatch_slurm`); while slurmctld is slow or unreachable the
//! pause grows, with one logged warning per outage. The store's change feed wakes it to
//! read the settings again (the UI's toggle takes effect at once); while off it only waits.

use std::sync::mpsc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use runwatch_core::clock::SharedClock;
use runwatch_core::{DataDir, Settings, Store};
use runwatch_notify::dispatcher::DispatcherHandle;
use runwatch_slurm::{Mode, Source, SourceError};

use crate::follow::SharedHook;

/// How the Slurm source is set up.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// On whatever the settings say (`--slurm`).
    pub forced: bool,
    /// Whose jobs [default: the user the engine runs as].
    pub user: Option<String>,
    /// The pause between polls.
    pub interval: Duration,
    /// `sacct`, `scontrol`, or whichever the cluster supports.
    pub mode: Mode,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions { forced: false, user: None, interval: Duration::from_secs(30), mode: Mode::Auto }
    }
}

/// What wakes the thread.
pub(crate) enum Wake {
    /// The store changed: the settings may have.
    Settings,
    Stop,
}

/// Stops the thread (dropping it does too), or wakes it to read the settings.
#[derive(Clone)]
pub(crate) struct SlurmHandle(mpsc::Sender<Wake>);

impl SlurmHandle {
    pub(crate) fn settings_changed(&self) {
        let _ = self.0.send(Wake::Settings);
    }

    pub(crate) fn stop(&self) {
        let _ = self.0.send(Wake::Stop);
    }
}

/// A source that never runs (on a shared store): its thread ends at once.
pub(crate) fn idle() -> (SlurmHandle, std::thread::JoinHandle<()>) {
    let (handle, _) = mpsc::channel::<Wake>();
    (SlurmHandle(handle), std::thread::spawn(|| {}))
}

pub(crate) fn start(
    data_dir: &DataDir,
    options: SlurmOptions,
    clock: SharedClock,
    hook: SharedHook,
    wake: DispatcherHandle,
) -> Result<(SlurmHandle, std::thread::JoinHandle<()>), crate::EngineError> {
    let mut store = Store::open(data_dir)?;
    let (handle, wakes) = mpsc::channel::<Wake>();
    let thread = std::thread::Builder::new()
        .name("slurm".into())
        .spawn(move || {
            let mut source: Option<Source> = None;
            let mut warned = false;
            loop {
                let settings = Settings::load(&store).unwrap_or_default();
                let mut next_poll = None;
                if options.forced || settings.slurm_enabled {
                    let near = Duration::from_secs(settings.slurm_near_limit_secs);
                    let s = source.get_or_insert_with(|| {
                        let s = Source::new(options.user.clone(), options.mode, near);
                        tracing::info!("following the Slurm jobs of '{}' every {}s", s.poller.user(), options.interval.as_secs());
                        s
                    });
                    match s.poll_once(&mut store, clock.now()) {
                        Ok(stored) => {
                            if warned {
                                tracing::warn!("Slurm answers again");
                                warned = false;
                            }
                            if !stored.is_empty() {
                                wake.wake();
                                if let Some(hook) = hook.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                                    for n in &stored {
                                        hook(n);
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            if !warned {
                                let what = match e {
                                    SourceError::Slurm(_) => "cannot ask Slurm about jobs",
                                    SourceError::Store(_) => "cannot store what Slurm said",
                                };
                                tracing::warn!("{what}: {e}; trying again, less often, until it answers");
                                warned = true;
                            }
                        }
                    }
                    next_poll = Some(Instant::now() + s.poller.next_wait(options.interval));
                } else if source.take().is_some() {
                    tracing::info!("no longer following Slurm jobs");
                }
                // Until the next poll (or, while off, until the settings change): a change
                // of the store only matters if it turned the source on or off.
                loop {
                    let wake = match next_poll {
                        Some(at) => match wakes.recv_timeout(at.saturating_duration_since(Instant::now())) {
                            Ok(w) => w,
                            Err(mpsc::RecvTimeoutError::Timeout) => break,
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        },
                        None => wakes.recv().unwrap_or(Wake::Stop),
                    };
                    match wake {
                        Wake::Stop => return,
                        Wake::Settings => {
                            let on = options.forced || Settings::load(&store).is_ok_and(|s| s.slurm_enabled);
                            if on != source.is_some() {
                                break;
                            }
                        }
                    }
                }
            }
        })
        .map_err(|source| crate::EngineError::Spawn { what: "Slurm source", source })?;
    Ok((SlurmHandle(handle), thread))
}
