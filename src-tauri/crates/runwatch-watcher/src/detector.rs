//! The run state machine: from the newest check-in file of each flag of each run to its
//! state, its next deadline and the notifications due — a pure function of what was seen
//! and when, driven by an injectable clock.
//!
//! The rules (see `shared/spec/aim-checkins.md`):
//! - a run's current state is its highest idx; `finished` on top (or under the final
//!   heartbeat) is a clean finish; the final heartbeat (`progress`, expect 1) without it is
//!   an end without success (a Python exception, or `close()` without reporting success);
//! - a `check_in` not followed by another within `expect_next_in + grace` makes the run
//!   stuck if Aim's heartbeat is still beating (the main thread hangs), crashed if the
//!   heartbeat stopped too (the process is gone);
//! - a heartbeat not renewed within `expect_next_in + grace` makes the run crashed, even
//!   if it never called `report_progress` (Aim's own watcher misses those);
//! - any new check-in of a stuck or crashed run makes it running again: recovered.
//!
//! Deadlines run from when *we* first saw a file (persisted), never from the writer's
//! clock or file mtimes, which differ between machines on a shared file system.

use std::collections::{BTreeMap, HashMap, HashSet};

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_core::clock::{secs, Millis};
use runwatch_core::{Level, RunState};

/// At a missed check-in, a heartbeat older than its own promise plus this slack counts as
/// stopped: the run crashed rather than hung.
pub const HEARTBEAT_SLACK_SECS: u64 = 10;

/// The newest check-in file of one flag, and when it was first seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub idx: u64,
    pub expect_next_in: u64,
    pub first_seen: Millis,
}

/// What the detector remembers about a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub repo: String,
    pub files: BTreeMap<Flag, Seen>,
    pub state: RunState,
}

/// Something that happened to a run, to be stored as a notification exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happening {
    Started {
        idx: u64,
    },
    Finished {
        idx: u64,
    },
    Ended {
        idx: u64,
    },
    Stuck {
        idx: u64,
        silent_for: u64,
    },
    /// Silence of the heartbeat, and of the check-ins if the run had promised any.
    Crashed {
        idx: u64,
        beat_silent_for: u64,
        checkin_silent_for: Option<u64>,
    },
    Recovered {
        idx: u64,
    },
    /// The run reported a failure (over HTTP).
    Failed {
        idx: u64,
    },
}

impl Happening {
    pub fn level(&self) -> Level {
        match self {
            Happening::Started { .. } | Happening::Finished { .. } | Happening::Recovered { .. } => Level::Info,
            Happening::Ended { .. } => Level::Warning,
            Happening::Stuck { .. } | Happening::Crashed { .. } | Happening::Failed { .. } => Level::Error,
        }
    }

    /// Names the event for exactly-once storage: kind, run and the check-in that caused it.
    pub fn dedupe_key(&self, run: &str) -> String {
        let (kind, idx) = match self {
            Happening::Started { idx } => ("started", idx),
            Happening::Finished { idx } => ("finished", idx),
            Happening::Ended { idx } => ("ended", idx),
            Happening::Stuck { idx, .. } => ("stuck", idx),
            Happening::Crashed { idx, .. } => ("crashed", idx),
            Happening::Recovered { idx } => ("recovered", idx),
            Happening::Failed { idx } => ("failed", idx),
        };
        format!("{kind}:{run}:{idx}")
    }

    /// The inbox title.
    pub fn title(&self, run: &str) -> String {
        match self {
            Happening::Started { .. } => format!("Run '{run}' started."),
            Happening::Finished { .. } => format!("Run '{run}' finished without error."),
            Happening::Ended { .. } => format!("Run '{run}' ended without reporting success."),
            Happening::Stuck { silent_for, .. } => format!("Run '{run}' is stuck (no check-in for {silent_for} s)."),
            Happening::Crashed { beat_silent_for, checkin_silent_for: None, .. } => {
                format!("Run '{run}' crashed (no heartbeat for {beat_silent_for} s).")
            }
            Happening::Crashed { beat_silent_for, checkin_silent_for: Some(c), .. } => {
                format!("Run '{run}' crashed (no heartbeat for {beat_silent_for} s, no check-in for {c} s).")
            }
            Happening::Recovered { .. } => format!("Run '{run}' recovered: check-ins resumed."),
            Happening::Failed { .. } => format!("Run '{run}' failed."),
        }
    }

