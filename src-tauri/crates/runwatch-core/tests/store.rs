//! The store on real files: migrations, permissions, concurrent writers, damaged files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

mod common;

use common::Backend;
use runwatch_core::store::latest_schema_version;
use runwatch_core::NewNotification;
use runwatch_core::{DataDir, Level, Settings, SettingsPatch, Store, StoreError};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn empty_file_is_migrated_and_reopening_migrates_idempotently() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("runwatch.db");
    std::fs::File::create(&path).unwrap(); // an empty file, as a crash right after creation leaves it

    let mut store = Store::open_path(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest_schema_version());
    let tables: Vec<String> = store
        .conn()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "ack_alls",
            "ack_log",
            "check_in_reports",
            "checkins",
            "deliveries",
            "event_ids",
            "event_ids_merged",
            "notifications",
            "notifiers",
            "pending_counts",
            "remote_acks",
            "remotes",
            "run_snoozes",
            "runs",
            "settings",
            "silences",
            "sqlite_sequence"
        ]
    );
    let patch = SettingsPatch { log_level: Some(Level::Critical), ..Default::default() };
    runwatch_core::settings::patch(&mut store, &patch).unwrap();
    drop(store);

    for _ in 0..2 {
        let store = Store::open_path(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest_schema_version());
        assert_eq!(Settings::load(&store).unwrap().log_level, Level::Critical);
    }
}

#[test]
fn store_uses_wal_and_a_busy_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&DataDir::at(tmp.path())).unwrap();
    let journal: String = store.conn().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    let timeout: i64 = store.conn().pragma_query_value(None, "busy_timeout", |r| r.get(0)).unwrap();
    assert_eq!(journal, "wal");
    assert!(timeout >= 5000, "busy timeout {timeout} ms");
}

#[test]
fn store_files_are_readable_by_the_user_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::at(tmp.path().join("new-data-dir"));
    let mut store = Store::open(&dir).unwrap();
    runwatch_core::settings::patch(&mut store, &SettingsPatch { popup_level: Some(Level::Error), ..Default::default() }).unwrap();
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&dir.store_path()), 0o600);
    let wal = dir.store_path().with_extension("db-wal");
    assert!(wal.exists(), "a write in WAL mode leaves a -wal file");
    assert_eq!(mode(&wal), 0o600);
    drop(store);

    // A file loosened by hand is tightened again on open.
    std::fs::set_permissions(dir.store_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    Store::open(&dir).unwrap();
    assert_eq!(mode(&dir.store_path()), 0o600);
}

#[test]
fn a_foreign_file_is_reported_as_corrupt_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("runwatch.db");
    let garbage = b"this is not an SQLite database, it is somebody's notes\n".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open_path(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("not a Runwatch database or is corrupt"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_store_from_a_newer_runwatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("runwatch.db");
    drop(Store::open_path(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", latest_schema_version() as i64 + 1).unwrap();
    drop(conn);
    let err = Store::open_path(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err:?}");
}

const WRITER_ENV: &str = "RUNWATCH_TEST_WRITER";
const WRITES_PER_PROCESS: usize = 2000;

/// Not a test of its own: the body of each writer process spawned by
/// `two_processes_writing_at_once_never_see_database_is_locked`.
#[test]
#[ignore = "run as a child process by another test"]
fn writer_process() {
    let Ok(spec) = std::env::var(WRITER_ENV) else {
        return;
    };
    let (path, name) = spec.split_once('|').unwrap();
    // Both processes open (and so migrate) a brand-new store at the same moment too.
    let mut store = if runwatch_core::pg::is_url(path) { Store::connect(path) } else { Store::open_path(Path::new(path)) }.unwrap();
    for i in 0..WRITES_PER_PROCESS {
        let n = NewNotification {
            level: Some(Level::Warning),
            title: format!("{name} {i}"),
            source: "test".into(),
            dedupe_key: Some(format!("{name}-{i}")),
            ..Default::default()
        };
        store.insert_notification(&n, i as i64).unwrap_or_else(|e| panic!("{name} write {i} failed: {e}"));
        let patch = SettingsPatch { grace_secs: Some(i as u64), ..Default::default() };
        runwatch_core::settings::patch(&mut store, &patch).unwrap_or_else(|e| panic!("{name} setting {i} failed: {e}"));
    }
}

fn two_processes_writing_at_once_never_see_database_is_locked(backend: Backend) {
    let place = common::place(backend);
    let path = match &place.location {
        runwatch_core::Location::DataDir(dir) => dir.store_path().display().to_string(),
        runwatch_core::Location::Postgres(url) => url.clone(),
    };
    let children: Vec<_> = ["alpha", "beta"]
        .iter()
        .map(|name| {
            Command::new(std::env::current_exe().unwrap())
                .args(["writer_process", "--exact", "--ignored", "--nocapture"])
                .env(WRITER_ENV, format!("{path}|{name}"))
                .output_async()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "writer failed:\n{stdout}\n{stderr}");
        assert!(!stdout.contains("locked") && !stderr.contains("locked"), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "the writer did not run:\n{stdout}");
    }
    let store = place.open();
    assert_eq!(store.unread_summary().unwrap().warning, 2 * WRITES_PER_PROCESS as i64);
}

on_both!(two_processes_writing_at_once_never_see_database_is_locked);

/// `Command::spawn` with piped output, named for what the test does with it.
trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}
impl OutputAsync for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    }
}

