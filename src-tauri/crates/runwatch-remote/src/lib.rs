//! Reporting to a Runwatch server from the machine a job runs on: the API [`client`], the
//! durable [`spool`] of what could not be sent yet, and the [`Reporter`] that sends
//! through both in the order things happened.

pub mod client;
pub mod context;
pub mod spool;
pub mod ssh;

use runwatch_core::clock::Millis;
use runwatch_core::DataDir;
use serde_json::Value;

pub use client::{Client, ClientError, Target};
pub use spool::{Flushed, Kind, Spool, SpoolError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// What became of a report.
#[derive(Debug)]
pub enum Report {
    /// The server has it; its answer.
    Sent(Value),
    /// The server could not be reached; the item waits in the spool.
    Spooled { reason: String },
}

/// Sends reports to one server, spooling what cannot be sent.
#[derive(Debug, Clone)]
pub struct Reporter {
    client: Client,
    dir: DataDir,
}

impl Reporter {
    pub fn new(client: Client, dir: DataDir) -> Reporter {
        Reporter { client, dir }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The data dir whose spool this reporter uses.
    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// Sends `body` after whatever already waits for this server, giving it an event id
    /// first (so a repeat is harmless). When the server cannot be reached it is kept in the
    /// spool; an error means the server refused it for good or the spool cannot be written.
    pub fn report(&self, kind: Kind, mut body: Value, now: Millis) -> Result<Report, ReportError> {
        with_event_id(&mut body);
        let mut spool = Spool::open(&self.dir)?;
        let lock = spool.lock()?;
        let server = self.client.target().server().to_string();
        if spool.waiting(&server)? > 0 {
            spool.push(&server, kind, &body, None, now)?;
            let flushed = spool.flush(&lock, &self.client)?;
            return Ok(match flushed.stopped {
                Some(e) => Report::Spooled { reason: e.to_string() },
                None => Report::Sent(Value::Null),
            });
        }
        match self.client.post(kind.route(), &body) {
            Ok(answer) => Ok(Report::Sent(answer)),
            Err(e) if e.is_retryable() => {
                let reason = e.to_string();
                spool.push(&server, kind, &body, Some(&reason), now)?;
                Ok(Report::Spooled { reason })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends everything that waits for this server (`runwatch spool flush`).
    pub fn flush(&self) -> Result<Flushed, ReportError> {
        let mut spool = Spool::open(&self.dir)?;
        let lock = spool.lock()?;
        Ok(spool.flush(&lock, &self.client)?)
    }
}

/// Gives a body an `event_id` if it has none.
pub fn with_event_id(body: &mut Value) {
    if let Some(obj) = body.as_object_mut() {
        let missing = obj.get("event_id").and_then(Value::as_str).is_none_or(str::is_empty);
        if missing {
            obj.insert("event_id".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        }
    }
}
