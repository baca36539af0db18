//! The Slurm source on its own thread: while it is on (`runwatch start --slurm`, or the
//! `slurm_enabled` setting, read before each poll so the UI's toggle takes effect without a
//! restart), it polls Slurm every interval for all of the user's jobs and stores what
//! changed (see `runwatch_slurm`); while slurmctld is slow or unreachable the pause grows,
//! with one logged warning per outage.

use std::sync::mpsc;
use std::sync::PoisonError;
use std::time::Duration;

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

/// Stops the thread (dropping it does too).
pub(crate) struct SlurmStop(#[allow(dead_code)] mpsc::Sender<()>);

pub(crate) fn start(
    data_dir: &DataDir,
    options: SlurmOptions,
    clock: SharedClock,
    hook: SharedHook,
    wake: DispatcherHandle,
) -> Result<(SlurmStop, std::thread::JoinHandle<()>), crate::EngineError> {
    let mut store = Store::open(data_dir)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("slurm".into())
        .spawn(move || {
            let mut source: Option<Source> = None;
            let mut warned = false;
            loop {
                let settings = Settings::load(&store).unwrap_or_default();
                let mut wait = options.interval;
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
                    wait = s.poller.next_wait(options.interval);
                } else {
                    source = None;
                }
                match stopped.recv_timeout(wait) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })
        .map_err(|source| crate::EngineError::Spawn { what: "Slurm source", source })?;
    Ok((SlurmStop(stop), thread))
}
