//! Every end state of the spec's "Observed end states", built from fixture file names in a
//! real directory and a real store, under a fake clock: the exact notifications and when.
//! Each runs on both backends: a SQLite file and a PostgreSQL database of this process's
//! throwaway cluster.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_aim::repo::AimRepo;
use runwatch_core::clock::{FakeClock, Millis};
use runwatch_core::inbox::{AckState, ListFilter};
use runwatch_core::noise::SnoozeUntil;
use runwatch_core::pg::fixture::Cluster;
use runwatch_core::{DataDir, Level, Location, RunState, Store};
use runwatch_watcher::Watcher;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body (a function taking a [`Backend`]) once per backend, as two tests.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name(super::Backend::Postgres)
            }
        }
    )*};
}

on_both!(
    healthy_run_starts_and_finishes_and_nothing_else,
    crash_is_reported_once_at_the_missed_check_in,
    python_exception_ends_the_run_without_stuck_alarms,
    run_that_dies_before_any_report_progress_is_caught_by_its_heartbeat,
    a_restart_in_the_middle_of_a_deadline_keeps_the_deadline_and_reports_once,
    grace_is_a_setting,
    malformed_and_vanishing_files_are_survived,
    the_first_scan_of_a_repository_with_history_is_quiet_but_watches_live_runs,
    wall_clock_steps_forward_and_back_raise_no_false_alarms,
    hang_is_stuck_then_crashed_when_the_heartbeat_stops_and_recovers_on_a_check_in,
);

/// A new store on `backend`, kept in `tmp` when it is a file.
fn location(backend: Backend, tmp: &std::path::Path) -> Location {
    match backend {
        Backend::Sqlite => Location::DataDir(DataDir::at(tmp.join("data"))),
        Backend::Postgres => Location::Postgres(Cluster::shared().database().unwrap()),
    }
}

const T0: Millis = 1_800_000_000_000;
const RUN: &str = "be0ebd0ce55b452d85f692cf";

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: AimRepo,
    data: Location,
    clock: FakeClock,
    watcher: Option<Watcher>,
}

impl Fixture {
    /// An empty repository that the watcher has already seen once (so new runs are news).
    fn new(backend: Backend) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("repo/.aim/check_ins")).unwrap();
        let repo = AimRepo::open(&tmp.path().join("repo")).unwrap();
        let data = location(backend, tmp.path());
        let mut f = Fixture { _tmp: tmp, repo, data, clock: FakeClock::at(T0), watcher: None };
        f.restart();
        f
    }

    /// Drops the watcher and starts a new one on the same store, as after a restart.
    fn restart(&mut self) {
        self.watcher = None;
        let store = Store::open_at(&self.data).unwrap();
        let mut w = Watcher::new(store, vec![self.repo.clone()], Arc::new(self.clock.clone())).unwrap();
        w.scan().unwrap();
        self.watcher = Some(w);
    }

    fn w(&mut self) -> &mut Watcher {
        self.watcher.as_mut().unwrap()
    }

    fn at(&mut self, secs: f64) -> &mut Self {
        self.clock.set(T0 + (secs * 1000.0).round() as Millis);
        self
    }

    /// Writes a check-in file as Aim does: the new file, then older files of the same run
    /// and flag deleted.
    fn check_in(&mut self, run: &str, idx: u64, flag: Flag, expect_next_in: u64) -> PathBuf {
        let dir = self.repo.check_ins_dir();
        let c = CheckIn { run_hash: run.into(), idx, flag, utc_time: 1_795_268_411.34 + idx as f64, expect_next_in };
        let path = dir.join(c.file_name());
        std::fs::write(&path, b"").unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Ok(old) = CheckIn::parse(&name) {
                if old.run_hash == run && old.flag == flag && old.idx < idx {
                    std::fs::remove_file(dir.join(name)).unwrap();
                }
            }
        }
        path
    }

    /// Rescans and ticks at the current time, as the loop does.
    fn poll(&mut self) {
        self.w().scan().unwrap();
        self.w().tick().unwrap();
    }

    /// Every notification so far, oldest first: (seconds since T0, level, title).
    fn notes(&mut self) -> Vec<(f64, Level, String)> {
        let page =
            self.w().store().list_notifications(&ListFilter { state: AckState::All, limit: Some(1000), ..Default::default() }).unwrap();
        let mut v: Vec<_> = page.items.into_iter().map(|n| ((n.created_at - T0) as f64 / 1000.0, n.level, n.title)).collect();
        v.reverse();
        v
    }

    /// The ids listed in one view of the inbox.
    fn listed(&mut self, state: AckState) -> Vec<String> {
        let filter = ListFilter { state, limit: Some(1000), ..Default::default() };
        self.w().store().list_notifications(&filter).unwrap().items.into_iter().map(|n| n.id).collect()
    }

    fn state(&mut self, run: &str) -> RunState {
        self.w().store().run(run).unwrap().expect("run stored").state
    }
}

