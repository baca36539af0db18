//! `runwatch notifications list|show|ack`, `runwatch send`, and the pending-notifications
//! summary every command prints (`--notifications hidden|summary|details`), run as a user
//! runs them against a real store in a temporary data dir.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use runwatch_core::ingest::Event;
use runwatch_core::{Inserted, Level};
use runwatch_tests::open_store as store;
use runwatch_tests::{dump_store, run_cli, runwatch, CliOutput};

/// 2026-11-21 14:03:00 UTC, in store milliseconds.
const T1403: i64 = 1_795_269_780_000;
const MINUTE: i64 = 60_000;
const RUN: &str = "be0ebd0ce55b452d85f692cf";

/// Stores a notification at a known time, as the watcher or the API would.
fn add(data: &Path, at: i64, level: Level, run: Option<&str>, title: &str, body: &str) -> String {
    let event = Event {
        run_id: run.map(str::to_string),
        level: Some(level),
        title: Some(title.to_string()),
        message: body.to_string(),
        source: "test".into(),
        ..Default::default()
    };
    match store(data).ingest(&event, at).unwrap() {
        Inserted::New(n) => n.id,
        Inserted::Duplicate(id) => panic!("duplicate {id}"),
    }
}

/// Renames a notification (ids are random; tests need ones that share a start or an end).
fn set_id(data: &Path, old: &str, new: &str) {
    store(data).conn().execute("UPDATE notifications SET id = ?1 WHERE id = ?2", [new, old]).unwrap();
}

fn cli(data: &Path, args: &[&str]) -> CliOutput {
    run_cli(runwatch(data).args(args))
}

/// The short id lists show: the end of the id (the start of a UUIDv7 is its time).
fn short(id: &str) -> &str {
    &id[id.len() - 8..]
}

/// The stuck run and its start: the example of cli.md.
fn two(data: &Path) -> (String, String) {
    let started = add(data, T1403 - 2 * MINUTE, Level::Info, Some(RUN), &format!("Run '{RUN}' started."), "");
    let stuck = add(
        data,
        T1403,
        Level::Error,
        Some(RUN),
        &format!("Run '{RUN}' is stuck (no check-in for 105 s)"),
        "The last check-in promised the next within 5 s.",
    );
    (started, stuck)
}

#[test]
fn list_shows_pending_notifications_newest_first_in_the_documented_format() {
    let tmp = tempfile::tempdir().unwrap();
    let (started, stuck) = two(tmp.path());
    let out = cli(tmp.path(), &["notifications", "list"]);
    assert_eq!(
        out.stdout,
        format!(
            "2026-11-21 14:03 ERROR  Run 'be0ebd0c…' is stuck (no check-in for 105 s)\n\
             \x20 To see the details: runwatch notifications show {}\n\
             2026-11-21 14:01 INFO   Run 'be0ebd0c…' started.\n\
             \x20 To see the details: runwatch notifications show {}\n",
            short(&stuck),
            short(&started)
        )
    );
    // The summary follows on stderr; an error is pending, so the exit code is 1.
    assert_eq!(
        out.stderr,
        "NOTICE: There are 2 pending notifications including 1 error. To read them use 'runwatch notifications list'.\n"
    );
    out.expect_code(1);
}

#[test]
fn an_empty_inbox_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cli(tmp.path(), &["notifications", "list"]);
    out.expect_code(0);
    assert_eq!(out.stdout, "There are no notifications.\n");
    assert_eq!(out.stderr, "");
    let out = cli(tmp.path(), &["--json", "notifications", "list"]);
    assert_eq!(out.stdout.trim(), "[]");
}

#[test]
fn list_filters_by_level_run_and_state_and_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (started, stuck) = two(d);
    let warn = add(d, T1403 + MINUTE, Level::Warning, Some("job-7"), "disk almost full", "");
    let acked = add(d, T1403 + 2 * MINUTE, Level::Critical, Some("job-7"), "out of memory", "");
    store(d).ack(std::slice::from_ref(&acked), T1403 + 3 * MINUTE).unwrap();

    let shown = |out: &CliOutput| -> Vec<String> {
        out.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("  To see the details: runwatch notifications show "))
            .map(str::to_string)
            .collect()
    };
    let out = cli(d, &["notifications", "list", "--level", "warning"]);
    assert_eq!(shown(&out), [short(&warn), short(&stuck)]);
    let out = cli(d, &["notifications", "list", "--run", "job"]);
    assert_eq!(shown(&out), [short(&warn)], "a unique prefix of a run id names it");
    let out = cli(d, &["notifications", "list", "--all"]);
    assert_eq!(shown(&out), [short(&acked), short(&warn), short(&stuck), short(&started)]);
    assert!(out.stdout.lines().next().unwrap().ends_with("CRITICAL  out of memory (acknowledged)"), "{}", out.stdout);
    let out = cli(d, &["notifications", "list", "--limit", "1"]);
    assert_eq!(shown(&out), [short(&warn)]);
    assert!(out.stdout.ends_with("(The newest 1 are shown; use --limit 0 to list all.)\n"), "{}", out.stdout);
    let out = cli(d, &["notifications", "list", "--limit", "0"]);
    assert_eq!(shown(&out).len(), 3);
}

