//! `runwatch-bench-api`: the HTTP API with 1,000,000 notifications in the store.
//!
//! Run: `make bench-api` (or `cargo run --release -p runwatch-tests --bin runwatch-bench-api`).
//!
//! 1. Seeds a fresh store (in a temp dir under the cargo target dir, on disk) with
//!    `--notifications` notifications (default 1,000,000) in one transaction, straight
//!    through SQL: 10,000 runs; levels DEBUG 5 %, INFO 50 %, WARNING 30 %, ERROR 13 %,
//!    CRITICAL 2 %; sources as the engine writes them (Aim log records with a dedupe key
//!    70 %, detector happenings with a dedupe key 10 %, API events with a client event id
//!    20 %, random UUIDv4 ids); notification ids UUIDv7 of their creation time, as the engine
//!    makes them; created over the last 25 days in `seq` order; each one acknowledged with
//!    probability 1/2, independently (so pending and acknowledged rows are interleaved,
//!    the hard case for the pending index), which leaves about 500,000 pending.
//! 2. Serves it with the real server (`runwatch_http::Server` on 127.0.0.1:0, the same
//!    `ApiConfig` as `runwatch start`) and measures over real HTTP with one keep-alive
//!    client, sequentially (latency as a client sees it, body read in full):
//!    - `GET /api/v1/notifications?limit=50`: first page and a deep page (a cursor 90 %
//!      of the way down the pending list), each without and with `level=ERROR`, plus
//!      `state=all`; `--requests` each (default 1,000) after 20 warm-up requests;
//!    - `GET /api/v1/notifications/summary`, `--requests` times;
//!    - `POST /api/v1/events/batch`: `--batches` batches (default 200) of 1,000 events with
//!      unique random client event ids (UUIDv4, the hard case for an index), each batch
//!      from `--runs-per-batch` runs (default 10: one client, a job or an agent forwarding
//!      a few jobs, picked at random among the 10,000), bodies built before timing;
//!      events/s sustained, first from one client posting batch after batch, then from
//!      `--clients` clients at once (default 4; each its own connection);
//!    - `POST /api/v1/notifications/ack {"all": true}`: wall time, on a copy of the store as
//!      seeded (so the ~500,000 pending of the 1,000,000, not the events ingested since).
//!
//! With `--store postgresql://…` (an empty database) the same is measured on that
//! PostgreSQL store after SQLite, in the same run, and both tables are printed; `--store
//! throwaway` starts a throwaway cluster for it (Debian's postgresql, see
//! `runwatch_core::pg::fixture`). Seeding there is by COPY; "ack all" is measured at the
//! end, on the store as the ingest left it.
//!
//! Prints a table with the targets and writes the figures as JSON to
//! `<target>/bench-api-results.json`. No assertions: the figures are the output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::{DataDir, Location, Store};
use runwatch_http::{ApiConfig, Server};
use serde_json::{json, Value};

const USAGE: &str = "usage: runwatch-bench-api [--notifications 1000000] [--requests 1000] [--batches 200] [--runs-per-batch 10]\n\
     \x20                         [--clients 4]\n\
     \x20                         [--keep] [--seed-only]\n\
     \x20                         [--from DIR] [--only list,summary,user,ingest,ack]\n\
     --keep: leave the store behind (printed at the end); --seed-only: seed, keep the store, measure nothing;\n\
     \x20                         [--store postgresql://…|throwaway]\n\
     --from DIR: copy the store a --seed-only run left in DIR instead of seeding; --only: measure these parts;\n\
     --store: measure a PostgreSQL store too (an empty database, or a throwaway cluster)";

const RUNS: usize = 10_000;
const DAY_MS: i64 = 86_400_000;
const BATCH: usize = 1_000;
const WARMUP: usize = 20;

// Targets (ms unless said otherwise).
const LIST_P99_MS: f64 = 20.0;
const SUMMARY_P99_MS: f64 = 5.0;
const ACK_ALL_S: f64 = 2.0;
const INGEST_EVENTS_PER_S: f64 = 50_000.0;
/// The team store's ingest target (PostgreSQL).
const PG_INGEST_EVENTS_PER_S: f64 = 20_000.0;