fn started() -> (Level, String) {
    (Level::Info, format!("Run '{RUN}' started."))
}

fn healthy_run_starts_and_finishes_and_nothing_else(backend: Backend) {
    let mut f = Fixture::new(backend);
    f.at(0.0).check_in(RUN, 1, Flag::Starting, 0);
    f.check_in(RUN, 2, Flag::Progress, 30);
    f.poll();
    f.at(3.0).check_in(RUN, 3, Flag::CheckIn, 5);
    f.check_in(RUN, 4, Flag::NewLogs, 0);
    f.poll();
    f.at(6.0).check_in(RUN, 5, Flag::Finished, 0);
    f.check_in(RUN, 6, Flag::Progress, 1);
    f.poll();
    f.at(10_000.0).poll();
    assert_eq!(f.notes(), [(0.0, started().0, started().1), (6.0, Level::Info, format!("Run '{RUN}' finished without error."))]);
    assert_eq!(f.state(RUN), RunState::Finished);
    assert_eq!(f.w().next_deadline(), None);
}

fn crash_is_reported_once_at_the_missed_check_in(backend: Backend) {
    // os._exit: starting, progress …-00030, check_in …-00005 — no final beat.
    let mut f = Fixture::new(backend);
    f.at(0.0).check_in(RUN, 1, Flag::Starting, 0);
    f.check_in(RUN, 2, Flag::Progress, 30);
    f.check_in(RUN, 3, Flag::CheckIn, 5);
    f.poll();
    assert_eq!(f.w().next_deadline(), Some(T0 + 105_000), "promise 5 s + grace 100 s");
    f.at(104.999).poll();
    assert_eq!(f.notes().len(), 1, "only 'started' before the deadline");
    f.at(105.0).poll();
    f.at(500.0).poll();
    f.at(10_000.0).poll();
    assert_eq!(
        f.notes(),
        [
            (0.0, started().0, started().1),
            (105.0, Level::Error, format!("Run '{RUN}' crashed (no heartbeat for 105 s, no check-in for 105 s)."))
        ]
    );
    assert_eq!(f.state(RUN), RunState::Crashed);
}

fn python_exception_ends_the_run_without_stuck_alarms(backend: Backend) {
    // Like a crash, but the progress file becomes …-00001 and there is no `finished`.
    let mut f = Fixture::new(backend);
    f.at(0.0).check_in(RUN, 1, Flag::Starting, 0);
    f.check_in(RUN, 2, Flag::Progress, 30);
    f.check_in(RUN, 3, Flag::CheckIn, 5);
    f.poll();
    f.at(2.0).check_in(RUN, 4, Flag::Progress, 1);
    f.poll();
    f.at(10_000.0).poll();
    assert_eq!(
        f.notes(),
        [(0.0, started().0, started().1), (2.0, Level::Warning, format!("Run '{RUN}' ended without reporting success."))]
    );
    assert_eq!(f.state(RUN), RunState::Ended);
}

