//! The Slurm source on its own thread: while it is on (`runwatch start --slurm`, or the
//! `slurm_enabled` setting), it polls Slurm every interval for all of the user's jobs and
//! stores what changed (see `runwatch_slurm`); while slurmctld is slow or unreachable the
//! pause grows, with one logged warning per outage. The store's change feed wakes it to
//! read the settings again (the UI's toggle takes effect at once); while off it only waits.
//! On a shared PostgreSQL store one daemon polls at a time: the one holding the Slurm role.

use std::sync::mpsc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use runwatch_core::clock::{Millis, SharedClock};
use runwatch_core::{Location, Role, Settings, Store};
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

pub(crate) fn start(
    location: &Location,
    options: SlurmOptions,
    clock: SharedClock,
    hook: SharedHook,
    wake: DispatcherHandle,
) -> Result<(SlurmHandle, std::thread::JoinHandle<()>), crate::EngineError> {
    let mut store = Store::open_at(location)?;
    let (handle, wakes) = mpsc::channel::<Wake>();
    let thread = std::thread::Builder::new()
        .name("slurm".into())
        .spawn(move || {
            let mut source: Option<Source> = None;
            let mut warned = false;
            let mut role = Playing::default();
            loop {
                let settings = Settings::load(&store).unwrap_or_default();
                let mut next_poll = None;
                let mut next_claim = None;
                if options.forced || settings.slurm_enabled {
                    let near = Duration::from_secs(settings.slurm_near_limit_secs);
                    let s = source.get_or_insert_with(|| {
                        let s = Source::new(options.user.clone(), options.mode, near);
                        tracing::info!("following the Slurm jobs of '{}' every {}s", s.poller.user(), options.interval.as_secs());
                        s
                    });
                    let held = role.claim(&store, clock.now(), s);
                    next_claim = Some(role.again_at(clock.now()));
                    if held && role.poll_due() {
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
                        role.polled_until(Instant::now() + s.poller.next_wait(options.interval));
                    }
                    if held {
                        next_poll = role.poll_at;
                    }
                } else if source.take().is_some() {
                    tracing::info!("no longer following Slurm jobs");
                    role.release(&store);
                }
                // Until the next poll or claim (or, while off, until the settings change): a
                // change of the store only matters if it turned the source on or off.
                let until = [next_poll, next_claim].into_iter().flatten().min();
                loop {
                    let wake = match until {
                        Some(at) => match wakes.recv_timeout(at.saturating_duration_since(Instant::now())) {
                            Ok(w) => w,
                            Err(mpsc::RecvTimeoutError::Timeout) => break,
                            Err(mpsc::RecvTimeoutError::Disconnected) => Wake::Stop,
                        },
                        None => wakes.recv().unwrap_or(Wake::Stop),
                    };
                    match wake {
                        Wake::Stop => {
                            role.release(&store);
                            return;
                        }
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

/// The Slurm role of the store (see `runwatch_core::roles`): on SQLite always this
/// daemon's; on a shared store one daemon's at a time, renewed before its lease runs out.
/// A daemon that does not hold it waits until the holder's lease would run out, then tries.
#[derive(Default)]
struct Playing {
    held: bool,
    /// When to claim again (store clock); `None`: now.
    claim_at: Option<Millis>,
    /// When to poll next, while held.
    poll_at: Option<Instant>,
    /// The last claim failed (the store is unreachable): said once.
    failing: bool,
}

impl Playing {
    /// Claims (or renews) the role when due; whether this daemon holds it. A daemon that
    /// takes it over forgets its last poll: the next starts from what the store knows.
    fn claim(&mut self, store: &Store, now: Millis, source: &mut Source) -> bool {
        if self.claim_at.is_some_and(|at| now < at) {
            return self.held;
        }
        let claim = store.claim_role(Role::Slurm, now);
        let held = match claim {
            Ok(claim) => {
                if std::mem::take(&mut self.failing) {
                    tracing::warn!("the Slurm role of the store can be claimed again");
                }
                self.claim_at = Some(claim.again_at);
                claim.held
            }
            Err(e) => {
                // Unsure: not polling is the safe side (the lease ends on its own).
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!("cannot claim the Slurm role of the store: {e}; not polling Slurm until it can");
                }
                self.claim_at = Some(now.saturating_add(CLAIM_RETRY_MS));
                false
            }
        };
        if held != self.held {
            // Said only where the role can change hands.
            if store.is_postgres() {
                match (held, self.failing) {
                    (true, _) => tracing::info!("polling Slurm for the store"),
                    (false, false) => tracing::info!("another daemon polls Slurm for the store now"),
                    (false, true) => {}
                }
            }
            source.forget();
            self.poll_at = None;
        }
        self.held = held;
        held
    }

    /// When to wake for the next claim.
    fn again_at(&self, now: Millis) -> Instant {
        let wait = self.claim_at.map_or(0, |at| at.saturating_sub(now).clamp(0, MAX_WAIT_MS));
        Instant::now() + Duration::from_millis(u64::try_from(wait).unwrap_or(0))
    }

    fn poll_due(&self) -> bool {
        self.poll_at.is_none_or(|at| Instant::now() >= at)
    }

    fn polled_until(&mut self, next: Instant) {
        self.poll_at = Some(next);
    }

    /// Lets the role go (stopping, or turned off), so another daemon takes it at once.
    fn release(&mut self, store: &Store) {
        if std::mem::take(&mut self.held) {
            if let Err(e) = store.release_role(Role::Slurm) {
                tracing::warn!("cannot release the Slurm role of the store: {e}");
            }
        }
        self.claim_at = None;
        self.poll_at = None;
    }
}

/// How soon a failed claim is tried again.
const CLAIM_RETRY_MS: Millis = 5_000;
/// The longest sleep before looking at the role again (on SQLite the role never changes hands).
const MAX_WAIT_MS: Millis = 24 * 3600 * 1000;
