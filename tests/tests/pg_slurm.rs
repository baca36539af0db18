//! The Slurm source on a shared PostgreSQL store, against the real single-node Slurm
//! cluster and a real PostgreSQL: two daemons `runwatch --store postgresql://… start
//! --slurm`, one fake Slack. One daemon polls Slurm at a time (the Slurm role): a failed job
//! is one notification and one Slack message. The holder killed with kill -9, the other
//! takes the role over once its lease runs out, and a job that ended meanwhile is still
//! said, once.

use std::path::Path;

use runwatch_core::inbox::{AckState, ListFilter};
use runwatch_core::notifiers::Notifier;
use runwatch_core::pg::fixture::Cluster as Postgres;
use runwatch_core::roles::ROLE_LEASE_ENV;
use runwatch_core::{Level, Notification, NotifierStatus, RunState, Store};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::slurm::{cluster, Cluster};
use runwatch_tests::{runwatch, wait_until, Running};

/// Short, so that the test waits little for a dead daemon's role.
const LEASE_MS: &str = "2000";

fn daemon(c: &Cluster, dir: &Path, url: &str) -> Running {
    let mut running = Running::spawn(
        runwatch(dir)
            .args(["--store", url, "--notifications", "hidden", "start", "--http", "127.0.0.1:0", "--slurm", "--slurm-interval", "1s"])
            .env("SLURM_CONF", &c.conf)
            .env(ROLE_LEASE_ENV, LEASE_MS)
            .env("RUNWATCH_LOG", "info"),
    );
    running.wait_for_line("the daemon to follow Slurm", |l| l.starts_with("Following Slurm jobs"));
    running.wait_for_line("the daemon to serve", |l| l.starts_with("Serving the UI at "));
    running
}

fn slurm_notifications(store: &Store) -> Vec<Notification> {
    let filter = ListFilter { state: AckState::All, limit: Some(1000), ..Default::default() };
    store.list_notifications(&filter).unwrap().items.into_iter().filter(|n| n.source == "slurm").collect()
}

/// The pid in the Slurm role's holder ("host (pid N)"), while one holds it.
fn slurm_holder(url: &str) -> Option<u32> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let row = client.query_opt("SELECT label FROM roles WHERE name = 'slurm'", &[]).unwrap()?;
    let label: String = row.get(0);
    label.rsplit_once("(pid ").and_then(|(_, pid)| pid.trim_end_matches(')').parse().ok())
}

/// Slack's messages about job `job`.
fn slack_about(slack: &FakeServer, job: &str) -> usize {
    slack.requests().iter().filter(|r| r.json()["text"].as_str().unwrap_or_default().contains(&format!("({job})"))).count()
}

#[test]
fn two_daemons_on_one_store_follow_slurm_once_and_hand_over_on_a_kill_9() {
    let c = match cluster() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let url = Postgres::shared().database().unwrap();
    let slack = FakeServer::start();
    let mut store = Store::connect(&url).unwrap();
    store
        .add_notifier(&Notifier {
            id: "51ac".into(),
            kind: "slack".into(),
            status: NotifierStatus::Enabled,
            config: serde_json::json!({ "url": slack.url("/hook") }),
            min_level: Level::Error,
            created_at: 0,
            updated_at: 0,
        })
        .unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = daemon(c, dir_a.path(), &url);
    let b = daemon(c, dir_b.path(), &url);

    // A failing job: one notification, one Slack message, whichever daemon polls.
    let first = c.sbatch(&["-J", "first", "-o", "/dev/null", "--wrap", "exit 3"]);
    let failed = wait_until("the first job's failure", || {
        slurm_notifications(&store).into_iter().find(|n| n.run_id == Some(format!("slurm-{first}")) && n.level == Level::Error)
    });
    assert!(failed.title.contains("failed with exit code 3"), "{}", failed.title);
    wait_until("Slack to hear of the first job", || (slack_about(&slack, &first) > 0).then_some(()));
    // Its delivery recorded as sent: killing a daemon mid-send would repeat it (at least once).
    wait_until("the delivery to be recorded", || (store.delivery_counts().unwrap() == (0, 1, 0)).then_some(()));

    // The daemon that polls now is killed; its lease runs out and the other one takes over.
    let holder = wait_until("a daemon to hold the Slurm role", || slurm_holder(&url));
    let (killed, survivor) = if holder == a.child.id() { (a, b) } else { (b, a) };
    assert_eq!(holder, killed.child.id(), "the Slurm role is held by one of the two daemons");
    killed.signal_group("KILL");
    let (status, _, _) = killed.finish();
    assert!(!status.success());
    // Submitted once nobody polls: it may well end before the survivor looks.
    let second = c.sbatch(&["-J", "second", "-o", "/dev/null", "--wrap", "exit 5"]);
    let said = wait_until("the second job's failure", || {
        let ended: Vec<_> = slurm_notifications(&store)
            .into_iter()
            .filter(|n| n.run_id == Some(format!("slurm-{second}")) && n.level == Level::Error)
            .collect();
        (!ended.is_empty()).then_some(ended)
    });
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(said[0].title.contains("failed with exit code 5"), "{}", said[0].title);
    assert_eq!(slurm_holder(&url), Some(survivor.child.id()), "the survivor polls now");
    wait_until("Slack to hear of the second job", || (slack_about(&slack, &second) > 0).then_some(()));
    let run = store.run(&format!("slurm-{second}")).unwrap().unwrap();
    assert_eq!((run.state, run.cause.as_deref()), (RunState::Failed, Some("exit code 5")));

    // Everything was said once, by one daemon at a time: both jobs reached Slack once, and
    // the survivor did not say the first job's end again when it took over.
    let all = slurm_notifications(&store);
    for job in [&first, &second] {
        let run = format!("slurm-{job}");
        let errors = all.iter().filter(|n| n.run_id.as_deref() == Some(run.as_str()) && n.level == Level::Error).count();
        assert_eq!(errors, 1, "job {job}: {all:#?}");
        assert_eq!(slack_about(&slack, job), 1, "job {job}: {:#?}", slack.requests());
    }

    // Stopped cleanly, the holder lets the role go at once.
    survivor.signal_group("TERM");
    let (status, _, stderr) = survivor.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(slurm_holder(&url), None);
    assert!(!stderr.contains("cannot ask Slurm"), "{stderr}");
    assert!(stderr.contains("polling Slurm for the store"), "it took the role over: {stderr}");
}
