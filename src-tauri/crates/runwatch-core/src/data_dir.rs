//! Where Runwatch keeps its files: `--data-dir`, else `RUNWATCH_HOME`, else the user's data dir.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The environment variable that overrides the default data directory.
pub const HOME_ENV: &str = "RUNWATCH_HOME";

/// A directory holding the store, the instance lock and (later) the API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// The directory chosen by an explicit path, else `RUNWATCH_HOME`, else the platform's
    /// per-user data dir (`$XDG_DATA_HOME/runwatch`, usually `~/.local/share/runwatch`).
    pub fn resolve(explicit: Option<&Path>) -> io::Result<Self> {
        if let Some(path) = explicit {
            return Ok(Self::at(path));
        }
        if let Some(home) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::at(PathBuf::from(home)));
        }
        directories::ProjectDirs::from("", "", "runwatch").map(|dirs| Self::at(dirs.data_dir())).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "cannot find the user's home directory; pass --data-dir or set RUNWATCH_HOME")
        })
    }

    /// A data dir at exactly this path (not created yet).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn store_path(&self) -> PathBuf {
        self.path.join("runwatch.db")
    }

    /// The API's bearer token: created on first use (random, mode 0600), then reused.
    pub fn api_token(&self) -> io::Result<String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path.join("api-token");
        if let Ok(t) = fs::read_to_string(&path) {
            if t.trim().len() >= 32 {
                return Ok(t.trim().to_string());
            }
        }
        self.ensure()?;
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let tmp = self.path.join(".api-token.tmp");
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(token)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.path.join("watcher.lock")
    }

    /// Creates the directory if needed. A new directory is readable by the user only,
    /// because it will hold secrets (webhook URLs, the API token).
    pub fn ensure(&self) -> io::Result<()> {
        if self.path.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(&self.path)?;
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
    }
}
