//! The watcher loop: file-system events and periodic rescans of each repository's
//! `check_ins/` in; the detector, log records and the store in the middle; new
//! notifications out to a callback (the logger, the dispatcher, the UI stream).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use notify::RecursiveMode;
use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_aim::logs::{self, LogError};
use runwatch_aim::repo::AimRepo;
use runwatch_core::check_ins::CheckInKind;
use runwatch_core::clock::{Millis, SharedClock};
use runwatch_core::roles::{self, Claim, Role};
use runwatch_core::runs::CheckinRow;
use runwatch_core::store::StoreError;
use runwatch_core::watch::{Detected, WatchStep};
use runwatch_core::{settings, Level, NewNotification, Notification, RunState, Store};

use crate::detector::{Changes, Detector, Happening, Seen, Track};
use crate::log_records;

/// What the watcher takes from the settings (see [`runwatch_core::settings`]), read from
/// the store (and re-read when another process changes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How late a promised check-in may be.
    pub grace: Millis,
    /// Aim log records below it are not notified.
    pub log_level: Level,
    /// Setting `rescan_secs` (default 5 minutes, see [`runwatch_core::Settings`]): full rescans catch what
    /// file-system events miss. Lost events (an overflowed queue) trigger one at once, so
    /// this is a rare safety net, not how changes are found.
    pub rescan_every: Duration,
    /// Setting `watched_repos`: repositories to watch besides those named at start.
    pub watched_repos: Vec<String>,
}

impl Settings {
    pub fn load(store: &Store) -> Result<Settings, StoreError> {
        let s = runwatch_core::Settings::load(store)?;
        Ok(Settings { grace: s.grace(), log_level: s.log_level, rescan_every: s.rescan_every(), watched_repos: s.watched_repos })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot watch for file changes: {0}")]
    Notify(#[from] notify::Error),
}

/// Stops or wakes a running [`Watcher::run`] loop.
#[derive(Debug, Clone)]
pub struct StopHandle(Sender<Msg>);

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.0.send(Msg::Stop);
    }

    /// The store may have changed (a commit by another process or thread, e.g. from
    /// [`runwatch_core::ChangeFeed`]): re-read the settings if they did. The loop does not
    /// poll for this, so without wakes a settings change waits for the next rescan.
    pub fn wake(&self) {
        let _ = self.0.send(Msg::Wake);
    }
}

enum Msg {
    Fs(notify::Result<notify::Event>),
    Wake,
    Stop,
}

/// Wall-clock steps smaller than this are drift and scheduling noise, not steps.
const CLOCK_STEP_TOLERANCE_MS: Millis = 2_000;

/// The most names of malformed files remembered, so each is warned about once.
const MAX_WARNED: usize = 10_000;

/// HTTP check-ins taken into the detector per transaction.
const CHECK_IN_PAGE: usize = 5_000;

/// The detector's repository for runs that check in over HTTP: none (`runs.repo` is NULL).
const HTTP_REPO: &str = "";

type Sink = Box<dyn FnMut(&Notification) + Send>;

/// Watches Aim repositories and keeps the store's runs and notifications up to date.
///
/// On a store shared by several daemons (PostgreSQL), each watches the repositories of its
/// own host and judges only their runs (`runs.host`); the runs that check in over HTTP are
/// judged by the one daemon holding [`Role::CheckIns`], which takes their queue.
pub struct Watcher {
    store: Store,
    clock: SharedClock,
    /// What is watched: the repositories named at start plus those in the `watched_repos`
    /// setting (re-read when settings change).
    repos: Vec<AimRepo>,
    named: Vec<AimRepo>,
    /// This daemon's host: its Aim runs carry it.
    host: String,
    /// Whether this daemon takes the HTTP check-ins, and when to claim the role again.
    role: Claim,
    detector: Detector,
    settings: Settings,
    /// See [`Store::change_marker`].
    data_version: Option<i64>,
    warned: HashSet<String>,
    /// The watched repositories changed: scan (and watch) them at the next turn.
    rescan_soon: bool,
    /// The wall and monotonic times last seen, to notice the wall clock being stepped.
    clock_ref: Option<(Millis, Millis)>,
    sink: Sink,
    /// Failures reported over HTTP, by run: exit code and last words, for their notification.
    failures: HashMap<String, Failure>,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
}

