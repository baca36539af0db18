//! `runwatch exec -- COMMAND …` with real child processes: exit codes pass through, the
//! output passes through, failures carry the tail of stderr, signals are forwarded, and a
//! silent command is reported as stalled once per silence. Waits are on observable state
//! (output lines, files, the store), never on guessed sleeps.

use std::path::Path;
use std::process::Command;

use runwatch_core::{Level, RunState};
use runwatch_tests::fake_http::FakeServer;
use runwatch_tests::{add_slack_notifier, run_cli, runwatch, wait_until, CliOutput, Running};
use runwatch_tests::{all_notifications as notifications, open_store as store};

fn exec(data: &Path, args: &[&str]) -> CliOutput {
    run_cli(runwatch(data).args(["--notifications", "hidden", "exec"]).args(args))
}

#[test]
fn a_successful_command_is_started_then_finished_and_its_output_passes_through() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = exec(
        d,
        &["--name", "train", "--run", "job-1", "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; echo \"id=$RUNWATCH_RUN_ID\""],
    );
    out.expect_code(0);
    assert_eq!(out.stdout, "to-stdout\nid=job-1\n");
    assert_eq!(out.stderr, "to-stderr\n");

    let ns = notifications(d);
    let titles: Vec<&str> = ns.iter().map(|n| n.title.as_str()).collect();
    assert_eq!(titles[0], "Run 'train' started.");
    assert!(titles[1].starts_with("Run 'train' finished without error after "), "{titles:?}");
    assert_eq!(ns.len(), 2);
    assert!(ns.iter().all(|n| n.level == Level::Info && n.run_id.as_deref() == Some("job-1") && n.source == "exec"));
    assert!(ns[0].body.contains("Command: sh -c 'echo to-stdout;"), "{}", ns[0].body);
    let run = store(d).run("job-1").unwrap().unwrap();
    assert_eq!((run.name.as_deref(), run.state), (Some("train"), RunState::Finished));

    // A second run gets its own event ids: nothing is taken for a duplicate.
    exec(d, &["--run", "job-1", "--", "true"]).expect_code(0);
    assert_eq!(notifications(d).len(), 4);
}

#[test]
fn exit_codes_and_signals_pass_through() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    exec(d, &["--", "sh", "-c", "exit 3"]).expect_code(3);
    exec(d, &["--", "false"]).expect_code(1);
    // Killed by a signal: 128 + its number, as a shell reports it.
    exec(d, &["--", "sh", "-c", "kill -KILL $$"]).expect_code(137);
    let last = notifications(d).pop().unwrap();
    assert_eq!(last.level, Level::Error);
    assert!(last.title.starts_with("Run 'sh' was killed by SIGKILL after "), "{}", last.title);
    assert!(last.body.contains("Killed by signal 9 (SIGKILL)"), "{}", last.body);
}

#[test]
fn pending_warnings_never_change_the_exit_code_of_exec() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // The default summary mode: a failing run leaves an error pending …
    run_cli(runwatch(d).args(["exec", "--", "false"])).expect_code(1);
    // … and the next run still exits with its command's code, 0, under the summary line.
    let out = run_cli(runwatch(d).args(["exec", "--", "true"]));
    out.expect_code(0);
    assert!(out.stderr.starts_with("NOTICE: There are 4 pending notifications including 1 error."), "{}", out.stderr);
}

#[test]
fn a_failure_reports_the_exit_code_and_the_last_lines_of_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let script = "for i in $(seq 1 30); do echo line$i >&2; done; printf 'no newline at the end' >&2; exit 4";
    let out = exec(d, &["--name", "resnet", "--", "sh", "-c", script]);
    out.expect_code(4);
    assert!(out.stderr.starts_with("line1\nline2\n") && out.stderr.ends_with("line30\nno newline at the end"), "{}", out.stderr);

    let failed = notifications(d).pop().unwrap();
    assert_eq!(failed.level, Level::Error);
    assert!(failed.title.starts_with("Run 'resnet' failed with exit code 4 after "), "{}", failed.title);
    assert!(failed.body.contains("\nExit code: 4\nDuration: "), "{}", failed.body);
    let tail = failed.body.split("Last lines of stderr:\n").nth(1).unwrap_or_else(|| panic!("{}", failed.body));
    let expected: Vec<String> = (12..=30).map(|i| format!("line{i}")).chain(["no newline at the end".to_string()]).collect();
    assert_eq!(tail.lines().collect::<Vec<_>>(), expected);
    assert_eq!(store(d).run(failed.run_id.as_deref().unwrap()).unwrap().unwrap().state, RunState::Failed);
    assert_eq!(store(d).run(failed.run_id.as_deref().unwrap()).unwrap().unwrap().cause.as_deref(), Some("exit code 4"));
}

