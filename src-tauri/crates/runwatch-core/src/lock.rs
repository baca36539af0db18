//! One watcher per data dir: an exclusive lock on `watcher.lock`, held while the process lives.
//!
//! The OS releases the lock when the process dies, even by `kill -9`, so a stale file never
//! blocks a restart. The file holds the owner's pid, for the error message, and whether it
//! holds the lock only briefly (a command delivering its own notifications because no
//! watcher runs), which a starting watcher waits out instead of refusing to start.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::DataDir;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another Runwatch watcher (pid {pid}) is already running on data dir '{dir}'; stop it first or use another --data-dir")]
    Held { dir: PathBuf, pid: String },
    #[error("a Runwatch command (pid {pid}) is still delivering notifications from data dir '{dir}'; try again when it has finished")]
    Busy { dir: PathBuf, pid: String },
    #[error("cannot lock '{path}': {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Proof that this process is the only watcher on its data dir; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Who holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A watcher (`runwatch start`, the app): for as long as it runs.
    Watcher,
    /// A command delivering while no watcher runs: for seconds.
    Delivery,
}

/// How long a starting watcher waits for a [`Holder::Delivery`] to finish. A delivery holds
/// the lock for one round of sends at a time (each under the senders' 10 s timeout).
pub const DELIVERY_WAIT: Duration = Duration::from_secs(15);

impl InstanceLock {
    /// Takes the lock for a watcher. A command that holds it to deliver is waited for (up
    /// to [`DELIVERY_WAIT`]); another watcher is refused at once with [`LockError::Held`].
    pub fn acquire(dir: &DataDir) -> Result<Self, LockError> {
        let give_up = Instant::now() + DELIVERY_WAIT;
        loop {
            match Self::try_acquire(dir, Holder::Watcher) {
                Err(LockError::Busy { .. }) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(50)); // another process's doing
                }
                other => return other,
            }
        }
    }

    /// Takes the lock without waiting; fails with [`LockError::Held`] if a watcher has it
    /// and [`LockError::Busy`] if a delivering command has it.
    pub fn try_acquire(dir: &DataDir, holder: Holder) -> Result<Self, LockError> {
        let path = dir.lock_path();
        let io_err = |source| LockError::Io { path: path.clone(), source };
        dir.ensure().map_err(io_err)?;
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path).map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut content = String::new();
                let _ = file.read_to_string(&mut content);
                let mut words = content.split_whitespace();
                let pid = words.next().unwrap_or("unknown").to_string();
                let dir = dir.path().to_path_buf();
                return Err(match words.next() {
                    Some("delivery") => LockError::Busy { dir, pid },
                    _ => LockError::Held { dir, pid },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        let kind = match holder {
            Holder::Watcher => "",
            Holder::Delivery => " delivery",
        };
        writeln!(file, "{}{kind}", std::process::id()).map_err(io_err)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_dir_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::at(tmp.path().join("data"));
        let first = InstanceLock::acquire(&dir).unwrap();
        let err = InstanceLock::acquire(&dir).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        drop(first);
        InstanceLock::acquire(&dir).unwrap();
    }

    #[test]
    fn a_delivery_is_told_apart_from_a_watcher() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::at(tmp.path().join("data"));
        let delivery = InstanceLock::try_acquire(&dir, Holder::Delivery).unwrap();
        let err = InstanceLock::try_acquire(&dir, Holder::Watcher).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");
        drop(delivery);

        let watcher = InstanceLock::acquire(&dir).unwrap();
        assert!(matches!(InstanceLock::try_acquire(&dir, Holder::Delivery), Err(LockError::Held { .. })));
        drop(watcher);
    }
}
