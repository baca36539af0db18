//! Watching on a PostgreSQL store with two daemons (`runwatch --store postgresql://… start
//! --repo …`, each with its own data dir, HTTP port and host): each watches its own host's
//! Aim repository and never judges the other's runs; HTTP check-ins sent to either reach the
//! one detector, held by one daemon at a time; killed with -9, its role moves to the other,
//! which then reports the HTTP runs that fall silent.

use std::path::Path;

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_core::pg::fixture::Cluster;
use runwatch_core::roles::{HOST_ENV, ROLE_LEASE_ENV};
use runwatch_core::{SettingsPatch, Store};
use runwatch_tests::{run_cli, runwatch, token_in, url_in, wait_until, Running};

/// Short, so the test waits little for a killed daemon's role.
const ROLE_LEASE_MS: &str = "2000";

struct Daemon {
    running: Running,
    base: String,
    token: String,
}

fn daemon(dir: &Path, store: &str, host: &str, repos: &[&Path]) -> Daemon {
    daemon_with_lease(dir, store, host, repos, ROLE_LEASE_MS)
}

fn daemon_with_lease(dir: &Path, store: &str, host: &str, repos: &[&Path], lease_ms: &str) -> Daemon {
    let mut cmd = runwatch(dir);
    cmd.args(["--store", store, "--notifications", "hidden"]).env(HOST_ENV, host).env(ROLE_LEASE_ENV, lease_ms);
    for repo in repos {
        cmd.arg("--repo").arg(repo);
    }
    let mut running = Running::spawn(cmd.args(["start", "--http", "127.0.0.1:0"]));
    let ui = url_in(&running.wait_for_line("with the UI's URL", |l| l.starts_with("Serving the UI at")));
    running.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    let token = token_in(&ui);
    let base = ui.split("/#").next().unwrap().trim_end_matches('/').to_string();
    Daemon { running, base, token }
}

/// A shared store with a grace of 1 s (so missed check-ins show within the test's patience).
fn shared_store() -> String {
    let url = Cluster::shared().database().unwrap();
    let patch = SettingsPatch { grace_secs: Some(1), ..Default::default() };
    runwatch_core::settings::patch(&mut Store::connect(&url).unwrap(), &patch).unwrap();
    url
}

/// Writes an Aim check-in file, as an atomic writer would (a temporary name, renamed).
fn check_in(repo: &Path, run: &str, idx: u64, flag: Flag, expect_next_in: u64) {
    let c = CheckIn { run_hash: run.into(), idx, flag, utc_time: 1_795_268_411.34, expect_next_in };
    let dir = repo.join(".aim/check_ins");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{}.tmp", c.file_name()));
    std::fs::write(&tmp, b"").unwrap();
    std::fs::rename(&tmp, dir.join(c.file_name())).unwrap();
}

/// The titles of the stored notifications about `run`.
fn titles(url: &str, run: &str) -> Vec<String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.query("SELECT title FROM notifications WHERE run_id = $1 ORDER BY seq", &[&run]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// A run's state and host as stored.
fn run_row(url: &str, run: &str) -> Option<(String, Option<String>)> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.query_opt("SELECT state, host FROM runs WHERE id = $1", &[&run]).unwrap().map(|r| (r.get(0), r.get(1)))
}

fn stuck_count(url: &str, run: &str) -> usize {
    titles(url, run).iter().filter(|t| t.contains("is stuck")).count()
}

