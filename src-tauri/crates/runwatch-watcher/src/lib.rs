//! Runwatch's watcher: reads Aim repositories (check-in files, log records), keeps the run
//! state machine, and stores what happens as notifications — exactly once, on time.

pub mod detector;
pub mod log_records;
mod watcher;

pub use detector::{Detector, Happening};
pub use watcher::{Settings, StopHandle, Watcher, WatcherError};