#[test]
fn list_json_is_an_array_of_notifications() {
    let tmp = tempfile::tempdir().unwrap();
    let (started, stuck) = two(tmp.path());
    let out = cli(tmp.path(), &["--json", "notifications", "list"]);
    let items: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], stuck.as_str());
    assert_eq!(items[0]["level"], "ERROR");
    assert_eq!(items[0]["run_id"], RUN);
    assert_eq!(items[0]["created_at"], T1403);
    assert_eq!(items[1]["id"], started.as_str());
    // The summary stays on stderr, so stdout is pure JSON.
    assert!(out.stderr.starts_with("NOTICE: "), "{}", out.stderr);
}

#[test]
fn auto_ack_acknowledges_exactly_what_was_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (started, stuck) = two(d);
    let out = cli(d, &["notifications", "list", "--level", "ERROR", "--auto-ack"]);
    assert!(out.stdout.contains(short(&stuck)), "{}", out.stdout);
    assert!(out.stdout.ends_with("Acknowledged 1 notification.\n"), "{}", out.stdout);
    // What is left is INFO only: the summary mentions no level and the exit code is 0.
    out.expect_code(0);
    assert_eq!(out.stderr, "NOTICE: There is 1 pending notification. To read it use 'runwatch notifications list'.\n");
    let s = store(d);
    assert!(s.notification(&stuck).unwrap().unwrap().acked_at.is_some());
    assert!(s.notification(&started).unwrap().unwrap().acked_at.is_none());
}

#[test]
fn show_prints_everything_about_one_notification() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, stuck) = two(tmp.path());
    let out = cli(tmp.path(), &["notifications", "show", &stuck[stuck.len() - 5..]]);
    out.expect_code(1);
    let expected_head = format!(
        "Notification {stuck}\n\
         Level:     ERROR\n\
         Title:     Run '{RUN}' is stuck (no check-in for 105 s)\n\
         Run:       {RUN}\n\
         Source:    test\n\
         Created:   2026-11-21 14:03:00\n\
         Status:    pending\n"
    );
    assert!(out.stdout.starts_with(&expected_head), "{}", out.stdout);
    assert!(out.stdout.contains("\nMessage:\n  The last check-in promised the next within 5 s.\n"), "{}", out.stdout);
    assert!(out.stdout.contains("\nDeliveries:\n  No notifiers were configured when it was stored.\n"), "{}", out.stdout);
    assert!(out.stdout.ends_with(&format!("To acknowledge it: runwatch notifications ack --item {}\n", short(&stuck))));
    // Upper case works too: ids are UUIDs.
    let upper = cli(tmp.path(), &["notifications", "show", &short(&stuck).to_uppercase()]);
    assert_eq!(upper.stdout, out.stdout);
}

#[test]
fn show_lists_each_delivery_with_its_state() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    {
        let s = store(d);
        for (id, kind, at) in [("aaaa1111-slack", "slack", 1), ("bbbb2222-hook", "webhook", 2), ("cccc3333-log", "logger", 3)] {
            s.conn()
                .execute(
                    "INSERT INTO notifiers (id, type, status, config, min_level, created_at, updated_at)
                     VALUES (?1, ?2, 'enabled', '{}', 10, ?3, ?3)",
                    [id, kind, &at.to_string()],
                )
                .unwrap();
        }
    }
    let id = add(d, T1403, Level::Error, None, "loss is NaN", "");
    {
        let s = store(d);
        let c = s.conn();
        c.execute("UPDATE deliveries SET state = 'sent', attempts = 1 WHERE notifier_id = 'aaaa1111-slack'", []).unwrap();
        c.execute(
            "UPDATE deliveries SET state = 'failed', attempts = 5, last_error = 'HTTP 500: boom' WHERE notifier_id = 'bbbb2222-hook'",
            [],
        )
        .unwrap();
    }
    let out = cli(d, &["notifications", "show", &id]);
    let deliveries = out.stdout.split("Deliveries:\n").nth(1).unwrap_or_else(|| panic!("{}", out.stdout));
    let rows: Vec<Vec<&str>> = deliveries.lines().take(4).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NOTIFIER", "TYPE", "STATE", "ATTEMPTS", "WHEN", "DETAILS"]);
    assert_eq!(rows[1][..4], ["aaaa1111", "slack", "sent", "1"]);
    assert_eq!(rows[2][..4], ["bbbb2222", "webhook", "failed", "5"]);
    assert!(deliveries.lines().nth(2).unwrap().ends_with("HTTP 500: boom"), "{deliveries}");
    assert_eq!(rows[3][..4], ["cccc3333", "logger", "pending", "0"]);
    assert!(deliveries.lines().nth(3).unwrap().contains("next attempt 2026-11-21 14:03:00"), "{deliveries}");

    let out = cli(d, &["--json", "notifications", "show", &id]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["id"], id.as_str());
    let states: Vec<&str> = v["deliveries"].as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["sent", "failed", "pending"]);
}

