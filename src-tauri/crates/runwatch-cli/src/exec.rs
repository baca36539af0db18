//! `runwatch exec -- COMMAND ARGS…`: runs a command as a watched run, with no daemon.
//!
//! It records "started" (INFO), then "finished" (INFO) or "failed" (ERROR, with the exit
//! code or signal, the duration and the last lines of stderr), and "stalled" (WARNING)
//! each time the command prints nothing for `--silence-timeout`. A failure says why (see
//! `why`): the exit code or signal, the OOM killer when the memory cgroup's `oom_kill`
//! counter rose, and the Python exception that ended it as the title; the run's state is
//! then `failed` and its cause recorded. Output lines matching `--alert-on` give a WARNING,
//! once per burst (later matches of the burst count in its repeat count). The command's stdout and
//! stderr pass through unchanged (piped, so silence can be seen; `PYTHONUNBUFFERED=1` is
//! set unless already set, because Python buffers a piped stdout and would look silent);
//! stdin is inherited. SIGINT, SIGTERM and SIGHUP sent to runwatch are forwarded to the
//! command — except those the terminal sent (Ctrl+C): the terminal signals the whole
//! foreground process group, the command included, and a second copy would interrupt its
//! handler. runwatch exits with the command's exit code, or 128 + the signal that killed
//! it; 127 / 126 when it cannot be started (not found / not executable), as shells do.
//!
//! Every event id is unique to this invocation (`exec:<nonce>:<what>`), so a retried write
//! never stores a notification twice. The command sees its run id in `RUNWATCH_RUN_ID`,
//! to `runwatch send --run "$RUNWATCH_RUN_ID" …` about itself. Inside a Slurm job the run
//! id defaults to `slurm-<SLURM_JOB_ID>`, the run the Slurm source (`start --slurm`) follows.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{ChildStderr, ChildStdout, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Args;
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::ingest::Event;
use runwatch_core::{Inserted, Level, RunState, Store};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;

use runwatch_remote::{Kind, Spool};
use serde_json::json;

use crate::remote::Remote;
use crate::send::{non_empty, record};
use crate::summary::Finished;
use crate::why;
use crate::ExitWith;

/// How many lines of stderr a failure notification quotes.
pub const TAIL_LINES: usize = 20;
/// Longest stderr line kept (bytes); longer ones are cut with an ellipsis.
const MAX_LINE: usize = 1000;
/// How long to wait for the output pipes to drain once the command has exited (a
/// background grandchild may hold them open forever).
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
#[command(
    override_usage = "runwatch exec [OPTIONS] -- <COMMAND> [ARGS]...",
    after_help = "The command finds its run id in RUNWATCH_RUN_ID.\n\
                  Example: runwatch exec --name resnet --silence-timeout 30m -- python train.py --lr 3e-4"
)]
pub struct ExecArgs {
    /// A name for the run in notifications [default: the command's file name]
    #[arg(long, value_name = "NAME", value_parser = non_empty("--name"))]
    name: Option<String>,
    /// Report the run as stalled when it prints nothing for this long, e.g. 30s, 5m, 1h30m [default: never]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    silence_timeout: Option<Duration>,
    /// With --server: check in this often while the command runs; the server calls the run
    /// stuck when two check-ins in a row do not come (and its grace has passed)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    heartbeat: Duration,
    /// The run's id [default: slurm-$SLURM_JOB_ID in a Slurm job, else a new random id]
    #[arg(long, value_name = "ID", value_parser = non_empty("--run"))]
    run: Option<String>,
    /// A WARNING when a line of output matches this regular expression, e.g.
    /// 'loss[=: ]+nan'; repeat for several. Matches in a burst give one warning
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    alert_on: Vec<regex::Regex>,
    /// Matches of --alert-on closer together than this are one burst
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1m")]
    alert_burst_gap: Duration,
    /// The command to run, then its arguments
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// Where `exec` reports: the local store, or a server through the spool.
pub enum Out<'a> {
    Local(&'a mut Store),
    Remote(&'a Remote),
}

pub fn exec(out: Out<'_>, args: ExecArgs) -> anyhow::Result<Finished> {
    let Some((program, rest)) = args.command.split_first() else {
        return Err(crate::usage_error("exec", "give the command to run after '--', e.g. 'runwatch exec -- python train.py'"));
    };
    let run_id = args.run.or_else(slurm_run_id).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..24].to_string());
    let name = args.name.unwrap_or_else(|| Path::new(program).file_name().unwrap_or(program).to_string_lossy().into_owned());
    let shown = shell_line(&args.command);

