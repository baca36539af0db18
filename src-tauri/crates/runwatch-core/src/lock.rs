//! One watcher per data dir: an exclusive lock on `watcher.lock`, held while the process lives.
//!
//! The OS releases the lock when the process dies, even by `kill -9`, so a stale file never
//! blocks a restart. The file holds the owner's pid, for the error message only.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::DataDir;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another Runwatch watcher (pid {pid}) is already running on data dir '{dir}'; stop it first or use another --data-dir")]
    Held { dir: PathBuf, pid: String },
    #[error("cannot lock '{path}': {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Proof that this process is the only watcher on its data dir; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock without waiting; fails with [`LockError::Held`] if another process has it.
    pub fn acquire(dir: &DataDir) -> Result<Self, LockError> {
        let path = dir.lock_path();
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        dir.ensure().map_err(io_err)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: dir.path().to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
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
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        InstanceLock::acquire(&dir).unwrap();
    }
}
