//! The parser, the tracker and the store on outputs recorded from real Slurm: `scontrol -o
//! show job` from the test cluster (slurm-wlm 22.05, no accounting), and `sacct -X -n -P`
//! in the format `--format` asks for (end states hard to cause on one node: PREEMPTED,
//! NODE_FAIL, and "CANCELLED by UID", which only accounting knows).

use std::time::Duration;

use runwatch_core::{DataDir, Level, RunState, Store};
use runwatch_slurm::job::{parse_sacct, parse_scontrol};
use runwatch_slurm::{known_jobs, record, track, Change, JobState, Tracker};

const EARLY: &str = include_str!("recorded/scontrol-early.txt");
const MID: &str = include_str!("recorded/scontrol-mid.txt");
const SACCT: &str = include_str!("recorded/sacct.txt");
/// A job past its 1-minute limit, and one whose node was set DOWN (`scontrol update`).
const LATE: &str = include_str!("recorded/scontrol-late.txt");

#[test]
fn scontrol_lines_become_jobs() {
    let jobs = parse_scontrol(MID);
    assert_eq!(jobs.len(), 14);
    let by_name = |n: &str| jobs.iter().find(|j| j.name == n).unwrap_or_else(|| panic!("no job {n}"));
    let bad = by_name("bad");
    assert_eq!((bad.state.clone(), bad.exit_code, bad.signal), (JobState::Failed, Some(3), None));
    assert_eq!(bad.node.as_deref(), Some("vm"));
    assert_eq!(bad.user, "root");
    assert_eq!(by_name("oom").state, JobState::OutOfMemory);
    assert_eq!(by_name("cancelme").state, JobState::Cancelled);
    assert_eq!(by_name("limit").limit, Some(60));
    // A name with a space stays whole.
    assert_eq!(by_name("with space").state, JobState::Completed);
    let tasks: Vec<_> = jobs.iter().filter(|j| j.name == "sweep").collect();
    assert_eq!(tasks.len(), 8);
    assert!(tasks.iter().all(|t| t.array_job_id.as_deref() == Some("6") && t.state == JobState::Failed));
    let mut ids: Vec<_> = tasks.iter().map(|t| t.array_task_id.clone().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["0", "1", "2", "3", "4", "5", "6", "7"]);
}

#[test]
fn a_timeout_and_a_node_failure_as_scontrol_prints_them() {
    let jobs = parse_scontrol(LATE);
    assert_eq!(jobs.len(), 2);
    assert_eq!((jobs[0].state.clone(), jobs[0].limit), (JobState::Timeout, Some(60)));
    assert!(jobs[0].elapsed.unwrap() >= 60);
    let timeout = track::say(&jobs[0], &Change::Ended).unwrap();
    assert_eq!((timeout.state, timeout.cause.as_deref()), (Some(RunState::Failed), Some("time limit")));
    assert!(timeout.title.contains("reached its time limit (1m)"), "{}", timeout.title);
    assert_eq!(jobs[1].state, JobState::NodeFail);
    let lost = track::say(&jobs[1], &Change::Ended).unwrap();
    assert_eq!((lost.state, lost.cause.as_deref()), (Some(RunState::Crashed), Some("node failure (vm)")));
}

#[test]
fn sacct_lines_become_jobs() {
    let jobs = parse_sacct(SACCT);
    assert_eq!(jobs.len(), 10);
    let by = |id: &str| jobs.iter().find(|j| j.job_id == id).unwrap();
    assert_eq!(by("103").state, JobState::Timeout);
    assert_eq!(by("103").limit, Some(3600));
    assert_eq!(by("105").state, JobState::Preempted);
    assert_eq!(by("105").node.as_deref(), Some("gpu04"));
    assert_eq!(by("106").state, JobState::NodeFail);
    assert_eq!(by("107").state, JobState::Cancelled);
    assert_eq!(by("107").cancelled_by.as_deref(), Some("root"));
    assert_eq!(by("118").array_job_id.as_deref(), Some("110"));
    assert_eq!(by("118").array_task_id.as_deref(), Some("7"));
    assert_eq!(by("110").array_task_id, None, "tasks not started yet are not one task");
    assert_eq!(by("111").limit, None);
}

