//! What changed between two polls: a job started, ended, or came near its time limit; and
//! the notification and run state each change makes.

use std::collections::HashMap;
use std::time::Duration;

use runwatch_core::{Level, RunState};

use crate::job::{Job, JobState};

/// One thing worth saying about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Seen for the first time, nothing to say yet (queued, or already known history).
    Seen,
    /// PENDING → RUNNING; how long it waited, when Slurm says.
    Started { waited: Option<u64> },
    /// Within the warning time of its limit.
    NearLimit { left: u64 },
    /// It reached a final state.
    Ended,
}

/// The jobs seen at the last poll, and what was already said about them.
#[derive(Debug)]
pub struct Tracker {
    near_limit: Duration,
    seen: HashMap<String, Seen>,
    first: bool,
    /// The highest numeric job id the store knew at the start: a job above it that the
    /// first poll finds is news, not history (it came while nobody polled).
    newest_known: Option<u64>,
}

#[derive(Debug)]
struct Seen {
    state: JobState,
    warned: bool,
}

impl Tracker {
    /// `near_limit`: a running job this close to its time limit gets a WARNING.
    pub fn new(near_limit: Duration) -> Tracker {
        Tracker { near_limit, seen: HashMap::new(), first: true, newest_known: None }
    }

    /// A tracker that starts from what the store knows: the jobs it has runs of, by job id,
    /// and whether each ended (another daemon polled Slurm before this one took over, or
    /// this one before a restart). At the first poll such a job is compared with that, so
    /// an end that came while nobody polled is said, and nothing already said is said
    /// again; a job the store does not know is history if its id is below the highest it
    /// knows, and news if above (submitted since).
    pub fn resume(near_limit: Duration, known: impl IntoIterator<Item = (String, bool)>) -> Tracker {
        let mut t = Tracker::new(near_limit);
        for (job_id, ended) in known {
            if let Ok(n) = job_id.parse::<u64>() {
                t.newest_known = t.newest_known.max(Some(n));
            }
            // Which final state does not matter: a job ends once.
            let state = if ended { JobState::Completed } else { JobState::Running };
            t.seen.insert(job_id, Seen { state, warned: false });
        }
        t
    }

    /// Whether `job_id` came after the newest job the store knew at the start.
    fn newer_than_known(&self, job_id: &str) -> bool {
        self.newest_known.zip(job_id.parse::<u64>().ok()).is_some_and(|(known, id)| id > known)
    }

    /// Compares a poll's jobs with the last; returns each job with what changed. At the
    /// first poll, jobs not known (see [`Tracker::resume`]) that already ended are
    /// [`Change::Seen`]: history, not news (the store's dedupe keys keep a restart from
    /// saying anything twice).
    pub fn update(&mut self, jobs: Vec<Job>) -> Vec<(Job, Change)> {
        let first = std::mem::take(&mut self.first);
        let mut out = Vec::new();
        let mut next = HashMap::with_capacity(jobs.len());
        for job in jobs {
            let before = self.seen.remove(&job.job_id);
            let mut warned = before.as_ref().is_some_and(|b| b.warned);
            let was = before.map(|b| b.state);
            // First seen at the first poll, and not newer than what the store knew: history.
            let history = first && was.is_none() && !self.newer_than_known(&job.job_id);
            let change = match (&was, &job.state) {
                (Some(w), s) if w == s => None,
                (Some(w), s) if w.is_final() && s.is_final() => None,
                (_, s) if s.is_final() => Some(if history { Change::Seen } else { Change::Ended }),
                (Some(w), s) if s.is_running() && !w.is_running() => {
                    Some(Change::Started { waited: job.start.zip(job.submit).map(|(s, q)| (s - q).max(0) as u64) })
                }
                // A job first seen running: it started while we were not looking (or before).
                (None, s) if s.is_running() && !history => {
                    Some(Change::Started { waited: job.start.zip(job.submit).map(|(s, q)| (s - q).max(0) as u64) })
                }
                (None, _) => Some(Change::Seen),
                _ => None,
            };
            if let Some(c) = change {
                out.push((job.clone(), c));
            }
            if job.state.is_running() && !warned {
                if let (Some(limit), Some(elapsed)) = (job.limit, job.elapsed) {
                    let left = limit.saturating_sub(elapsed);
                    if left <= self.near_limit.as_secs() {
                        warned = true;
                        out.push((job.clone(), Change::NearLimit { left }));
                    }
                }
            }
            next.insert(job.job_id.clone(), Seen { state: job.state, warned });
        }
        // Jobs no longer listed are forgotten (Slurm dropped them after MinJobAge).
        self.seen = next;
        out
    }
}

/// What a change says: level, title, body, the run's state and cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub level: Level,
    pub title: String,
    pub body: String,
    pub state: Option<RunState>,
    pub cause: Option<String>,
    /// Names the notification, once per job and event.
    pub what: String,
}