impl Watcher {
    /// A watcher over `repos`, resuming from what the store remembers.
    pub fn new(store: Store, repos: Vec<AimRepo>, clock: SharedClock) -> Result<Watcher, WatcherError> {
        Self::on_host(store, repos, clock, roles::daemon_host())
    }

    /// [`Watcher::new`] for a daemon on `host` (see [`roles::daemon_host`]).
    pub fn on_host(store: Store, repos: Vec<AimRepo>, clock: SharedClock, host: String) -> Result<Watcher, WatcherError> {
        let settings = Settings::load(&store)?;
        let role = store.claim_role(Role::CheckIns, clock.now())?;
        let detector = load_detector(&store, settings.grace, &host, role.held)?;
        let (tx, rx) = mpsc::channel();
        let data_version = store.change_marker()?;
        let named = repos;
        let repos = with_setting_repos(&named, &settings.watched_repos, store.is_postgres(), &host, true);
        Ok(Watcher {
            store,
            clock,
            named,
            repos,
            host,
            role,
            detector,
            settings,
            data_version,
            warned: HashSet::new(),
            rescan_soon: false,
            clock_ref: None,
            sink: Box::new(|_| {}),
            failures: HashMap::new(),
            tx,
            rx,
        })
    }

    /// Called with every notification the watcher stores, right after it is committed.
    pub fn on_notification(mut self, sink: impl FnMut(&Notification) + Send + 'static) -> Self {
        self.sink = Box::new(sink);
        self
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.tx.clone())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn repos(&self) -> &[AimRepo] {
        &self.repos
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether this watcher takes the HTTP check-ins (always on a store of its own).
    pub fn takes_check_ins(&self) -> bool {
        self.role.held
    }

    /// The number of runs the watcher tracks.
    pub fn run_count(&self) -> usize {
        self.detector.len()
    }

    /// Lists every repository's check-ins and takes in what changed.
    pub fn scan(&mut self) -> Result<Vec<Notification>, WatcherError> {
        let mut stored = Vec::new();
        for i in 0..self.repos.len() {
            let repo = self.repos[i].clone();
            let key = self.repo_key(&repo);
            let quiet = !settings::known_repos(&self.store)?.contains(&key);
            let files = self.list(&repo);
            stored.extend(self.take_in(&repo, &files, quiet)?);
            if quiet {
                settings::remember_repo(&mut self.store, &key)?;
            }
        }
        Ok(stored)
    }

    /// Takes in check-in files named by file-system events (other paths are ignored).
    pub fn observe_paths(&mut self, paths: &[PathBuf]) -> Result<Vec<Notification>, WatcherError> {
        let mut stored = Vec::new();
        for i in 0..self.repos.len() {
            let repo = self.repos[i].clone();
            let dir = repo.check_ins_dir();
            let files: Vec<CheckIn> = paths
                .iter()
                .filter(|p| p.parent() == Some(dir.as_path()))
                .filter_map(|p| p.file_name()?.to_str())
                .filter_map(|name| self.parse(name))
                .collect();
            if !files.is_empty() {
                stored.extend(self.take_in(&repo, &files, false)?);
            }
        }
        Ok(stored)
    }

    /// Re-assesses runs at the clock's time: stuck and crashed runs are found here.
    pub fn tick(&mut self) -> Result<Vec<Notification>, WatcherError> {
        self.follow_clock_steps()?;
        let now = self.clock.now();
        let mut changes = Changes::default();
        self.detector.tick(now, &mut changes);
        self.save(changes, now, false, None)
    }

    /// Takes in the check-ins that arrived over HTTP, in arrival order, through the same
    /// detector as Aim's files: the arrival number is the idx, the arrival time the
    /// first-seen time (so a late pass does not move a deadline).
    /// Only the daemon holding [`Role::CheckIns`] takes them; the others leave the queue.
    pub fn take_check_ins(&mut self) -> Result<Vec<Notification>, WatcherError> {
        let mut stored = Vec::new();
        if !self.role.held {
            return Ok(stored);
        }
        loop {
            let queued = self.store.waiting_check_ins(CHECK_IN_PAGE)?;
            let Some(last) = queued.last().map(|q| q.seq) else { return Ok(stored) };
            self.follow_clock_steps()?;
            let now = self.clock.now();
            let mut changes = Changes::default();
            for q in &queued {
                let idx = u64::try_from(q.seq).unwrap_or(0);
                if self.detector.track(&q.run_id).is_none() && q.kind == CheckInKind::CheckIn {
                    changes.happenings.push((q.run_id.clone(), Happening::Started { idx }));
                }
                let flag = match q.kind {
                    CheckInKind::CheckIn => Flag::CheckIn,
                    CheckInKind::Finished => Flag::Finished,
                    CheckInKind::Failed => {
                        self.failures.insert(
                            q.run_id.clone(),
                            Failure { exit_code: q.exit_code, message: q.message.clone(), cause: q.cause.clone(), title: q.title.clone() },
                        );
                        Flag::Failed
                    }
                };
                let file = CheckIn { run_hash: q.run_id.clone(), idx, flag, utc_time: 0.0, expect_next_in: q.expect_next_in };
                self.detector.observe(HTTP_REPO, [&file], q.received_at.min(now), false, &mut changes);
            }
            stored.extend(self.save(changes, now, false, Some(last))?);
        }
    }

    /// When the next run may turn stuck or crashed.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.detector.next_deadline(self.clock.now())
    }

