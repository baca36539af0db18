//! Remote benchmark: jobs on other machines reporting to one `runwatch start` over HTTP.
//!
//! 1. 1,000 simulated jobs check in every 10 s (spread evenly, keep-alive connections, as
//!    `runwatch exec --server` does) for a window: the server's CPU (% of one core, from
//!    /proc/PID/stat) and check-in → stored latency (the answer comes after the commit).
//! 2. A spool of 10,000 events drained by `runwatch spool flush` into the server.
//!
//! Run: `make bench-remote` (release binaries). Options: `--jobs N`, `--window SECS`,
//! `--spool N`.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runwatch_core::DataDir;
use runwatch_remote::{Kind, Spool};
use runwatch_tests::bench::{cpu_seconds, release_bin, start};
use serde_json::json;

const PERIOD: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: u64| -> u64 {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (jobs, window, spool_n) = (opt("--jobs", 1000), opt("--window", 60), opt("--spool", 10_000));
    let bin = release_bin("runwatch");
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut server = start(&bin, &tmp.path().join("server"));
    let (url, token) = (server.url.clone(), server.token.clone());
    println!("runwatch-bench-remote: {jobs} jobs checking in every {} s for {window} s; a spool of {spool_n} events", PERIOD.as_secs());

    // Warm-up: every job's first check-in (creates the runs), not measured.
    let latencies = Arc::new(Mutex::new(Vec::new()));
    run_jobs(&url, &token, jobs, PERIOD, &latencies);
    latencies.lock().unwrap().clear();
    let cpu0 = cpu_seconds(server.child.id());
    let t0 = Instant::now();
    let rounds = (window / PERIOD.as_secs()).max(1);
    for _ in 0..rounds {
        run_jobs(&url, &token, jobs, PERIOD, &latencies);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.child.id()) - cpu0;
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    println!(
        "check-ins: {} in {wall:.1} s ({:.0}/s); server CPU {:.2} % of one core; check-in -> stored p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        lat.len() as f64 / wall,
        100.0 * cpu / wall,
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );

    // The spool: filled while the server was away, drained by one `spool flush`.
    let client = tmp.path().join("client");
    let events: Vec<_> =
        (0..spool_n).map(|i| json!({ "run_id": "spooled", "message": format!("event {i}"), "event_id": format!("bench-{i}") })).collect();
    Spool::open(&DataDir::at(&client)).expect("spool").push_all(&url, events.iter().map(|e| (Kind::Event, e)), 0).expect("fill the spool");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, &token).expect("token file");
    let t = Instant::now();
    let status = Command::new(&bin)
        .arg("--data-dir")
        .arg(&client)
        .args(["--notifications", "hidden", "--server", &url, "--token-file"])
        .arg(&token_file)
        .args(["spool", "flush"])
        .stdout(Stdio::null())
        .status()
        .expect("spool flush");
    let drain = t.elapsed().as_secs_f64();
    assert!(status.success(), "spool flush failed");
    println!("spool: {spool_n} events drained in {drain:.2} s ({:.0} events/s)", spool_n as f64 / drain);
    server.stop();
}

/// One period: every job checks in once, spread evenly over it, from 16 client threads
/// with keep-alive connections.
fn run_jobs(url: &str, token: &str, jobs: u64, period: Duration, latencies: &Arc<Mutex<Vec<f64>>>) {
    const THREADS: u64 = 16;
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (url, token, latencies) = (url.to_string(), token.to_string(), latencies.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut mine = Vec::new();
                for job in (t..jobs).step_by(THREADS as usize) {
                    let at = start + period.mul_f64(job as f64 / jobs as f64);
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    let body = json!({ "run_id": format!("job-{job}"), "expect_next_in": 30, "host": format!("node-{}", job % 50),
                                       "labels": { "slurm_job_id": (100_000 + job).to_string() } });
                    let sent = Instant::now();
                    let res = agent
                        .post(format!("{url}/api/v1/check-ins"))
                        .header("Authorization", format!("Bearer {token}"))
                        .content_type("application/json")
                        .send(body.to_string())
                        .expect("check-in");
                    assert_eq!(res.status().as_u16(), 200, "check-in refused");
                    mine.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    std::thread::sleep((start + period).saturating_duration_since(Instant::now()));
}
