//! Asking Slurm: one `sacct` call per poll on clusters with accounting, one `scontrol show
//! job` call on clusters without it (it keeps finished jobs for MinJobAge), each bounded in
//! time; and a pause between polls that grows while slurmctld is slow or unreachable.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::job::{parse_sacct, parse_scontrol, Job, SACCT_FORMAT};

/// Longest a Slurm command may take before it is killed (and the poll counts as failed).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest pause between polls while Slurm does not answer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run '{program}' (is Slurm installed and on PATH?): {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("'{command}' did not answer within {}s", .timeout.as_secs())]
    Timeout { command: String, timeout: Duration },
    #[error("'{command}' failed: {message}")]
    Failed { command: String, message: String },
}

/// Where job states come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Try `sacct`; use `scontrol` from then on if the cluster keeps no accounting.
    Auto,
    Sacct,
    Scontrol,
}

/// Polls Slurm for one user's jobs.
#[derive(Debug)]
pub struct Poller {
    user: String,
    mode: Mode,
    /// The commands run (`sacct`, `scontrol`; other paths in tests).
    sacct: String,
    scontrol: String,
    /// Polls failed in a row (for the back-off).
    failures: u32,
}

impl Poller {
    pub fn new(user: Option<String>, mode: Mode) -> Poller {
        Poller { user: user.unwrap_or_else(current_user), mode, sacct: "sacct".into(), scontrol: "scontrol".into(), failures: 0 }
    }

    /// Runs these programs instead of `sacct` and `scontrol`.
    pub fn commands(mut self, sacct: &str, scontrol: &str) -> Poller {
        self.sacct = sacct.into();
        self.scontrol = scontrol.into();
        self
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The user's jobs, as Slurm sees them now.
    pub fn poll(&mut self) -> Result<Vec<Job>, SlurmError> {
        let result = self.ask();
        self.failures = if result.is_ok() { 0 } else { self.failures.saturating_add(1) };
        result
    }

    fn ask(&mut self) -> Result<Vec<Job>, SlurmError> {
        if self.mode != Mode::Scontrol {
            match run(&self.sacct, &["-X", "-n", "-P", "-S", "now-2days", "-u", &self.user, "--format", SACCT_FORMAT]) {
                Ok(out) if !no_accounting(&out) => {
                    self.mode = Mode::Sacct;
                    return Ok(parse_sacct(&out));
                }
                Err(e) if self.mode == Mode::Sacct => return Err(e),
                Ok(_) | Err(_) => {
                    tracing::info!("Slurm keeps no job accounting here: following jobs with scontrol (finished ones for MinJobAge)");
                    self.mode = Mode::Scontrol;
                }
            }
        }
        let out = run(&self.scontrol, &["-o", "show", "job"])?;
        let user = self.user.as_str();
        Ok(parse_scontrol(&out).into_iter().filter(|j| j.user == user).collect())
    }

    /// The pause before the next poll: the interval, doubled for each failure in a row up
    /// to [`MAX_BACKOFF`].
    pub fn next_wait(&self, interval: Duration) -> Duration {
        let factor = 1u32 << self.failures.min(8);
        (interval * factor).min(MAX_BACKOFF.max(interval))
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

fn no_accounting(out: &str) -> bool {
    out.contains("accounting storage is disabled")
}

/// Runs a Slurm command, within [`COMMAND_TIMEOUT`]; its stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String, SlurmError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SlurmError::Spawn { program: program.into(), source })?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SlurmError::Timeout { command, timeout: COMMAND_TIMEOUT });
            }
        }
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        let message = stderr.lines().chain(stdout.lines()).find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
        return Err(SlurmError::Failed { command, message: format!("{message} ({status})") });
    }
    // sacct says on stderr, with exit 0, that there is no accounting.
    if no_accounting(&stderr) {
        return Ok(stderr);
    }
    Ok(stdout)
}

/// The name of the user this process runs as.
pub fn current_user() -> String {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    crate::job::name_of_uid(uid).unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_grows_while_slurm_does_not_answer() {
        let mut p = Poller::new(Some("alice".into()), Mode::Scontrol);
        let i = Duration::from_secs(10);
        assert_eq!(p.next_wait(i), i);
        p.failures = 1;
        assert_eq!(p.next_wait(i), Duration::from_secs(20));
        p.failures = 20;
        assert_eq!(p.next_wait(i), MAX_BACKOFF);
    }

    #[test]
    fn polls_back_off_while_slurm_fails_and_recover() {
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("scontrol");
        let write = |body: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write("echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1");
        let path = script.display().to_string();
        let mut p = Poller::new(Some("root".into()), Mode::Scontrol).commands("sacct", &path);
        let i = Duration::from_secs(10);
        let e = p.poll().unwrap_err();
        assert!(e.to_string().contains("Unable to contact slurm controller"), "{e}");
        assert!(p.poll().is_err());
        assert_eq!(p.next_wait(i), Duration::from_secs(40));
        write("echo 'JobId=7 JobName=a UserId=root(0) JobState=RUNNING Reason=None ExitCode=0:0'");
        let jobs = p.poll().unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(p.next_wait(i), i);
    }

    #[test]
    fn without_accounting_sacct_gives_way_to_scontrol() {
        let tmp = tempfile::tempdir().unwrap();
        let make = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let f = tmp.path().join(name);
            std::fs::write(&f, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
            f.display().to_string()
        };
        // What Debian's sacct says on a cluster without slurmdbd (exit 0).
        let sacct = make("sacct", "echo 'Slurm accounting storage is disabled' >&2");
        let scontrol = make("scontrol", "echo 'JobId=7 JobName=a UserId=alice(1000) JobState=FAILED Reason=NonZeroExitCode ExitCode=2:0'");
        let mut p = Poller::new(Some("alice".into()), Mode::Auto).commands(&sacct, &scontrol);
        assert_eq!(p.poll().unwrap()[0].exit_code, Some(2));
        assert_eq!(p.mode(), Mode::Scontrol);
    }

    #[test]
    fn a_missing_command_is_a_clear_error() {
        let e = run("runwatch-no-such-slurm-command", &[]).unwrap_err();
        assert!(e.to_string().contains("is Slurm installed"), "{e}");
    }
}