    /// Whether notifiers render this with their stuck-run template (Aim's behaviour).
    pub fn uses_stuck_template(&self) -> bool {
        matches!(self, Happening::Stuck { .. } | Happening::Crashed { .. })
    }
}

/// The outcome of assessing a run at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub state: RunState,
    /// When the assessment may change with no new file: the next deadline.
    pub deadline: Option<Millis>,
    /// For stuck/crashed: what fell silent and for how long.
    pub cause: Option<Cause>,
}

/// Why a run is stuck or crashed, as of the moment it became so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    /// The newest check-in that fell silent.
    pub idx: u64,
    /// Seconds without a check-in / a heartbeat, if the run promised them.
    pub checkin_silent_for: Option<u64>,
    pub beat_silent_for: Option<u64>,
}

/// Assesses a run's files at `now`.
pub fn assess(files: &BTreeMap<Flag, Seen>, now: Millis, grace: Millis) -> Assessment {
    let Some((&top_flag, top)) = files.iter().max_by_key(|(_, s)| s.idx) else {
        return Assessment { state: RunState::Running, deadline: None, cause: None };
    };
    let settled = |state| Assessment { state, deadline: None, cause: None };
    if top_flag == Flag::Finished {
        return settled(RunState::Finished);
    }
    if top_flag == Flag::Failed {
        return settled(RunState::Failed);
    }
    if top_flag == Flag::Progress && top.expect_next_in <= 1 {
        // The final heartbeat: finished if `finished` came after every other sign of work.
        let last_work =
            [Flag::Starting, Flag::CheckIn, Flag::NewLogs].iter().filter_map(|f| files.get(f).map(|s| s.idx)).max().unwrap_or(0);
        let finished = files.get(&Flag::Finished).is_some_and(|f| f.idx > last_work);
        return settled(if finished { RunState::Finished } else { RunState::Ended });
    }

    let due = |s: &Seen| s.first_seen.saturating_add(secs(s.expect_next_in)).saturating_add(grace);
    let checkin = files.get(&Flag::CheckIn).filter(|s| s.expect_next_in > 0);
    let beat = files.get(&Flag::Progress).filter(|s| s.expect_next_in > 1);
    let checkin_due = checkin.map(due);
    let beat_due = beat.map(due);
    let silent_for = |since: Millis, until: Millis| ((until - since).max(0) / 1000) as u64;

    if let (Some(c), Some(c_due)) = (checkin, checkin_due) {
        if now >= c_due {
            let beat_stops = beat.map(|b| b.first_seen.saturating_add(secs(b.expect_next_in + HEARTBEAT_SLACK_SECS)));
            match (beat, beat_stops) {
                // Hung: the heartbeat thread lives on. It turns crashed if the heartbeat stops.
                (Some(_), Some(stops)) if now < stops => {
                    let cause = Cause { idx: c.idx, checkin_silent_for: Some(silent_for(c.first_seen, c_due)), beat_silent_for: None };
                    return Assessment { state: RunState::Stuck, deadline: Some(stops), cause: Some(cause) };
                }
                // Gone: neither check-ins nor heartbeats.
                (Some(b), Some(stops)) => {
                    let at = c_due.max(stops);
                    let cause = Cause {
                        idx: c.idx.max(b.idx),
                        checkin_silent_for: Some(silent_for(c.first_seen, at)),
                        beat_silent_for: Some(silent_for(b.first_seen, at)),
                    };
                    return Assessment { state: RunState::Crashed, deadline: None, cause: Some(cause) };
                }
                // No heartbeat to tell a hang from a crash (not Aim, or an old Aim): stuck.
                _ => {
                    let cause = Cause { idx: c.idx, checkin_silent_for: Some(silent_for(c.first_seen, c_due)), beat_silent_for: None };
                    return Assessment { state: RunState::Stuck, deadline: None, cause: Some(cause) };
                }
            }
        }
    }
    if let (Some(b), Some(b_due)) = (beat, beat_due) {
        if now >= b_due {
            let cause = Cause {
                idx: b.idx.max(checkin.map_or(0, |c| c.idx)),
                checkin_silent_for: checkin.map(|c| silent_for(c.first_seen, b_due)),
                beat_silent_for: Some(silent_for(b.first_seen, b_due)),
            };
            return Assessment { state: RunState::Crashed, deadline: None, cause: Some(cause) };
        }
    }
    let deadline = [checkin_due, beat_due].into_iter().flatten().min();
    Assessment { state: RunState::Running, deadline, cause: None }
}