struct Args {
    notifications: usize,
    requests: usize,
    batches: usize,
    runs_per_batch: usize,
    clients: usize,
    keep: bool,
    seed_only: bool,
    /// A store seeded earlier (`--seed-only`) to copy instead of seeding.
    from: Option<PathBuf>,
    /// Which parts to measure.
    only: Vec<String>,
    /// A PostgreSQL store to measure too: a URL, or "throwaway".
    store: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        notifications: 1_000_000,
        requests: 1_000,
        batches: 200,
        runs_per_batch: 10,
        clients: 4,
        keep: false,
        seed_only: false,
        from: None,
        only: Vec::new(),
        store: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next().and_then(|v| v.replace(['_', ','], "").parse().ok()).ok_or_else(|| format!("{name} needs a number\n{USAGE}"))
        };
        match flag.as_str() {
            "--notifications" => a.notifications = num("--notifications")?,
            "--requests" => a.requests = num("--requests")?.max(1),
            "--batches" => a.batches = num("--batches")?.max(1),
            "--runs-per-batch" => a.runs_per_batch = num("--runs-per-batch")?.clamp(1, RUNS),
            "--clients" => a.clients = num("--clients")?.clamp(1, 64),
            "--keep" => a.keep = true,
            "--seed-only" => a.seed_only = true,
            "--from" => a.from = Some(it.next().ok_or("--from needs a directory")?.into()),
            "--only" => a.only = it.next().ok_or("--only needs a list")?.split(',').map(String::from).collect(),
            "--store" => a.store = Some(it.next().ok_or("--store needs a postgresql:// URL or 'throwaway'")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("runwatch-bench-api: {e}");
        std::process::exit(1);
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| runwatch_tests::repo_root().join("target"), PathBuf::from)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench-api] {}", msg.as_ref());
}

/// Where one measurement's store lives.
enum Backend {
    Sqlite,
    Postgres(String),
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let target = target_dir();
    std::fs::create_dir_all(&target)?;
    let mut reports = vec![run_on(args, &Backend::Sqlite, &target)?];
    if let Some(store) = &args.store {
        let cluster;
        let url = if store == "throwaway" {
            cluster = runwatch_core::pg::fixture::Cluster::start()?;
            cluster.database()?
        } else {
            store.clone()
        };
        reports.push(run_on(args, &Backend::Postgres(url), &target)?);
    }
    let machine = machine();
    let mut docs = Vec::new();
    for (title, lines, rows, doc) in reports {
        println!();
        println!("{title}");
        println!("machine: {machine}");
        for l in lines {
            println!("{l}");
        }
        println!();
        let w = rows.iter().map(|r| r.name.chars().count()).max().unwrap_or(10);
        let wf = rows.iter().map(|r| r.figure.chars().count()).max().unwrap_or(10);
        let wt = rows.iter().map(|r| r.target.chars().count()).max().unwrap_or(10);
        println!("{:<w$}  {:<wf$}  {:<wt$}  result", "measure", "figure", "target");
        for r in &rows {
            println!("{:<w$}  {:<wf$}  {:<wt$}  {}", r.name, r.figure, r.target, if r.pass { "PASS" } else { "MISS" });
        }
        docs.push(doc);
    }
    let out = target.join("bench-api-results.json");
    let doc = if docs.len() == 1 { docs.remove(0) } else { json!({ "machine": machine, "stores": docs }) };
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    println!("\nfigures also in {}", out.display());
    Ok(())
}

type Report = (String, Vec<String>, Vec<Row>, Value);