    // Caught before the command exists, so no signal can end runwatch between the spawn
    // and the handler and leave the run's end unrecorded.
    let signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP])?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest).stdin(Stdio::inherit()).stdout(Stdio::piped()).stderr(Stdio::piped()).env("RUNWATCH_RUN_ID", &run_id);
    if std::env::var_os("PYTHONUNBUFFERED").is_none() {
        cmd.env("PYTHONUNBUFFERED", "1");
    }
    // Read before the command starts: a rise after it ended is the kernel's OOM killer.
    let oom = why::OomCounters::of_this_process();
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        let program = program.to_string_lossy();
        match e.kind() {
            io::ErrorKind::NotFound => ExitWith::new(127, format!("cannot run '{program}': command not found")),
            io::ErrorKind::PermissionDenied => ExitWith::new(126, format!("cannot run '{program}': permission denied")),
            _ => ExitWith::new(126, format!("cannot run '{program}': {e}")),
        }
    })?;
    let pid = child.id();

    let last_output = Arc::new(AtomicU64::new(0));
    let tail = Arc::new(Mutex::new(Tail::default()));
    let (drained_tx, drained) = mpsc::channel();
    let (events_tx, events) = mpsc::channel();
    let alerts =
        (!args.alert_on.is_empty()).then(|| Arc::new(Alerts { patterns: args.alert_on.clone(), to: Mutex::new(events_tx.clone()) }));
    let stdout = child.stdout.take().map(|out| pump_stdout(out, started, last_output.clone(), alerts.clone(), drained_tx.clone()));
    let stderr = child.stderr.take().map(|err| pump_stderr(err, started, last_output.clone(), tail.clone(), alerts, drained_tx));

    let reaped = Arc::new(Mutex::new(false));
    let signal_handle = signals.handle();
    forward_signals(signals, pid, reaped.clone());
    let exited_tx = events_tx;
    std::thread::spawn(move || {
        wait_without_reaping(pid);
        // Reaped under the lock the forwarder holds while signalling: it never signals a
        // pid the system may have given to another process.
        let mut done = lock(&reaped);
        let status = child.wait();
        *done = true;
        drop(done);
        let _ = exited_tx.send(FromCommand::Exited(status));
    });

    // Recorded once the output flows: a busy store must not stall the command on a full pipe.
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let sink = match out {
        Out::Local(store) => Sink::Local(store),
        Out::Remote(remote) => Sink::Remote(Box::new(RemoteRun::start(remote, &run_id, &name, &nonce, args.heartbeat)?), remote),
    };
    let mut report =
        Reporter { sink, run_id, name, nonce, stored: Vec::new(), stalls: 0, bursts: why::Bursts::new(args.alert_burst_gap), burst: None };
    report.name_run();
    report.started(&shown, pid);
    report.deliver_due();

    // Wait for the exit, watching for silence meanwhile.
    let mut stalled_since: Option<u64> = None;
    let status = loop {
        let timeout = match args.silence_timeout {
            None => Duration::from_secs(3600),
            Some(limit) => {
                let last = last_output.load(Ordering::Relaxed);
                let silent = started.elapsed().saturating_sub(Duration::from_millis(last));
                if silent < limit {
                    limit - silent
                } else {
                    if stalled_since != Some(last) {
                        stalled_since = Some(last);
                        report.stalled(limit, pid);
                        // With no watcher running nobody else would send it before the end.
                        report.deliver_due();
                    }
                    // Still silent: look again soon, to re-arm once output resumes.
                    limit.min(Duration::from_millis(250))
                }
            }
        };
        match events.recv_timeout(timeout) {
            Ok(FromCommand::Exited(status)) => break status,
            Ok(FromCommand::Matched { line, pattern, at }) => {
                report.alert(&line, &pattern, at);
                report.deliver_due();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(io::Error::other("lost track of the command")),
        }
    };
    let duration = started.elapsed();
    signal_handle.close();

    // The rest of the output, unless a background process keeps the pipes open.
    let deadline = Instant::now() + DRAIN;
    let pumps = [stdout, stderr].into_iter().flatten().count();
    for _ in 0..pumps {
        if drained.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
            break;
        }
    }

    // Matches in the last output, printed just before the exit.
    while let Ok(FromCommand::Matched { line, pattern, at }) = events.try_recv() {
        report.alert(&line, &pattern, at);
    }
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            report.ended(None, None, duration, &shown, &lock(&tail).text());
            return Err(ExitWith::new(1, format!("cannot wait for '{name}': {e}", name = report.name)).into());
        }
    };
    let oom_rise = oom.rise();
    report.ended(Some(status), oom_rise, duration, &shown, &lock(&tail).text());
    // The run is over: with no watcher running, its notifications are delivered now.
    report.deliver_all();
    Ok(Finished { code: exit_code(status), stored: report.stored, passthrough: true, shows_inbox: false })
}