/// The moments at which [`assess`] of these files may change as time passes: it compares
/// `now` with nothing else, so its result is the same for every `now` between two of them.
fn breakpoints(files: &BTreeMap<Flag, Seen>, grace: Millis) -> [Option<Millis>; 3] {
    let due = |s: &Seen| s.first_seen.saturating_add(secs(s.expect_next_in)).saturating_add(grace);
    let checkin = files.get(&Flag::CheckIn).filter(|s| s.expect_next_in > 0);
    let beat = files.get(&Flag::Progress).filter(|s| s.expect_next_in > 1);
    [
        checkin.map(due),
        beat.map(due),
        beat.map(|b| b.first_seen.saturating_add(secs(b.expect_next_in.saturating_add(HEARTBEAT_SLACK_SECS)))),
    ]
}

/// What [`Detector::tick`] found last time it looked at every run: until `until`, no run's
/// assessment can change unless one of its files does (which drops the cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Calm {
    since: Millis,
    /// The earliest breakpoint after `since`; `None` = never.
    until: Option<Millis>,
    /// The earliest deadline of any run, as [`Detector::next_deadline`] reports it.
    deadline: Option<Millis>,
}

impl Calm {
    fn covers(&self, now: Millis) -> bool {
        now >= self.since && self.until.is_none_or(|u| now < u)
    }
}

/// What one observation or tick changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Runs whose track changed (files, state or deadline), to be persisted.
    pub runs: Vec<String>,
    /// Notifications due, per run, in order.
    pub happenings: Vec<(String, Happening)>,
    /// Runs with a new `new_logs` check-in: their log records are to be read.
    pub new_logs: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.happenings.is_empty() && self.new_logs.is_empty()
    }

    fn touch(&mut self, run: &str) {
        if self.runs.last().map(String::as_str) != Some(run) {
            self.runs.push(run.to_string());
        }
    }
}

/// Every run the watcher knows, in memory, with the rules above.
#[derive(Debug, Clone)]
pub struct Detector {
    grace: Millis,
    tracks: HashMap<String, Track>,
    /// Lets the once-a-second tick skip the pass over every run while nothing can change.
    calm: Option<Calm>,
}

impl Detector {
    pub fn new(grace: Millis) -> Self {
        Self { grace, tracks: HashMap::new(), calm: None }
    }

    pub fn grace(&self) -> Millis {
        self.grace
    }

    pub fn set_grace(&mut self, grace: Millis) {
        if grace != self.grace {
            self.calm = None;
        }
        self.grace = grace;
    }

    /// Restores a run remembered by the store (at start).
    pub fn restore(&mut self, run: String, track: Track) {
        self.calm = None;
        self.tracks.insert(run, track);
    }