/// `runwatch exec` under a test harness: its own process group, stdout read line by line.
fn spawn_exec(data: &Path, args: &[&str]) -> Running {
    let mut cmd: Command = runwatch(data);
    cmd.args(["--notifications", "hidden", "exec"]).args(args);
    Running::spawn(&mut cmd)
}

#[test]
fn sigint_and_sigterm_sent_to_runwatch_are_forwarded_to_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (signal, code) in [("INT", 42), ("TERM", 43), ("HUP", 44)] {
        let script = format!("trap 'echo got-{signal}; exit {code}' {signal}; echo ready; while :; do sleep 0.1; done");
        let mut run = spawn_exec(d, &["--", "sh", "-c", &script]);
        run.wait_for_line("'ready'", |l| l == "ready");
        // To runwatch alone: only forwarding can make the command see it.
        run.signal_process(signal);
        run.wait_for_line(&format!("the command's trap for SIG{signal}"), |l| l == format!("got-{signal}"));
        let (status, _, stderr) = run.finish();
        assert_eq!(status.code(), Some(code), "{stderr}");
        let failed = notifications(d).pop().unwrap();
        assert!(failed.title.contains(&format!("failed with exit code {code}")), "{}", failed.title);
    }
}

#[test]
fn a_silent_command_is_reported_stalled_once_per_silence() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    let go1 = tmp.path().join("go1");
    let go2 = tmp.path().join("go2");
    // Prints, stays silent until go1 exists, prints again, stays silent until go2 exists.
    let script = format!(
        "echo begin; while [ ! -e '{}' ]; do sleep 0.05; done; echo middle; while [ ! -e '{}' ]; do sleep 0.05; done; echo end",
        go1.display(),
        go2.display()
    );
    let mut run = spawn_exec(&d, &["--name", "quiet", "--silence-timeout", "1s", "--", "sh", "-c", &script]);
    run.wait_for_line("'begin'", |l| l == "begin");

    let stalls = |d: &Path| notifications(d).into_iter().filter(|n| n.level == Level::Warning).collect::<Vec<_>>();
    let first = wait_until("the first stall", || stalls(&d).into_iter().next());
    assert_eq!(first.title, "Run 'quiet' stalled: no output for 1s.");
    assert_eq!(store(&d).run(first.run_id.as_deref().unwrap()).unwrap().unwrap().state, RunState::Stuck);
    std::fs::write(&go1, b"").unwrap();
    run.wait_for_line("'middle'", |l| l == "middle");
    // Output resumed, so the next silence is reported again — and each only once.
    wait_until("the second stall", || (stalls(&d).len() == 2).then_some(()));
    std::fs::write(&go2, b"").unwrap();
    let (status, stdout, stderr) = run.finish();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(stalls(&d).len(), 2);
    let last = notifications(&d).pop().unwrap();
    assert!(last.title.starts_with("Run 'quiet' finished without error"), "{}", last.title);
}

#[test]
fn with_no_watcher_a_stall_reaches_slack_while_the_command_still_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    let go = tmp.path().join("go");
    let slack = FakeServer::start();
    add_slack_notifier(&d, "5ac4-exec", &slack.url("/services/T/B/EXEC"));
    let script = format!("echo begin; while [ ! -e '{}' ]; do sleep 0.05; done; echo end", go.display());
    let mut run = spawn_exec(&d, &["--name", "quiet", "--silence-timeout", "1s", "--", "sh", "-c", &script]);
    run.wait_for_line("'begin'", |l| l == "begin");

    // The command waits for `go`, which only this test writes: both messages came first.
    let texts = |slack: &FakeServer| -> Vec<String> {
        slack.requests().iter().map(|r| r.json()["text"].as_str().unwrap_or("").to_string()).collect()
    };
    wait_until("the start and the stall in Slack", || {
        let t = texts(&slack);
        (t.iter().any(|t| t.contains("started")) && t.iter().any(|t| t.contains("stalled"))).then_some(())
    });
    std::fs::write(&go, b"").unwrap();
    run.wait_for_line("'end'", |l| l == "end");
    let (status, stdout, stderr) = run.finish();
    assert!(status.success(), "{stdout}\n{stderr}");
    wait_until("the end in Slack", || texts(&slack).iter().any(|t| t.contains("finished without error")).then_some(()));
}