/// What the command's threads tell the main loop.
enum FromCommand {
    Exited(io::Result<ExitStatus>),
    /// A line of output matched an `--alert-on` pattern.
    Matched {
        line: String,
        pattern: String,
        at: Instant,
    },
}

/// The `--alert-on` patterns and where matches go (shared by the output pumps).
struct Alerts {
    patterns: Vec<regex::Regex>,
    to: Mutex<mpsc::Sender<FromCommand>>,
}

impl Alerts {
    fn check(&self, line: &str) {
        if let Some(p) = self.patterns.iter().find(|p| p.is_match(line)) {
            let _ =
                lock(&self.to).send(FromCommand::Matched { line: line.to_string(), pattern: p.as_str().to_string(), at: Instant::now() });
        }
    }
}

fn parse_regex(s: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| format!("not a regular expression: {}", e.to_string().lines().last().unwrap_or("invalid")))
}

/// Inside a Slurm job: the run the Slurm source knows it as.
fn slurm_run_id() -> Option<String> {
    let id = std::env::var("SLURM_JOB_ID").ok()?;
    let id = id.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| runwatch_slurm::job::run_id(id))
}

/// Parses "30s", "5m", "1h30m", "1h 30m" (humantime); zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write a duration such as 30s, 5m or 1h30m"))?;
    if d.is_zero() {
        return Err("the timeout must be longer than zero, e.g. 30s".into());
    }
    Ok(d)
}

/// Writes the run's notifications; a store that fails never stops the command (it gets a
/// warning on stderr), since the command matters more than the record of it.
struct Reporter<'a> {
    sink: Sink<'a>,
    run_id: String,
    name: String,
    nonce: String,
    stored: Vec<String>,
    /// Silences reported so far: each gets its own event id.
    stalls: u32,
    bursts: why::Bursts,
    /// The current burst's warning (stored locally), to count repeats on.
    burst: Option<String>,
}

