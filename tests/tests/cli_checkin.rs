//! `runwatch check-in`: Aim's check-in protocol without Aim — the file names Aim writes,
//! one idx counter per run shared by all flags, older files of the same run and flag
//! removed, no temporary names left behind — and a running watcher that reads them.

use std::fs;
use std::path::Path;
use std::process::Command;

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_tests::{binary, run_cli, runwatch, CliOutput, Running};

const RUN: &str = "0123456789abcdef01234567";

/// The check-in files (parsed) and every other name in `.aim/check_ins`, sorted by idx.
fn check_ins(repo: &Path) -> (Vec<CheckIn>, Vec<String>) {
    let mut good = Vec::new();
    let mut other = Vec::new();
    for entry in fs::read_dir(repo.join(".aim/check_ins")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        match CheckIn::parse(&name) {
            Ok(c) => good.push(c),
            Err(_) => other.push(name),
        }
    }
    good.sort_by_key(|c| c.idx);
    (good, other)
}

fn check_in(data: &Path, repo: &Path, args: &[&str]) -> CliOutput {
    run_cli(runwatch(data).arg("--repo").arg(repo).args(["--notifications", "hidden", "check-in"]).args(args))
}

#[test]
fn check_ins_follow_aims_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo) = (tmp.path().join("data"), tmp.path().join("repo"));
    fs::create_dir_all(repo.join(".aim/check_ins")).unwrap();
    // What Aim's Run() wrote, and another run's file that must be left alone.
    fs::write(repo.join(format!(".aim/check_ins/{RUN}-0000000000000001-starting-1795268400.00-00000")), b"").unwrap();
    let other = "fedcba9876543210fedcba98-0000000000000007-check_in-1795268400.00-00030";
    fs::write(repo.join(".aim/check_ins").join(other), b"").unwrap();

    let out = check_in(&data, &repo, &["--run", RUN, "--expect-next-in", "30"]);
    out.expect_code(0);
    assert_eq!(out.stdout, format!("Run '{RUN}' checked in (check-in 2); the next check-in is expected within 30 s.\n"));
    let out = check_in(&data, &repo, &["--run", RUN, "--expect-next-in", "5"]);
    out.expect_code(0);

    let (files, junk) = check_ins(&repo);
    assert!(junk.is_empty(), "{junk:?}");
    let mine: Vec<(u64, Flag, u64)> = files.iter().filter(|c| c.run_hash == RUN).map(|c| (c.idx, c.flag, c.expect_next_in)).collect();
    // The older check_in (idx 2) is gone; `starting` stays, as with Aim.
    assert_eq!(mine, [(1, Flag::Starting, 0), (3, Flag::CheckIn, 5)]);
    assert!(files.iter().any(|c| c.file_name() == other));
    let written = files.iter().find(|c| c.idx == 3).unwrap();
    let name = written.file_name();
    assert_eq!(name.len(), RUN.len() + 1 + 16 + 1 + "check_in".len() + 1 + 13 + 1 + 5, "{name}");
    assert!(fs::metadata(repo.join(".aim/check_ins").join(&name)).unwrap().len() == 0, "check-in files are empty");

    let out = run_cli(runwatch(&data).arg("--repo").arg(repo.join(".aim")).args(["--json", "check-in", "--run", RUN, "--finished"]));
    out.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!((v["idx"].as_u64(), v["flag"].as_str()), (Some(4), Some("finished")));
    let (files, _) = check_ins(&repo);
    let mine: Vec<(u64, Flag)> = files.iter().filter(|c| c.run_hash == RUN).map(|c| (c.idx, c.flag)).collect();
    assert_eq!(mine, [(1, Flag::Starting), (3, Flag::CheckIn), (4, Flag::Finished)]);

    // No temporary file is left anywhere in the repository.
    let hidden: Vec<_> = fs::read_dir(repo.join(".aim"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn the_check_ins_directory_is_created_and_the_repo_defaults_to_the_current_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(tmp.path().join("repo/.aim")).unwrap();
    let mut cmd = runwatch(&data);
    cmd.current_dir(tmp.path().join("repo")).args(["--notifications", "hidden", "check-in", "--run", "job-7.a_b", "--expect-next-in", "0"]);
    let out = run_cli(&mut cmd);
    out.expect_code(0);
    assert!(out.stdout.contains("with no deadline"), "{}", out.stdout);
    let (files, _) = check_ins(&tmp.path().join("repo"));
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].run_hash.as_str(), files[0].idx, files[0].flag), ("job-7.a_b", 1, Flag::CheckIn));
}

#[test]
fn a_running_watcher_reads_the_check_ins() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo) = (tmp.path().join("data"), tmp.path().join("repo"));
    fs::create_dir_all(repo.join(".aim/check_ins")).unwrap();
    let mut start = Command::new(binary("runwatch"));
    runwatch_tests::cli_env(&mut start);
    start.arg("--data-dir").arg(&data).arg("--repo").arg(&repo).args(["start", "--http", "127.0.0.1:0"]);
    let mut daemon = Running::spawn(&mut start);
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");

    check_in(&data, &repo, &["--run", RUN, "--expect-next-in", "600"]).expect_code(0);
    check_in(&data, &repo, &["--run", RUN, "--finished"]).expect_code(0);
    daemon.wait_for_line("'finished'", |l| l.contains(&format!("Run '{RUN}' finished without error.")));
    daemon.signal_group("TERM");
    let (status, stdout, stderr) = daemon.finish();
    assert!(status.success(), "{stdout}\n{stderr}");
}