    pub fn track(&self, run: &str) -> Option<&Track> {
        self.tracks.get(run)
    }

    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// The ids of the runs it tracks.
    pub fn runs(&self) -> impl Iterator<Item = &String> {
        self.tracks.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Takes in check-in files seen at `now`. Only a higher idx than known for its run and
    /// flag changes anything: files that vanish, or older files seen late, are normal.
    /// With `quiet`, runs new to the detector are recorded without "started" / "finished" /
    /// "ended" notifications (the first scan of a repository with a history).
    pub fn observe<'a>(
        &mut self,
        repo: &str,
        files: impl IntoIterator<Item = &'a CheckIn>,
        now: Millis,
        quiet: bool,
        changes: &mut Changes,
    ) {
        let mut touched: Vec<String> = Vec::new();
        let mut touched_set: HashSet<String> = HashSet::new();
        let mut new_runs: HashSet<String> = HashSet::new();
        for c in files {
            // A rescan meets every known run again: look it up without copying its hash.
            let track = match self.tracks.get_mut(&c.run_hash) {
                Some(track) => track,
                None => self.tracks.entry(c.run_hash.clone()).or_insert_with(|| {
                    new_runs.insert(c.run_hash.clone());
                    Track { repo: repo.to_string(), files: BTreeMap::new(), state: RunState::Running }
                }),
            };
            let newer = track.files.get(&c.flag).is_none_or(|s| c.idx > s.idx);
            if !newer {
                continue;
            }
            track.files.insert(c.flag, Seen { idx: c.idx, expect_next_in: c.expect_next_in, first_seen: now });
            let quiet_run = quiet && new_runs.contains(&c.run_hash);
            if c.flag == Flag::NewLogs {
                changes.new_logs.push(c.run_hash.clone());
            }
            if c.flag == Flag::Starting && !quiet_run {
                changes.happenings.push((c.run_hash.clone(), Happening::Started { idx: c.idx }));
            }
            if touched_set.insert(c.run_hash.clone()) {
                touched.push(c.run_hash.clone());
            }
        }
        for run in touched {
            let quiet_run = quiet && new_runs.contains(&run);
            self.reassess(&run, now, quiet_run, changes);
        }
    }

    /// Moves every first-seen time by `delta` ms: after the wall clock was stepped, so that
    /// deadlines keep measuring time that really passed.
    pub fn shift(&mut self, delta: Millis) {
        self.calm = None; // every breakpoint moves
        for track in self.tracks.values_mut() {
            for seen in track.files.values_mut() {
                seen.first_seen = seen.first_seen.saturating_add(delta);
            }
        }
    }

    /// Re-assesses runs whose deadline has passed.
    pub fn tick(&mut self, now: Millis, changes: &mut Changes) {
        if self.calm.is_some_and(|q| q.covers(now)) {
            return; // no deadline has passed and no file changed since the last pass
        }
        let due: Vec<String> =
            self.tracks.iter().filter(|(_, t)| assess(&t.files, now, self.grace).state != t.state).map(|(r, _)| r.clone()).collect();
        for run in due {
            self.reassess(&run, now, false, changes);
        }
        self.calm = Some(self.look_ahead(now));
    }

    /// The earliest moment any run's state may change without a new file.
    pub fn next_deadline(&self, now: Millis) -> Option<Millis> {
        match self.calm {
            Some(q) if q.covers(now) => q.deadline,
            _ => self.tracks.values().filter_map(|t| assess(&t.files, now, self.grace).deadline).min(),
        }
    }

    /// One pass over every run: the earliest deadline and the earliest breakpoint after `now`.
    fn look_ahead(&self, now: Millis) -> Calm {
        let mut q = Calm { since: now, until: None, deadline: None };
        for t in self.tracks.values() {
            if let Some(d) = assess(&t.files, now, self.grace).deadline {
                q.deadline = Some(q.deadline.map_or(d, |m| m.min(d)));
            }
            for b in breakpoints(&t.files, self.grace).into_iter().flatten().filter(|&b| b > now) {
                q.until = Some(q.until.map_or(b, |u| u.min(b)));
            }
        }
        q
    }

