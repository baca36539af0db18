//! What an Aim repository gives a watcher: check-in files (names only) and log records in
//! each run's RocksDB chunk. See `shared/spec/aim-checkins.md`.

pub mod checkins;
pub mod logs;
pub mod repo;
