//! Aim repository paths: a user may pass `DIR` or `DIR/.aim`; both mean the same repo.

use std::io;
use std::path::{Path, PathBuf};

/// An Aim repository, located by its `.aim` directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AimRepo {
    aim_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(
        "'{0}' is not an Aim repository: it has no .aim directory (create runs with aim.Run(repo=...) first, or pass the right --repo)"
    )]
    NotARepo(PathBuf),
    #[error("cannot read the Aim repository '{path}': {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl AimRepo {
    /// Resolves `DIR` or `DIR/.aim` to the repository (made absolute, symlinks resolved).
    pub fn open(path: &Path) -> Result<AimRepo, RepoError> {
        let path = path.canonicalize().map_err(|source| RepoError::Io { path: path.to_path_buf(), source })?;
        let aim_dir = if path.file_name().is_some_and(|n| n == ".aim") { path.clone() } else { path.join(".aim") };
        if !aim_dir.is_dir() {
            return Err(RepoError::NotARepo(path));
        }
        Ok(AimRepo { aim_dir })
    }

    /// A repository at exactly this `.aim` directory, not checked (tests, fixtures).
    pub fn at_aim_dir(aim_dir: impl Into<PathBuf>) -> AimRepo {
        AimRepo { aim_dir: aim_dir.into() }
    }

    /// The `.aim` directory.
    pub fn aim_dir(&self) -> &Path {
        &self.aim_dir
    }

    /// The directory the user named: the parent of `.aim`.
    pub fn root(&self) -> &Path {
        self.aim_dir.parent().unwrap_or(&self.aim_dir)
    }

    /// Where check-in files live (may not exist until the first run).
    pub fn check_ins_dir(&self) -> PathBuf {
        self.aim_dir.join("check_ins")
    }

    /// Aim's notifier configuration, for `notifiers import-aim`.
    pub fn notifications_config(&self) -> PathBuf {
        self.aim_dir.join("ext").join("notifications").join("config.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_and_dot_aim_name_the_same_repo() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join(".aim")).unwrap();
        let a = AimRepo::open(tmp.path()).unwrap();
        let b = AimRepo::open(&tmp.path().join(".aim")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.check_ins_dir(), a.aim_dir().join("check_ins"));
        assert_eq!(a.root(), tmp.path().canonicalize().unwrap());
    }

    #[test]
    fn a_directory_without_dot_aim_is_not_a_repo() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(AimRepo::open(tmp.path()), Err(RepoError::NotARepo(_))));
        assert!(matches!(AimRepo::open(&tmp.path().join("missing")), Err(RepoError::Io { .. })));
    }
}