fn hang_is_stuck_then_crashed_when_the_heartbeat_stops_and_recovers_on_a_check_in(backend: Backend) {
    // The main thread hangs: check_in stops while the heartbeat keeps replacing `progress`.
    let mut f = Fixture::new(backend);
    f.at(0.0).check_in(RUN, 1, Flag::Starting, 0);
    f.check_in(RUN, 2, Flag::Progress, 30);
    f.check_in(RUN, 3, Flag::CheckIn, 5);
    f.poll();
    let mut idx = 3;
    for beat in [30.0, 60.0, 90.0] {
        idx += 1;
        f.at(beat).check_in(RUN, idx, Flag::Progress, 30);
        f.poll();
    }
    f.at(104.9).poll();
    assert_eq!(f.notes().len(), 1);
    f.at(105.0).poll();
    assert_eq!(f.state(RUN), RunState::Stuck);
    // Snoozed until the run's state changes: back when it crashes.
    let stuck = f.listed(AckState::Pending)[0].clone();
    Store::open_at(&f.data).unwrap().snooze(std::slice::from_ref(&stuck), SnoozeUntil::RunChange, T0 + 106_000).unwrap();
    assert_eq!(f.listed(AckState::Snoozed), std::slice::from_ref(&stuck));
    for beat in [120.0, 150.0] {
        idx += 1;
        f.at(beat).check_in(RUN, idx, Flag::Progress, 30);
        f.poll();
    }
    // The heartbeat stops after 150 s: promised 30 s + 10 s slack.
    assert_eq!(f.w().next_deadline(), Some(T0 + 190_000));
    f.at(189.9).poll();
    assert_eq!(f.state(RUN), RunState::Stuck);
    f.at(190.0).poll();
    assert_eq!(f.state(RUN), RunState::Crashed);
    assert!(f.listed(AckState::Snoozed).is_empty(), "the state changed: the snooze is over");
    // Check-ins resume (say the file system was only slow): recovered.
    idx += 1;
    f.at(200.0).check_in(RUN, idx, Flag::CheckIn, 5);
    f.poll();
    assert_eq!(f.state(RUN), RunState::Running);
    assert_eq!(
        f.notes(),
        [
            (0.0, started().0, started().1),
            (105.0, Level::Error, format!("Run '{RUN}' is stuck (no check-in for 105 s).")),
            (190.0, Level::Error, format!("Run '{RUN}' crashed (no heartbeat for 40 s, no check-in for 190 s).")),
            (200.0, Level::Info, format!("Run '{RUN}' recovered: check-ins resumed.")),
        ]
    ); // Recovered: both alarms are resolved, no longer pending.
    assert_eq!(f.listed(AckState::Resolved).len(), 2);
    let summary = f.w().store().unread_summary_at(T0 + 200_000).unwrap();
    assert_eq!((summary.error, summary.info), (0, 2));
}

fn run_that_dies_before_any_report_progress_is_caught_by_its_heartbeat(backend: Backend) {
    // Aim's own watcher ignores `progress` and never reports this run.
    let mut f = Fixture::new(backend);
    f.at(0.0).check_in(RUN, 1, Flag::Starting, 0);
    f.check_in(RUN, 2, Flag::Progress, 30);
    f.poll();
    f.at(129.999).poll();
    assert_eq!(f.notes().len(), 1);
    f.at(130.0).poll();
    assert_eq!(
        f.notes(),
        [(0.0, started().0, started().1), (130.0, Level::Error, format!("Run '{RUN}' crashed (no heartbeat for 130 s)."))]
    );
}

fn a_restart_in_the_middle_of_a_deadline_keeps_the_deadline_and_reports_once(backend: Backend) {
    let mut f = Fixture::new(backend);
    f.at(0.0).check_in(RUN, 1, Flag::CheckIn, 5); // `runwatch check-in` style: no heartbeat
    f.poll();
    f.at(50.0).restart();
    assert_eq!(f.w().next_deadline(), Some(T0 + 105_000), "the clock did not restart");
    f.at(104.0).poll();
    assert!(f.notes().is_empty());
    f.at(105.0).poll();
    f.at(300.0).restart();
    f.poll();
    f.at(900.0).restart();
    f.poll();
    assert_eq!(f.notes(), [(105.0, Level::Error, format!("Run '{RUN}' is stuck (no check-in for 105 s)."))]);
}

fn grace_is_a_setting(backend: Backend) {
    let mut f = Fixture::new(backend);
    let patch = runwatch_core::SettingsPatch { grace_secs: Some(20), ..Default::default() };
    runwatch_core::settings::patch(&mut Store::open_at(&f.data).unwrap(), &patch).unwrap();
    f.restart();
    f.at(0.0).check_in(RUN, 1, Flag::CheckIn, 5);
    f.poll();
    assert_eq!(f.w().next_deadline(), Some(T0 + 25_000));
}