fn run_on(args: &Args, backend: &Backend, target: &std::path::Path) -> Result<Report, Box<dyn std::error::Error>> {
    let tmp = tempfile::Builder::new().prefix("bench-api-").tempdir_in(target)?;
    let data = DataDir::at(tmp.path());
    let location = match backend {
        Backend::Sqlite => Location::DataDir(data.clone()),
        Backend::Postgres(url) => Location::Postgres(url.clone()),
    };
    let pg = matches!(backend, Backend::Postgres(_));
    log(format!("measuring {}", location.display()));
    let load_before = loadavg();
    log(format!("load average before: {load_before}"));

    // ---- 1. seed ----
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let runs: Vec<String> = (0..RUNS).map(|_| hex(&mut rng, 24)).collect();
    let part = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let now = SystemClock.now();
    let t = Instant::now();
    let seeded = match (&args.from, backend) {
        (_, Backend::Postgres(url)) => seed_pg(url, args.notifications, &runs, now, &mut rng)?,
        (None, Backend::Sqlite) => seed(&data, args.notifications, &runs, now, &mut rng)?,
        (Some(from), Backend::Sqlite) => copy_seeded(from, &data)?,
    };
    let seed_s = t.elapsed().as_secs_f64();
    let db_bytes = match backend {
        Backend::Sqlite => std::fs::metadata(data.store_path())?.len(),
        Backend::Postgres(url) => pg_client(url)?.query_one("SELECT pg_database_size(current_database())", &[])?.get::<_, i64>(0) as u64,
    };
    let stored = match backend {
        Backend::Sqlite => count(&data)?,
        Backend::Postgres(url) => pg_client(url)?.query_one("SELECT COUNT(*) FROM notifications", &[])?.get::<_, i64>(0) as usize,
    };
    log(format!(
        "seeded {stored} notifications ({} pending) in {seed_s:.1} s; store file {:.0} MiB",
        seeded.pending,
        db_bytes as f64 / 1048576.0
    ));

    if args.seed_only && !pg {
        println!("store seeded in {}", tmp.keep().display());
        std::process::exit(0);
    }

    // Ack all is measured on a copy of the store as seeded (1M, half of it pending): after
    // the ingest runs it would also acknowledge the events they stored.
    let ack_data = DataDir::at(tmp.path().join("ack"));
    if part("ack") && !pg {
        ack_data.ensure()?;
        std::fs::copy(data.store_path(), ack_data.store_path())?;
    }

    // ---- 2. serve ----
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let token = "bench-token".to_string();
    let (base, stop_tx, served) = serve(&rt, &location, &token)?;
    let client = Client::new(&base, &token);
    client.get("/health")?;

    let mut results = Vec::<Value>::new();
    let mut rows = Vec::<Row>::new();

    // ---- list pages ----
    let deep = seeded.deep_cursor.to_string();
    let lists: [(&str, String); 5] = [
        ("list: first page", "/notifications?limit=50".into()),
        ("list: first page, level=ERROR", "/notifications?limit=50&level=ERROR".into()),
        ("list: deep page (cursor 90% down)", format!("/notifications?limit=50&cursor={deep}")),
        ("list: deep page, level=ERROR", format!("/notifications?limit=50&level=ERROR&cursor={deep}")),
        ("list: first page, state=all", "/notifications?limit=50&state=all".into()),
    ];
    for (name, path) in lists.iter().filter(|_| part("list")) {
        let body = client.get(path)?;
        let page: Value = serde_json::from_str(&body)?;
        let items = page["items"].as_array().map_or(0, Vec::len);
        if items != 50 {
            return Err(format!("{name}: expected 50 items, got {items}").into());
        }
        let s = client.sample(args.requests, || client.get(path).map(|_| ()))?;
        log(format!("{name}: p50 {:.2} ms, p99 {:.2} ms", s.p50, s.p99));
        results.push(json!({"name": name, "path": path, "requests": args.requests, "p50_ms": s.p50, "p99_ms": s.p99, "max_ms": s.max, "mean_ms": s.mean}));
        rows.push(Row::latency(name, &s, LIST_P99_MS));
    }

    // ---- unread summary ----
    if part("summary") {
        let body = client.get("/notifications/summary")?;
        let summary: Value = serde_json::from_str(&body)?;
        if summary["total"].as_u64() != Some(seeded.pending as u64) {
            return Err(format!("summary total {} != seeded pending {}", summary["total"], seeded.pending).into());
        }
        let s = client.sample(args.requests, || client.get("/notifications/summary").map(|_| ()))?;
        log(format!("summary: p50 {:.2} ms, p99 {:.2} ms", s.p50, s.p99));
        results.push(
            json!({"name": "summary", "requests": args.requests, "p50_ms": s.p50, "p99_ms": s.p99, "max_ms": s.max, "mean_ms": s.mean}),
        );
        rows.push(Row::latency("unread summary", &s, SUMMARY_P99_MS));
    }

    // ---- a user's view (a team store): what is for them or for everyone, their acks ----
    if let (Backend::Postgres(url), true) = (backend, part("user")) {
        let user_token = runwatch_core::Store::connect(url)?.add_user("alice", now)?;
        let alice = Client::new(&base, &user_token);
        let summary: Value = serde_json::from_str(&alice.get("/notifications/summary")?)?;
        log(format!("a user's summary says {} pending", summary["total"]));
        for (name, path, target) in [
            ("a user's unread summary", "/notifications/summary", SUMMARY_P99_MS),
            ("a user's list: first page", "/notifications?limit=50", LIST_P99_MS),
        ] {
            let s = alice.sample(args.requests, || alice.get(path).map(|_| ()))?;
            log(format!("{name}: p50 {:.2} ms, p99 {:.2} ms", s.p50, s.p99));
            results.push(json!({"name": name, "path": path, "requests": args.requests, "p50_ms": s.p50, "p99_ms": s.p99, "max_ms": s.max, "mean_ms": s.mean}));
            rows.push(Row::latency(name, &s, target));
        }
    }

    // ---- ingest ----
    if part("ingest") {
        // One client posting batch after batch; then several at once, as many jobs do.
        for clients in [1, args.clients] {
            // A stream of its own: the event ids must not repeat the seeded ones.
            let mut rng = fastrand::Rng::new();
            let bodies: Vec<String> = (0..args.batches).map(|_| batch_body(&mut rng, &runs, args.runs_per_batch)).collect();
            let (ingest_s, batch_ms) = ingest(&base, &token, &bodies, clients)?;
            let events = args.batches * BATCH;
            let eps = events as f64 / ingest_s;
            let bs = Stats::of(batch_ms);
            log(format!(
                "ingest, {clients} client(s): {events} events in {ingest_s:.2} s = {eps:.0} events/s (batch p50 {:.1} ms, p99 {:.1} ms)",
                bs.p50, bs.p99
            ));
            results.push(json!({"name": "ingest", "clients": clients, "batches": args.batches, "batch_size": BATCH,
                "runs_per_batch": args.runs_per_batch, "events": events, "seconds": ingest_s,
                "events_per_s": eps, "batch_p50_ms": bs.p50, "batch_p99_ms": bs.p99, "batch_max_ms": bs.max}));
            rows.push(Row {
                name: format!(
                    "ingest, {} batches of {BATCH} ({} runs each), {clients} client{}",
                    args.batches,
                    args.runs_per_batch,
                    if clients == 1 { "" } else { "s at once" }
                ),
                figure: format!("{eps:.0} events/s (batch p50 {:.1} ms, p99 {:.1} ms)", bs.p50, bs.p99),
                target: format!("≥ {:.0} events/s", if pg { PG_INGEST_EVENTS_PER_S } else { INGEST_EVENTS_PER_S }),
                pass: eps >= if pg { PG_INGEST_EVENTS_PER_S } else { INGEST_EVENTS_PER_S },
            });
            if args.clients == 1 {
                break;
            }
        }
    }

    let _ = stop_tx.send(());
    rt.block_on(served)??;

    // ---- ack all ----
    if part("ack") {
        let ack_location = if pg { location.clone() } else { Location::DataDir(ack_data.clone()) };
        let (base, stop_tx, served) = serve(&rt, &ack_location, &token)?;
        let client = Client::new(&base, &token);
        let pending: Value = serde_json::from_str(&client.get("/notifications/summary")?)?;
        let pending = pending["total"].as_u64().unwrap_or(0);
        let t = Instant::now();
        let answer: Value = serde_json::from_str(&client.post("/notifications/ack", r#"{"all":true}"#)?)?;
        let ack_s = t.elapsed().as_secs_f64();
        let acked = answer["acknowledged"].as_u64().unwrap_or(0);
        if acked != pending {
            return Err(format!("ack all acknowledged {acked}, expected {pending}").into());
        }
        log(format!("ack all: {acked} notifications in {ack_s:.3} s"));
        results.push(json!({"name": "ack all", "acknowledged": acked, "seconds": ack_s}));
        rows.push(Row {
            name: format!("ack all ({acked} pending)"),
            figure: format!("{ack_s:.3} s"),
            target: format!("< {ACK_ALL_S} s"),
            pass: ack_s < ACK_ALL_S,
        });
        let after: Value = serde_json::from_str(&client.get("/notifications/summary")?)?;
        if after["total"].as_u64() != Some(0) {
            return Err(format!("after ack all the summary says {}", after["total"]).into());
        }
        let _ = stop_tx.send(());
        rt.block_on(served)??;
    }

    let load_after = loadavg();
    log(format!("load average after: {load_after}"));

    // ---- report ----
    let kind = if pg { "PostgreSQL" } else { "SQLite" };
    let title = format!("HTTP API on {kind} with {stored} notifications ({} pending at start)", seeded.pending);
    let lines = vec![
        format!("store: {}", location.display()),
        format!("load average before: {load_before}; after: {load_after}"),
        format!("seeding: {seed_s:.1} s; store size {:.0} MiB", db_bytes as f64 / 1048576.0),
    ];
    let doc = json!({
        "store": kind, "notifications": stored, "pending_at_start": seeded.pending, "seed_seconds": seed_s,
        "store_bytes": db_bytes, "load_before": load_before, "load_after": load_after,
        "results": results,
    });
    if args.keep && !pg {
        let kept = tmp.keep();
        log(format!("store kept in {}", kept.display()));
    }
    Ok((title, lines, rows, doc))
}

// ---------------------------------------------------------------------------------------
// Seeding

struct Seeded {
    pending: usize,
    /// The `seq` of the pending notification 90 % of the way down the newest-first list:
    /// a cursor (cursors are `seq`s) for a deep page.
    deep_cursor: i64,
}

const LEVELS: [(i64, u32); 5] = [(10, 5), (20, 50), (30, 30), (40, 13), (50, 2)];

fn pick_level(rng: &mut fastrand::Rng) -> i64 {
    let mut x = rng.u32(0..100);
    for (level, pct) in LEVELS {
        if x < pct {
            return level;
        }
        x -= pct;
    }
    20
}

fn level_name(level: i64) -> &'static str {
    match level {
        10 => "DEBUG",
        20 => "INFO",
        30 => "WARNING",
        40 => "ERROR",
        _ => "CRITICAL",
    }
}

fn seed(data: &DataDir, n: usize, runs: &[String], now: i64, rng: &mut fastrand::Rng) -> Result<Seeded, Box<dyn std::error::Error>> {
    let mut store = Store::open(data)?;
    // Seeding only: a large page cache so one 1M-row transaction does not spill, and the
    // statement journals of the INSERTs (they run triggers) in memory.
    store.conn().pragma_update(None, "cache_size", -512 * 1024)?;
    store.conn().pragma_update(None, "temp_store", "MEMORY")?;
    let start = now - 25 * DAY_MS;
    let step = (25 * DAY_MS) / n.max(1) as i64;
    let mut pending_seqs = Vec::with_capacity(n / 2 + 1);
    store.write(|tx| {
        let mut run_stmt = tx.prepare(
            "INSERT INTO runs (id, repo, name, state, checkin_idx, checkin_flag, checkin_expect_next_in, checkin_first_seen, created_at, updated_at)
             VALUES (?1, '/data/aim', ?2, ?3, 9, ?4, ?5, ?6, ?6, ?6)",
        )?;
        for (i, id) in runs.iter().enumerate() {
            let (state, flag, expect) = if i % 2 == 0 { ("finished", "progress", 0) } else { ("running", "progress", 3600) };
            run_stmt.execute(rusqlite::params![id, format!("run-{i}"), state, flag, expect, start])?;
        }
        let mut stmt = tx.prepare(
            "INSERT INTO notifications (seq, id, created_at, updated_at, level, title, body, run_id, source, dedupe_key, event_id,
                                        repeat_count, acked_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        for i in 0..n {
            let seq = i as i64 + 1;
            let created = start + i as i64 * step;
            let level = pick_level(rng);
            let run = &runs[rng.usize(0..runs.len())];
            let kind = rng.u32(0..100);
            let (title, body, source, dedupe, event_id, repeat) = if kind < 70 {
                let msg = format!("{} at step {i}: loss={:.4} lr={:.2e}", log_words(level), rng.f64() * 4.0, rng.f64() * 1e-3);
                let repeat = if rng.u32(0..20) == 0 { rng.i64(1..50) } else { 0 };
                (msg.clone(), format!("{msg}\n  File \"train.py\", line 211, in <module>"), "aim", Some(format!("log:{run}:{i}")), None, repeat)
            } else if kind < 80 {
                let title = format!("Run '{run}' {}", happening(level));
                (title, "Repository: /data/aim".to_string(), "detector", Some(format!("{}:{run}:{i}", happening(level).split(' ').next().unwrap_or("x"))), None, 0)
            } else {
                let msg = format!("job {run} {} (epoch {})", log_words(level), i % 100);
                (msg.clone(), msg, "api", None, Some(uuid(rng)), 0)
            };
            let acked = rng.bool();
            let acked_at = acked.then(|| created + rng.i64(1_000..3_600_000));
            if !acked {
                pending_seqs.push(seq);
            }
            stmt.execute(rusqlite::params![
                seq,
                uuid_v7(created, rng),
                created,
                acked_at.unwrap_or(created),
                level,
                title,
                body,
                run,
                source,
                dedupe,
                event_id,
                repeat,
                acked_at,
                created + 30 * DAY_MS
            ])?;
        }
        Ok(())
    })?;
    // What the engine keeps beside the rows it inserts: pending counts by level, and the
    // event ids in their index.
    store.conn().execute(
        "UPDATE pending_counts SET n = (SELECT COUNT(*) FROM notifications WHERE acked_at IS NULL AND level = pending_counts.level)",
        [],
    )?;
    store.merge_event_ids()?;
    store.conn().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    // The pending list is newest first: 90 % of the way down is near the oldest.
    let deep_cursor = pending_seqs.get(pending_seqs.len() / 10).copied().unwrap_or(1);
    Ok(Seeded { pending: pending_seqs.len(), deep_cursor })
}

fn pg_client(url: &str) -> Result<postgres::Client, Box<dyn std::error::Error>> {
    Ok(postgres::Client::connect(url, postgres::NoTls)?)
}

/// A field of COPY's text format.
fn copy_field(out: &mut String, v: Option<&str>) {
    match v {
        None => out.push_str("\\N"),
        Some(v) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

fn copy_row(out: &mut String, fields: &[Option<&str>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        copy_field(out, *f);
    }
    out.push('\n');
}

/// As [`seed`], into an empty PostgreSQL database (migrated here), by COPY: the same rows
/// from the same random stream, seq assigned in order from 1.
fn seed_pg(url: &str, n: usize, runs: &[String], now: i64, rng: &mut fastrand::Rng) -> Result<Seeded, Box<dyn std::error::Error>> {
    use std::io::Write as _;
    drop(Store::connect(url)?);
    let mut client = pg_client(url)?;
    let start = now - 25 * DAY_MS;
    let step = (25 * DAY_MS) / n.max(1) as i64;
    let mut pending_seqs = Vec::with_capacity(n / 2 + 1);
    let mut tx = client.transaction()?;
    {
        let mut w = tx.copy_in(
            "COPY runs (id, repo, name, state, checkin_idx, checkin_flag, checkin_expect_next_in, checkin_first_seen, created_at, updated_at) FROM STDIN",
        )?;
        let mut buf = String::new();
        for (i, id) in runs.iter().enumerate() {
            let (state, expect) = if i % 2 == 0 { ("finished", "0") } else { ("running", "3600") };
            let (name, start) = (format!("run-{i}"), start.to_string());
            copy_row(
                &mut buf,
                &[
                    Some(id),
                    Some("/data/aim"),
                    Some(&name),
                    Some(state),
                    Some("9"),
                    Some("progress"),
                    Some(expect),
                    Some(&start),
                    Some(&start),
                    Some(&start),
                ],
            );
        }
        w.write_all(buf.as_bytes())?;
        w.finish()?;
    }
    {
        let mut w = tx.copy_in(
            "COPY notifications (id, created_at, updated_at, level, title, body, run_id, source, dedupe_key, event_id, repeat_count, acked_at, expires_at) FROM STDIN",
        )?;
        let mut buf = String::with_capacity(1 << 20);
        for i in 0..n {
            let seq = i as i64 + 1;
            let created = start + i as i64 * step;
            let level = pick_level(rng);
            let run = &runs[rng.usize(0..runs.len())];
            let kind = rng.u32(0..100);
            let (title, body, source, dedupe, event_id, repeat) = if kind < 70 {
                let msg = format!("{} at step {i}: loss={:.4} lr={:.2e}", log_words(level), rng.f64() * 4.0, rng.f64() * 1e-3);
                let repeat = if rng.u32(0..20) == 0 { rng.i64(1..50) } else { 0 };
                (
                    msg.clone(),
                    format!("{msg}\n  File \"train.py\", line 211, in <module>"),
                    "aim",
                    Some(format!("log:{run}:{i}")),
                    None,
                    repeat,
                )
            } else if kind < 80 {
                let title = format!("Run '{run}' {}", happening(level));
                (
                    title,
                    "Repository: /data/aim".to_string(),
                    "detector",
                    Some(format!("{}:{run}:{i}", happening(level).split(' ').next().unwrap_or("x"))),
                    None,
                    0,
                )
            } else {
                let msg = format!("job {run} {} (epoch {})", log_words(level), i % 100);
                (msg.clone(), msg, "api", None, Some(uuid(rng)), 0)
            };
            let acked = rng.bool();
            let acked_at = acked.then(|| created + rng.i64(1_000..3_600_000));
            if !acked {
                pending_seqs.push(seq);
            }
            let (id, created_s, updated_s, level_s, repeat_s, acked_s, expires_s) = (
                uuid_v7(created, rng),
                created.to_string(),
                acked_at.unwrap_or(created).to_string(),
                level.to_string(),
                repeat.to_string(),
                acked_at.map(|a| a.to_string()),
                (created + 30 * DAY_MS).to_string(),
            );
            copy_row(
                &mut buf,
                &[
                    Some(&id),
                    Some(&created_s),
                    Some(&updated_s),
                    Some(&level_s),
                    Some(&title),
                    Some(&body),
                    Some(run),
                    Some(source),
                    dedupe.as_deref(),
                    event_id.as_deref(),
                    Some(&repeat_s),
                    acked_s.as_deref(),
                    Some(&expires_s),
                ],
            );
            if buf.len() > 1 << 20 {
                w.write_all(buf.as_bytes())?;
                buf.clear();
            }
        }
        w.write_all(buf.as_bytes())?;
        w.finish()?;
    }
    tx.execute(
        "UPDATE pending_counts SET n = (SELECT COUNT(*) FROM notifications WHERE acked_at IS NULL AND level = pending_counts.level)",
        &[],
    )?;
    tx.commit()?;
    client.batch_execute("VACUUM ANALYZE")?;
    let deep_cursor = pending_seqs.get(pending_seqs.len() / 10).copied().unwrap_or(1);
    Ok(Seeded { pending: pending_seqs.len(), deep_cursor })
}

/// Copies a store seeded by an earlier `--seed-only` run.
fn copy_seeded(from: &std::path::Path, data: &DataDir) -> Result<Seeded, Box<dyn std::error::Error>> {
    std::fs::copy(from.join("runwatch.db"), data.store_path())?;
    let store = Store::open(data)?;
    let pending: i64 = store.conn().query_row("SELECT COUNT(*) FROM notifications WHERE acked_at IS NULL", [], |r| r.get(0))?;
    let deep_cursor = store.conn().query_row(
        "SELECT seq FROM notifications WHERE acked_at IS NULL ORDER BY seq LIMIT 1 OFFSET ?1",
        [pending / 10],
        |r| r.get(0),
    )?;
    Ok(Seeded { pending: pending as usize, deep_cursor })
}

fn count(data: &DataDir) -> Result<usize, Box<dyn std::error::Error>> {
    let store = Store::open(data)?;
    let n: i64 = store.conn().query_row("SELECT COUNT(*) FROM notifications", [], |r| r.get(0))?;
    Ok(n as usize)
}

fn log_words(level: i64) -> &'static str {
    match level {
        10 => "debug: grad norm",
        20 => "eval finished",
        30 => "loss plateaued",
        40 => "loss is NaN",
        _ => "CUDA out of memory",
    }
}

fn happening(level: i64) -> &'static str {
    match level {
        10 | 20 => "finished without error.",
        30 => "ended without a final check-in.",
        40 => "stuck: no check-in for 3600 s.",
        _ => "crashed.",
    }
}

fn hex(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len).map(|_| char::from_digit(rng.u32(0..16), 16).unwrap()).collect()
}

/// A random (version 4) UUID, as the engine and most clients make them.
fn uuid(rng: &mut fastrand::Rng) -> String {
    let v = (rng.u128(..) & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A time-ordered (v7) UUID of a creation time, as the engine makes notification ids.
fn uuid_v7(created_ms: i64, rng: &mut fastrand::Rng) -> String {
    let v = ((created_ms as u128 & 0xffff_ffff_ffff) << 80) | (0x7 << 76) | (rng.u128(..) & ((1 << 76) - 1) & !(0x3 << 62)) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn batch_body(rng: &mut fastrand::Rng, runs: &[String], runs_per_batch: usize) -> String {
    // A batch comes from one client: a job, or an agent forwarding a few jobs' events.
    let batch_runs: Vec<&String> = (0..runs_per_batch).map(|_| &runs[rng.usize(0..runs.len())]).collect();
    let events: Vec<Value> = (0..BATCH)
        .map(|i| {
            let level = pick_level(rng);
            let run = batch_runs[rng.usize(0..batch_runs.len())];
            json!({
                "run_id": run,
                "level": level_name(level),
                "message": format!("{} at step {i}: loss={:.4}\nworker 3 of 8", log_words(level), rng.f64() * 4.0),
                // Random (v4), as most clients make them: the hard case for an index.
                "event_id": uuid(rng),
            })
        })
        .collect();
    json!({ "events": events }).to_string()
}

// ---------------------------------------------------------------------------------------
// HTTP

type Served = tokio::task::JoinHandle<std::io::Result<()>>;

/// The real server (as `runwatch start` runs it) on 127.0.0.1:0 over the store in `data`:
/// its API base URL, what stops it, and what to wait on after.
fn serve(
    rt: &tokio::runtime::Runtime,
    data: &Location,
    token: &str,
) -> Result<(String, tokio::sync::oneshot::Sender<()>, Served), Box<dyn std::error::Error>> {
    let server = rt.block_on(Server::bind("127.0.0.1:0".parse()?))?;
    let base = format!("http://{}/api/v1", server.local_addr()?);
    let config = ApiConfig {
        store: Store::open_at(data)?,
        token: token.to_string(),
        clock: Arc::new(SystemClock),
        on_stored: Box::new(|| {}),
        store_changes: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = rt.spawn(server.serve(config, async move {
        let _ = stop_rx.await;
    }));
    Ok((base, stop_tx, served))
}

/// Posts `bodies` as batches from `clients` clients at once (each its own connection and
/// thread, taking the next body in turn); the wall time and each batch's latency.
fn ingest(base: &str, token: &str, bodies: &[String], clients: usize) -> Result<(f64, Vec<f64>), Box<dyn std::error::Error>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t = Instant::now();
    let per_client: Vec<Result<Vec<f64>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let client = Client::new(base, token);
                    let mut ms = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { return Ok(ms) };
                        let t1 = Instant::now();
                        let answer = client.post("/events/batch", body).map_err(|e| e.to_string())?;
                        ms.push(t1.elapsed().as_secs_f64() * 1e3);
                        // One result per event, none a duplicate (the ids are unique).
                        if answer.matches("\"duplicate\":false").count() != BATCH {
                            return Err("a batch did not store all its events".to_string());
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a client panicked".into()))).collect()
    });
    let secs = t.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for ms in per_client {
        all.extend(ms?);
    }
    Ok((secs, all))
}

struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Client {
    fn new(base: &str, token: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(120))).build().into();
        Self { agent, base: base.to_string(), auth: format!("Bearer {token}") }
    }

    fn get(&self, path: &str) -> Result<String, Box<dyn std::error::Error>> {
        let mut res = self.agent.get(format!("{}{path}", self.base)).header("Authorization", &self.auth).call()?;
        Ok(res.body_mut().with_config().limit(64 << 20).read_to_string()?)
    }

    fn post(&self, path: &str, body: &str) -> Result<String, Box<dyn std::error::Error>> {
        let mut res = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/json")
            .send(body)?;
        Ok(res.body_mut().with_config().limit(64 << 20).read_to_string()?)
    }

    /// Times `n` calls of `f` after a few warm-up calls.
    fn sample(&self, n: usize, mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>) -> Result<Stats, Box<dyn std::error::Error>> {
        for _ in 0..WARMUP {
            f()?;
        }
        let mut ms = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            f()?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(Stats::of(ms))
    }
}

struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    fn of(mut ms: Vec<f64>) -> Stats {
        ms.sort_by(f64::total_cmp);
        // Nearest rank.
        let pct = |p: f64| ms[((p / 100.0 * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Stats { p50: pct(50.0), p99: pct(99.0), max: *ms.last().unwrap(), mean: ms.iter().sum::<f64>() / ms.len() as f64 }
    }
}

struct Row {
    name: String,
    figure: String,
    target: String,
    pass: bool,
}

impl Row {
    fn latency(name: &str, s: &Stats, p99_target: f64) -> Row {
        Row {
            name: name.to_string(),
            figure: format!("p50 {:.2} ms, p99 {:.2} ms (max {:.1})", s.p50, s.p99, s.max),
            target: format!("p99 < {p99_target} ms"),
            pass: s.p99 < p99_target,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The machine

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| format!("{:.1} GiB RAM", kb / 1048576.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{cpus} CPUs ({cpu}), {mem}, Linux {kernel}")
}