#[test]
fn ids_are_named_by_unique_starts_or_ends_and_lists_lengthen_ambiguous_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = add(d, T1403, Level::Info, None, "first", "");
    let b = add(d, T1403 + MINUTE, Level::Info, None, "second", "");
    set_id(d, &a, "3f2a9c1e-0000-7000-8000-00000000aaa1");
    set_id(d, &b, "5b7d9c1e-1000-7000-8000-10000000aaa1");

    // The two share their last 11 characters: lists show 12.
    let out = cli(d, &["notifications", "list"]);
    assert!(out.stdout.contains("show 10000000aaa1\n") && out.stdout.contains("show 00000000aaa1\n"), "{}", out.stdout);
    for given in ["00000000aaa1", "3f2a", "3f2a9c1e-0000-7000-8000-00000000aaa1"] {
        let out = cli(d, &["notifications", "show", given]);
        out.expect_code(0);
        assert!(out.stdout.starts_with("Notification 3f2a9c1e-0000-7000-8000-00000000aaa1\n"), "{given}: {}", out.stdout);
    }

    let before = dump_store(d);
    let err = cli(d, &["notifications", "show", "aaa1"]).expect_one_line_error(1);
    assert!(err.contains("'aaa1' is ambiguous"), "{err}");
    assert!(err.contains("3f2a9c1e-0000-7000-8000-00000000aaa1, 5b7d9c1e-1000-7000-8000-10000000aaa1"), "{err}");
    let err = cli(d, &["notifications", "ack", "--item", "aaa1"]).expect_one_line_error(1);
    assert!(err.contains("ambiguous"), "{err}");
    let err = cli(d, &["notifications", "show", "3f2b"]).expect_one_line_error(1);
    assert!(err.contains("no notification with id '3f2b'"), "{err}");
    assert_eq!(dump_store(d), before);
}

#[test]
fn ack_by_item_and_all() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (started, stuck) = two(d);
    let other = add(d, T1403 + MINUTE, Level::Warning, None, "disk almost full", "");

    let out = cli(d, &["notifications", "ack", "--item", short(&started), &stuck[stuck.len() - 10..]]);
    assert_eq!(out.stdout, "Acknowledged 2 notifications.\n");
    // A warning is still pending.
    out.expect_code(1);
    let out = cli(d, &["notifications", "ack", "--item", &started, "--item", &stuck]);
    assert_eq!(out.stdout, "Acknowledged 0 notifications (2 were already acknowledged).\n");
    let out = cli(d, &["--json", "notifications", "ack", "--item", &other]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["acknowledged"], 1);
    out.expect_code(0);
    assert_eq!(out.stderr, "", "nothing is pending any more");

    add(d, T1403 + 2 * MINUTE, Level::Error, None, "again", "");
    let out = cli(d, &["notifications", "ack", "--all"]);
    assert_eq!(out.stdout, "All pending notifications have been acknowledged.\n");
    out.expect_code(0);
    assert_eq!(out.stderr, "");
    let out = cli(d, &["notifications", "ack", "--all"]);
    assert_eq!(out.stdout, "There were no pending notifications.\n");
    assert_eq!(store(d).unread_summary().unwrap().total, 0);
}

#[test]
fn send_records_a_notification_and_prints_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = cli(d, &["send", "--level", "warning", "--run", "job-7", "--title", "Disk", "disk {almost} full\nat /data"]);
    // What a command stored itself does not make it fail.
    out.expect_code(0);
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(out.stderr, "NOTICE: There is 1 pending notification including 1 warning. To read it use 'runwatch notifications list'.\n");
    let s = store(d);
    let n = s.notification(&id).unwrap().unwrap();
    assert_eq!((n.level, n.title.as_str(), n.body.as_str()), (Level::Warning, "Disk", "disk {almost} full\nat /data"));
    assert_eq!((n.run_id.as_deref(), n.source.as_str()), (Some("job-7"), "send"));
    assert!(s.run("job-7").unwrap().is_some(), "the run is created");

    // Another command now sees the pending warning: exit 1.
    cli(d, &["send", "just info"]).expect_code(1);
}

