//! `--store postgresql://…` (and `RUNWATCH_STORE`) for the commands that read and write the
//! inbox, `runwatch store migrate|check` (with who plays each role), and the one-line errors
//! when PostgreSQL cannot be reached (password masked), against a throwaway PostgreSQL
//! cluster; and one session of the inbox, runs, exec and notifier commands, the same on a
//! SQLite store and a PostgreSQL one.

use runwatch_core::pg::fixture::Cluster;
use runwatch_tests::{run_cli, runwatch};

#[test]
fn send_list_ack_and_summary_work_on_a_postgresql_store() {
    let url = Cluster::shared().database().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rw = |args: &[&str]| run_cli(runwatch(tmp.path()).arg("--store").arg(&url).args(args));

    let check = rw(&["store", "check"]);
    assert_eq!(check.code, Some(1), "an empty database is not migrated yet: {check:?}");
    assert!(check.stdout.contains("runwatch store migrate"), "{check:?}");
    let migrate = rw(&["store", "migrate"]);
    assert_eq!(migrate.code, Some(0), "{migrate:?}");
    assert!(migrate.stdout.contains("migrated to schema"), "{migrate:?}");
    let check = rw(&["store", "check"]);
    assert_eq!(check.code, Some(0), "{check:?}");
    assert!(check.stdout.contains("is reachable, at schema"), "{check:?}");

    let sent = rw(&["--notifications", "hidden", "send", "--level", "error", "loss is NaN at step 1200"]);
    assert_eq!(sent.code, Some(0), "{sent:?}");
    // The same store through the environment variable, from another data dir.
    let other = tempfile::tempdir().unwrap();
    let listed =
        run_cli(runwatch(other.path()).env("RUNWATCH_STORE", &url).args(["--notifications", "hidden", "--json", "notifications", "list"]));
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let items: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let items = items.as_array().or_else(|| items["items"].as_array()).cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{listed:?}");
    assert_eq!(items[0]["title"], "loss is NaN at step 1200");
    let id = items[0]["id"].as_str().unwrap().to_string();

    let summary = rw(&["notifications", "list"]);
    assert_eq!(summary.code, Some(1), "an error is pending: {summary:?}");
    assert!(summary.stderr.contains("1 pending notification"), "{summary:?}");

    let short = &id[id.len() - 8..];
    let acked = rw(&["--notifications", "hidden", "notifications", "ack", "--item", short]);
    assert_eq!(acked.code, Some(0), "{acked:?}");
    let after = rw(&["notifications", "list"]);
    assert_eq!(after.code, Some(0), "nothing pending after the ack: {after:?}");
    assert!(!tmp.path().join("runwatch.db").exists(), "no SQLite store was created beside it");
}

#[test]
fn a_store_that_cannot_be_reached_is_one_line_without_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgresql://alice:hunter2@127.0.0.1:{port}/rw");
    for args in [&["notifications", "list"][..], &["store", "check"], &["send", "hello"]] {
        let out = run_cli(runwatch(tmp.path()).arg("--store").arg(&url).args(args));
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("runwatch: error: cannot reach the PostgreSQL store"), "{out:?}");
        assert!(out.stderr.contains("alice:***@127.0.0.1"), "{out:?}");
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
        assert!(!out.stderr.contains("hunter2") && !out.stdout.contains("hunter2"), "{out:?}");
    }
    let bad = run_cli(runwatch(tmp.path()).args(["--store", "mysql://bob:pw@db/x", "notifications", "list"]));
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(bad.stderr.contains("not a PostgreSQL URL") && !bad.stderr.contains(":pw@"), "{bad:?}");
}

