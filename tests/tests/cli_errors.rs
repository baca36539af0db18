//! Bad input to `runwatch`: one clear line on stderr naming what was wrong, exit 2 for
//! usage errors and 1 for runtime failures (126/127 when `exec` cannot start its command),
//! never a panic or a backtrace (`RUST_BACKTRACE=1` is set), and nothing stored changed —
//! the store's tables are dumped before and after, and so are the Aim repository's files.

use std::fs;
use std::path::{Path, PathBuf};

use runwatch_core::ingest::Event;
use runwatch_core::{DataDir, Level, Store};
use runwatch_tests::{binary, cli_env, dump_store, run_cli, runwatch};

/// A data dir with a few notifications (two sharing an id prefix) and an Aim repository
/// with one check-in.
struct World {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    repo: PathBuf,
    plain_dir: PathBuf,
}

const PENDING: &str = "3f2a9c1e-0000-4000-8000-000000000001";

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    fs::create_dir_all(repo.join(".aim/check_ins")).unwrap();
    fs::write(repo.join(".aim/check_ins/0123456789abcdef01234567-0000000000000001-starting-1795268411.34-00000"), b"").unwrap();
    let plain_dir = tmp.path().join("not-a-repo");
    fs::create_dir(&plain_dir).unwrap();
    let mut store = Store::open(&DataDir::at(&data)).unwrap();
    for (i, id) in [PENDING, "3f2a9c1e-1000-4000-8000-000000000002", "77770000-0000-4000-8000-000000000003"].iter().enumerate() {
        let event = Event {
            level: Some(if i == 0 { Level::Error } else { Level::Info }),
            run_id: Some("job-7".into()),
            message: format!("notification {i}"),
            ..Default::default()
        };
        let runwatch_core::Inserted::New(n) = store.ingest(&event, 1_795_269_780_000 + i as i64).unwrap() else { panic!() };
        store.conn().execute("UPDATE notifications SET id = ?1 WHERE id = ?2", [*id, n.id.as_str()]).unwrap();
    }
    World { _tmp: tmp, data, repo, plain_dir }
}

/// The names of every file under `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        out.push(path.display().to_string());
        if path.is_dir() {
            out.extend(files(&path));
        }
    }
    out.sort();
    out
}

/// Extra environment, arguments, expected exit code, and a text the error must mention.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], i32, &'a str);

/// Runs `args` in the world and checks the error contract; returns the error line.
#[track_caller]
fn rejects(w: &World, env: &[(&str, &str)], args: &[&str], code: i32, mentions: &str) -> String {
    let before = (dump_store(&w.data), files(&w.repo));
    let mut cmd = runwatch(&w.data);
    cmd.current_dir(&w.plain_dir).envs(env.iter().copied()).args(args);
    let out = run_cli(&mut cmd);
    let line = out.expect_one_line_error(code);
    assert!(line.contains(mentions), "{args:?}: expected the error to mention {mentions:?}:\n{line}");
    assert_eq!(out.stdout, "", "{args:?} printed on stdout");
    assert_eq!((dump_store(&w.data), files(&w.repo)), before, "{args:?} changed what is stored");
    line
}