/// The notification a change makes (`None` for [`Change::Seen`]).
pub fn say(job: &Job, change: &Change) -> Option<Said> {
    let shown = job.shown();
    let ran = job.elapsed.map(secs);
    let after = ran.as_ref().map(|r| format!(" after {r}")).unwrap_or_default();
    let limit = job.limit.map(secs);
    let node = job.node.clone().unwrap_or_else(|| "?".into());
    let (level, title, state, cause, what) = match change {
        Change::Seen => return None,
        Change::Started { waited } => {
            let waited = waited.map(|w| format!(" after waiting {}", secs(w))).unwrap_or_default();
            (Level::Info, format!("Slurm job {shown} is running on {node}{waited}."), Some(RunState::Running), None, "started".into())
        }
        Change::NearLimit { left } => (
            Level::Warning,
            format!("Slurm job {shown} is {} from its time limit ({}).", secs(*left), limit.clone().unwrap_or_default()),
            None,
            None,
            "near-limit".into(),
        ),
        Change::Ended => {
            let (level, title, state, cause) = ended(job, &shown, &after, limit.as_deref(), &node);
            (level, title, Some(state), Some(cause), job.state.to_string().to_lowercase())
        }
    };
    let mut body = vec![format!("Slurm job: {}", job.job_id)];
    if let (Some(a), Some(t)) = (&job.array_job_id, &job.array_task_id) {
        body.push(format!("Array: {a}, task {t}"));
    }
    body.push(format!("State: {}", job.state));
    if let Some(r) = &job.reason {
        body.push(format!("Reason: {r}"));
    }
    if matches!(change, Change::Ended) {
        if let Some(code) = job.exit_code {
            body.push(format!("Exit code: {code}{}", job.signal.map(|s| format!(" (signal {s})")).unwrap_or_default()));
        }
    }
    body.push(format!("Node: {node}"));
    body.push(format!(
        "Elapsed: {} of {}",
        ran.unwrap_or_else(|| "?".into()),
        limit.map_or_else(|| "no limit".to_string(), |l| format!("a {l} limit"))
    ));
    if !job.user.is_empty() {
        body.push(format!("User: {}", job.user));
    }
    Some(Said { level, title, body: body.join("\n"), state, cause, what })
}

fn ended(job: &Job, shown: &str, after: &str, limit: Option<&str>, node: &str) -> (Level, String, RunState, String) {
    match &job.state {
        JobState::Completed => (Level::Info, format!("Slurm job {shown} completed{after}."), RunState::Finished, "completed".into()),
        JobState::Failed => match (job.exit_code, job.signal) {
            (_, Some(sig)) => {
                (Level::Error, format!("Slurm job {shown} was killed by signal {sig}{after}."), RunState::Failed, format!("signal {sig}"))
            }
            (Some(code), None) => (
                Level::Error,
                format!("Slurm job {shown} failed with exit code {code}{after}."),
                RunState::Failed,
                format!("exit code {code}"),
            ),
            (None, None) => (Level::Error, format!("Slurm job {shown} failed{after}."), RunState::Failed, "failed".into()),
        },
        JobState::Timeout => (
            Level::Error,
            format!("Slurm job {shown} reached its time limit{}{after}.", limit.map(|l| format!(" ({l})")).unwrap_or_default()),
            RunState::Failed,
            "time limit".into(),
        ),
        JobState::OutOfMemory => {
            (Level::Error, format!("Slurm job {shown} ran out of memory{after}."), RunState::Failed, "out of memory".into())
        }
        JobState::Preempted => (Level::Warning, format!("Slurm job {shown} was preempted{after}."), RunState::Ended, "preempted".into()),
        JobState::NodeFail => (
            Level::Error,
            format!("Slurm job {shown} was lost: its node {node} failed{after}."),
            RunState::Crashed,
            format!("node failure ({node})"),
        ),
        JobState::Cancelled => {
            let by = job.cancelled_by.as_ref().map(|u| format!(" by {u}")).unwrap_or_default();
            (Level::Warning, format!("Slurm job {shown} was cancelled{by}{after}."), RunState::Ended, format!("cancelled{by}"))
        }
        JobState::BootFail => {
            (Level::Error, format!("Slurm job {shown} failed: its node {node} did not boot."), RunState::Crashed, "boot failure".into())
        }
        JobState::Deadline => (Level::Error, format!("Slurm job {shown} missed its deadline{after}."), RunState::Failed, "deadline".into()),
        other => (Level::Warning, format!("Slurm job {shown} ended ({other}){after}."), RunState::Ended, other.to_string().to_lowercase()),
    }
}

/// Whole seconds as "1m 30s".
fn secs(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}