#[test]
fn each_daemon_judges_only_the_aim_runs_of_its_own_host() {
    let url = shared_store();
    let tmp = tempfile::tempdir().unwrap();
    let (repo_a, repo_b) = (tmp.path().join("repo-a"), tmp.path().join("repo-b"));
    for repo in [&repo_a, &repo_b] {
        std::fs::create_dir_all(repo.join(".aim/check_ins")).unwrap();
    }
    let (run_a, run_b) = ("aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb");
    let (dir_a, dir_b) = (tmp.path().join("data-a"), tmp.path().join("data-b"));

    let a = daemon(&dir_a, &url, "gpu-a", &[&repo_a]);
    let b = daemon(&dir_b, &url, "gpu-b", &[&repo_b]);
    check_in(&repo_a, run_a, 1, Flag::Starting, 0);
    // Promised within 8 s: gpu-a's daemon stops before that, and gpu-b's must not call it
    // stuck, though it reads the store's runs when it takes the check-ins role over.
    check_in(&repo_a, run_a, 2, Flag::CheckIn, 8);
    wait_until("gpu-a's daemon to record its run", || {
        (run_row(&url, run_a) == Some(("running".into(), Some("gpu-a".into()))) && titles(&url, run_a).len() == 1).then_some(())
    });
    assert_eq!(titles(&url, run_a), [format!("Run '{run_a}' started.")]);
    a.running.signal_group("TERM");
    let (status, stdout, stderr) = a.running.finish();
    assert!(status.success(), "{stdout}\n{stderr}");

    // gpu-b's own run goes silent after gpu-a's did: by the time gpu-b reports it stuck,
    // it has been past gpu-a's run's deadline too, and has left that run alone.
    check_in(&repo_b, run_b, 1, Flag::Starting, 0);
    check_in(&repo_b, run_b, 2, Flag::CheckIn, 10);
    // The notification is stored first, the run's state right after (see Store::save_watch_step).
    wait_until("gpu-b's daemon to report its own run stuck", || {
        (stuck_count(&url, run_b) == 1 && run_row(&url, run_b) == Some(("stuck".into(), Some("gpu-b".into())))).then_some(())
    });
    assert_eq!(run_row(&url, run_a), Some(("running".into(), Some("gpu-a".into()))), "gpu-b judged gpu-a's run");
    assert_eq!(stuck_count(&url, run_a), 0, "{:?}", titles(&url, run_a));

    // gpu-a's daemon back: it reports its run stuck, once.
    let a = daemon(&dir_a, &url, "gpu-a", &[&repo_a]);
    wait_until("gpu-a's daemon to report its run stuck", || {
        (stuck_count(&url, run_a) == 1 && run_row(&url, run_a) == Some(("stuck".into(), Some("gpu-a".into())))).then_some(())
    });
    for d in [a, b] {
        d.running.signal_group("TERM");
        let (status, stdout, stderr) = d.running.finish();
        assert!(status.success(), "{stdout}\n{stderr}");
    }
    assert_eq!(stuck_count(&url, run_a), 1);
    assert_eq!(stuck_count(&url, run_b), 1);
    assert_eq!(titles(&url, run_b).len(), 2, "started, stuck: {:?}", titles(&url, run_b));
}

/// `runwatch --server … check-in` to a daemon.
fn cli_check_in(d: &Daemon, dir: &Path, run: &str, expect_next_in: u64) {
    let out = run_cli(runwatch(dir).env("RUNWATCH_TOKEN", &d.token).args([
        "--server",
        &d.base,
        "--notifications",
        "hidden",
        "check-in",
        "--run",
        run,
        "--expect-next-in",
        &expect_next_in.to_string(),
    ]));
    assert_eq!(out.code, Some(0), "{out:?}");
}

