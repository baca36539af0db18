//! Helpers shared by the end-to-end tests: find the built binaries, run them as a user
//! would, and read what they print.

pub mod fake_http;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// How long a test waits for a process to say something before failing.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A binary of the workspace, built by `cargo build --workspace` (the make targets do that
/// before running tests) into the same target dir as this test.
pub fn binary(name: &str) -> PathBuf {
    // The test runs from target/<profile>/deps/; binaries sit in target/<profile>/.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(path.exists(), "{} is not built; run `cargo build --workspace` first", path.display());
    path
}

/// A running process whose stdout is read line by line in the background.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    /// Starts `cmd` in its own process group with piped stdout and stderr.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Self { child, lines, seen: Vec::new(), stderr: Some(stderr) }
    }

    /// Waits for the first stdout line that `matches` accepts and returns it.
    pub fn wait_for_line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what} within {PATIENCE:?}; stdout so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Sends `signal` (e.g. "TERM") to the whole process group.
    pub fn signal_group(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), "--".into(), format!("-{}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit; returns its status, the rest of stdout, and stderr.
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        let status = self.child.wait().unwrap();
        let mut rest = std::mem::take(&mut self.seen);
        rest.extend(self.lines.iter());
        let stderr = self.stderr.take().map(|h| h.join().unwrap()).unwrap_or_default();
        (status, rest.join("\n"), stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failing test must not leave a daemon behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
            let _ = self.child.wait();
        }
    }
}

/// GETs `url` (without its fragment) and returns (status, body).
pub fn http_get(url: &str) -> (u16, String) {
    let url = url.split('#').next().unwrap_or(url);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut res = agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    (status, res.body_mut().read_to_string().unwrap())
}

/// The API token in a UI URL such as "http://127.0.0.1:1234/#token=abc".
pub fn token_in(url: &str) -> String {
    url.split_once("#token=").map(|(_, t)| t.to_string()).unwrap_or_else(|| panic!("no token in {url}"))
}

/// The URL in a line such as "Serving the UI at http://127.0.0.1:1234/".
pub fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string()
}
