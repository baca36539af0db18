//! Runwatch's engine, free of any GUI: the domain model, where data lives, and the store.

pub mod changes;
pub mod check_ins;
pub mod clock;
pub mod data_dir;
pub mod deliveries;
pub mod event_ids;
pub mod host;
pub mod inbox;
pub mod ingest;
pub mod lock;
pub mod model;
pub mod noise;
pub mod notifiers;
pub mod pg;
pub mod remotes;
pub mod roles;
pub mod runs;
pub mod settings;
pub mod store;
pub mod template;
pub mod users;
pub mod watch;

pub use changes::ChangeFeed;
pub use data_dir::DataDir;
pub use inbox::{Inserted, NewNotification, Notification};
pub use lock::{Holder, InstanceLock, LockError};
pub use model::{DeliveryState, Level, NotifierStatus, RunState};
pub use roles::{Claim, Role};
pub use settings::{Settings, SettingsPatch};
pub use store::{Location, Store, StoreError};
