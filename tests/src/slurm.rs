//! A single-node Slurm cluster for the tests (Debian's slurm-wlm and munge; .ci/bootstrap
//! installs them): slurmctld and slurmd on loopback ports and munged with its own key, all
//! in a temporary directory, started by `tests/slurm/cluster.sh`. One cluster per test
//! binary, started at first use and stopped when the binary exits (also when tests failed;
//! a watchdog in the script stops it if the binary was killed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    /// Its slurm.conf: `SLURM_CONF` for every Slurm command.
    pub conf: PathBuf,
    /// The node's name (the host name).
    pub node: String,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

fn script() -> PathBuf {
    crate::repo_root().join("tests/slurm/cluster.sh")
}

/// The binary's cluster, or why this machine cannot run one (not root, Slurm not installed,
/// or the daemons failed: their words are in the message).
pub fn cluster() -> Result<&'static Cluster, String> {
    CLUSTER.get_or_init(start).as_ref().map_err(Clone::clone)
}

fn start() -> Result<Cluster, String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the Slurm cluster needs root (slurmd runs jobs as their users)".into());
    }
    for bin in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged"] {
        if !Path::new(bin).exists() {
            return Err(format!("{bin} is missing: install slurm-wlm and munge (.ci/bootstrap)"));
        }
    }
    // Kept past the tempdir's drop: the exit handler removes it after stopping the daemons.
    let dir = tempfile::Builder::new().prefix("runwatch-slurm-").tempdir().map_err(|e| e.to_string())?.keep();
    let out = Command::new("bash").arg(script()).arg("start").arg(&dir).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!("the test cluster did not start: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    DIR.get_or_init(|| dir.clone());
    // SAFETY: registering a plain extern "C" function.
    unsafe { libc::atexit(stop_at_exit) };
    let node = String::from_utf8_lossy(&Command::new("hostname").arg("-s").output().map_err(|e| e.to_string())?.stdout).trim().to_string();
    Ok(Cluster { conf: dir.join("slurm.conf"), dir, node })
}

static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn stop_at_exit() {
    if let Some(dir) = DIR.get() {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(dir).status();
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Cluster {
    /// A Slurm command (sbatch, scancel, scontrol …) on this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf).current_dir(self.dir.join("jobs"));
        cmd
    }

    /// Submits a batch job; its id.
    pub fn sbatch(&self, args: &[&str]) -> String {
        let out = self.command("sbatch").arg("--parsable").args(args).output().unwrap();
        assert!(out.status.success(), "sbatch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        id.split(';').next().unwrap_or(&id).to_string()
    }

    /// Runs a Slurm command; its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program).args(args).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
