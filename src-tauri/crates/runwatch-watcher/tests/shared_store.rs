//! Several watchers on one store, as several daemons on a team store (PostgreSQL): each
//! judges only its own host's Aim runs, and the HTTP check-ins are taken by the one holding
//! the check-ins role, which moves to another when its holder dies. And the check-ins over
//! HTTP through the watcher on both backends. Real stores, real directories, a fake clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_aim::repo::AimRepo;
use runwatch_core::check_ins::CheckInReport;
use runwatch_core::clock::{FakeClock, Millis};
use runwatch_core::inbox::{AckState, ListFilter};
use runwatch_core::pg::fixture::Cluster;
use runwatch_core::roles::{role_lease, Role};
use runwatch_core::{DataDir, Level, Location, RunState, Store};
use runwatch_watcher::Watcher;

const T0: Millis = 1_800_000_000_000;

/// An Aim repository under `dir` with one run checking in (promise 5 s), as Aim writes it.
fn repo_with_run(dir: &std::path::Path, run: &str) -> AimRepo {
    let check_ins = dir.join(".aim/check_ins");
    std::fs::create_dir_all(&check_ins).unwrap();
    let repo = AimRepo::open(dir).unwrap();
    for (idx, flag, expect) in [(1, Flag::Starting, 0), (2, Flag::CheckIn, 5)] {
        let c = CheckIn { run_hash: run.into(), idx, flag, utc_time: 1.0 + idx as f64, expect_next_in: expect };
        std::fs::write(check_ins.join(c.file_name()), b"").unwrap();
    }
    repo
}

fn titles(store: &Store) -> Vec<String> {
    let page = store.list_notifications(&ListFilter { state: AckState::All, limit: Some(1000), ..Default::default() }).unwrap();
    let mut t: Vec<String> = page.items.into_iter().map(|n| n.title).collect();
    t.sort();
    t
}

#[test]
fn each_daemon_judges_only_its_own_hosts_aim_runs() {
    let url = Cluster::shared().database().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (run_a, run_b) = ("aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb");
    let clock = FakeClock::at(T0);
    let start = |host: &str, repo: AimRepo| {
        let store = Store::connect(&url).unwrap();
        Watcher::on_host(store, vec![repo], Arc::new(clock.clone()), host.into()).unwrap()
    };
    let mut a = start("gpu-a", repo_with_run(&tmp.path().join("a"), run_a));
    let mut b = start("gpu-b", repo_with_run(&tmp.path().join("b"), run_b));
    // Both repositories are new to the store: their history is not news, but live runs are watched.
    assert!(a.scan().unwrap().is_empty());
    assert!(b.scan().unwrap().is_empty());
    assert_eq!((a.run_count(), b.run_count()), (1, 1), "each tracks its own run only");
    let store = Store::connect(&url).unwrap();
    assert_eq!(store.run(run_a).unwrap().unwrap().host.as_deref(), Some("gpu-a"));
    assert_eq!(store.run(run_b).unwrap().unwrap().host.as_deref(), Some("gpu-b"));

    // A daemon restarting on gpu-b restores gpu-b's run, not gpu-a's.
    drop(b);
    let mut b = start("gpu-b", AimRepo::open(&tmp.path().join("b")).unwrap());
    assert_eq!(b.run_count(), 1);

    clock.advance(std::time::Duration::from_secs(105));
    let by_a = a.tick().unwrap();
    let by_b = b.tick().unwrap();
    assert_eq!(by_a.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(), [format!("Run '{run_a}' is stuck (no check-in for 105 s).")]);
    assert_eq!(by_b.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(), [format!("Run '{run_b}' is stuck (no check-in for 105 s).")]);
    // Ticking again, by either, changes nothing: each stuck run is reported once.
    assert!(a.tick().unwrap().is_empty() && b.tick().unwrap().is_empty());
    assert_eq!(titles(&store).len(), 2, "{:?}", titles(&store));
    assert_eq!(store.run(run_a).unwrap().unwrap().state, RunState::Stuck);
}

/// `watched_repos` on a shared store: `HOST:/path` is watched by the daemon on HOST only; a
/// plain path names no daemon and is watched by none (two would judge its runs twice).
#[test]
fn watched_repos_name_the_host_whose_daemon_watches_them() {
    let url = Cluster::shared().database().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    for dir in [&one, &two] {
        std::fs::create_dir_all(dir.join(".aim/check_ins")).unwrap();
    }
    let patch = runwatch_core::SettingsPatch {
        watched_repos: Some(vec![format!("gpu-a:{}", one.display()), two.display().to_string()]),
        ..Default::default()
    };
    runwatch_core::settings::patch(&mut Store::connect(&url).unwrap(), &patch).unwrap();
    let clock: Arc<FakeClock> = Arc::new(FakeClock::at(T0));
    let watching = |host: &str| {
        let w = Watcher::on_host(Store::connect(&url).unwrap(), Vec::new(), clock.clone(), host.into()).unwrap();
        w.repos().iter().map(|r| r.root().to_path_buf()).collect::<Vec<_>>()
    };
    assert_eq!(watching("gpu-a"), [AimRepo::open(&one).unwrap().root().to_path_buf()]);
    assert!(watching("gpu-b").is_empty());
}

