//! Follower benchmark: one `runwatch start` follows others (`runwatch remotes`) over
//! loopback HTTP.
//!
//! 1. Latency: events sent to a server one at a time; from the server's answer (the event is
//!    stored there) to the notification being in the follower's store (p50, p99, max).
//! 2. Catch-up: events sent while the follower is stopped, then the time from its start
//!    until all of them are in its store.
//! 3. Idle CPU: the follower following three servers, nothing happening (% of one core).
//! 4. Latency over ssh: as 1, through `ssh -L` to an sshd of the benchmark's own (when
//!    Debian's openssh-server is installed).
//!
//! Run: `make bench-remote` (release binaries). Options: `--events N` (latency samples),
//! `--catch-up N`, `--idle SECS`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runwatch_core::{DataDir, Store};
use runwatch_tests::bench::{cpu_seconds, release_bin, start, start_with, Daemon};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: u64| -> u64 {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (events, catch_up, idle) = (opt("--events", 200), opt("--catch-up", 10_000), opt("--idle", 30));
    let bin = release_bin("runwatch");
    let tmp = tempfile::tempdir().expect("temp dir");
    println!("runwatch-bench-follow: {events} events one at a time; a catch-up of {catch_up}; {idle} s idle with three servers");

    let servers: Vec<Daemon> = (0..3).map(|i| start(&bin, &tmp.path().join(format!("server-{i}")))).collect();
    let follower_dir = tmp.path().join("follower");
    for (i, s) in servers.iter().enumerate() {
        let token_file = tmp.path().join(format!("token-{i}"));
        std::fs::write(&token_file, &s.token).expect("token file");
        let ok = Command::new(&bin)
            .arg("--data-dir")
            .arg(&follower_dir)
            .args(["--notifications", "hidden", "remotes", "add", &format!("s{i}"), &s.url, "--token-file"])
            .arg(&token_file)
            .stdout(Stdio::null())
            .status()
            .expect("remotes add");
        assert!(ok.success());
    }
    let mut follower = start(&bin, &follower_dir);
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let send = |server: &Daemon, body: serde_json::Value, path: &str| {
        agent
            .post(&format!("{}/api/v1/{path}", server.url))
            .header("Authorization", &format!("Bearer {}", server.token))
            .content_type("application/json")
            .send(body.to_string())
            .expect("send");
    };
    let store = Store::open(&DataDir::at(&follower_dir)).expect("follower store");
    let count = || -> i64 {
        store.conn().query_row("SELECT COUNT(*) FROM notifications WHERE origin IS NOT NULL", [], |r| r.get(0)).expect("count")
    };
    wait_for(&count, 0, Duration::from_secs(30));

    // 1. Latency.
    let mut lat = Vec::new();
    for i in 0..events {
        let before = count();
        send(&servers[0], json!({ "message": format!("latency {i}") }), "events");
        let t0 = Instant::now();
        wait_for(&count, before + 1, Duration::from_secs(30));
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    println!(
        "server event -> follower inbox: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        lat.len()
    );

    // 2. Catch-up after the follower was away.
    follower.stop();
    let before = count();
    for chunk in 0..catch_up.div_ceil(1000) {
        let n = (catch_up - chunk * 1000).min(1000);
        let batch: Vec<_> = (0..n).map(|i| json!({ "message": format!("while away {chunk}.{i}") })).collect();
        send(&servers[1], json!({ "events": batch }), "events/batch");
    }
    let t0 = Instant::now();
    let mut follower = start(&bin, &follower_dir);
    wait_for(&count, before + catch_up as i64, Duration::from_secs(600));
    println!("catch-up of {catch_up} notifications (start included): {:.2} s", t0.elapsed().as_secs_f64());

    // 3. Idle CPU with three servers followed.
    std::thread::sleep(Duration::from_secs(2)); // let the catch-up's last writes settle (a benchmark, not a test)
    let cpu0 = cpu_seconds(follower.child.id());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle));
    let cpu = cpu_seconds(follower.child.id()) - cpu0;
    println!("follower idle with 3 servers: {:.3} % of one core over {idle} s", 100.0 * cpu / t0.elapsed().as_secs_f64());
    follower.stop();

    // 4. Latency over ssh: another follower, through an sshd of the benchmark's own to
    // server 2 (skipped without Debian's openssh-server).
    if Path::new(runwatch_tests::sshd::SSHD).exists() {
        use runwatch_tests::sshd::{keygen, Sshd};
        let key = tmp.path().join("client_key");
        let sshd = Sshd::start(&tmp.path().join("sshd"), &keygen(&key), &tmp.path().join("server-2"), bin.parent().expect("dir"));
        let known = sshd.known_hosts(&tmp.path().join("known_hosts"));
        let config = tmp.path().join("ssh_config");
        std::fs::write(&config, sshd.host_entry("bench-ssh", &key, &known)).expect("ssh config");
        let ssh_dir = tmp.path().join("ssh-follower");
        let ok = Command::new(&bin)
            .arg("--data-dir")
            .arg(&ssh_dir)
            .args(["--notifications", "hidden", "remotes", "add", "s2", "ssh://bench-ssh"])
            .stdout(Stdio::null())
            .status()
            .expect("remotes add");
        assert!(ok.success());
        let mut ssh_follower = start_with(&bin, &ssh_dir, &[("RUNWATCH_SSH_COMMAND", format!("ssh -F {}", config.display()))]);
        let ssh_store = Store::open(&DataDir::at(&ssh_dir)).expect("follower store");
        let ssh_count = || -> i64 {
            ssh_store.conn().query_row("SELECT COUNT(*) FROM notifications WHERE origin IS NOT NULL", [], |r| r.get(0)).expect("count")
        };
        let connected = || i64::from(ssh_store.remotes().expect("remotes")[0].state == runwatch_core::remotes::RemoteState::Connected);
        wait_for(&connected, 1, Duration::from_secs(60));
        let mut lat = Vec::new();
        for i in 0..events {
            let before = ssh_count();
            send(&servers[2], json!({ "message": format!("over ssh {i}") }), "events");
            let t0 = Instant::now();
            wait_for(&ssh_count, before + 1, Duration::from_secs(30));
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        let pct = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
        println!(
            "server event -> follower inbox over ssh: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
            pct(0.5),
            pct(0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            lat.len()
        );
        ssh_follower.stop();
    } else {
        println!("over ssh: skipped ({} is missing)", runwatch_tests::sshd::SSHD);
    }
    for mut s in servers {
        s.stop();
    }
}

fn wait_for(count: &impl Fn() -> i64, at_least: i64, patience: Duration) {
    let deadline = Instant::now() + patience;
    while count() < at_least {
        assert!(Instant::now() < deadline, "the follower did not get there in {patience:?}");
        std::thread::sleep(Duration::from_micros(500));
    }
}