/// A check-in as plain HTTP.
fn http_check_in(d: &Daemon, run: &str, expect_next_in: u64) {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let res = agent
        .post(format!("{}/api/v1/check-ins", d.base))
        .header("Authorization", format!("Bearer {}", d.token))
        .header("Content-Type", "application/json")
        .send(serde_json::json!({ "run_id": run, "expect_next_in": expect_next_in, "host": "node-7" }).to_string())
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

/// What `runwatch store check` says about the check-ins role.
fn role_line(dir: &Path, url: &str) -> String {
    let out = run_cli(runwatch(dir).args(["--store", url, "store", "check"]));
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout.lines().find(|l| l.starts_with("Role 'check-ins'")).unwrap_or_default().to_string()
}

#[test]
fn http_check_ins_to_either_daemon_reach_the_one_detector_which_moves_when_killed() {
    let url = shared_store();
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b, cli) = (tmp.path().join("data-a"), tmp.path().join("data-b"), tmp.path().join("cli"));
    let a = daemon(&dir_a, &url, "gpu-a", &[]);
    let b = daemon(&dir_b, &url, "gpu-b", &[]);
    assert!(role_line(&cli, &url).contains("played by gpu-a (pid "), "{}", role_line(&cli, &url));

    // One to each daemon: both are taken by gpu-a's detector, and found stuck once.
    cli_check_in(&a, &cli, "job-1", 1);
    http_check_in(&b, "job-2", 1);
    for run in ["job-1", "job-2"] {
        wait_until("the check-in's run stuck", || (stuck_count(&url, run) == 1).then_some(()));
        assert_eq!(titles(&url, run), [format!("Run '{run}' started."), format!("Run '{run}' is stuck (no check-in for 2 s).")]);
    }
    // An HTTP run keeps the host it reported (its state is saved right after its notification).
    wait_until("job-2 saved stuck, on node-7", || (run_row(&url, "job-2") == Some(("stuck".into(), Some("node-7".into())))).then_some(()));

    // job-3 is alive and promises a check-in within 6 s; then gpu-a's daemon dies with it
    // unjudged, and job-4 checks in to gpu-b meanwhile.
    cli_check_in(&b, &cli, "job-3", 6);
    wait_until("job-3 taken in", || (titles(&url, "job-3").len() == 1).then_some(()));
    a.running.signal_group("KILL");
    drop(a);
    http_check_in(&b, "job-4", 1);
    // Once the lease runs out gpu-b takes the role, and with it both runs.
    for run in ["job-3", "job-4"] {
        wait_until("gpu-b to report the run stuck", || (stuck_count(&url, run) == 1).then_some(()));
    }
    assert!(role_line(&cli, &url).contains("played by gpu-b (pid "), "{}", role_line(&cli, &url));
    assert_eq!(titles(&url, "job-3"), ["Run 'job-3' started.", "Run 'job-3' is stuck (no check-in for 7 s)."]);
    assert_eq!(titles(&url, "job-4"), ["Run 'job-4' started.", "Run 'job-4' is stuck (no check-in for 2 s)."]);

    // A clean stop gives the role up.
    b.running.signal_group("TERM");
    let (status, stdout, stderr) = b.running.finish();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(role_line(&cli, &url), "");
    for run in ["job-1", "job-2", "job-3", "job-4"] {
        assert_eq!(stuck_count(&url, run), 1, "{run}: {:?}", titles(&url, run));
    }
}

/// The holder takes a check-in sent to another daemon when PostgreSQL tells it of the
/// commit (LISTEN/NOTIFY): with a lease of ten minutes and the default rescan of five, no
/// timer of its own would wake it within the test's patience.
#[test]
fn a_check_in_to_another_daemon_wakes_the_holder_through_the_change_feed() {
    let url = shared_store();
    let tmp = tempfile::tempdir().unwrap();
    let a = daemon_with_lease(&tmp.path().join("data-a"), &url, "gpu-a", &[], "600000");
    let b = daemon_with_lease(&tmp.path().join("data-b"), &url, "gpu-b", &[], "600000");
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let failed = serde_json::json!({ "run_id": "job-9", "failed": true, "exit_code": 3, "cause": "exit code 3" });
    let res = agent
        .post(format!("{}/api/v1/check-ins", b.base))
        .header("Authorization", format!("Bearer {}", b.token))
        .header("Content-Type", "application/json")
        .send(failed.to_string())
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    wait_until("gpu-a's detector to take the failure", || (!titles(&url, "job-9").is_empty()).then_some(()));
    assert_eq!(titles(&url, "job-9"), ["Run 'job-9' failed with exit code 3."]);
    wait_until("job-9 saved failed", || (run_row(&url, "job-9").map(|r| r.0) == Some("failed".into())).then_some(()));
    for d in [a, b] {
        d.running.signal_group("TERM");
        assert!(d.running.finish().0.success());
    }
}
