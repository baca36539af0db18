//! `runwatch-bench`: the in-process half of the watcher benchmark (`tests/benchmarks/watcher.py`
//! drives it and the real binaries; see BENCHMARKS.md).
//!
//! - `runwatch-bench rescan --dir D [--fixtures F] [--runs 1000,10000,100000] [--scans 7]`:
//!   builds Aim repositories with N runs each (files as Aim leaves them; kept under F for
//!   the next run when given), lets a [`Watcher`] with a new store import
//!   each once (the quiet first scan), then times full rescans of the known repository
//!   (`Watcher::scan`), the listing alone, and the once-a-second `tick`. Prints one JSON
//!   object on stdout.
//! - `runwatch-bench log-writer --aim-dir D`: a live Aim run's chunk writer for latency
//!   samples. Reads `<run_hash> <step> <level> <message…>` lines on stdin, appends each record
//!   to the run's RocksDB chunk (kept open, so records land in the write-ahead log as with a
//!   live Aim run) and answers `ok` (or `error: …`) per line.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_aim::logs::testing::ChunkWriter;
use runwatch_aim::repo::AimRepo;
use runwatch_core::clock::SystemClock;
use runwatch_core::{DataDir, Store};
use runwatch_watcher::Watcher;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("rescan") => rescan(&args[1..]),
        Some("log-writer") => log_writer(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    if let Err(e) = result {
        eprintln!("runwatch-bench: {e}");
        std::process::exit(2);
    }
}

const USAGE: &str = "usage: runwatch-bench rescan --dir DIR [--fixtures DIR] [--runs 1000,10000,100000] [--scans 7]\n       runwatch-bench log-writer --aim-dir DIR";

fn flag_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// A run hash for fixture run `i`: 24 lowercase hex characters, distinct per `i` and `salt`.
pub fn run_hash(salt: u32, i: u64) -> String {
    format!("{salt:08x}{i:016x}")
}

/// The check-in files Aim leaves for run `i`: every other run finished cleanly (`starting`,
/// `check_in`, `finished`, final `progress`), the others are still running (`starting`,
/// `check_in`, `progress`): 3.5 files per run on average.
fn fixture_files(i: u64) -> Vec<CheckIn> {
    let hash = run_hash(0xbe0c_0000, i);
    let t = 1_795_268_411.34;
    let c = |idx, flag, expect_next_in| CheckIn { run_hash: hash.clone(), idx, flag, utc_time: t, expect_next_in };
    if i.is_multiple_of(2) {
        vec![c(1, Flag::Starting, 0), c(7, Flag::CheckIn, 60), c(8, Flag::Finished, 0), c(9, Flag::Progress, 1)]
    } else {
        vec![c(1, Flag::Starting, 0), c(6, Flag::CheckIn, 3600), c(7, Flag::Progress, 3600)]
    }
}

/// Bumped when [`fixture_files`] changes, so that kept fixtures are rebuilt.
const FIXTURE_VERSION: u32 = 1;