#[test]
fn store_check_names_the_daemon_playing_each_role() {
    let url = Cluster::shared().database().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rw = |args: &[&str]| run_cli(runwatch(tmp.path()).arg("--store").arg(&url).args(args));
    rw(&["store", "migrate"]).expect_code(0);
    let check = rw(&["store", "check"]);
    assert_eq!(check.code, Some(0), "{check:?}");
    assert!(check.stdout.contains("No daemon plays a role"), "{check:?}");

    // This process plays the Slurm role, as a daemon would.
    let store = runwatch_core::Store::connect(&url).unwrap();
    let now = runwatch_core::clock::Clock::now(&runwatch_core::clock::SystemClock);
    assert!(store.claim_role(runwatch_core::Role::Slurm, now).unwrap().held);
    let check = rw(&["store", "check"]);
    let pid = format!("(pid {})", std::process::id());
    let line = check.stdout.lines().find(|l| l.starts_with("Role 'slurm': played by ")).unwrap_or_else(|| panic!("{check:?}"));
    assert!(line.contains(&pid) && line.contains("lease ends in "), "{check:?}");
    let json = rw(&["--json", "store", "check"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["roles"][0]["role"], "slurm", "{json:?}");
    assert!(v["roles"][0]["holder"].as_str().unwrap().ends_with(&pid), "{json:?}");
    assert!(v["roles"][0]["until"].as_i64().unwrap() > now, "{json:?}");

    store.release_role(runwatch_core::Role::Slurm).unwrap();
    assert!(rw(&["store", "check"]).stdout.contains("No daemon plays a role"));
}

/// A command's exit code, and its output when `keep`.
fn noted(what: &str, out: &runwatch_tests::CliOutput, keep: bool) -> String {
    format!("{what}: exit {:?}{}", out.code, if keep { format!(" {}", out.stdout.trim()) } else { String::new() })
}

/// What one session of the command line leaves: each command's exit code and what it
/// printed that does not depend on the store (ids, times and paths left out), the runs, and
/// the notifications by level and title.
fn session(data: &std::path::Path, store: Option<&str>) -> Vec<String> {
    let rw = |args: &[&str]| {
        let mut cmd = runwatch(data);
        if let Some(url) = store {
            cmd.arg("--store").arg(url);
        }
        run_cli(cmd.args(["--notifications", "hidden"]).args(args))
    };
    let mut said = Vec::new();
    let added = rw(&["notifiers", "add", "logger", "--min-level", "WARNING"]);
    said.push(noted("notifiers add", &added, false));
    let id = rw(&["--json", "notifiers", "list"]).stdout;
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id[0]["id"].as_str().unwrap().to_string();
    said.push(noted("notifiers disable", &rw(&["notifiers", "disable", &id[..8]]), false));
    said.push(noted("notifiers enable", &rw(&["notifiers", "enable", &id[..8]]), false));
    said.push(noted("set-log-level", &rw(&["notifiers", "set-log-level", "ERROR"]), true));
    said.push(noted("get-log-level", &rw(&["notifiers", "get-log-level"]), true));
    said.push(noted("send", &rw(&["send", "--level", "warning", "--run", "r1", "--title", "Disk", "disk 91% full"]), false));
    said.push(noted("exec ok", &rw(&["exec", "--name", "ok", "--run", "run-ok", "--", "true"]), false));
    let failed = rw(&["exec", "--name", "bad", "--run", "run-bad", "--alert-on", "loss=nan", "--", "sh", "-c", "echo loss=nan; exit 3"]);
    // Its output passes through (on SQLite, with no daemon running, the logger's deliveries
    // follow it: a team store's daemons deliver instead).
    said.push(format!("{} {}", noted("exec failing", &failed, false), failed.stdout.lines().next().unwrap_or_default()));
    let runs: serde_json::Value = serde_json::from_str(&rw(&["--json", "runs"]).stdout).unwrap();
    let mut runs: Vec<String> =
        runs.as_array().unwrap().iter().map(|r| format!("run {} {} {} {}", r["id"], r["name"], r["state"], r["cause"])).collect();
    runs.sort();
    said.extend(runs);
    let list = |state: &[&str]| -> Vec<serde_json::Value> {
        let page: serde_json::Value = serde_json::from_str(&rw(&[&["--json", "notifications", "list"], state].concat()).stdout).unwrap();
        page.as_array().or_else(|| page["items"].as_array()).cloned().unwrap_or_default()
    };
    let all = list(&["--all"]);
    let mut titles: Vec<String> = all.iter().map(|n| format!("notification {} {}", n["level"], n["title"])).collect();
    titles.sort();
    said.extend(titles);
    let error = all.iter().find(|n| n["level"] == "ERROR").unwrap()["id"].as_str().unwrap().to_string();
    let shown: serde_json::Value =
        serde_json::from_str(&rw(&["--json", "notifications", "show", &error[error.len() - 8..]]).stdout).unwrap();
    said.push(format!("show: {} deliveries {}", shown["title"], shown["deliveries"].as_array().map_or(0, Vec::len)));
    said.push(noted("ack one", &rw(&["notifications", "ack", "--item", &error[error.len() - 8..]]), true));
    said.push(format!("pending after one ack: {}", list(&[]).len()));
    said.push(noted("ack all", &rw(&["notifications", "ack", "--all"]), true));
    said.push(noted("ack all again", &rw(&["notifications", "ack", "--all"]), true));
    said.push(format!("pending at the end: {}", list(&[]).len()));
    said.push(noted("notifiers remove", &rw(&["notifiers", "remove", &id[..8], "--yes"]), false));
    said.push(noted("spool", &rw(&["spool"]), true));
    said
}

#[test]
fn the_inbox_runs_and_notifier_commands_do_the_same_on_both_stores() {
    let url = Cluster::shared().database().unwrap();
    let (sqlite, pg) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let on_sqlite = session(sqlite.path(), None);
    let on_pg = session(pg.path(), Some(&url));
    assert_eq!(on_pg, on_sqlite);
    // The session did what it says.
    let text = on_pg.join("\n");
    for line in [
        "ack all: exit Some(0) All pending notifications have been acknowledged.",
        "ack all again: exit Some(0) There were no pending notifications.",
        "pending at the end: 0",
        "run \"run-bad\" \"bad\" \"failed\" \"exit code 3\"",
        "notification \"WARNING\" \"Run 'bad': loss=nan\"",
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    assert!(!pg.path().join("runwatch.db").exists(), "no SQLite store was made beside the PostgreSQL one");
}