#[test]
fn every_end_state_says_why() {
    let jobs = parse_sacct(SACCT);
    let said = |id: &str| track::say(jobs.iter().find(|j| j.job_id == id).unwrap(), &Change::Ended).unwrap();
    let cases = [
        ("101", Level::Info, RunState::Finished, "completed", "completed after 2m 5s"),
        ("102", Level::Error, RunState::Failed, "exit code 3", "failed with exit code 3"),
        ("103", Level::Error, RunState::Failed, "time limit", "reached its time limit (1h)"),
        ("104", Level::Error, RunState::Failed, "out of memory", "ran out of memory"),
        ("105", Level::Warning, RunState::Ended, "preempted", "was preempted"),
        ("106", Level::Error, RunState::Crashed, "node failure (gpu06)", "its node gpu06 failed"),
        ("107", Level::Warning, RunState::Ended, "cancelled by root", "was cancelled by root"),
    ];
    for (id, level, state, cause, title) in cases {
        let s = said(id);
        assert_eq!((s.level, s.state, s.cause.as_deref()), (level, Some(state), Some(cause)), "job {id}: {s:?}");
        assert!(s.title.contains(title), "job {id}: {}", s.title);
        assert!(s.body.contains("Elapsed: "), "{}", s.body);
    }
}

#[test]
fn the_tracker_says_each_change_once_and_warns_near_the_limit() {
    let mut t = Tracker::new(Duration::from_secs(600));
    // First poll: what already ended is history; the running one near its limit is warned.
    let first = t.update(parse_sacct(SACCT));
    assert!(first.iter().filter(|(_, c)| *c == Change::Ended).count() == 0, "{first:?}");
    let near: Vec<_> = first.iter().filter(|(_, c)| matches!(c, Change::NearLimit { .. })).collect();
    assert_eq!(near.len(), 1);
    assert_eq!(near[0].0.job_id, "118");
    assert_eq!(near[0].1, Change::NearLimit { left: 300 });
    // The same answer again: nothing new.
    assert!(t.update(parse_sacct(SACCT)).is_empty());

    // scontrol, early then later: the jobs that started and ended in between say so.
    let mut t = Tracker::new(Duration::from_secs(30));
    t.update(parse_scontrol(EARLY));
    let later = t.update(parse_scontrol(MID));
    let ended: Vec<_> = later.iter().filter(|(_, c)| *c == Change::Ended).map(|(j, _)| j.name.as_str()).collect();
    assert!(ended.contains(&"bad") && ended.contains(&"oom") && ended.contains(&"cancelme"), "{ended:?}");
    assert_eq!(ended.iter().filter(|n| **n == "sweep").count(), 8, "{ended:?}");
}

/// A SQLite store in a temporary data dir, and a fresh database of a throwaway PostgreSQL
/// cluster: the Slurm source stores the same on both.
fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&DataDir::at(tmp.path())).unwrap();
    let url = runwatch_core::pg::fixture::Cluster::shared().database().unwrap();
    vec![(sqlite, Some(tmp)), (Store::connect(&url).unwrap(), None)]
}

#[test]
fn changes_are_stored_as_runs_and_notifications_once() {
    for (mut store, _tmp) in stores() {
        changes_are_stored_once(&mut store);
    }
}

