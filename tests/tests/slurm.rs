//! `runwatch start --slurm` against a real single-node Slurm cluster (slurm-wlm 22.05, no
//! accounting: the source uses `scontrol`): jobs that wait then run, complete, fail, pass
//! their time limit (warned before), get cancelled, run out of memory, an array of 8
//! failing tasks (one grouped message to a fake Slack), a job preempted by one of a
//! higher-tier partition, a job whose node goes down, and `runwatch exec` inside a job (the
//! same run). "Cancelled by whom" needs accounting (sacct): it is covered by
//! runwatch-slurm's tests on recorded output.
//!
//! The jobs run concurrently; the longest wait is Slurm's own time limit (1 minute, its
//! smallest, plus up to its 30-second check).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runwatch_core::{settings, Level, Notification, RunState, SettingsPatch};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::slurm::{cluster, Cluster};
use runwatch_tests::{all_notifications as notifications, open_store as store};
use runwatch_tests::{binary, run_cli, runwatch, Running};

/// Waits for `check` on the store, up to `patience` (Slurm's time limit takes its time).
#[track_caller]
fn wait_for<T>(what: &str, patience: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {patience:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn one(data: &Path, job: &str, level: Level, title_has: &str, patience: Duration) -> Notification {
    let run = format!("slurm-{job}");
    wait_for(&format!("job {job}: {level} '{title_has}'"), patience, || {
        notifications(data)
            .into_iter()
            .find(|n| n.run_id.as_deref() == Some(run.as_str()) && n.level == level && n.source == "slurm" && n.title.contains(title_has))
    })
}

/// `runwatch start`, following Slurm from the start with `--slurm`, or not (until the setting says so).
fn start_daemon(c: &Cluster, data: &Path, slurm: bool) -> Running {
    let mut cmd = Command::new(binary("runwatch"));
    cmd.arg("--data-dir").arg(data).args(["start", "--http", "127.0.0.1:0", "--slurm-interval", "1s"]).env("SLURM_CONF", &c.conf);
    if slurm {
        cmd.arg("--slurm");
    }
    let mut daemon = Running::spawn(&mut cmd);
    if slurm {
        daemon.wait_for_line("the daemon to follow Slurm", |l| l.starts_with("Following Slurm jobs"));
    }
    daemon.wait_for_line("the daemon to serve", |l| l.starts_with("Serving the UI at "));
    daemon
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn jobs_on_a_real_cluster_are_runs_that_say_why_they_stopped() {
    let c = match cluster() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let mut s = store(&data);
        // A 1-minute limit (Slurm's smallest) is warned 50 s before.
        settings::patch(&mut s, &SettingsPatch { slurm_near_limit_secs: Some(50), ..Default::default() }).unwrap();
    }
    // Errors go to a fake Slack too: the array's 8 failures become one message there.
    let slack = FakeServer::start();
    let url = slack.url("/services/T0/B0/SLURMTEST");
    run_cli(runwatch(&data).args(["notifiers", "add", "slack", "--webhook-url", &url, "--min-level", "ERROR"])).expect_code(0);
    let daemon = start_daemon(c, &data, true);
    // Another daemon, off until its setting is turned on while it runs (as the UI's toggle does).
    let toggled = tmp.path().join("toggled");
    let other = start_daemon(c, &toggled, false);
    settings::patch(&mut store(&toggled), &SettingsPatch { slurm_enabled: Some(true), ..Default::default() }).unwrap();
    let runwatch = binary("runwatch");

    let waiter = c.sbatch(&["-J", "waiter", "-o", "/dev/null", "--begin=now+2", "--wrap", "sleep 1"]);
    let ok = c.sbatch(&["-J", "ok", "-o", "/dev/null", "--wrap", "sleep 1"]);
    let bad = c.sbatch(&["-J", "bad", "-o", "/dev/null", "--wrap", "exit 3"]);
    let limit = c.sbatch(&["-J", "limit", "-t", "1", "-o", "/dev/null", "--wrap", "sleep 600"]);
    let cancel = c.sbatch(&["-J", "cancelme", "-o", "/dev/null", "--wrap", "sleep 600"]);
    let oom = c.sbatch(&["-J", "oom", "--mem=50M", "-o", "/dev/null", "--wrap", "sleep 1; python3 -c 'a = bytearray(400 << 20)'"]);
    let sweep = c.sbatch(&["-J", "sweep", "--array=0-7", "-o", "/dev/null", "--wrap", "exit 1"]);
    let inner_cmd =
        format!("'{}' --data-dir '{}' --notifications hidden exec --name inner -- sh -c 'exit 4'", runwatch.display(), data.display());
    let inner = c.sbatch(&["-J", "inner", "-o", "/dev/null", "--wrap", &inner_cmd]);

    // PENDING → RUNNING, with the wait.
    let started = one(&data, &waiter, Level::Info, "is running on", MINUTE);
    assert!(started.title.contains(&format!("on {} after waiting ", c.node)), "{}", started.title);
    one(&data, &waiter, Level::Info, "completed after", MINUTE);
    one(&data, &ok, Level::Info, "completed after", MINUTE);

    let failed = one(&data, &bad, Level::Error, "failed with exit code 3", MINUTE);
    assert!(failed.body.contains("Exit code: 3") && failed.body.contains(&format!("Node: {}", c.node)), "{}", failed.body);
    assert!(failed.body.contains("Elapsed: ") && failed.body.contains("of no limit"), "{}", failed.body);
    let run = store(&data).run(&format!("slurm-{bad}")).unwrap().unwrap();
    assert_eq!((run.state, run.cause.as_deref(), run.host.as_deref()), (RunState::Failed, Some("exit code 3"), Some(c.node.as_str())));
    // The toggled daemon's first poll came before the waiter left the queue (2 s after it was submitted).
    one(&toggled, &waiter, Level::Info, "completed after", MINUTE);
    other.signal_group("TERM");
    assert!(other.finish().0.success());
    assert_eq!(run.labels.get("slurm_job_id"), Some(&bad));
    assert_eq!(run.labels.get("slurm_job_name").map(String::as_str), Some("bad"));

    one(&data, &oom, Level::Error, "ran out of memory", MINUTE);
    let run = store(&data).run(&format!("slurm-{oom}")).unwrap().unwrap();
    assert_eq!((run.state, run.cause.as_deref()), (RunState::Failed, Some("out of memory")));

    // Cancelled once it runs.
    wait_for("the job to cancel to run", MINUTE, || {
        store(&data).run(&format!("slurm-{cancel}")).unwrap().filter(|r| r.state == RunState::Running)
    });
    c.run("scancel", &[&cancel]);
    let cancelled = one(&data, &cancel, Level::Warning, "was cancelled", MINUTE);
    assert!(cancelled.body.contains("State: CANCELLED"), "{}", cancelled.body);
    let run = store(&data).run(&format!("slurm-{cancel}")).unwrap().unwrap();
    assert_eq!(run.state, RunState::Ended);

    // The array: 8 runs, all labelled with the array's job id (the group key of their notifications).
    wait_for("8 failed tasks", MINUTE, || {
        let n = notifications(&data)
            .into_iter()
            .filter(|n| n.source == "slurm" && n.level == Level::Error && n.title.contains(&format!("({sweep}_")))
            .count();
        (n == 8).then_some(())
    });
    let tasks: Vec<_> = store(&data).runs().unwrap().into_iter().filter(|r| r.labels.get("slurm_array_job_id") == Some(&sweep)).collect();
    assert_eq!(tasks.len(), 8, "{tasks:#?}");
    let mut task_ids: Vec<_> = tasks.iter().map(|r| r.labels["slurm_array_task_id"].clone()).collect();
    task_ids.sort();
    assert_eq!(task_ids, ["0", "1", "2", "3", "4", "5", "6", "7"]);
    assert!(tasks.iter().all(|r| r.state == RunState::Failed && r.cause.as_deref() == Some("exit code 1")), "{tasks:#?}");

    // `runwatch exec` in a job reports on the job's run.
    let from_exec = wait_for("exec's failure inside the job", MINUTE, || {
        notifications(&data).into_iter().find(|n| n.source == "exec" && n.level == Level::Error && n.title.starts_with("Run 'inner'"))
    });
    assert_eq!(from_exec.run_id.as_deref(), Some(format!("slurm-{inner}").as_str()));
    // The Slurm source labels the same run, and does not say "failed" a second time.
    let run = wait_for("the job's labels on exec's run", MINUTE, || {
        store(&data).run(&format!("slurm-{inner}")).unwrap().filter(|r| r.labels.get("slurm_job_name").map(String::as_str) == Some("inner"))
    });
    assert_eq!((run.state, run.cause.as_deref()), (RunState::Failed, Some("exit code 4")));
    assert_eq!(run.labels.get("slurm_job_id"), Some(&inner));

    // The time limit: warned before, then TIMEOUT.
    let warned = one(&data, &limit, Level::Warning, "from its time limit (1m)", MINUTE);
    let timeout = one(&data, &limit, Level::Error, "reached its time limit (1m)", 3 * MINUTE);
    let all = notifications(&data);
    let at = |id: &str| all.iter().position(|n| n.id == id).unwrap();
    assert!(at(&warned.id) < at(&timeout.id), "the warning comes first");
    let run = store(&data).run(&format!("slurm-{limit}")).unwrap().unwrap();
    assert_eq!((run.state, run.cause.as_deref()), (RunState::Failed, Some("time limit")));

    // Preemption: a job of the higher-tier partition that needs the whole node takes it.
    let victim = c.sbatch(&["-J", "victim", "-o", "/dev/null", "--wrap", "sleep 600"]);
    wait_for("the victim to run", MINUTE, || {
        store(&data).run(&format!("slurm-{victim}")).unwrap().filter(|r| r.state == RunState::Running)
    });
    c.sbatch(&["-J", "urgent", "-p", "urgent", "--exclusive", "-o", "/dev/null", "--wrap", "sleep 1"]);
    let preempted = one(&data, &victim, Level::Warning, "was preempted", MINUTE);
    assert!(preempted.body.contains("State: PREEMPTED"), "{}", preempted.body);
    let run = store(&data).run(&format!("slurm-{victim}")).unwrap().unwrap();
    assert_eq!((run.state, run.cause.as_deref()), (RunState::Ended, Some("preempted")));

    // Last, as it ends every job on the node: the node goes down under a running job.
    let lost = c.sbatch(&["-J", "lost", "--no-requeue", "-o", "/dev/null", "--wrap", "sleep 600"]);
    wait_for("the job to lose to run", MINUTE, || {
        store(&data).run(&format!("slurm-{lost}")).unwrap().filter(|r| r.state == RunState::Running)
    });
    c.run("scontrol", &["update", &format!("NodeName={}", c.node), "State=DOWN", "Reason=runwatch-test"]);
    let node_fail = one(&data, &lost, Level::Error, "its node", MINUTE);
    assert!(node_fail.title.contains(&format!("its node {} failed", c.node)), "{}", node_fail.title);
    let run = store(&data).run(&format!("slurm-{lost}")).unwrap().unwrap();
    assert_eq!(run.state, RunState::Crashed);
    // Back to service for any later test (Slurm may have done it already: then this fails, harmlessly).
    let _ = c.command("scontrol").args(["update", &format!("NodeName={}", c.node), "State=RESUME"]).output();

    assert!(
        !notifications(&data)
            .iter()
            .any(|n| n.source == "slurm" && n.run_id.as_deref() == Some(format!("slurm-{inner}").as_str()) && n.level == Level::Error),
        "exec said how the job ended"
    );
    // Each happening was said once.
    let slurm: Vec<_> = notifications(&data).into_iter().filter(|n| n.source == "slurm").collect();
    let mut keys: Vec<_> = slurm.iter().map(|n| (n.run_id.clone(), n.title.clone())).collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), before, "{slurm:#?}");

    // The array's failures reached Slack as one message, once the group's window (30 s) closed.
    let grouped = format!("8 runs of array {sweep} failed: ");
    let texts = || -> Vec<String> {
        slack.requests().iter().map(|r| r.json()["text"].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>()
    };
    wait_for("the array's grouped message", MINUTE, || texts().iter().any(|t| t.starts_with(&grouped)).then_some(()));
    let about_the_array: Vec<_> = texts().into_iter().filter(|t| t.contains(&format!("({sweep}_")) || t.contains(&grouped)).collect();
    assert_eq!(about_the_array.len(), 1, "{about_the_array:#?}");

    daemon.signal_group("TERM");
    let (status, _, stderr) = daemon.finish();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("cannot ask Slurm"), "{stderr}");
}