fn build_repo(root: &Path, runs: u64) -> std::io::Result<usize> {
    let dir = root.join(".aim").join("check_ins");
    std::fs::create_dir_all(&dir)?;
    let mut files = 0;
    for i in 0..runs {
        for c in fixture_files(i) {
            std::fs::File::create(dir.join(c.file_name()))?;
            files += 1;
        }
    }
    Ok(files)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rescan(args: &[String]) -> Result<(), String> {
    let dir = PathBuf::from(flag_value(args, "--dir").ok_or(USAGE)?);
    let sizes: Vec<u64> = flag_value(args, "--runs")
        .unwrap_or("1000,10000,100000")
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| format!("bad --runs value '{s}'")))
        .collect::<Result<_, _>>()?;
    let scans: usize = flag_value(args, "--scans").unwrap_or("7").parse().map_err(|_| "bad --scans")?;
    let scans = scans.max(1);
    let mut results = Vec::new();
    for &n in &sizes {
        let work = dir.join(format!("rescan-{n}"));
        let _ = std::fs::remove_dir_all(&work);
        // The repository is kept between runs (under --fixtures): creating hundreds of
        // thousands of files right after deleting as many is slow on ext4. The store is new.
        let repo_root = match flag_value(args, "--fixtures") {
            Some(f) => PathBuf::from(f).join(format!("rescan-{n}-v{FIXTURE_VERSION}")),
            None => work.join("repo"),
        };
        let t = Instant::now();
        let complete = repo_root.join(".aim").join("complete");
        let files = if complete.exists() {
            std::fs::read_dir(repo_root.join(".aim").join("check_ins")).map_err(|e| e.to_string())?.count()
        } else {
            let _ = std::fs::remove_dir_all(&repo_root);
            let files = build_repo(&repo_root, n).map_err(|e| format!("cannot build the fixture: {e}"))?;
            std::fs::write(&complete, b"").map_err(|e| e.to_string())?;
            files
        };
        let build_ms = ms(t.elapsed());

        let store = Store::open(&DataDir::at(work.join("data"))).map_err(|e| e.to_string())?;
        let repo = AimRepo::open(&repo_root).map_err(|e| e.to_string())?;
        let check_ins = repo.check_ins_dir();
        let mut watcher = Watcher::new(store, vec![repo], Arc::new(SystemClock)).map_err(|e| e.to_string())?;
        let t = Instant::now();
        watcher.scan().map_err(|e| e.to_string())?;
        let import_ms = ms(t.elapsed());
        if watcher.run_count() as u64 != n {
            return Err(format!("the watcher tracks {} runs, expected {n}", watcher.run_count()));
        }

        // Warm-up, then the timed rescans of the known repository (nothing changed).
        watcher.scan().map_err(|e| e.to_string())?;
        let mut scan_ms = Vec::new();
        for _ in 0..scans {
            let t = Instant::now();
            let stored = watcher.scan().map_err(|e| e.to_string())?;
            scan_ms.push(ms(t.elapsed()));
            if !stored.is_empty() {
                return Err(format!("a rescan of an unchanged repository stored {} notifications", stored.len()));
            }
        }
        // What the file system alone costs: listing the names, nothing parsed.
        let mut list_ms = Vec::new();
        for _ in 0..scans {
            let t = Instant::now();
            let names = std::fs::read_dir(&check_ins)
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .count();
            list_ms.push(ms(t.elapsed()));
            assert_eq!(names, files);
        }
        // ... and listing plus parsing the names, as the watcher does before its detector.
        let mut parse_ms = Vec::new();
        for _ in 0..scans {
            let t = Instant::now();
            let parsed = std::fs::read_dir(&check_ins)
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|name| CheckIn::parse(&name).ok())
                .count();
            parse_ms.push(ms(t.elapsed()));
            assert_eq!(parsed, files);
        }
        // The once-a-second work of the idle loop: tick and next deadline over every run.
        let mut tick_ms = Vec::new();
        for _ in 0..scans {
            let t = Instant::now();
            watcher.tick().map_err(|e| e.to_string())?;
            let _ = watcher.next_deadline();
            tick_ms.push(ms(t.elapsed()));
        }
        let (min, max) = (scan_ms.iter().copied().fold(f64::INFINITY, f64::min), scan_ms.iter().copied().fold(0.0, f64::max));
        let scan_median = median(&mut scan_ms);
        let r = json!({
            "runs": n,
            "files": files,
            "fixture_build_ms": build_ms,
            "first_scan_ms": import_ms,
            "scans": scans,
            "rescan_median_ms": scan_median,
            "rescan_min_ms": min,
            "rescan_max_ms": max,
            "rescan_per_run_us": scan_median * 1000.0 / n as f64,
            "list_only_median_ms": median(&mut list_ms),
            "list_parse_median_ms": median(&mut parse_ms),
            "tick_median_ms": median(&mut tick_ms),
        });
        eprintln!(
            "rescan {n:>7} runs ({files} files): median {scan_median:.2} ms ({:.2} µs/run), listing alone {:.2} ms, listing + parsing {:.2} ms, tick {:.2} ms",
            scan_median * 1000.0 / n as f64,
            r["list_only_median_ms"].as_f64().unwrap_or(0.0),
            r["list_parse_median_ms"].as_f64().unwrap_or(0.0),
            r["tick_median_ms"].as_f64().unwrap_or(0.0),
        );
        results.push(r);
        drop(watcher);
        let _ = std::fs::remove_dir_all(&work);
    }
    println!("{}", json!({ "rescan": results }));
    Ok(())
}

fn log_writer(args: &[String]) -> Result<(), String> {
    let aim_dir = PathBuf::from(flag_value(args, "--aim-dir").ok_or(USAGE)?);
    let mut writers: std::collections::HashMap<String, ChunkWriter> = std::collections::HashMap::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut parts = line.splitn(4, ' ');
        let (Some(run), Some(step), Some(level), Some(message)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            writeln!(out, "error: expected '<run_hash> <step> <level> <message>'").map_err(|e| e.to_string())?;
            continue;
        };
        let reply = (|| -> Result<(), String> {
            let step: u64 = step.parse().map_err(|_| "bad step")?;
            let level: i64 = level.parse().map_err(|_| "bad level")?;
            if !writers.contains_key(run) {
                let w = ChunkWriter::create(&aim_dir, run).map_err(|e| e.to_string())?;
                writers.insert(run.to_string(), w);
            }
            writers[run].put_record(step, level, message).map_err(|e| e.to_string())
        })();
        match reply {
            Ok(()) => writeln!(out, "ok"),
            Err(e) => writeln!(out, "error: {e}"),
        }
        .map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}