fn changes_are_stored_once(store: &mut Store) {
    let mut t = Tracker::new(Duration::from_secs(30));
    let first = t.update(parse_scontrol(EARLY));
    assert!(record(store, &first, 1).unwrap().iter().all(|n| n.level < Level::Error));
    // `runwatch exec` inside job 2 ("bad") reported its failure itself.
    store.set_run_end("slurm-2", RunState::Failed, Some("exit code 3"), 1).unwrap();
    let changes = t.update(parse_scontrol(MID));
    // Job 3 ("limit") still runs: seen running again after exec said it ended, it stays ended.
    store.set_run_end("slurm-3", RunState::Failed, Some("killed by SIGTERM"), 1).unwrap();
    record(store, &[(parse_scontrol(MID).into_iter().find(|j| j.job_id == "3").unwrap(), Change::Started { waited: None })], 2).unwrap();
    assert_eq!(store.run("slurm-3").unwrap().unwrap().state, RunState::Failed);
    let stored = record(store, &changes, 2).unwrap();
    // Recording the same changes again (a restart) stores nothing new.
    assert!(record(store, &changes, 3).unwrap().is_empty());

    assert!(!stored.iter().any(|n| n.run_id.as_deref() == Some("slurm-2")), "said once, by exec: {stored:#?}");
    assert!(stored.iter().any(|n| n.run_id.as_deref() == Some("slurm-4") && n.title.contains("ran out of memory")));
    let failed: Vec<_> = stored.iter().filter(|n| n.title.contains("'sweep'") && n.level == Level::Error).collect();
    assert_eq!(failed.len(), 8, "{stored:#?}");
    let runs = store.runs().unwrap();
    let sweep: Vec<_> = runs.iter().filter(|r| r.labels.get("slurm_array_job_id").map(String::as_str) == Some("6")).collect();
    assert_eq!(sweep.len(), 8);
    assert!(sweep
        .iter()
        .all(|r| r.state == RunState::Failed && r.cause.as_deref() == Some("exit code 1") && r.host.as_deref() == Some("vm")));
    let bad = runs.iter().find(|r| r.name.as_deref() == Some("bad")).unwrap();
    assert_eq!(bad.id, "slurm-2");
    assert_eq!(bad.labels.get("slurm_job_id").map(String::as_str), Some("2"));
    assert_eq!(bad.labels.get("slurm_job_name").map(String::as_str), Some("bad"));
    let oom = runs.iter().find(|r| r.name.as_deref() == Some("oom")).unwrap();
    assert_eq!((oom.state, oom.cause.as_deref()), (RunState::Failed, Some("out of memory")));
}

#[test]
fn a_daemon_taking_over_says_what_changed_meanwhile_and_nothing_twice() {
    for (mut store, _tmp) in stores() {
        let near = Duration::from_secs(30);
        // The first daemon's first poll: what already ended is history; job 3 runs.
        let mut first = Tracker::new(near);
        let seen = first.update(parse_scontrol(MID));
        assert!(record(&mut store, &seen, 1).unwrap().is_empty());
        assert_eq!(store.run("slurm-3").unwrap().unwrap().state, RunState::Running);

        // Another daemon starting from the store, with the same answer: nothing to say.
        let mut again = Tracker::resume(near, known_jobs(&store).unwrap());
        assert!(again.update(parse_scontrol(MID)).iter().all(|(_, c)| *c == Change::Seen || matches!(c, Change::NearLimit { .. })));

        // One taking over after nobody polled for a while: job 3 passed its limit, and job 15
        // (newer than any the store knew) lost its node meanwhile. Both are said.
        let mut next = Tracker::resume(near, known_jobs(&store).unwrap());
        let changes = next.update(parse_scontrol(LATE));
        let stored = record(&mut store, &changes, 2).unwrap();
        let titles: Vec<_> = stored.iter().map(|n| (n.run_id.clone().unwrap_or_default(), n.level)).collect();
        assert_eq!(titles, [("slurm-3".to_string(), Level::Error), ("slurm-15".to_string(), Level::Error)], "{stored:#?}");
        assert_eq!(store.run("slurm-15").unwrap().unwrap().state, RunState::Crashed);

        // And the next one to take over finds nothing new to say.
        let mut last = Tracker::resume(near, known_jobs(&store).unwrap());
        let changes = last.update(parse_scontrol(LATE));
        assert!(changes.is_empty(), "{changes:?}");
        assert!(record(&mut store, &changes, 3).unwrap().is_empty());

        // A store that knows no jobs: everything already over is history, as at a first start.
        let mut fresh = Tracker::resume(near, Vec::new());
        assert!(fresh.update(parse_scontrol(LATE)).iter().all(|(_, c)| *c == Change::Seen));
    }
}

