//! `runwatch start --repo DIR` with the logger: each notification is printed as it happens,
//! driven by real check-in files and a real RocksDB chunk.

use std::path::Path;
use std::process::Command;

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_aim::logs::testing::write_log_records;
use runwatch_core::{DataDir, Store};
use runwatch_tests::{binary, Running};

const RUN: &str = "0123456789abcdef01234567";

fn check_in(repo: &Path, idx: u64, flag: Flag, expect_next_in: u64) {
    let c = CheckIn { run_hash: RUN.into(), idx, flag, utc_time: 1_795_268_411.34, expect_next_in };
    // Written under a temporary name and renamed into place, as an atomic writer would.
    let dir = repo.join(".aim/check_ins");
    let tmp = dir.join(format!(".{}.tmp", c.file_name()));
    std::fs::write(&tmp, b"").unwrap();
    std::fs::rename(&tmp, dir.join(c.file_name())).unwrap();
}

#[test]
fn start_prints_each_notification_as_it_happens() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join(".aim/check_ins")).unwrap();
    std::fs::write(repo.join(".aim/check_ins/junk-notanumber-check_in-1.0-5"), b"").unwrap();
    let data = tmp.path().join("data");
    // A short grace so the stuck run shows up within the test's patience.
    let short_grace = runwatch_core::SettingsPatch { grace_secs: Some(1), ..Default::default() };
    runwatch_core::settings::patch(&mut Store::open(&DataDir::at(&data)).unwrap(), &short_grace).unwrap();

    let mut daemon =
        Running::spawn(Command::new(binary("runwatch")).arg("--data-dir").arg(&data).arg("--repo").arg(repo.join(".aim")).args([
            "start",
            "--http",
            "127.0.0.1:0",
        ]));
    daemon.wait_for_line("naming the repo", |l| l.starts_with("Watching '") && l.contains("repo"));
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");

    check_in(&repo, 1, Flag::Starting, 0);
    daemon.wait_for_line("'started'", |l| l.ends_with(&format!("INFO     Run '{RUN}' started.")));

    write_log_records(
        &repo.join(".aim"),
        RUN,
        &[(0, 20, "just info"), (1, 30, "disk {almost} full"), (2, 30, "disk {almost} full"), (3, 40, "loss is NaN")],
    )
    .unwrap();
    check_in(&repo, 2, Flag::NewLogs, 0);
    daemon.wait_for_line("the warning", |l| l.ends_with("WARNING  disk {almost} full (1 more messages logged)"));
    daemon.wait_for_line("the error", |l| l.ends_with("ERROR    loss is NaN"));

    check_in(&repo, 3, Flag::CheckIn, 1);
    daemon.wait_for_line("'stuck' with Aim's template", |l| {
        l.contains(&format!("ERROR    ❗️ Something wrong with Run '{RUN}'. Please check. ❗️ — Run '{RUN}' is stuck (no check-in for 2 s)."))
    });
    check_in(&repo, 4, Flag::CheckIn, 600);
    daemon.wait_for_line("'recovered'", |l| l.ends_with(&format!("Run '{RUN}' recovered: check-ins resumed.")));
    check_in(&repo, 5, Flag::Finished, 0);
    daemon.wait_for_line("'finished'", |l| l.ends_with(&format!("Run '{RUN}' finished without error.")));

    daemon.signal_group("TERM");
    let (status, stdout, stderr) = daemon.finish();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("just info"), "INFO log records are below the default WARNING level");
    assert_eq!(stdout.matches("started.").count(), 1, "{stdout}");
    assert!(stderr.contains("junk-notanumber-check_in-1.0-5"), "malformed names are warned about: {stderr}");
    assert_eq!(stderr.matches("junk-notanumber").count(), 1, "once: {stderr}");
}

#[test]
fn a_repository_added_in_settings_is_watched_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("later");
    std::fs::create_dir_all(repo.join(".aim/check_ins")).unwrap();
    let mut daemon =
        Running::spawn(Command::new(binary("runwatch")).current_dir(tmp.path()).arg("--data-dir").arg(tmp.path().join("data")).args([
            "start",
            "--http",
            "127.0.0.1:0",
        ]));
    let url = runwatch_tests::url_in(&daemon.wait_for_line("the URL", |l| l.starts_with("Serving the UI at ")));
    daemon.wait_for_line("ready", |l| l == "Press Ctrl+C to exit");
    let base = url.split('#').next().unwrap().trim_end_matches('/').to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    agent
        .patch(format!("{base}/api/v1/settings"))
        .header("Authorization", format!("Bearer {}", runwatch_tests::token_in(&url)))
        .header("Content-Type", "application/json")
        .send(serde_json::json!({"watched_repos": [repo.display().to_string()]}).to_string())
        .unwrap();
    // The new repository's history is not news; what happens next is.
    let deadline = std::time::Instant::now() + runwatch_tests::PATIENCE;
    let store = Store::open(&DataDir::at(tmp.path().join("data"))).unwrap();
    while !runwatch_core::settings::known_repos(&store).unwrap().iter().any(|r| r.ends_with("later")) {
        assert!(std::time::Instant::now() < deadline, "the repository was never scanned");
        std::thread::sleep(std::time::Duration::from_millis(50)); // polling the daemon's progress
    }
    check_in(&repo, 1, Flag::Starting, 0);
    daemon.wait_for_line("'started'", |l| l.ends_with(&format!("Run '{RUN}' started.")));
    daemon.signal_group("TERM");
    assert!(daemon.finish().0.success());
}
