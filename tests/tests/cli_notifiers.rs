//! `runwatch notifiers …` with the real binary: Aim's commands, by flags and (in
//! tests/cli/test_interactive.py) by prompts in a real pseudo-terminal.

use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::{dump_store, run_cli, runwatch};

fn list_json(data: &std::path::Path) -> Vec<serde_json::Value> {
    let out = run_cli(runwatch(data).args(["--json", "notifiers", "list"]));
    out.expect_code(0);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn add_list_disable_enable_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let out = run_cli(runwatch(data).args([
        "notifiers",
        "add",
        "slack",
        "--webhook-url",
        "https://hooks.slack.com/services/T0/B0/SECRETSECRET",
        "--min-level",
        "warning",
    ]));
    out.expect_code(0);
    assert!(out.stdout.starts_with("Added slack notifier ") && out.stdout.contains("(enabled, WARNING and above)"), "{}", out.stdout);
    run_cli(runwatch(data).args(["notifiers", "add", "workplace", "--group-id", "1234", "--access-token", "EAAGverysecrettoken99"]))
        .expect_code(0);
    run_cli(runwatch(data).args(["notifiers", "add", "logger", "--message", "{run.hash} is stuck"])).expect_code(0);
    run_cli(runwatch(data).args([
        "notifiers",
        "add",
        "webhook",
        "--url",
        "http://127.0.0.1:9/hook",
        "--header",
        "Authorization: Bearer hdrsecret123456789",
    ]))
    .expect_code(0);

    let table = run_cli(runwatch(data).args(["notifiers", "list"]));
    table.expect_code(0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NOTIFIER", "ID", "TYPE", "STATUS", "LEVEL", "SETTINGS"]);
    assert_eq!(lines.len(), 5);
    for secret in ["SECRETSECRET", "verysecrettoken", "hdrsecret"] {
        assert!(!table.stdout.contains(secret), "{secret} shown:\n{}", table.stdout);
    }
    assert!(table.stdout.contains("url=https://hooks.slack.com/****"), "{}", table.stdout);
    // Columns line up: every row's TYPE starts where the header's does.
    let type_col = lines[0].find("TYPE").unwrap();
    assert!(lines[1..].iter().all(|l| l[type_col..].starts_with(['s', 'w', 'l'])), "{}", table.stdout);

    let all = list_json(data);
    let slack = all.iter().find(|n| n["type"] == "slack").unwrap()["id"].as_str().unwrap().to_string();
    let prefix = &slack[..6];
    let out = run_cli(runwatch(data).args(["notifiers", "disable", prefix]));
    out.expect_code(0);
    assert!(out.stdout.contains("is disabled"), "{}", out.stdout);
    assert_eq!(list_json(data).iter().find(|n| n["id"] == slack.as_str()).unwrap()["status"], "disabled");
    run_cli(runwatch(data).args(["notifiers", "enable", prefix])).expect_code(0);
    assert_eq!(list_json(data).iter().find(|n| n["id"] == slack.as_str()).unwrap()["status"], "enabled");

    // `remove` asks; with no terminal to ask on it refuses, and --yes skips the question.
    let before = dump_store(data);
    let out = run_cli(runwatch(data).args(["notifiers", "remove", prefix]));
    assert!(out.expect_one_line_error(1).contains("--yes"));
    assert_eq!(dump_store(data), before);
    let out = run_cli(runwatch(data).args(["notifiers", "remove", prefix, "--yes"]));
    out.expect_code(0);
    assert!(out.stdout.contains(&format!("Removed notifier {slack}.")), "{}", out.stdout);
    assert_eq!(list_json(data).len(), 3);
}

#[test]
fn bad_notifier_input_is_one_line_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    run_cli(runwatch(data).args(["notifiers", "add", "logger"])).expect_code(0);
    let id = list_json(data)[0]["id"].as_str().unwrap().to_string();
    let before = dump_store(data);
    for (args, code, needle) in [
        (vec!["notifiers", "add", "slack", "--webhook-url", "hooks.slack.com/x"], 2, "invalid URL 'hooks.slack.com/x'"),
        (vec!["notifiers", "add", "slack", "--webhook-url", "ftp://example.com/x"], 2, "http:// or https://"),
        (vec!["notifiers", "add", "slack"], 2, "--webhook-url"),
        (vec!["notifiers", "add", "workplace", "--group-id", "12ab", "--access-token", "t"], 2, "group id must be a number"),
        (vec!["notifiers", "add", "logger", "--message", "{run.hsh}"], 2, "unknown placeholder '{run.hsh}'"),
        (vec!["notifiers", "add", "logger", "--min-level", "LOUD"], 2, "unknown level 'LOUD'"),
        (vec!["notifiers", "add", "webhook", "--url", "http://x/", "--header", "no colon"], 2, "Name: value"),
        (vec!["notifiers", "add"], 1, "in scripts use"),
        (vec!["notifiers", "enable", "ffffffff"], 1, "no notifier with id 'ffffffff'"),
        (vec!["notifiers", "test", "nope"], 1, "no notifier"),
        (vec!["notifiers", "set-log-level", "VERBOSE"], 2, "unknown level"),
        (vec!["--repo", "/nonexistent/repo", "notifiers", "import-aim"], 1, "/nonexistent/repo"),
    ] {
        let out = run_cli(runwatch(data).args(&args));
        let line = out.expect_one_line_error(code);
        assert!(line.contains(needle), "{args:?}: {line}");
        assert_eq!(dump_store(data), before, "{args:?} changed the store");
    }
    assert!(!before.is_empty() && before.contains(&id));
}