#[test]
fn a_crash_between_the_notifications_and_the_runs_loses_and_repeats_nothing() {
    for (mut store, _tmp) in stores() {
        let near = Duration::from_secs(30);
        let mut first = Tracker::new(near);
        let seen = first.update(parse_scontrol(MID));
        record(&mut store, &seen, 1).unwrap();
        // A daemon stores the notifications of its poll (on PostgreSQL, the first of its two
        // writes) and dies before saving the runs.
        let changes = first.update(parse_scontrol(LATE));
        let mut said = 0;
        for (job, change) in &changes {
            let before = store.run(&job.run_id()).unwrap().map(|r| r.state);
            let report = runwatch_slurm::report(job, change, before).unwrap();
            if let Some(n) = report.notification {
                assert!(matches!(store.insert_notification(&n, 2).unwrap(), runwatch_core::Inserted::New(_)));
                said += 1;
            }
        }
        assert_eq!(said, 2);
        assert_eq!(store.run("slurm-3").unwrap().unwrap().state, RunState::Running, "the runs were not saved");

        // The daemon that polls next starts from the store: it saves the runs, and says
        // nothing a second time.
        let mut next = Tracker::resume(near, known_jobs(&store).unwrap());
        let changes = next.update(parse_scontrol(LATE));
        assert!(record(&mut store, &changes, 3).unwrap().is_empty());
        let run = store.run("slurm-3").unwrap().unwrap();
        assert_eq!((run.state, run.cause.as_deref()), (RunState::Failed, Some("time limit")));
        assert_eq!(store.run("slurm-15").unwrap().unwrap().state, RunState::Crashed);
        let page = store
            .list_notifications(&runwatch_core::inbox::ListFilter { state: runwatch_core::inbox::AckState::All, ..Default::default() })
            .unwrap();
        assert_eq!(page.items.iter().filter(|n| n.level == Level::Error).count(), 2, "{:#?}", page.items);
    }
}

#[test]
fn on_postgresql_runs_that_fail_to_save_are_saved_by_the_next_poll_with_nothing_said_twice() {
    let url = runwatch_core::pg::fixture::Cluster::shared().database().unwrap();
    let mut store = Store::connect(&url).unwrap();
    let near = Duration::from_secs(30);
    let mut first = Tracker::new(near);
    let seen = first.update(parse_scontrol(MID));
    record(&mut store, &seen, 1).unwrap();
    // The second of the two writes (the runs) fails: the notifications are stored.
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin.batch_execute("ALTER TABLE runs ADD CONSTRAINT not_now CHECK (state <> 'crashed') NOT VALID").unwrap();
    let changes = first.update(parse_scontrol(LATE));
    assert!(record(&mut store, &changes, 2).is_err());
    assert_eq!(store.run("slurm-3").unwrap().unwrap().state, RunState::Running, "no run was saved");
    let errors = |store: &Store| {
        let all = runwatch_core::inbox::ListFilter { state: runwatch_core::inbox::AckState::All, ..Default::default() };
        store.list_notifications(&all).unwrap().items.into_iter().filter(|n| n.level == Level::Error).count()
    };
    assert_eq!(errors(&store), 2);

    // Once it can, the next poll (from the store, as after any failure) saves them.
    admin.batch_execute("ALTER TABLE runs DROP CONSTRAINT not_now").unwrap();
    let mut next = Tracker::resume(near, known_jobs(&store).unwrap());
    let changes = next.update(parse_scontrol(LATE));
    assert!(record(&mut store, &changes, 3).unwrap().is_empty());
    assert_eq!(store.run("slurm-3").unwrap().unwrap().state, RunState::Failed);
    assert_eq!(store.run("slurm-15").unwrap().unwrap().state, RunState::Crashed);
    assert_eq!(errors(&store), 2);
}
