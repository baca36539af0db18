//! Helpers shared by the end-to-end tests: find the built binaries, run them as a user
//! would, and read what they print.

pub mod bench;
pub mod certs;
pub mod fake_http;
pub mod slurm;
pub mod sshd;

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
        let status = Command::new("kill").args([format!("-{signal}"), "--".into(), format!("-{}", self.child.id())]).status().unwrap();
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
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().into();
    let mut res = agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    (status, res.body_mut().read_to_string().unwrap())
}

/// The API token in a UI URL such as "http://127.0.0.1:1234/#token=abc".
pub fn token_in(url: &str) -> String {
    url.split_once("#token=").map_or_else(|| panic!("no token in {url}"), |(_, t)| t.to_string())
}

/// The URL in a line such as "Serving the UI at http://127.0.0.1:1234/".
pub fn url_in(line: &str) -> String {
    line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no URL in {line:?}")).to_string()
}

// ---------------------------------------------------------------------------------------
// The `runwatch` command line as a user runs it (tests/tests/cli_*.rs).
// ---------------------------------------------------------------------------------------

/// What one run of a command printed and how it ended.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts the exit code, showing everything printed when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Asserts a usage or runtime error: exactly one line on stderr, none of Rust's panic or
    /// backtrace text, and this exit code. Returns that line.
    #[track_caller]
    pub fn expect_one_line_error(&self, code: i32) -> String {
        self.expect_code(code);
        assert_eq!(self.stderr.lines().count(), 1, "expected one line on stderr, got:\n{}", self.stderr);
        for word in ["panicked", "backtrace", "RUST_BACKTRACE"] {
            assert!(!self.stderr.contains(word), "stderr mentions {word}:\n{}", self.stderr);
        }
        assert!(self.stderr.starts_with("runwatch: error: "), "{}", self.stderr);
        self.stderr.trim_end().to_string()
    }
}

/// `runwatch --data-dir DIR` with a clean environment: UTC times, no inherited
/// `RUNWATCH_*` settings, no colour, and `RUST_BACKTRACE=1` so any backtrace would show.
pub fn runwatch(data_dir: &Path) -> Command {
    let mut cmd = Command::new(binary("runwatch"));
    cmd.arg("--data-dir").arg(data_dir);
    cli_env(&mut cmd);
    cmd
}

/// The environment every CLI test runs with (see [`runwatch`]).
pub fn cli_env(cmd: &mut Command) {
    cmd.env("TZ", "UTC")
        .env("RUST_BACKTRACE", "1")
        .env("COLUMNS", "100")
        .env_remove("RUNWATCH_HOME")
        .env_remove("RUNWATCH_STORE")
        .env_remove("RUNWATCH_NOTIFICATIONS")
        .env_remove("RUNWATCH_LOG")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("NO_COLOR");
}

/// Runs `cmd` to completion with no stdin.
pub fn run_cli(cmd: &mut Command) -> CliOutput {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every row of every table of the store in `data_dir`, as text: compare two dumps to
/// prove a command changed nothing.
pub fn dump_store(data_dir: &Path) -> String {
    let store = runwatch_core::Store::open(&runwatch_core::DataDir::at(data_dir)).unwrap();
    let conn = store.conn();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut dump = String::new();
    for table in tables {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let row = columns.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || '|' || ");
        let rows: Vec<String> = conn
            .prepare(&format!("SELECT {row} FROM \"{table}\" ORDER BY 1"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        dump.push_str(&format!("[{table}]\n"));
        for r in rows {
            dump.push_str(&r);
            dump.push('\n');
        }
    }
    dump
}

/// Polls `check` until it returns `Some`, failing the test after [`PATIENCE`]: for waiting
/// on state another process produces, instead of sleeping a guessed time.
#[track_caller]
pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {PATIENCE:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Running {
    /// Sends `signal` (e.g. "INT") to the process alone, not its group.
    pub fn signal_process(&self, signal: &str) {
        let status = Command::new("kill").args([format!("-{signal}"), self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }
}

/// Waits until the outbox of the store in `data_dir` has nothing pending (another process
/// is delivering), asserting that nothing failed on the way.
pub fn wait_for_drained_outbox(data_dir: &Path, patience: Duration) {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let store = runwatch_core::Store::open(&runwatch_core::DataDir::at(data_dir)).unwrap();
        let (pending, _, failed) = runwatch_core::deliveries::counts(store.conn()).unwrap();
        assert_eq!(failed, 0, "deliveries failed");
        if pending == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{pending} deliveries still pending after {patience:?}");
        std::thread::sleep(Duration::from_millis(100)); // polling another process's progress
    }
}

/// Adds an enabled Slack notifier for every level, posting to `url` (a [`fake_http`] server's).
/// The store of a test's data dir.
pub fn open_store(data_dir: &Path) -> runwatch_core::Store {
    runwatch_core::Store::open(&runwatch_core::DataDir::at(data_dir)).expect("the test store opens")
}

/// Every notification in a test's data dir (the newest 1,000), oldest first.
pub fn all_notifications(data_dir: &Path) -> Vec<runwatch_core::Notification> {
    use runwatch_core::inbox::{AckState, ListFilter};
    let filter = ListFilter { state: AckState::All, limit: Some(1000), ..Default::default() };
    let mut items = open_store(data_dir).list_notifications(&filter).expect("the notifications list").items;
    items.reverse();
    items
}

pub fn add_slack_notifier(data_dir: &Path, id: &str, url: &str) {
    use runwatch_core::notifiers::Notifier;
    use runwatch_core::{DataDir, Level, NotifierStatus, Store};
    Store::open(&DataDir::at(data_dir))
        .expect("the test store opens")
        .add_notifier(&Notifier {
            id: id.into(),
            kind: "slack".into(),
            status: NotifierStatus::Enabled,
            config: serde_json::json!({ "url": url }),
            min_level: Level::Debug,
            created_at: 0,
            updated_at: 0,
        })
        .expect("the notifier is stored");
}