    /// Claims [`Role::CheckIns`] again when due (see [`Claim::again_at`]): the holder renews
    /// it; another daemon takes it when the holder's lease ran out. Taking it loads the runs
    /// that check in over HTTP from the store, so one that fell silent while no daemon held
    /// the role is judged now; losing it forgets them. A daemon that does not hold it looks
    /// whether its holder gave it up (one read) and takes it then. On a store of its own the
    /// role is always held and this does nothing.
    pub fn keep_role(&mut self) -> Result<(), WatcherError> {
        let now = self.clock.now();
        if now < self.role.again_at {
            // A holder that stopped gave the role up (its release wakes every daemon): taken
            // now rather than when its lease would have run out.
            let given_up = !self.role.held
                && self.store.is_postgres()
                && !self.store.role_holders(now)?.iter().any(|(role, _, _)| role == Role::CheckIns.as_str());
            if !given_up {
                return Ok(());
            }
        }
        let claim = match self.store.claim_role(Role::CheckIns, now) {
            Ok(claim) => claim,
            Err(e) => {
                // Claimed again soon; a holder that cannot renew loses the role when its lease ends.
                self.role.again_at = now.saturating_add(roles::role_lease() / 3);
                return Err(e.into());
            }
        };
        let changed = claim.held != self.role.held;
        self.role = claim;
        if changed {
            if claim.held {
                tracing::info!("taking the HTTP check-ins of the shared store (and judging their runs)");
            } else {
                tracing::warn!("another daemon took the HTTP check-ins of the shared store");
            }
            self.detector = load_detector(&self.store, self.settings.grace, &self.host, claim.held)?;
        }
        Ok(())
    }

    /// Gives [`Role::CheckIns`] up (a clean stop), so that another daemon takes it at once.
    pub fn release_role(&mut self) {
        if self.role.held && self.role.again_at != Millis::MAX {
            if let Err(e) = self.store.release_role(Role::CheckIns) {
                tracing::warn!("cannot give up the HTTP check-ins: {e}; another daemon takes them when the lease ends");
            }
        }
        self.role.held = false;
    }

    /// How long the loop may sleep, at most `until_rescan`: until the next deadline or the
    /// next claim of the role, whichever is first.
    fn wait(&self, until_rescan: Millis) -> Millis {
        let now = self.clock.now();
        let mut wait = self.next_deadline().map_or(until_rescan, |d| until_rescan.min(d.saturating_sub(now)));
        wait = wait.min(self.role.again_at.saturating_sub(now));
        wait.max(0)
    }