/// Where the reporter writes.
enum Sink<'a> {
    Local(&'a mut Store),
    Remote(Box<RemoteRun>, &'a Remote),
}

impl Reporter<'_> {
    fn name_run(&mut self) {
        let (id, name, now) = (&self.run_id, &self.name, SystemClock.now());
        // Over HTTP the name travels with every check-in.
        let Sink::Local(store) = &mut self.sink else { return };
        if let Err(e) = store.set_run_name(id, name, now) {
            warn(&format!("cannot record run '{}': {e}", self.run_id));
        }
    }

    fn started(&mut self, shown: &str, pid: u32) {
        if let Sink::Remote(remote, _) = &mut self.sink {
            // The server's detector announces the run at its first check-in.
            remote.check_in(json!({ "expect_next_in": remote.expect_next_in() }), "start");
            return;
        }
        let _ = self.record(
            "started",
            Level::Info,
            format!("Run '{}' started.", self.name),
            format!("Command: {shown}\nRun id: {}\nPID: {pid}\nWorking directory: {}", self.run_id, cwd()),
        );
    }

    /// The id of the notification stored locally (none over HTTP, or when it failed).
    fn record(&mut self, what: &str, level: Level, title: String, body: String) -> Option<String> {
        let event = Event {
            run_id: Some(self.run_id.clone()),
            level: Some(level),
            title: Some(title),
            message: body,
            event_id: Some(format!("exec:{}:{what}", self.nonce)),
            source: "exec".into(),
            to: Vec::new(),
        };
        match &mut self.sink {
            Sink::Local(store) => match record(store, &event) {
                Ok(Inserted::New(n)) => {
                    self.stored.push(n.id.clone());
                    return Some(n.id);
                }
                Ok(Inserted::Duplicate(_)) => {}
                Err(e) => warn(&format!("cannot record that run '{}' {what}: {e:#}", self.name)),
            },
            Sink::Remote(remote, _) => match serde_json::to_value(&event) {
                Ok(body) => remote.push(Kind::Event, body),
                Err(e) => warn(&format!("cannot record that run '{}' {what}: {e}", self.name)),
            },
        }
        None
    }

    /// A line matched `--alert-on`: a WARNING for a new burst, a repeat for the current one.
    fn alert(&mut self, line: &str, pattern: &str, at: Instant) {
        match self.bursts.matched(at) {
            why::Match::New(n) => {
                let shown = runwatch_core::ingest::title_from(line);
                self.burst = self.record(
                    &format!("alert-{n}"),
                    Level::Warning,
                    format!("Run '{}': {shown}", self.name),
                    format!("A line of output matched --alert-on '{pattern}':\n{line}\n\nRun id: {}", self.run_id),
                );
            }
            why::Match::Repeat => {
                let (Sink::Local(store), Some(id)) = (&mut self.sink, &self.burst) else { return };
                let now = SystemClock.now();
                if let Err(e) = store.count_repeat(id, now) {
                    warn(&format!("cannot count a repeated alert of run '{}': {e}", self.run_id));
                }
            }
        }
    }

    /// Sends what is due now (no watcher here, or the server).
    fn deliver_due(&mut self) {
        match &mut self.sink {
            Sink::Local(store) => crate::send::deliver_due_if_no_watcher(store),
            Sink::Remote(remote, _) => remote.flush_soon(),
        }
    }

    /// The run is over: delivers what is left, within bounds (the rest waits).
    fn deliver_all(&mut self) {
        match &mut self.sink {
            Sink::Local(store) => crate::send::deliver_if_no_watcher(store),
            Sink::Remote(run, remote) => {
                if !run.finish() {
                    remote.mark_unreachable();
                }
            }
        }
    }

    fn stalled(&mut self, limit: Duration, pid: u32) {
        self.stalls += 1;
        let what = format!("stalled-{}", self.stalls);
        let limit = humantime::format_duration(limit).to_string();
        let _ = self.record(
            &what,
            Level::Warning,
            format!("Run '{}' stalled: no output for {limit}.", self.name),
            format!("Nothing was printed on stdout or stderr for {limit}; the command (PID {pid}) is still running."),
        );
        self.set_state(RunState::Stuck);
    }

    fn ended(&mut self, status: Option<ExitStatus>, oom: Option<String>, duration: Duration, shown: &str, tail: &str) {
        let took = format_secs(duration);
        let name = &self.name;
        let why = Why::of(status, oom);
        let (level, mut title, outcome, state) = match (&why, status) {
            (_, Some(s)) if s.success() => {
                (Level::Info, format!("Run '{name}' finished without error after {took}."), "Exit code: 0".to_string(), RunState::Finished)
            }
            (Why::Code(code), _) => (
                Level::Error,
                format!("Run '{name}' failed with exit code {code} after {took}."),
                format!("Exit code: {code}"),
                RunState::Failed,
            ),
            (Why::OomKiller { rise }, _) => (
                Level::Error,
                format!("Run '{name}' was killed by the OOM killer after {took}."),
                format!("Killed by the OOM killer ({rise}): the command ran out of memory"),
                RunState::Failed,
            ),
            (Why::Signal(sig), _) => {
                let sig_name = signal_name(*sig);
                let possibly = if *sig == libc::SIGKILL { ", possibly the OOM killer (no cgroup counter says so)" } else { "" };
                (
                    Level::Error,
                    format!("Run '{name}' was killed by {sig_name} after {took}."),
                    format!("Killed by signal {sig} ({sig_name}){possibly}"),
                    RunState::Failed,
                )
            }
            (Why::Other, Some(s)) => (Level::Error, format!("Run '{name}' failed after {took}."), format!("Status: {s}"), RunState::Failed),
            (_, None) => {
                (Level::Error, format!("Run '{name}' ended in an unknown way after {took}."), "Status: unknown".into(), RunState::Ended)
            }
        };
        let exception = (level >= Level::Error).then(|| why::exception_line(tail)).flatten();
        if let Some(e) = &exception {
            title = format!("Run '{name}' failed: {e}");
        }
        let cause = why.cause(status);
        let mut body = format!("Command: {shown}\n{outcome}\nDuration: {took}");
        if let Some(c) = &cause {
            body.push_str(&format!("\nCause: {c}"));
        }
        if level >= Level::Error && !tail.is_empty() {
            body.push_str("\n\nLast lines of stderr:\n");
            body.push_str(tail);
        }
        if let Sink::Remote(remote, _) = &mut self.sink {
            // One check-in says how it ended; the server's detector makes the notification.
            let check_in = match status {
                Some(s) if s.success() => json!({ "finished": true }),
                Some(s) => {
                    json!({ "failed": true, "exit_code": i64::from(exit_code(s)), "message": body, "cause": cause, "title": title })
                }
                None => json!({ "failed": true, "message": body }),
            };
            remote.check_in(check_in, "end");
            return;
        }
        let _ = self.record("ended", level, title, body);
        self.set_end(state, cause.as_deref());
    }

    fn set_end(&mut self, state: RunState, cause: Option<&str>) {
        let (id, now) = (&self.run_id, SystemClock.now());
        let Sink::Local(store) = &mut self.sink else { return };
        if let Err(e) = store.set_run_end(id, state, cause, now) {
            warn(&format!("cannot record the state of run '{}': {e}", self.run_id));
        }
    }

    fn set_state(&mut self, state: RunState) {
        let (id, now) = (&self.run_id, SystemClock.now());
        let Sink::Local(store) = &mut self.sink else { return };
        if let Err(e) = store.set_run_state(id, state, now) {
            warn(&format!("cannot record the state of run '{}': {e}", self.run_id));
        }
    }
}

