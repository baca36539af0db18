//! Where notifications go: the notifier types (Slack, Workplace, logger, webhook), how each
//! renders and sends a message, and the dispatcher that drains the outbox with retries,
//! backoff, pacing and digests.

pub mod aim_config;
pub mod channel;
pub mod dispatcher;
pub mod render;
pub mod send;

pub use channel::{Channel, ConfigError};
pub use dispatcher::{Dispatcher, DispatcherHandle};
