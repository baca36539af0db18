//! Delivery by a command (`send`, `exec`) when no engine runs on its data dir: the same
//! dispatcher, stepped in the foreground under the instance lock, one round of sends at a
//! time, so an engine starting meanwhile waits seconds at most and then takes over.

use std::sync::Arc;
use std::time::Duration;

use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::{DataDir, Holder, InstanceLock, Store};
use runwatch_notify::send::{Sender, DEFAULT_TIMEOUT};
use runwatch_notify::Dispatcher;

use crate::EngineError;

/// How long to keep at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Send what is due, and wait for retries that fall due within this long.
    RetriesDueWithin(Duration),
    /// Send what is due now; retries wait for the next delivery or the next engine.
    DueNow,
}

/// How a one-shot delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Nothing is left to send, or a watcher runs and sends it.
    Done,
    /// Sent what was due now (with [`Patience::DueNow`]); this many are still pending.
    DueSent(i64),
    /// Retries were not due in time: this many stay queued for the next engine.
    Left(i64),
}

/// Delivers what the outbox of `data_dir` holds unless a watcher runs there; `store` is
/// the caller's connection, used to see cheaply whether anything is pending at all.
pub fn deliver_without_watcher(data_dir: &DataDir, store: &Store, patience: Patience) -> Result<Delivered, EngineError> {
    let pending = |s: &Store| s.delivery_counts().map(|(p, _, _)| p);
    if pending(store)? == 0 {
        return Ok(Delivered::Done); // before taking the lock: most calls have nothing to send
    }
    let mut dispatcher = Dispatcher::new(Store::open(data_dir)?, Arc::new(SystemClock), Sender::new(DEFAULT_TIMEOUT));
    let give_up = match patience {
        Patience::RetriesDueWithin(d) => SystemClock.now() + d.as_millis() as i64,
        Patience::DueNow => i64::MIN,
    };
    loop {
        // Held for one round of sends at a time; once a watcher has it, the rest is its to send.
        let Ok(lock) = InstanceLock::try_acquire(data_dir, Holder::Delivery) else { return Ok(Delivered::Done) };
        let next = dispatcher.step()?;
        drop(lock);
        let left = pending(dispatcher.store())?;
        if left == 0 {
            return Ok(Delivered::Done);
        }
        if patience == Patience::DueNow {
            return Ok(Delivered::DueSent(left));
        }
        match next {
            Some(at) if at <= give_up => {
                let wait = (at - SystemClock.now()).clamp(0, 5_000);
                std::thread::sleep(Duration::from_millis(wait as u64)); // until the retry is due
            }
            _ => return Ok(Delivered::Left(left)),
        }
    }
}
