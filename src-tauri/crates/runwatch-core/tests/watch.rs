//! What the watcher stores (`runwatch_core::watch`) on a real store: a SQLite file, and a
//! PostgreSQL database.

mod common;

use common::{store, Backend};
use runwatch_core::check_ins::CheckInReport;
use runwatch_core::runs::CheckinRow;
use runwatch_core::watch::{Detected, WatchStep};
use runwatch_core::{Level, NewNotification, RunState};

fn step() -> WatchStep {
    let checkins = vec![
        CheckinRow { flag: "starting", idx: 1, expect_next_in: 0, first_seen: 1_000 },
        CheckinRow { flag: "check_in", idx: 2, expect_next_in: 5, first_seen: 1_000 },
    ];
    let stuck = NewNotification {
        level: Some(Level::Error),
        title: "Run 'r1' is stuck".into(),
        run_id: Some("r1".into()),
        source: "detector".into(),
        dedupe_key: Some("stuck:r1:2".into()),
        ..Default::default()
    };
    let log = NewNotification {
        level: Some(Level::Warning),
        title: "disk full".into(),
        run_id: Some("r2".into()),
        source: "aim-log".into(),
        dedupe_key: Some("log:r2:7".into()),
        ..Default::default()
    };
    WatchStep {
        runs: vec![Detected {
            id: "r1".into(),
            repo: "/data/repo".into(),
            host: Some("gpu-1".into()),
            state: RunState::Stuck,
            checkins,
            deadline: Some(106_000),
        }],
        notifications: vec![stuck, log],
        log_steps: vec![("r2".into(), 7)],
        causes: Vec::new(),
        taken_upto: None,
    }
}

/// A step saved twice (a crash after part of it on PostgreSQL, then the detector finding
/// the same again) stores each notification once, and the run state, its check-ins and the
/// log step as given.
fn a_step_saved_again_stores_nothing_twice(backend: Backend) {
    let (place, mut store) = store(backend);
    let first = store.save_watch_step(&step(), 5_000).unwrap();
    assert_eq!(first.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(), ["Run 'r1' is stuck", "disk full"]);
    assert!(store.save_watch_step(&step(), 6_000).unwrap().is_empty());
    assert_eq!(place.count("SELECT COUNT(*) FROM notifications"), 2);
    let r1 = store.run("r1").unwrap().unwrap();
    assert_eq!((r1.repo.as_deref(), r1.host.as_deref(), r1.state), (Some("/data/repo"), Some("gpu-1"), RunState::Stuck));
    assert_eq!((r1.checkin_idx, r1.checkin_flag.as_deref(), r1.deadline), (Some(2), Some("check_in"), Some(106_000)));
    assert_eq!(store.run("r2").unwrap().unwrap().log_step, Some(7), "the run of a log record is created");
    let mut stored = store.stored_checkins().unwrap();
    stored.sort_by_key(|c| c.idx);
    assert_eq!(stored.iter().map(|c| (c.flag.as_str(), c.idx)).collect::<Vec<_>>(), [("starting", 1), ("check_in", 2)]);

    // A run without a host of its own keeps the one it reported.
    let mut http = step();
    http.runs[0].repo = String::new();
    http.runs[0].host = None;
    store.save_watch_step(&http, 7_000).unwrap();
    let r1 = store.run("r1").unwrap().unwrap();
    assert_eq!((r1.repo, r1.host.as_deref()), (None, Some("gpu-1")));

    store.shift_run_times(&["r1".to_string()], 500).unwrap();
    assert_eq!(store.run("r1").unwrap().unwrap().deadline, Some(106_500));
    assert!(store.stored_checkins().unwrap().iter().all(|c| c.first_seen == 1_500));
}

/// A step whose run states cannot be saved (here a check-in flag the store refuses; in
/// life a crash or a lost server) loses nothing: saved again, as the detector does after
/// rebuilding its memory, its notifications are there once and its run states are saved.
fn a_step_that_fails_halfway_is_saved_whole_by_the_next_try(backend: Backend) {
    let (place, mut store) = store(backend);
    let mut broken = step();
    broken.runs[0].checkins.push(CheckinRow { flag: "exploded", idx: 3, expect_next_in: 0, first_seen: 1_000 });
    assert!(store.save_watch_step(&broken, 5_000).is_err());
    assert!(store.run("r1").unwrap().is_none_or(|r| r.state == RunState::Running), "no state saved");
    store.save_watch_step(&step(), 6_000).unwrap();
    assert_eq!(place.count("SELECT COUNT(*) FROM notifications"), 2);
    assert_eq!(store.run("r1").unwrap().unwrap().state, RunState::Stuck);
    assert_eq!(store.run("r2").unwrap().unwrap().log_step, Some(7));
}

/// The HTTP check-in queue: waiting in arrival order with what a failure said, taken with
/// the step that took them in; a failure's cause is kept on its run.
fn check_ins_wait_until_a_step_takes_them(backend: Backend) {
    let (_place, mut store) = store(backend);
    let alive = CheckInReport { run_id: "job".into(), expect_next_in: Some(60), ..Default::default() };
    let failed = CheckInReport {
        run_id: "job".into(),
        failed: true,
        exit_code: Some(137),
        cause: Some("killed by the OOM killer".into()),
        title: Some("OOM".into()),
        ..Default::default()
    };
    store.record_check_in(&alive, 1_000).unwrap();
    store.record_check_in(&failed, 2_000).unwrap();
    let waiting = store.waiting_check_ins(10).unwrap();
    assert_eq!(waiting.len(), 2);
    assert_eq!(
        (waiting[1].exit_code, waiting[1].cause.as_deref(), waiting[1].title.as_deref()),
        (Some(137), Some("killed by the OOM killer"), Some("OOM"))
    );
    assert_eq!(store.waiting_check_ins(1).unwrap()[0].seq, waiting[0].seq, "oldest first");
    let taking = WatchStep {
        causes: vec![("job".into(), "killed by the OOM killer".into())],
        taken_upto: Some(waiting[0].seq),
        ..Default::default()
    };
    store.save_watch_step(&taking, 3_000).unwrap();
    assert_eq!(store.waiting_check_ins(10).unwrap().iter().map(|q| q.seq).collect::<Vec<_>>(), [waiting[1].seq]);
    assert_eq!(store.run("job").unwrap().unwrap().cause.as_deref(), Some("killed by the OOM killer"));
}

on_both!(
    a_step_saved_again_stores_nothing_twice,
    a_step_that_fails_halfway_is_saved_whole_by_the_next_try,
    check_ins_wait_until_a_step_takes_them
);
