//! What the remote and follow benchmarks share: daemons started on loopback, CPU readings,
//! the release binaries beside them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A `runwatch start` of a benchmark: its API base URL and token.
pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub token: String,
}

impl Daemon {
    /// SIGINT, as Ctrl+C: a clean stop.
    pub fn stop(&mut self) {
        // SAFETY: kill has no preconditions; the pid is our own child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    /// A benchmark that fails half-way leaves no daemon behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Starts `runwatch start` on a free loopback port and waits for its URL.
pub fn start(bin: &Path, dir: &Path) -> Daemon {
    start_with(bin, dir, &[])
}

/// [`start`] with extra environment variables.
pub fn start_with(bin: &Path, dir: &Path, env: &[(&str, String)]) -> Daemon {
    let mut child = Command::new(bin)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("--data-dir")
        .arg(dir)
        .args(["start", "--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("runwatch start");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ui = loop {
        let line = lines.next().expect("runwatch start ended").expect("read");
        if let Some(url) = line.strip_prefix("Serving the UI at ") {
            break url.to_string();
        }
    };
    // Keep reading, so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let (base, token) = ui.split_once("/#token=").expect("token in the URL");
    Daemon { child, url: base.to_string(), token: token.to_string() }
}

/// User + system CPU seconds of a process so far (from /proc/PID/stat).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A release binary built beside the running benchmark.
pub fn release_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    let path = exe.parent().expect("dir").join(name);
    assert!(path.exists(), "{} is not built: run `make bench-remote`", path.display());
    path
}