fn malformed_and_vanishing_files_are_survived(backend: Backend) {
    let mut f = Fixture::new(backend);
    let dir = f.repo.check_ins_dir();
    for junk in ["junk-notanumber-check_in-1.0-5", "garbage", ".partial-write", "x-1-exploded-1.0-5"] {
        std::fs::write(dir.join(junk), b"").unwrap();
    }
    std::fs::create_dir(dir.join("a-directory")).unwrap();
    f.at(0.0).check_in(RUN, 1, Flag::Starting, 0);
    let gone = f.check_in(RUN, 2, Flag::CheckIn, 5);
    f.poll();
    // A file that vanished before the watcher read it (an event for a missing file) …
    f.w().observe_paths(&[dir.join("feedfacefeedfacefeedface-0000000000000001-starting-1.0-00000")]).unwrap();
    // … and files removed after being seen change nothing.
    std::fs::remove_file(gone).unwrap();
    f.at(1.0).poll();
    assert_eq!(f.state(RUN), RunState::Running);
    assert_eq!(f.w().run_count(), 2);
    f.at(105.0).poll();
    let titles: Vec<_> = f.notes().into_iter().map(|n| n.2).collect();
    assert_eq!(
        titles,
        [
            format!("Run '{RUN}' started."),
            "Run 'feedfacefeedfacefeedface' started.".to_string(),
            format!("Run '{RUN}' is stuck (no check-in for 105 s)."),
        ]
    );
}

fn the_first_scan_of_a_repository_with_history_is_quiet_but_watches_live_runs(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let check_ins = tmp.path().join(".aim/check_ins");
    std::fs::create_dir_all(&check_ins).unwrap();
    for (run, idx, flag, expect) in [
        ("aaaaaaaaaaaaaaaaaaaaaaaa", 1, Flag::Starting, 0),
        ("aaaaaaaaaaaaaaaaaaaaaaaa", 5, Flag::Finished, 0),
        ("aaaaaaaaaaaaaaaaaaaaaaaa", 6, Flag::Progress, 1),
        ("bbbbbbbbbbbbbbbbbbbbbbbb", 1, Flag::Starting, 0),
        ("bbbbbbbbbbbbbbbbbbbbbbbb", 2, Flag::CheckIn, 5),
    ] {
        let c = CheckIn { run_hash: run.into(), idx, flag, utc_time: 1.0, expect_next_in: expect };
        std::fs::write(check_ins.join(c.file_name()), b"").unwrap();
    }
    let clock = FakeClock::at(T0);
    let store = Store::open_at(&location(backend, tmp.path())).unwrap();
    let mut w = Watcher::new(store, vec![AimRepo::open(tmp.path()).unwrap()], Arc::new(clock.clone())).unwrap();
    assert!(w.scan().unwrap().is_empty(), "history is not news");
    clock.advance(Duration::from_secs(105));
    let stuck = w.tick().unwrap();
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].title, "Run 'bbbbbbbbbbbbbbbbbbbbbbbb' is stuck (no check-in for 105 s).");
    assert_eq!(w.store().run("aaaaaaaaaaaaaaaaaaaaaaaa").unwrap().unwrap().state, RunState::Finished);
}

fn wall_clock_steps_forward_and_back_raise_no_false_alarms(backend: Backend) {
    let mut f = Fixture::new(backend);
    f.at(0.0).check_in(RUN, 1, Flag::CheckIn, 5);
    f.poll();
    // An hour forward (NTP, a resumed VM): no time passed, so nothing is overdue.
    f.at(50.0);
    f.clock.jump(3_600_000);
    f.poll();
    assert!(f.notes().is_empty(), "a false stuck alarm: {:?}", f.notes());
    // 54.9 more seconds really pass: still within the promise + grace.
    f.clock.advance(Duration::from_millis(54_900));
    f.poll();
    assert!(f.notes().is_empty());
    f.clock.advance(Duration::from_millis(100));
    f.poll();
    assert_eq!(f.notes().len(), 1, "stuck once 105 s really passed");

    // Backwards: the alarm is not postponed either.
    let mut g = Fixture::new(backend);
    g.at(0.0).check_in(RUN, 1, Flag::CheckIn, 5);
    g.poll();
    g.at(50.0);
    g.clock.jump(-3_600_000);
    g.poll();
    g.clock.advance(Duration::from_millis(55_000));
    g.poll();
    let notes = g.notes();
    assert_eq!(notes.len(), 1, "stuck after 105 s of real time despite the clock going back");
    g.restart();
    g.poll();
    assert_eq!(g.notes().len(), 1);
}