#[test]
fn send_with_an_event_id_stores_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let first = cli(d, &["--json", "send", "--event-id", "job-7:epoch-3", "epoch 3 done"]);
    let v: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(v["stored"], true);
    let again = cli(d, &["send", "--event-id", "job-7:epoch-3", "epoch 3 done"]);
    again.expect_code(0);
    assert_eq!(again.stdout.trim(), v["id"].as_str().unwrap());
    assert!(again.stderr.contains("was already stored"), "{}", again.stderr);
    assert_eq!(store(d).unread_summary().unwrap().total, 1);
}

#[test]
fn send_reads_the_message_from_stdin_with_a_dash() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = runwatch(tmp.path())
        .args(["send", "--level", "error", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Traceback (most recent call last):\n  boom\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap();
    let n = store(tmp.path()).notification(id.trim()).unwrap().unwrap();
    assert_eq!(n.title, "Traceback (most recent call last):");
    assert_eq!(n.body, "Traceback (most recent call last):\n  boom");
}

#[test]
fn the_summary_counts_levels_with_the_right_grammar() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (i, level) in [Level::Info, Level::Info, Level::Warning, Level::Error, Level::Critical].into_iter().enumerate() {
        add(d, T1403 + i as i64, level, None, &format!("n{i}"), "");
    }
    let out = cli(d, &["notifications", "list", "--level", "CRITICAL"]);
    assert_eq!(
        out.stderr,
        "NOTICE: There are 5 pending notifications including 1 warning and 2 errors (1 critical). To read them use 'runwatch notifications list'.\n"
    );
    out.expect_code(1);
}

#[test]
fn hidden_prints_nothing_and_keeps_exit_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    two(d);
    let out = cli(d, &["--notifications", "hidden", "notifications", "list", "--level", "CRITICAL"]);
    out.expect_code(0);
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout, "There are no notifications.\n");
    // The environment variable does the same.
    let out = run_cli(runwatch(d).env("RUNWATCH_NOTIFICATIONS", "hidden").args(["send", "hello"]));
    out.expect_code(0);
    assert_eq!(out.stderr, "");
}

#[test]
fn details_prints_every_pending_notification_after_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (started, stuck) = two(d);
    let out = cli(d, &["--notifications", "details", "send", "--level", "debug", "tick"]);
    out.expect_code(1);
    let tick = out.stdout.trim();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines[0], "NOTICE: There are 3 pending notifications including 1 error. To read them use 'runwatch notifications list'.");
    assert!(lines[1].ends_with("DEBUG  tick"), "{}", out.stderr);
    assert_eq!(lines[2], format!("  To see the details: runwatch notifications show {}", short(tick)));
    assert!(lines[3].ends_with("ERROR  Run 'be0ebd0c…' is stuck (no check-in for 105 s)"), "{}", out.stderr);
    assert_eq!(lines[6], format!("  To see the details: runwatch notifications show {}", short(&started)));
    assert_eq!(lines.len(), 7);
    assert!(out.stderr.contains(short(&stuck)));

    // After `notifications list`, which shows them already, only the line.
    let out = cli(d, &["--notifications", "details", "notifications", "list"]);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn colour_only_when_asked_for_and_never_with_no_color() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    add(d, T1403, Level::Warning, None, "disk almost full", "");
    let send = |env: &[(&str, &str)]| {
        let mut cmd = runwatch(d);
        cmd.envs(env.iter().copied()).args(["send", "--level", "info", "x"]);
        run_cli(&mut cmd)
    };
    let plain = send(&[]);
    assert!(plain.stderr.starts_with("NOTICE: ") && !plain.stderr.contains('\x1b'), "no colour on a pipe: {:?}", plain.stderr);
    let out = send(&[("CLICOLOR_FORCE", "1")]);
    assert!(out.stderr.contains("\x1b[33m"), "yellow for warnings: {:?}", out.stderr);
    add(d, T1403, Level::Error, None, "loss is NaN", "");
    let out = send(&[("CLICOLOR_FORCE", "1")]);
    assert!(out.stderr.contains("\x1b[31m"), "red for errors: {:?}", out.stderr);
    let out = send(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(out.stderr.starts_with("NOTICE: ") && !out.stderr.contains('\x1b'), "{:?}", out.stderr);

    let err = run_cli(runwatch(d).env("CLICOLOR_FORCE", "1").env("NO_COLOR", "1").args(["notifications", "show", "0000"]));
    assert!(err.stderr.starts_with("runwatch: error: ") && !err.stderr.contains('\x1b'), "{:?}", err.stderr);
}