/// Why the command stopped.
enum Why {
    Code(i32),
    Signal(i32),
    /// SIGKILL, and a memory cgroup's `oom_kill` counter rose ("cgroup … 0→1").
    OomKiller {
        rise: String,
    },
    Other,
}

impl Why {
    fn of(status: Option<ExitStatus>, oom: Option<String>) -> Why {
        use std::os::unix::process::ExitStatusExt;
        match status.map(|s| (s.code(), s.signal())) {
            Some((Some(code), _)) => Why::Code(code),
            Some((None, Some(libc::SIGKILL))) if oom.is_some() => Why::OomKiller { rise: oom.unwrap_or_default() },
            Some((None, Some(sig))) => Why::Signal(sig),
            _ => Why::Other,
        }
    }

    /// The run's cause: "exit code 3", "killed by SIGTERM", "killed by the OOM killer (…)",
    /// "SIGKILL, possibly the OOM killer"; none for a success.
    fn cause(&self, status: Option<ExitStatus>) -> Option<String> {
        match self {
            _ if status.is_some_and(|s| s.success()) => None,
            Why::Code(code) => Some(format!("exit code {code}")),
            Why::OomKiller { rise } => Some(format!("killed by the OOM killer ({rise})")),
            Why::Signal(sig) if *sig == libc::SIGKILL => Some("SIGKILL, possibly the OOM killer".into()),
            Why::Signal(sig) => Some(format!("killed by {}", signal_name(*sig))),
            Why::Other => status.map(|s| s.to_string()),
        }
    }
}