    /// Runs until [`StopHandle::stop`]: a first scan, then file-system events, rescans,
    /// deadlines and (on a shared store) claims of the check-ins role, each waking the loop
    /// exactly when it falls due; [`StopHandle::wake`] re-reads the settings and takes the
    /// HTTP check-ins that arrived. Nothing else wakes it: a wall-clock step is noticed at
    /// the next wake, which still comes on time (a wait is a duration, and rescans are
    /// planned on the monotonic clock), before anything is judged. Store errors are logged
    /// and retried; nothing seen is lost, because the detector's memory is rebuilt from the
    /// store after a failed write. A clean stop gives the check-ins role up.
    pub fn run(mut self) -> Result<(), WatcherError> {
        let tx = self.tx.clone();
        let mut fs = notify::recommended_watcher(move |res| {
            let _ = tx.send(Msg::Fs(res));
        })?;
        let mut watched: HashSet<PathBuf> = HashSet::new();
        self.watch_dirs(&mut fs, &mut watched);
        self.guard(Self::scan);
        self.guard(Self::take_check_ins);
        // On the monotonic clock; deadlines are on the wall clock (they follow its steps).
        let mut next_rescan = self.clock.monotonic() + self.settings.rescan_every.as_millis() as Millis;
        loop {
            let wait = self.wait(next_rescan - self.clock.monotonic());
            match self.rx.recv_timeout(Duration::from_millis(wait as u64)) {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Msg::Fs(first)) => {
                    let mut events = vec![first];
                    let mut stop = false;
                    while events.len() < 100_000 {
                        match self.rx.try_recv() {
                            Ok(Msg::Fs(res)) => events.push(res),
                            Ok(Msg::Wake) => {} // the settings are re-read below anyway
                            Ok(Msg::Stop) => {
                                stop = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.on_fs_events(events, &mut fs, &mut watched);
                    if stop {
                        break;
                    }
                }
                Ok(Msg::Wake) | Err(RecvTimeoutError::Timeout) => {}
            }
            if self.reload_settings_if_changed() {
                // A shorter rescan_secs applies now, not after the rescan planned under the old one.
                next_rescan = next_rescan.min(self.clock.monotonic() + self.settings.rescan_every.as_millis() as Millis);
            }
            if let Err(e) = self.keep_role() {
                tracing::warn!("watcher: cannot claim the HTTP check-ins: {e}; will retry");
            }
            self.guard(Self::take_check_ins);
            if self.clock.monotonic() >= next_rescan || std::mem::take(&mut self.rescan_soon) {
                self.watch_dirs(&mut fs, &mut watched);
                self.guard(Self::scan);
                next_rescan = self.clock.monotonic() + self.settings.rescan_every.as_millis() as Millis;
            }
            self.guard(Self::tick);
        }
        self.release_role();
        Ok(())
    }

    /// Takes in a batch of file-system events: the check-in files they name and, when
    /// events were lost (inotify's queue overflowed) or a `check_ins/` directory appeared,
    /// a full rescan at once rather than at the next periodic one.
    fn on_fs_events(&mut self, events: Vec<notify::Result<notify::Event>>, fs: &mut impl notify::Watcher, watched: &mut HashSet<PathBuf>) {
        let mut paths = Vec::new();
        let mut rescan = false;
        for res in events {
            rescan |= collect_paths(res, &mut paths);
        }
        if paths.iter().any(|p| self.repos.iter().any(|r| *p == r.check_ins_dir())) {
            // check_ins/ was just created: watch it and read what is already there.
            self.watch_dirs(fs, watched);
            rescan = true;
        }
        self.guard(|w| w.observe_paths(&paths));
        if rescan {
            self.guard(Self::scan);
        }
    }

    /// Runs one step of the loop; on failure, logs it and forgets what was not stored, so
    /// the next rescan or tick sees it again.
    fn guard(&mut self, step: impl FnOnce(&mut Self) -> Result<Vec<Notification>, WatcherError>) {
        if let Err(e) = step(self) {
            tracing::warn!("watcher: {e}; will retry");
            match load_detector(&self.store, self.settings.grace, &self.host, self.role.held) {
                Ok(d) => self.detector = d,
                Err(e) => tracing::warn!("watcher: cannot reload run states: {e}"),
            }
        }
    }

    fn watch_dirs(&self, fs: &mut impl notify::Watcher, watched: &mut HashSet<PathBuf>) {
        for repo in &self.repos {
            for dir in [repo.aim_dir().to_path_buf(), repo.check_ins_dir()] {
                if !watched.contains(&dir) && dir.is_dir() {
                    match fs.watch(&dir, RecursiveMode::NonRecursive) {
                        Ok(()) => {
                            watched.insert(dir);
                        }
                        Err(e) => tracing::warn!("cannot watch '{}' ({e}); relying on rescans", dir.display()),
                    }
                }
            }
        }
    }

    /// Re-reads the settings when another connection committed since the last look; true
    /// if they were re-read. Only reads: a wake with nothing changed writes nothing.
    fn reload_settings_if_changed(&mut self) -> bool {
        let Ok(v) = self.store.change_marker() else { return false };
        if v.is_some() && v == self.data_version {
            return false;
        }
        self.data_version = v;
        let changed = match Settings::load(&self.store) {
            Ok(s) => {
                self.detector.set_grace(s.grace);
                let changed = s.watched_repos != self.settings.watched_repos;
                self.settings = s;
                changed
            }
            Err(e) => {
                tracing::warn!("cannot read settings: {e}");
                return true;
            }
        };
        // Looked at every time (a repository named there may have appeared since), warned
        // about when the setting changed.
        let repos = with_setting_repos(&self.named, &self.settings.watched_repos, self.store.is_postgres(), &self.host, changed);
        if repos != self.repos {
            for added in repos.iter().filter(|r| !self.repos.contains(r)) {
                tracing::info!("now watching '{}'", added.root().display());
            }
            self.repos = repos;
            self.rescan_soon = true;
        }
        true
    }

    fn list(&mut self, repo: &AimRepo) -> Vec<CheckIn> {
        let dir = repo.check_ins_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!("cannot list '{}': {e}", dir.display());
                return Vec::new();
            }
        };
        // Entries may vanish while we list: only names are read, never the files.
        entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).filter_map(|name| self.parse(&name)).collect()
    }

    fn parse(&mut self, name: &str) -> Option<CheckIn> {
        match CheckIn::parse(name) {
            Ok(c) => Some(c),
            Err(e) => {
                if self.warned.len() < MAX_WARNED && self.warned.insert(name.to_string()) {
                    tracing::warn!("skipping {e}");
                }
                None
            }
        }
    }

    fn take_in(&mut self, repo: &AimRepo, files: &[CheckIn], quiet: bool) -> Result<Vec<Notification>, WatcherError> {
        self.follow_clock_steps()?;
        let now = self.clock.now();
        let mut changes = Changes::default();
        let root = repo.root().display().to_string();
        self.detector.observe(&root, files, now, quiet, &mut changes);
        self.save(changes, now, quiet, None)
    }

    /// How [`settings::known_repos`] names a repository: its path, with this daemon's host
    /// on a shared store (the same path on two hosts is two repositories).
    fn repo_key(&self, repo: &AimRepo) -> String {
        let path = repo.root().display().to_string();
        if self.store.is_postgres() {
            format!("{}:{path}", self.host)
        } else {
            path
        }
    }

    /// When the wall clock was stepped since the last look (beyond what the monotonic clock
    /// says passed), moves every first-seen time by the step, in memory and in the store:
    /// deadlines measure time that passed, not clock corrections.
    fn follow_clock_steps(&mut self) -> Result<(), WatcherError> {
        let (wall, mono) = (self.clock.now(), self.clock.monotonic());
        if let Some((wall0, mono0)) = self.clock_ref {
            let step = wall - (wall0 + (mono - mono0));
            if step.abs() > CLOCK_STEP_TOLERANCE_MS {
                tracing::warn!("the wall clock was stepped by {:+.1} s; run deadlines keep counting real time", step as f64 / 1000.0);
                self.detector.shift(step);
                self.store.shift_run_times(&self.detector.runs().cloned().collect::<Vec<_>>(), step)?;
            }
        }
        self.clock_ref = Some((wall, mono));
        Ok(())
    }

    /// Stores what changed (see [`Store::save_watch_step`]) and reports the new
    /// notifications; `taken_upto`: the HTTP check-ins taken into the detector.
    fn save(&mut self, changes: Changes, now: Millis, quiet: bool, taken_upto: Option<i64>) -> Result<Vec<Notification>, WatcherError> {
        if changes.is_empty() && taken_upto.is_none() {
            return Ok(Vec::new());
        }
        let mut step = WatchStep { taken_upto, ..WatchStep::default() };
        let mut seen = HashSet::new();
        for run in changes.runs.iter().filter(|r| seen.insert(r.as_str())) {
            let (Some(track), Some(a)) = (self.detector.track(run), self.detector.assessment(run, now)) else { continue };
            step.runs.push(Detected {
                id: run.clone(),
                repo: track.repo.clone(),
                // An Aim run is this daemon's to judge; an HTTP run keeps the host it reported.
                host: (track.repo != HTTP_REPO).then(|| self.host.clone()),
                state: track.state,
                checkins: track.files.iter().map(|(f, s)| checkin_row(*f, s)).collect(),
                deadline: a.deadline,
            });
        }
        for (run, h) in &changes.happenings {
            let repo = self.detector.track(run).map_or("", |t| t.repo.as_str());
            let (title, body) = if repo == HTTP_REPO {
                let failure = matches!(h, Happening::Failed { .. }).then(|| self.failures.get(run)).flatten();
                let text = http_run_text(&self.store, run, h, failure)?;
                if let Some(cause) = text.cause {
                    step.causes.push((run.clone(), cause));
                }
                (text.title, text.body)
            } else {
                (h.title(run), format!("Repository: {repo}"))
            };
            step.notifications.push(NewNotification {
                level: Some(h.level()),
                title,
                body,
                run_id: Some(run.clone()),
                source: if h.uses_stuck_template() { "detector".into() } else { "aim".into() },
                dedupe_key: Some(h.dedupe_key(run)),
                ..Default::default()
            });
        }
        for (run, notes, last) in self.read_new_logs(&changes.new_logs, quiet)? {
            step.notifications.extend(notes);
            step.log_steps.push((run, last));
        }
        let stored = self.store.save_watch_step(&step, now)?;
        for (run, h) in &changes.happenings {
            if matches!(h, Happening::Failed { .. }) {
                self.failures.remove(run);
            }
        }
        for n in &stored {
            (self.sink)(n);
        }
        Ok(stored)
    }

    /// Reads the new log records of these runs: (run, notifications, last step read).
    /// With `quiet`, only remembers how far the logs go (a repository's history is not news).
    fn read_new_logs(&self, runs: &[String], quiet: bool) -> Result<Vec<(String, Vec<NewNotification>, i64)>, WatcherError> {
        let mut out = Vec::new();
        let mut done = HashSet::new();
        for run in runs.iter().filter(|r| done.insert(r.as_str())) {
            let Some(track) = self.detector.track(run) else { continue };
            if quiet && matches!(track.state, RunState::Finished | RunState::Ended) {
                continue; // a finished run's history: no news, and not worth opening its chunk
            }
            let Some(repo) = self.repos.iter().find(|r| r.root().display().to_string() == track.repo) else { continue };
            let after = self.store.run(run)?.and_then(|r| r.log_step).map(|s| s as u64);
            let records = match logs::read_log_records(repo.aim_dir(), run, after) {
                Ok(records) => records,
                Err(LogError::NoChunk { .. }) => continue,
                Err(e) => {
                    // A chunk being written can be briefly unreadable: the next new_logs retries.
                    tracing::warn!("cannot read log records of run '{run}': {e}");
                    continue;
                }
            };
            let Some(last) = records.iter().map(|r| r.step).max() else { continue };
            let notes = if quiet { Vec::new() } else { log_records::notifications(run, &records, self.settings.log_level) };
            out.push((run.clone(), notes, last as i64));
        }
        Ok(out)
    }
}

