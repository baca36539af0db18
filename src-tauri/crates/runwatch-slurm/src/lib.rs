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
use runwatch_core::runs::{Report, Reported};
use runwatch_core::{NewNotification, Notification, RunState, Store, StoreError};

pub use job::{Job, JobState};
pub use poll::{Mode, Poller, SlurmError};
pub use track::{Change, Tracker};

/// The notifications' source.
pub const SOURCE: &str = "slurm";

/// A poller and its memory of the last poll.
#[derive(Debug)]
pub struct Source {
    pub poller: Poller,
    /// `None` until the first poll, or after [`Source::forget`]: then made from the store.
    tracker: Option<Tracker>,
    near_limit: Duration,
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
        Source { poller: Poller::new(user, mode), tracker: None, near_limit }
    }

    /// One poll: asks Slurm, stores what changed; the notifications stored. The first one
    /// starts from what the store knows (see [`Tracker::resume`]); so does the one after a
    /// failure to store, whose changes are then found again.
    pub fn poll_once(&mut self, store: &mut Store, now: Millis) -> Result<Vec<Notification>, SourceError> {
        let jobs = self.poller.poll()?;
        let tracker = match &mut self.tracker {
            Some(t) => t,
            None => self.tracker.insert(Tracker::resume(self.near_limit, known_jobs(store)?)),
        };
        let changes = tracker.update(jobs);
        let stored = record(store, &changes, now);
        if stored.is_err() {
            self.tracker = None;
        }
        Ok(stored?)
    }

    /// Forgets the last poll (another daemon polls Slurm for the store meanwhile): the
    /// next poll starts from what the store knows then.
    pub fn forget(&mut self) {
        self.tracker = None;
    }
}

/// The jobs the store has runs of, by job id, and whether each ended.
pub fn known_jobs(store: &Store) -> Result<Vec<(String, bool)>, StoreError> {
    Ok(store
        .runs()?
        .into_iter()
        .filter_map(|r| {
            let job_id = r.labels.get("slurm_job_id")?;
            (r.id == job::run_id(job_id)).then(|| (job_id.clone(), !matches!(r.state, RunState::Running | RunState::Stuck)))
        })
        .collect())
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

/// Stores the runs and notifications of these changes (see [`Store::save_reports`]: one
/// transaction on SQLite; on PostgreSQL ordered so that a crash loses and repeats nothing).
pub fn record(store: &mut Store, changes: &[(Job, Change)], now: Millis) -> Result<Vec<Notification>, StoreError> {
    let ids: Vec<String> = changes.iter().map(|(job, _)| job.run_id()).collect();
    store.save_reports(&ids, now, |i, before| {
        let (job, change) = &changes[i];
        report(job, change, before)
    })
}

/// What a change of a job stores, given its run's state before (`None`: no run yet).
pub fn report(job: &Job, change: &Change, before: Option<RunState>) -> Option<Report> {
    let said = track::say(job, change);
    // A job still queued is not a run yet.
    if said.is_none() && !job.state.is_running() && !job.state.is_final() {
        return None;
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
    let ended_before = matches!(before, Some(RunState::Finished | RunState::Failed));
    let told = matches!(change, Change::Ended) && matches!(job.state, JobState::Completed | JobState::Failed) && ended_before;
    // Slurm may still say RUNNING (or COMPLETING) after exec recorded the end.
    let state = state.filter(|s| !(*s == RunState::Running && ended_before));
    let run = Reported {
        id: id.clone(),
        name: Some(job.name.clone()).filter(|n| !n.is_empty()),
        state,
        host: job.node.clone(),
        labels: labels(job),
        cause,
    };
    let notification = said.filter(|_| !told).map(|said| NewNotification {
        level: Some(said.level),
        title: said.title,
        body: said.body,
        run_id: Some(id),
        source: SOURCE.into(),
        // Job ids are reused once Slurm's state is reset: the submit time tells them apart.
        dedupe_key: Some(format!("slurm:{}:{}:{}", job.job_id, job.submit.unwrap_or(0), said.what)),
        ..Default::default()
    });
    Some(Report { run, notification })
}