/// A run reported to a server: every report goes into the spool at once (durable, in
/// order), and a background thread sends it and checks in every heartbeat while the
/// command runs. The command never waits on the server; at its end, the last report gets a
/// few seconds, then waits in the spool for the next command.
struct RemoteRun {
    spool: Spool,
    server: String,
    /// Fields every check-in of this run carries (run id, name, host, labels).
    base: serde_json::Map<String, serde_json::Value>,
    heartbeat: Duration,
    nonce: String,
    wake: mpsc::Sender<Flush>,
    done: mpsc::Receiver<()>,
}

enum Flush {
    Soon,
    /// The command ended: one last try, then stop.
    Last,
}

/// How long the end of `exec` waits for its last reports to reach the server.
const LAST_SEND: Duration = Duration::from_secs(3);

impl RemoteRun {
    fn start(remote: &Remote, run_id: &str, name: &str, nonce: &str, heartbeat: Duration) -> anyhow::Result<RemoteRun> {
        let spool = Spool::open(&remote.dir)?;
        let mut base = serde_json::Map::new();
        base.insert("run_id".into(), json!(run_id));
        base.insert("name".into(), json!(name));
        base.insert("host".into(), json!(runwatch_remote::context::host_name()));
        base.insert("labels".into(), json!(runwatch_remote::context::cluster_labels()));
        let (wake, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let reporter = remote.reporter.clone();
        let beat = json!({ "expect_next_in": 2 * heartbeat.as_secs().max(1) });
        let mut beat_body = base.clone();
        beat_body.extend(beat.as_object().cloned().unwrap_or_default());
        let beat_nonce = nonce.to_string();
        std::thread::Builder::new().name("reporter".into()).spawn(move || {
            send_in_background(&reporter, &rx, heartbeat, &beat_body, &beat_nonce);
            let _ = done_tx.send(());
        })?;
        Ok(RemoteRun {
            spool,
            server: remote.reporter.client().target().server().to_string(),
            base,
            heartbeat,
            nonce: nonce.into(),
            wake,
            done,
        })
    }

    fn expect_next_in(&self) -> u64 {
        2 * self.heartbeat.as_secs().max(1)
    }

    /// Spools a check-in of this run with `fields`, and has it sent.
    fn check_in(&mut self, fields: serde_json::Value, what: &str) {
        let mut body = self.base.clone();
        body.extend(fields.as_object().cloned().unwrap_or_default());
        body.insert("event_id".into(), json!(format!("exec:{}:check-in-{what}", self.nonce)));
        self.push(Kind::CheckIn, serde_json::Value::Object(body));
    }

    fn push(&mut self, kind: Kind, mut body: serde_json::Value) {
        runwatch_remote::with_event_id(&mut body);
        match self.spool.push(&self.server, kind, &body, None, SystemClock.now()) {
            Ok(()) => self.flush_soon(),
            Err(e) => warn(&format!("cannot keep a report for {}: {e}", self.server)),
        }
    }

    fn flush_soon(&self) {
        let _ = self.wake.send(Flush::Soon);
    }

    /// One last try within [`LAST_SEND`]; false when something still waits in the spool.
    fn finish(&self) -> bool {
        let _ = self.wake.send(Flush::Last);
        if self.done.recv_timeout(LAST_SEND).is_err() {
            warn(&format!(
                "the server {} did not answer in time; what is left waits in the spool for the next command or 'runwatch spool flush'",
                self.server
            ));
            return false;
        }
        self.spool.waiting(&self.server).is_ok_and(|n| n == 0)
    }
}

/// The reporter thread: sends what the spool holds when woken, and checks the run in every
/// heartbeat; after `Flush::Last`, one more try and it returns.
fn send_in_background(
    reporter: &runwatch_remote::Reporter,
    rx: &mpsc::Receiver<Flush>,
    heartbeat: Duration,
    beat: &serde_json::Map<String, serde_json::Value>,
    nonce: &str,
) {
    let mut next_beat = Instant::now() + heartbeat;
    let mut beats = 0u64;
    let mut warned = false;
    loop {
        let last = match rx.recv_timeout(next_beat.saturating_duration_since(Instant::now())) {
            Ok(Flush::Soon) => false,
            Ok(Flush::Last) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                beats += 1;
                next_beat = Instant::now() + heartbeat;
                let mut body = beat.clone();
                body.insert("event_id".into(), json!(format!("exec:{nonce}:beat-{beats}")));
                let server = reporter.client().target().server().to_string();
                if let Err(e) =
                    Spool::open(reporter.dir()).and_then(|mut s| s.push(&server, Kind::CheckIn, &body.into(), None, SystemClock.now()))
                {
                    warn(&format!("cannot keep a check-in for {server}: {e}"));
                }
                false
            }
        };
        match reporter.flush() {
            Ok(f) => match f.stopped {
                Some(e) if !warned => {
                    warned = true;
                    warn(&format!("{e}; reports wait in the spool and are sent when it answers"));
                }
                _ => {}
            },
            Err(e) => warn(&format!("{e}")),
        }
        if last {
            return;
        }
    }
}