/// A watcher that ends without dying (a clean stop, a start that failed later on) gives
/// the check-ins role up at once rather than at the end of its lease.
impl Drop for Watcher {
    fn drop(&mut self) {
        self.release_role();
    }
}

/// Adds the paths of a file-system event that may name a new file; true when the event
/// reports an error (an overflowed queue and the like), after which only a rescan is sure.
fn collect_paths(res: notify::Result<notify::Event>, paths: &mut Vec<PathBuf>) -> bool {
    match res {
        // inotify's queue overflowed: `notify` reports it as an event flagged `Rescan`.
        Ok(ev) if ev.need_rescan() => {
            tracing::warn!("file events were lost (the event queue overflowed); rescanning");
            true
        }
        Ok(ev) if !ev.kind.is_remove() && !ev.kind.is_access() => {
            paths.extend(ev.paths);
            false
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!("file watch error ({e}); rescanning");
            true
        }
    }
}

/// The named repositories plus those of the `watched_repos` setting (`entries`) that are
/// this daemon's and exist, sorted and without repeats; the others are skipped, with a
/// warning when `warn` (the setting changed). An entry `HOST:/path` is for the daemon on
/// HOST; a plain path is for the one daemon of a store of its own, and skipped on a
/// `shared` store, where it does not say which daemon should watch it (two watching one
/// repository would judge its runs twice).
fn with_setting_repos(named: &[AimRepo], entries: &[String], shared: bool, host: &str, warn: bool) -> Vec<AimRepo> {
    let mut repos = named.to_vec();
    for entry in entries {
        let (for_host, path) = settings::split_watched_repo(entry);
        match for_host {
            Some(h) if h != host => continue,
            None if shared => {
                if warn {
                    tracing::warn!(
                        "not watching '{path}' from the settings: on a shared store, name the host that watches it ('{host}:{path}')"
                    );
                }
                continue;
            }
            _ => {}
        }
        match AimRepo::open(std::path::Path::new(path)) {
            Ok(r) => repos.push(r),
            Err(e) if warn => tracing::warn!("not watching '{path}' from the settings: {e}"),
            Err(_) => {}
        }
    }
    repos.sort();
    repos.dedup();
    repos
}