#[test]
fn test_sends_now_and_reports_the_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let slack = FakeServer::start();
    let url = slack.url("/services/T/B/TESTSECRET");
    run_cli(runwatch(data).args(["notifiers", "add", "slack", "--webhook-url", &url])).expect_code(0);
    let id = list_json(data)[0]["id"].as_str().unwrap().to_string();
    let out = run_cli(runwatch(data).args(["notifiers", "test", &id[..8]]));
    out.expect_code(0);
    assert!(out.stdout.trim_end().ends_with("sent."), "{}", out.stdout);
    let r = slack.requests();
    assert_eq!(r.len(), 1);
    assert!(r[0].json()["text"].as_str().unwrap().contains("test message"));

    slack.script([runwatch_tests::fake_http::Reply::status(404, "no_service")]);
    let out = run_cli(runwatch(data).args(["notifiers", "test", &id]));
    let line = out.expect_one_line_error(1);
    assert!(line.contains("HTTP 404: no_service"), "{line}");
    assert!(!line.contains("TESTSECRET") && !out.stdout.contains("TESTSECRET"));
}

#[test]
fn log_level_and_import_from_aim() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = run_cli(runwatch(&data).args(["notifiers", "get-log-level"]));
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "WARNING");
    run_cli(runwatch(&data).args(["notifiers", "set-log-level", "info"])).expect_code(0);
    assert_eq!(run_cli(runwatch(&data).args(["notifiers", "get-log-level"])).stdout.trim(), "INFO");

    let repo = tmp.path().join("exp");
    std::fs::create_dir_all(repo.join(".aim/ext/notifications")).unwrap();
    std::fs::write(
        repo.join(".aim/ext/notifications/config.json"),
        r#"{"notifications": {"version": "1.0", "log_level": 40, "notifiers": {
            "0f6a3a4e-5b9a-4c55-9b64-8f0b7c2b1a11": {"id": "0f6a3a4e-5b9a-4c55-9b64-8f0b7c2b1a11", "type": "slack", "status": "enabled",
              "arguments": {"url": "https://hooks.slack.com/services/T/B/AIMSECRET", "message": "❗️ Something wrong with Run '{run.hash}'. Please check. ❗️"}},
            "1f6a3a4e-5b9a-4c55-9b64-8f0b7c2b1a11": {"id": "1f6a3a4e-5b9a-4c55-9b64-8f0b7c2b1a11", "type": "workplace", "status": "disabled",
              "arguments": {"group_id": 998877, "access_token": "aimworkplacetoken", "message": "m"}}}}}"#,
    )
    .unwrap();
    let out = run_cli(runwatch(&data).arg("--repo").arg(repo.join(".aim")).args(["notifiers", "import-aim"]));
    out.expect_code(0);
    assert!(out.stdout.contains("Imported 2 notifiers") && out.stdout.contains("Log level set to ERROR."), "{}", out.stdout);
    assert!(!out.stdout.contains("AIMSECRET"));
    let all = list_json(&data);
    assert_eq!(all.len(), 2);
    assert_eq!(run_cli(runwatch(&data).args(["notifiers", "get-log-level"])).stdout.trim(), "ERROR");
    // Importing again adds nothing.
    let again = run_cli(runwatch(&data).arg("--repo").arg(&repo).args(["notifiers", "import-aim"]));
    again.expect_code(0);
    assert!(again.stdout.contains("Imported 0 notifiers"), "{}", again.stdout);
}