fn warn(text: &str) {
    let _ = writeln!(io::stderr(), "runwatch: warning: {text}");
}

/// Copies the command's stdout to ours. If ours is closed (`… | head`), stops reading, so
/// the command gets the broken pipe it would have got without runwatch in between.
fn pump_stdout(
    mut from: ChildStdout,
    start: Instant,
    last: Arc<AtomicU64>,
    alerts: Option<Arc<Alerts>>,
    done: mpsc::Sender<()>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut lines = why::Lines::default();
        let mut open = true;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            if let Some(a) = &alerts {
                lines.push(&buf[..n], |l| a.check(l));
            }
            if open {
                let mut out = io::stdout().lock();
                open = out.write_all(&buf[..n]).and_then(|()| out.flush()).is_ok();
                // With nobody reading, the command gets its broken pipe (unless we must watch its output).
                if !open && alerts.is_none() {
                    break;
                }
            }
        }
        if let Some(a) = &alerts {
            lines.finish(|l| a.check(l));
        }
        drop(from);
        let _ = done.send(());
    })
}

/// Copies the command's stderr to ours, keeping its last lines for the failure report.
/// Reads to the end even if our stderr is closed, so the command never blocks on it.
fn pump_stderr(
    mut from: ChildStderr,
    start: Instant,
    last: Arc<AtomicU64>,
    tail: Arc<Mutex<Tail>>,
    alerts: Option<Arc<Alerts>>,
    done: mpsc::Sender<()>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut lines = why::Lines::default();
        let mut open = true;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            lock(&tail).push(&buf[..n]);
            if let Some(a) = &alerts {
                lines.push(&buf[..n], |l| a.check(l));
            }
            if open {
                let mut err = io::stderr().lock();
                open = err.write_all(&buf[..n]).and_then(|()| err.flush()).is_ok();
            }
        }
        if let Some(a) = &alerts {
            lines.finish(|l| a.check(l));
        }
        let _ = done.send(());
    })
}

