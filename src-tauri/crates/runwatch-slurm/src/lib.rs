//! Following Slurm jobs: each job is a run (`slurm-<job id>`, the id `runwatch exec` gives
//! its run inside the job), labelled with its job, array job, array task and name, its
//! host the job's node. [`Source::poll_once`] asks Slurm once for all of the user's jobs
//! ([`poll`]), compares with the last answer ([`track`]) and stores what changed: run
//! states and causes, and notifications (PENDING → RUNNING, every end state, a job near its
//! time limit), each once (dedupe keys), in one transaction. A job whose `runwatch exec`
//! already reported its end gets no second "failed"/"completed" from here.

pub mod job;
pub mod poll;
pub mod track;

use std::collections::BTreeMap;
use std::time::Duration;

use runwatch_core::clock::Millis;
use runwatch_core::runs::{self, Reported};
use runwatch_core::{inbox, Inserted, NewNotification, Notification, RunState, Store, StoreError};

pub use job::{Job, JobState};
pub use poll::{Mode, Poller, SlurmError};
pub use track::{Change, Tracker};

/// The notifications' source.
pub const SOURCE: &str = "slurm";

/// A poller and its memory of the last poll.
#[derive(Debug)]
pub struct Source {
    pub poller: Poller,
    pub tracker: Tracker,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Source {
    pub fn new(user: Option<String>, mode: Mode, near_limit: Duration) -> Source {
        Source { poller: Poller::new(user, mode), tracker: Tracker::new(near_limit) }
    }

    /// One poll: asks Slurm, stores what changed; the notifications stored.
    pub fn poll_once(&mut self, store: &mut Store, now: Millis) -> Result<Vec<Notification>, SourceError> {
        let jobs = self.poller.poll()?;
        let changes = self.tracker.update(jobs);
        Ok(record(store, &changes, now)?)
    }
}

/// The labels of a job's run (those `runwatch exec` gives it from Slurm's variables).
pub fn labels(job: &Job) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("slurm_job_id".to_string(), job.job_id.clone());
    if let Some(a) = &job.array_job_id {
        l.insert("slurm_array_job_id".to_string(), a.clone());
    }
    if let Some(t) = &job.array_task_id {
        l.insert("slurm_array_task_id".to_string(), t.clone());
    }
    if !job.name.is_empty() {
        l.insert("slurm_job_name".to_string(), job.name.clone());
    }
    l
}

/// Stores the runs and notifications of these changes, in one transaction.
pub fn record(store: &mut Store, changes: &[(Job, Change)], now: Millis) -> Result<Vec<Notification>, StoreError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let expires_at = store.expiry()?.map(|e| now.saturating_add(e));
    store.write(|tx| {
        let mut stored = Vec::new();
        for (job, change) in changes {
            let said = track::say(job, change);
            // A job still queued is not a run yet.
            if said.is_none() && !job.state.is_running() && !job.state.is_final() {
                continue;
            }
            let id = job.run_id();
            let (state, cause) = match (&said, change) {
                (Some(s), _) => (s.state, s.cause.clone()),
                // Already over when first seen: its end, without a notification.
                (None, _) if job.state.is_final() => track::say(job, &Change::Ended).map_or((None, None), |s| (s.state, s.cause)),
                (None, _) => (Some(RunState::Running), None),
            };
            // `runwatch exec` in the job already said how it ended (it knows more: the
            // exception, the stderr tail); Slurm saying "failed" or "completed" again is noise.
            // What only Slurm knows (a time limit, its memory limit, a node failure, a
            // cancellation) is still said.
            let before = runs::get(tx, &id)?.map(|r| r.state);
            let ended_before = matches!(before, Some(RunState::Finished | RunState::Failed));
            let told = matches!(change, Change::Ended) && matches!(job.state, JobState::Completed | JobState::Failed) && ended_before;
            // Slurm may still say RUNNING (or COMPLETING) after exec recorded the end.
            let state = state.filter(|s| !(*s == RunState::Running && ended_before));
            let reported = Reported {
                id: &id,
                name: Some(job.name.as_str()).filter(|n| !n.is_empty()),
                state,
                host: job.node.as_deref(),
                labels: labels(job),
                cause: cause.as_deref(),
            };
            runs::save_reported(tx, &reported, now)?;
            let Some(said) = said.filter(|_| !told) else { continue };
            let n = NewNotification {
                level: Some(said.level),
                title: said.title,
                body: said.body,
                run_id: Some(id),
                source: SOURCE.into(),
                // Job ids are reused once Slurm's state is reset: the submit time tells them apart.
                dedupe_key: Some(format!("slurm:{}:{}:{}", job.job_id, job.submit.unwrap_or(0), said.what)),
                ..Default::default()
            };
            if let Inserted::New(n) = inbox::insert(tx, &n, now, expires_at)? {
                stored.push(*n);
            }
        }
        Ok(stored)
    })
}
