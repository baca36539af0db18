//! Runwatch's engine, free of any GUI: the domain model, where data lives, and the store.

pub mod data_dir;
pub mod lock;
pub mod model;
pub mod store;

pub use data_dir::DataDir;
pub use lock::{InstanceLock, LockError};
pub use model::{DeliveryState, Level, NotifierStatus, RunState};
pub use store::{Store, StoreError};