    /// The current assessment of a run (state, deadline), for persisting.
    pub fn assessment(&self, run: &str, now: Millis) -> Option<Assessment> {
        self.tracks.get(run).map(|t| assess(&t.files, now, self.grace))
    }

    fn reassess(&mut self, run: &str, now: Millis, quiet: bool, changes: &mut Changes) {
        let Some(track) = self.tracks.get_mut(run) else { return };
        self.calm = None;
        let a = assess(&track.files, now, self.grace);
        let before = track.state;
        track.state = a.state;
        changes.touch(run);
        let top_idx = track.files.values().map(|s| s.idx).max().unwrap_or(0);
        let happening = match (before, a.state) {
            (RunState::Stuck | RunState::Crashed, RunState::Running) => Some(Happening::Recovered { idx: top_idx }),
            (b, RunState::Finished) if b != RunState::Finished => Some(Happening::Finished { idx: top_idx }),
            (b, RunState::Ended) if b != RunState::Ended => Some(Happening::Ended { idx: top_idx }),
            (b, RunState::Failed) if b != RunState::Failed => Some(Happening::Failed { idx: top_idx }),
            (b, RunState::Stuck) if b != RunState::Stuck => {
                a.cause.map(|c| Happening::Stuck { idx: c.idx, silent_for: c.checkin_silent_for.unwrap_or(0) })
            }
            (b, RunState::Crashed) if b != RunState::Crashed => a.cause.map(|c| Happening::Crashed {
                idx: c.idx,
                beat_silent_for: c.beat_silent_for.unwrap_or(0),
                checkin_silent_for: c.checkin_silent_for,
            }),
            _ => None,
        };
        if let Some(h) = happening {
            let announce = !quiet || matches!(h, Happening::Stuck { .. } | Happening::Crashed { .. });
            if announce {
                changes.happenings.push((run.to_string(), h));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(idx: u64, expect_next_in: u64, first_seen: Millis) -> Seen {
        Seen { idx, expect_next_in, first_seen }
    }

    /// The tick that skips the pass over every run while nothing can change reports exactly
    /// what a full pass at every moment reports, including around each breakpoint.
    #[test]
    fn skipping_calm_ticks_changes_nothing() {
        for grace in [secs(1), secs(5), secs(100)] {
            let mut runs: Vec<(String, BTreeMap<Flag, Seen>)> = Vec::new();
            for (i, (checkin, beat)) in
                [(Some(5), Some(30)), (Some(5), None), (None, Some(30)), (Some(60), Some(3)), (Some(2), Some(40))].into_iter().enumerate()
            {
                let mut files = BTreeMap::from([(Flag::Starting, seen(1, 0, 0))]);
                if let Some(e) = checkin {
                    files.insert(Flag::CheckIn, seen(2, e, 1_000 * i as Millis));
                }
                if let Some(e) = beat {
                    files.insert(Flag::Progress, seen(3, e, 500));
                }
                runs.push((format!("run{i}"), files));
            }
            let mut cached = Detector::new(grace);
            for (run, files) in &runs {
                cached.restore(run.clone(), Track { repo: "r".into(), files: files.clone(), state: RunState::Running });
            }
            let mut full = cached.clone();
            let mut moments: Vec<Millis> = runs.iter().flat_map(|(_, f)| breakpoints(f, grace)).flatten().collect();
            moments.extend((0..400).map(|s| secs(s) / 2));
            moments.extend(moments.clone().iter().flat_map(|&m| [m - 1, m + 1]));
            moments.retain(|&m| m >= 0);
            moments.sort();
            moments.dedup();
            for now in moments {
                let (mut a, mut b) = (Changes::default(), Changes::default());
                cached.tick(now, &mut a);
                full.calm = None;
                full.tick(now, &mut b);
                assert_eq!(a.happenings, b.happenings, "grace {grace} at {now}");
                assert_eq!(
                    cached.next_deadline(now),
                    {
                        full.calm = None;
                        full.next_deadline(now)
                    },
                    "grace {grace} at {now}"
                );
            }
        }
    }
}