/// Schema 6 rebuilds `runs` (to allow 'failed'): a schema-5 store keeps its runs and the
/// check-ins that reference them.
#[test]
fn a_schema_5_store_keeps_its_runs_and_check_ins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = runwatch_core::DataDir::at(tmp.path());
    dir.ensure().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.store_path()).unwrap();
        for sql in [
            include_str!("../migrations/0001_initial.sql"),
            include_str!("../migrations/0002_checkins.sql"),
            include_str!("../migrations/0003_pending_counts.sql"),
            include_str!("../migrations/0004_event_ids.sql"),
            include_str!("../migrations/0005_ack_all.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 5;
             INSERT INTO runs (id, repo, name, state, deadline, created_at, updated_at, log_step) VALUES ('r1', '/repo', 'n', 'stuck', 99, 1, 2, 7);
             INSERT INTO checkins (run_id, flag, idx, expect_next_in, first_seen) VALUES ('r1', 'check_in', 3, 60, 5);",
        )
        .unwrap();
    }
    let store = Store::open(&dir).unwrap();
    let run = store.run("r1").unwrap().unwrap();
    assert_eq!(
        (run.state, run.deadline, run.log_step, run.name.as_deref()),
        (runwatch_core::RunState::Stuck, Some(99), Some(7), Some("n"))
    );
    assert!(run.labels.is_empty() && run.host.is_none());
    assert_eq!(runwatch_core::runs::all_checkins(store.conn()).unwrap().len(), 1, "check-ins survive the rebuild");
    store.conn().execute("UPDATE runs SET state = 'failed' WHERE id = 'r1'", []).unwrap();
    let fk: i64 = store.conn().query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
    assert_eq!(fk, 0);
}

/// Two daemons starting at once on an empty store add one first notifier between them:
/// each of eight connections, started together, tries to add its own.
fn the_first_notifier_is_added_once_by_daemons_starting_at_once(backend: Backend) {
    let place = std::sync::Arc::new(common::place(backend));
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let added: Vec<bool> = (0..8)
        .map(|i| {
            let (place, start) = (place.clone(), start.clone());
            std::thread::spawn(move || {
                let mut store = place.open();
                let n = runwatch_core::notifiers::Notifier {
                    id: format!("logger-{i}"),
                    kind: "logger".into(),
                    status: runwatch_core::NotifierStatus::Enabled,
                    config: serde_json::json!({}),
                    min_level: Level::Debug,
                    created_at: i,
                    updated_at: i,
                };
                start.wait();
                store.add_first_notifier(&n).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(added.iter().filter(|a| **a).count(), 1, "{added:?}");
    assert_eq!(place.open().notifiers().unwrap().len(), 1);
}

on_both!(the_first_notifier_is_added_once_by_daemons_starting_at_once);