#[test]
fn send_and_exec_deliver_before_exiting_when_no_watcher_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let slack = FakeServer::start();
    run_cli(runwatch(data).args(["notifiers", "add", "slack", "--webhook-url", &slack.url("/services/T/B/SEND")])).expect_code(0);
    let out = run_cli(runwatch(data).args(["--notifications", "hidden", "send", "--level", "ERROR", "disk {almost} full"]));
    out.expect_code(0);
    let r = slack.requests();
    assert_eq!(r.len(), 1, "delivered by the command itself");
    assert_eq!(r[0].json()["text"], "disk {almost} full");

    // A failing endpoint: the command says so and leaves the delivery queued.
    slack.script([runwatch_tests::fake_http::Reply::status(404, "gone")]);
    let out = run_cli(runwatch(data).args(["--notifications", "hidden", "send", "second"]));
    out.expect_code(0);
    let ids = run_cli(runwatch(data).args(["--notifications", "hidden", "--json", "notifications", "list"]));
    assert!(ids.stdout.contains("second"));

    let out =
        run_cli(runwatch(data).args(["--notifications", "hidden", "exec", "--name", "job", "--", "sh", "-c", "echo oops >&2; exit 3"]));
    out.expect_code(3);
    let texts: Vec<String> = slack.requests().iter().map(|r| r.json()["text"].as_str().unwrap().to_string()).collect();
    assert!(texts.iter().any(|t| t.contains("job") && t.contains("failed")), "{texts:?}");
}

#[test]
fn ntfy_from_flags_with_a_token_file_masked_in_lists_and_tested_for_real() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ntfy = FakeServer::start();
    let token_file = tmp.path().join("ntfy-token");
    std::fs::write(&token_file, "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2\n").unwrap();
    let url = ntfy.url("");
    let out = run_cli(runwatch(&data).args([
        "notifiers",
        "add",
        "ntfy",
        "--url",
        &url,
        "--topic",
        "runwatch-alerts-7f3a",
        "--token-file",
        token_file.to_str().unwrap(),
        "--click-url",
        "https://gpu1.lab:8747/",
    ]));
    out.expect_code(0);
    assert!(out.stdout.starts_with("Added ntfy notifier "), "{}", out.stdout);
    let listed = list_json(&data);
    assert_eq!(listed[0]["config"]["token"], "****NIz2");
    assert_eq!(listed[0]["config"]["topic"], "run****");
    let table = run_cli(runwatch(&data).args(["notifiers", "list"]));
    assert!(!table.stdout.contains("tk_AgQdq") && !table.stdout.contains("alerts-7f3a"), "{}", table.stdout);

    let id = listed[0]["id"].as_str().unwrap().to_string();
    run_cli(runwatch(&data).args(["notifiers", "test", &id])).expect_code(0);
    let r = ntfy.requests();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].method.as_str(), r[0].path.as_str()), ("POST", "/"));
    assert_eq!(r[0].header("authorization"), Some("Bearer tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"));
    let body = r[0].json();
    assert_eq!((body["topic"].as_str(), body["priority"].as_i64()), (Some("runwatch-alerts-7f3a"), Some(2)), "{body}");

    // A missing token file and a bad topic: one line, nothing stored.
    let missing = run_cli(runwatch(&data).args(["notifiers", "add", "ntfy", "--topic", "t", "--token-file", "/nonexistent/tok"]));
    assert!(missing.expect_one_line_error(1).contains("cannot read the token file"), "{}", missing.stderr);
    let bad = run_cli(runwatch(&data).args(["notifiers", "add", "ntfy", "--topic", "no spaces"]));
    assert!(bad.expect_one_line_error(2).contains("invalid ntfy topic"), "{}", bad.stderr);
    assert_eq!(list_json(&data).len(), 1);
}