#[test]
fn http_check_ins_are_taken_by_the_role_holder_and_by_the_next_one_when_it_dies() {
    let url = Cluster::shared().database().unwrap();
    let clock = FakeClock::at(T0);
    let start = |host: &str| Watcher::on_host(Store::connect(&url).unwrap(), Vec::new(), Arc::new(clock.clone()), host.into()).unwrap();
    let mut a = start("gpu-a");
    let mut b = start("gpu-b");
    assert!(a.takes_check_ins() && !b.takes_check_ins(), "one daemon takes the check-ins");
    let holders = Store::connect(&url).unwrap().role_holders(T0).unwrap();
    assert_eq!(holders.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), [Role::CheckIns.as_str()]);

    // Accepted by any daemon's store, taken by the holder only.
    let mut api_b = Store::connect(&url).unwrap();
    let report = CheckInReport { run_id: "job-1".into(), expect_next_in: Some(5), host: Some("node-7".into()), ..Default::default() };
    assert!(api_b.record_check_in(&report, T0).unwrap());
    assert!(b.take_check_ins().unwrap().is_empty());
    assert_eq!(api_b.waiting_check_ins(10).unwrap().len(), 1, "left for the holder");
    let started = a.take_check_ins().unwrap();
    assert_eq!(started.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(), ["Run 'job-1' started."]);
    assert!(api_b.waiting_check_ins(10).unwrap().is_empty());

    // The holder dies (as by kill -9: no release). Until its lease ends the other does not
    // take over …
    std::mem::forget(a);
    clock.advance(std::time::Duration::from_millis(u64::try_from(role_lease() / 2).unwrap()));
    b.keep_role().unwrap();
    assert!(!b.takes_check_ins());
    // … then it does, and judges the run that fell silent meanwhile.
    clock.advance(std::time::Duration::from_millis(u64::try_from(role_lease()).unwrap()));
    b.keep_role().unwrap();
    assert!(b.takes_check_ins());
    clock.set(T0 + 105_000);
    let stuck = b.tick().unwrap();
    assert_eq!(stuck.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(), ["Run 'job-1' is stuck (no check-in for 105 s)."]);
    assert!(stuck[0].body.contains("Host: node-7"), "{:?}", stuck[0].body);
    assert_eq!(api_b.run("job-1").unwrap().unwrap().host.as_deref(), Some("node-7"), "an HTTP run keeps its own host");

    // A watcher that ends without dying gives the role up at once, and another daemon
    // takes it at its next wake, without waiting for the lease to run out.
    b.keep_role().unwrap(); // renewed
    let mut c = start("gpu-c");
    assert!(!c.takes_check_ins());
    drop(b);
    assert!(api_b.role_holders(T0 + 105_000).unwrap().is_empty());
    c.keep_role().unwrap();
    assert!(c.takes_check_ins());
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

fn location(backend: Backend, tmp: &std::path::Path) -> Location {
    match backend {
        Backend::Sqlite => Location::DataDir(DataDir::at(tmp)),
        Backend::Postgres => Location::Postgres(Cluster::shared().database().unwrap()),
    }
}

/// A failure reported over HTTP: its title, last words and cause reach the notification
/// and the run, on either backend; a resent check-in changes nothing.
fn a_failure_over_http_says_why(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let at = location(backend, tmp.path());
    let clock = FakeClock::at(T0);
    let mut w = Watcher::new(Store::open_at(&at).unwrap(), Vec::new(), Arc::new(clock.clone())).unwrap();
    assert!(w.takes_check_ins());
    let mut api = Store::open_at(&at).unwrap();
    let alive = CheckInReport {
        run_id: "train-7".into(),
        name: Some("resnet".into()),
        expect_next_in: Some(60),
        labels: BTreeMap::from([("sweep".into(), "lr".into())]),
        event_id: Some("e1".into()),
        ..Default::default()
    };
    assert!(api.record_check_in(&alive, T0).unwrap());
    assert!(!api.record_check_in(&alive, T0).unwrap(), "resent");
    let failed = CheckInReport {
        run_id: "train-7".into(),
        failed: true,
        exit_code: Some(3),
        message: Some("CUDA out of memory\n".into()),
        cause: Some("killed by the OOM killer".into()),
        title: Some("RuntimeError: CUDA out of memory".into()),
        ..Default::default()
    };
    assert!(api.record_check_in(&failed, T0 + 1_000).unwrap());
    clock.set(T0 + 2_000);
    let stored = w.take_check_ins().unwrap();
    let got: Vec<_> = stored.iter().map(|n| (n.level, n.title.as_str())).collect();
    assert_eq!(got, [(Level::Info, "Run 'resnet' started."), (Level::Error, "RuntimeError: CUDA out of memory")]);
    assert!(stored[1].body.contains("Labels: sweep=lr") && stored[1].body.ends_with("CUDA out of memory"), "{}", stored[1].body);
    let run = api.run("train-7").unwrap().unwrap();
    assert_eq!((run.state, run.cause.as_deref()), (RunState::Failed, Some("killed by the OOM killer")));
    assert!(w.take_check_ins().unwrap().is_empty() && api.waiting_check_ins(10).unwrap().is_empty());
    // A restart takes nothing twice.
    drop(w);
    let mut w = Watcher::new(Store::open_at(&at).unwrap(), Vec::new(), Arc::new(clock.clone())).unwrap();
    clock.set(T0 + 1_000_000);
    assert!(w.take_check_ins().unwrap().is_empty() && w.tick().unwrap().is_empty());
    assert_eq!(titles(&api).len(), 2);
}

mod a_failure_over_http_says_why {
    #[test]
    fn sqlite() {
        super::a_failure_over_http_says_why(super::Backend::Sqlite);
    }
    #[test]
    fn postgres() {
        super::a_failure_over_http_says_why(super::Backend::Postgres);
    }
}