#[test]
fn bad_input_gets_one_line_the_right_exit_code_and_changes_nothing() {
    let w = world();
    let repo = w.repo.to_str().unwrap();
    let missing = w.repo.join("missing");
    let missing = missing.to_str().unwrap();
    let plain = w.plain_dir.to_str().unwrap();
    let usage = 2;
    let runtime = 1;
    let cases: &[Case<'_>] = &[
        // Levels, modes, durations, numbers.
        (&[], &["notifications", "list", "--level", "LOUD"], usage, "unknown level 'LOUD': use DEBUG, INFO, WARNING, ERROR or CRITICAL"),
        (&[], &["send", "--level", "loud", "hello"], usage, "unknown level 'loud'"),
        (&[], &["--notifications", "loud", "notifications", "list"], usage, "[possible values: hidden, summary, details]"),
        (&[("RUNWATCH_NOTIFICATIONS", "loud")], &["notifications", "list"], usage, "(from RUNWATCH_NOTIFICATIONS)"),
        (&[], &["exec", "--silence-timeout", "soon", "--", "true"], usage, "write a duration such as 30s, 5m or 1h30m"),
        (&[], &["exec", "--silence-timeout", "0s", "--", "true"], usage, "longer than zero"),
        (&[], &["notifications", "list", "--limit", "-1"], usage, "'-1'"),
        (&[], &["notifications", "list", "--limit", "many"], usage, "invalid value 'many' for '--limit <N>'"),
        (&[], &["check-in", "--run", "job-7", "--expect-next-in", "soon"], usage, "'soon'"),
        // Ids: unknown, ambiguous, empty.
        (&[], &["notifications", "show", "zzzz"], runtime, "there is no notification with id 'zzzz'"),
        (&[], &["notifications", "show", "3f2a"], runtime, "notification id '3f2a' is ambiguous"),
        (&[], &["notifications", "show", ""], usage, "an id cannot be empty"),
        (&[], &["notifications", "ack", "--item", PENDING, "zzzz"], runtime, "'zzzz'"),
        (&[], &["notifications", "list", "--run", "nope"], runtime, "there is no run with id 'nope'"),
        (&[], &["notifications", "list", "--auto-ack", "--run", "nope"], runtime, "'nope'"),
        // Missing or conflicting arguments.
        (&[], &["notifications", "ack"], usage, "--all, or --item ID"),
        (&[], &["notifications", "ack", "--all", "--item", PENDING], usage, "cannot be used with"),
        (&[], &["exec"], usage, "give the command to run after '--'"),
        (&[], &["exec", "--"], usage, "give the command to run after '--'"),
        (&[], &["--json", "exec", "--", "true"], usage, "--json does not apply"),
        (&[], &["check-in", "--run", "job-7"], usage, "<--expect-next-in <SECONDS>|--finished|--failed>"),
        (&[], &["check-in", "--run", "job-7", "--finished", "--expect-next-in", "5"], usage, "cannot be used with"),
        (&[], &["send"], usage, "<MESSAGE>"),
        (&[], &["send", "  "], usage, "the message is empty"),
        (&[], &["send", "--run", "", "hello"], usage, "--run cannot be empty"),
        (&[], &["notifications", "lst"], usage, "a similar subcommand exists: 'list'"),
        (&[], &["notifications", "list", "--bogus"], usage, "unexpected argument '--bogus'"),
        (&[], &["completions", "tcsh"], usage, "'tcsh'"),
        // Repositories and run ids for check-in.
        (&[], &["check-in", "--run", "a b", "--finished"], usage, "a run id may hold only letters, digits"),
        (&[], &["check-in", "--run", ".hidden", "--finished"], usage, "cannot start with '.'"),
        (&[], &["--repo", missing, "check-in", "--run", "job-7", "--finished"], runtime, "cannot read the Aim repository"),
        (&[], &["--repo", plain, "check-in", "--run", "job-7", "--finished"], runtime, "is not an Aim repository"),
        (&[], &["check-in", "--run", "job-7", "--finished"], runtime, "there is no Aim repository here"),
        (&[], &["--repo", repo, "--repo", plain, "check-in", "--run", "job-7", "--finished"], usage, "pass --repo once"),
        // A command that cannot start.
        (&[], &["exec", "--", "/nonexistent/train.py"], 127, "cannot run '/nonexistent/train.py': command not found"),
    ];
    assert!(cases.len() >= 15);
    for (env, args, code, mentions) in cases {
        rejects(&w, env, args, *code, mentions);
    }
}

#[test]
fn usage_errors_point_at_the_help_of_the_command_at_fault() {
    let w = world();
    let line = rejects(&w, &[], &["notifications", "list", "--level", "LOUD"], 2, "LOUD");
    assert!(line.ends_with("; see 'runwatch notifications list --help'"), "{line}");
    let line = rejects(&w, &[], &["notifications", "ack"], 2, "--item");
    assert!(line.ends_with("; see 'runwatch notifications ack --help'"), "{line}");
}

#[test]
fn a_non_executable_command_exits_126() {
    let w = world();
    let script = w.plain_dir.join("train.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    // Mode 0644: not executable. (Root may bypass read/write permissions, not the x bit.)
    rejects(&w, &[], &["exec", "--", script.to_str().unwrap()], 126, "permission denied");
}

#[test]
fn a_data_dir_that_is_a_file_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"precious").unwrap();
    for args in [&["notifications", "list"][..], &["send", "hello"], &["notifications", "ack", "--all"], &["exec", "--", "true"]] {
        let out = run_cli(runwatch(&file).args(args));
        let line = out.expect_one_line_error(1);
        assert!(line.contains("is not a directory") && line.contains("--data-dir"), "{line}");
        // The same through the environment.
        let mut cmd = std::process::Command::new(binary("runwatch"));
        cli_env(&mut cmd);
        let out = run_cli(cmd.env("RUNWATCH_HOME", &file).args(args));
        assert!(out.expect_one_line_error(1).contains("is not a directory"));
    }
    assert_eq!(fs::read(&file).unwrap(), b"precious");
}

#[test]
fn a_data_dir_inside_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"").unwrap();
    let out = run_cli(runwatch(&file.join("data")).args(["notifications", "list"]));
    let line = out.expect_one_line_error(1);
    assert!(line.contains("file/data"), "the error names the path: {line}");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let w = world();
    let mut child = runwatch(&w.data)
        .args(["--notifications", "hidden", "notifications", "list", "--all"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