/// Forwards the signals runwatch receives to the command (see the module docs for why
/// those from the terminal are not).
fn forward_signals(mut signals: SignalsInfo<WithOrigin>, pid: u32, reaped: Arc<Mutex<bool>>) {
    // SAFETY: getsid and getpid only read this process's ids.
    let session_leader = unsafe { libc::getsid(0) == libc::getpid() };
    std::thread::spawn(move || {
        for origin in signals.forever() {
            // The terminal's hangup goes to the session leader alone: pass that one on.
            let from_terminal = origin.cause == Cause::Kernel;
            if from_terminal && !(origin.signal == SIGHUP && session_leader) {
                continue;
            }
            let done = lock(&reaped);
            if !*done {
                // SAFETY: kill has no memory effects; the pid is our unreaped child.
                unsafe { libc::kill(pid as libc::pid_t, origin.signal) };
            }
        }
    });
}

/// Blocks until the child has exited, leaving it a zombie (so its pid stays ours).
fn wait_without_reaping(pid: u32) {
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in; zeroed is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to `info`, and flags that only wait.
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// A mutex's value, even if a thread panicked while holding it (the data is a flag or text).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The last lines of the command's stderr. A carriage return not followed by a newline
/// starts the line over, as a terminal shows progress bars; colour codes are removed.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
    current: Vec<u8>,
    cut: bool,
    pending_cr: bool,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if std::mem::take(&mut self.pending_cr) && b != b'\n' {
                self.current.clear();
                self.cut = false;
            }
            match b {
                b'\n' => self.finish_line(),
                b'\r' => self.pending_cr = true,
                _ if self.current.len() < MAX_LINE => self.current.push(b),
                _ => self.cut = true,
            }
        }
    }

    fn finish_line(&mut self) {
        let line = clean(&self.current, self.cut);
        self.current.clear();
        self.cut = false;
        self.lines.push_back(line);
        if self.lines.len() > TAIL_LINES {
            self.lines.pop_front();
        }
    }

    fn text(&self) -> String {
        let mut lines: Vec<String> = self.lines.iter().cloned().collect();
        if !self.current.is_empty() {
            lines.push(clean(&self.current, self.cut));
        }
        let skip = lines.len().saturating_sub(TAIL_LINES);
        lines[skip..].join("\n").trim_end().to_string()
    }
}

fn clean(bytes: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut line = anstream::adapter::strip_str(&text).to_string();
    if cut {
        line.push('…');
    }
    line
}

/// The command line as a shell would read it back.
fn shell_line(words: &[OsString]) -> String {
    words
        .iter()
        .map(|w| {
            let w = w.to_string_lossy();
            let plain = !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./=:,+@%".contains(&b));
            if plain {
                w.into_owned()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn cwd() -> String {
    std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string())
}

/// Whole seconds, as "1h 2m 3s".
fn format_secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn signal_name(sig: i32) -> String {
    signal_hook::low_level::signal_name(sig).map_or_else(|| format!("signal {sig}"), str::to_string)
}

/// The code a shell would report: the exit code, or 128 + the signal.
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_and_folds_progress_bars() {
        let mut t = Tail::default();
        for i in 1..=30 {
            t.push(format!("line{i}\n").as_bytes());
        }
        t.push(b"10%\r50%\r\x1b[31m100%\x1b[0m\r\nlast, unfinished");
        let text = t.text();
        // 30 lines, the folded progress bar and an unfinished line: the last 20 of those.
        assert!(text.starts_with("line13\n"), "{text}");
        assert!(text.ends_with("100%\nlast, unfinished"), "{text}");
        assert_eq!(text.lines().count(), TAIL_LINES);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut t = Tail::default();
        t.push(&vec![b'x'; MAX_LINE * 3]);
        t.push(b"\n");
        assert_eq!(t.text().chars().count(), MAX_LINE + 1);
    }

    #[test]
    fn durations_parse_as_people_write_them() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").unwrap_err().contains("30s, 5m or 1h30m"));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let words: Vec<OsString> = ["sh", "-c", "echo 'hi' >&2"].map(OsString::from).to_vec();
        assert_eq!(shell_line(&words), r#"sh -c 'echo '\''hi'\'' >&2'"#);
    }
}
