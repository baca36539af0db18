//! The window, as a process of its own: `runwatch-app --window`, the Tauri shell (and so
//! WebKit's ~300 MiB of processes) only while a window is open. It is pointed at this
//! engine's API (`RUNWATCH_SERVER`, `RUNWATCH_TOKEN`, as the CLI's remote commands take
//! them) and reads the pages to show from its stdin, one per line; it runs no engine and
//! takes no lock. Closing the window ends the process; it never outlives this one.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use runwatch_core::DataDir;

/// Names the flag (and the binary) the window process is started with.
const APP: &str = "runwatch-app";

/// The window process, if one was started.
pub struct Window {
    api: String,
    token: String,
    running: Option<Running>,
}

struct Running {
    stdin: ChildStdin,
    exited: Arc<AtomicBool>,
}

impl Window {
    pub fn new(api: String, token: String) -> Window {
        Window { api, token, running: None }
    }

    /// Shows the window at `route` (the UI's start page if none): the running window is
    /// told to, or a window process is started.
    pub fn open(&mut self, route: Option<&str>) {
        if let Some(running) = &mut self.running {
            let alive = !running.exited.load(Ordering::SeqCst);
            if alive && writeln!(running.stdin, "{}", route.unwrap_or("")).and_then(|()| running.stdin.flush()).is_ok() {
                return;
            }
        }
        self.running = None;
        match self.spawn(route) {
            Ok(running) => self.running = Some(running),
            Err(e) => tracing::warn!("cannot open the window: {e}"),
        }
    }

    fn spawn(&self, route: Option<&str>) -> anyhow::Result<Running> {
        let mut cmd = window_command(route)?;
        cmd.env("RUNWATCH_SERVER", &self.api).env("RUNWATCH_TOKEN", &self.token).stdin(Stdio::piped()).arg("--commands-on-stdin");
        // SAFETY: prctl only sets an attribute of the new process; nothing is allocated
        // between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // The window is of no use without this engine: it ends when this thread
                // (the main one, which spawns every window) does, even on a kill -9.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let exited = Arc::new(AtomicBool::new(false));
        let flag = exited.clone();
        // Reaped as soon as it ends (closing the window ends it), so no zombie lingers.
        std::thread::Builder::new().name("window".into()).spawn(move || {
            let _ = child.wait();
            flag.store(true, Ordering::SeqCst);
        })?;
        Ok(Running { stdin, exited })
    }

    /// Closes the window: its stdin ends, so its process exits.
    pub fn close(&mut self) {
        self.running = None;
    }
}

fn window_command(route: Option<&str>) -> anyhow::Result<Command> {
    let app = app_path()?;
    let mut cmd = Command::new(&app);
    cmd.arg("--window");
    if let Some(route) = route {
        cmd.args(["--route", route]);
    }
    Ok(cmd)
}

/// `runwatch-app`, next to this binary.
fn app_path() -> anyhow::Result<PathBuf> {
    let app = std::env::current_exe()?.with_file_name(APP);
    anyhow::ensure!(app.exists(), "'{}' is not installed", app.display());
    Ok(app)
}

/// Launched while an engine runs on the data dir: this process becomes a window on it.
pub fn open_on_running_engine(data_dir: &DataDir) -> anyhow::Result<()> {
    let api = runwatch_engine::recorded_api_url(data_dir)
        .ok_or_else(|| anyhow::anyhow!("Runwatch is running, but where its API is was not recorded"))?;
    let token = data_dir.api_token()?;
    println!("Runwatch is already running on '{}': opening a window on it", data_dir.path().display());
    let err = window_command(None)?.env("RUNWATCH_SERVER", api).env("RUNWATCH_TOKEN", token).exec();
    Err(err.into())
}