/// What a notification about a run that checks in over HTTP says, and the run's cause.
struct HttpRunText {
    title: String,
    body: String,
    cause: Option<String>,
}

/// Title and body of a notification about a run that checks in over HTTP: its host and
/// labels instead of a repository; a failure's exit code and last words.
fn http_run_text(store: &Store, run: &str, h: &Happening, failure: Option<&Failure>) -> Result<HttpRunText, StoreError> {
    let stored = store.run(run)?;
    let mut cause = None;
    let mut body = Vec::new();
    if let Some(host) = stored.as_ref().and_then(|r| r.host.as_deref()) {
        body.push(format!("Host: {host}"));
    }
    if let Some(r) = stored.as_ref().filter(|r| !r.labels.is_empty()) {
        body.push(format!("Labels: {}", r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")));
    }
    // Runs reported over HTTP are named by their clients (`exec --name`).
    let mut title = h.title(stored.as_ref().and_then(|r| r.name.as_deref()).unwrap_or(run));
    if let Some(f) = failure {
        let shown = stored.as_ref().and_then(|r| r.name.as_deref()).unwrap_or(run);
        if let Some(code) = f.exit_code {
            title = format!("Run '{shown}' failed with exit code {code}.");
        }
        cause = f.cause.clone().or_else(|| f.exit_code.map(|code| format!("exit code {code}")));
        if let Some(t) = f.title.as_deref().filter(|t| !t.trim().is_empty()) {
            title = t.to_string();
        }
        if let Some(m) = f.message.as_deref().filter(|m| !m.trim().is_empty()) {
            body.push(String::new());
            body.push(m.trim_end().to_string());
        }
    }
    Ok(HttpRunText { title, body: body.join("\n"), cause })
}

/// How a run reported over HTTP failed, until its notification is made.
#[derive(Debug, Clone)]
struct Failure {
    exit_code: Option<i64>,
    message: Option<String>,
    cause: Option<String>,
    title: Option<String>,
}

fn checkin_row(flag: Flag, s: &Seen) -> CheckinRow<'static> {
    CheckinRow { flag: flag.as_str(), idx: s.idx as i64, expect_next_in: s.expect_next_in as i64, first_seen: s.first_seen }
}

/// Rebuilds the detector's memory from the store: the Aim runs of this daemon's host (on a
/// store of its own, every one), and the runs that check in over HTTP when `http` (this
/// daemon takes their check-ins).
fn load_detector(store: &Store, grace: Millis, host: &str, http: bool) -> Result<Detector, StoreError> {
    // Runs with a repository are Aim's; runs without one are tracked when they checked in
    // over HTTP (runs only named by events are not the detector's).
    let mut states: HashMap<String, RunState> = HashMap::new();
    let mut tracks: HashMap<String, Track> = HashMap::new();
    let shared = store.is_postgres();
    for r in store.runs()? {
        match r.repo {
            // Another host's run is its daemon's to judge, never this one's.
            Some(repo) if !shared || r.host.as_deref().is_none_or(|h| h == host) => {
                tracks.insert(r.id, Track { repo, files: BTreeMap::new(), state: r.state });
            }
            None if http => {
                states.insert(r.id, r.state);
            }
            Some(_) | None => {}
        }
    }
    for c in store.stored_checkins()? {
        if let Some(state) = states.remove(&c.run_id) {
            tracks.insert(c.run_id.clone(), Track { repo: HTTP_REPO.to_string(), files: BTreeMap::new(), state });
        }
        let (Some(track), Ok(flag)) = (tracks.get_mut(&c.run_id), c.flag.parse::<Flag>()) else { continue };
        track.files.insert(flag, Seen { idx: c.idx as u64, expect_next_in: c.expect_next_in as u64, first_seen: c.first_seen });
    }
    let mut detector = Detector::new(grace);
    for (run, track) in tracks {
        detector.restore(run, track);
    }
    Ok(detector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_events_notice_asks_for_a_rescan() {
        let mut paths = Vec::new();
        let overflow = notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(collect_paths(Ok(overflow), &mut paths));
        let created = notify::Event::new(notify::EventKind::Create(notify::event::CreateKind::File)).add_path("a".into());
        assert!(!collect_paths(Ok(created), &mut paths));
        assert_eq!(paths, [PathBuf::from("a")]);
    }

    /// A check-in whose file event was lost (the queue overflowed) is found by the rescan
    /// the overflow notice triggers, not left for the periodic one minutes later.
    #[test]
    fn an_overflow_notice_rescans_at_once() {
        use runwatch_core::clock::FakeClock;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(root.join(".aim/check_ins")).unwrap();
        let repo = AimRepo::open(&root).unwrap();
        let store = Store::open(&runwatch_core::DataDir::at(tmp.path().join("data"))).unwrap();
        let clock = FakeClock::at(1_700_000_000_000);
        let mut w = Watcher::new(store, vec![repo.clone()], std::sync::Arc::new(clock)).unwrap();
        w.scan().unwrap(); // the repository is known: what appears from now on is news
        let (mut fs, mut watched) = (notify::recommended_watcher(|_| {}).unwrap(), HashSet::new());
        let run = "0123456789abcdef01234567";
        std::fs::write(repo.check_ins_dir().join(format!("{run}-0000000000000001-starting-1700000000.00-00000")), "").unwrap();

        // An unrelated event: the new file stays unseen (its own event was lost).
        let other = notify::Event::new(notify::EventKind::Create(notify::event::CreateKind::File)).add_path(root.join("elsewhere"));
        w.on_fs_events(vec![Ok(other)], &mut fs, &mut watched);
        assert!(w.store().run(run).unwrap().is_none());

        let overflow = notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan);
        w.on_fs_events(vec![Ok(overflow)], &mut fs, &mut watched);
        assert_eq!(w.store().run(run).unwrap().map(|r| r.state), Some(RunState::Running));
    }
}
