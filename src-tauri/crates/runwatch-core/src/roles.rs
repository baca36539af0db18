//! Roles that exactly one daemon plays for a store: taking the check-ins that arrive over
//! HTTP (the run detector), polling Slurm, and following the remotes. On a SQLite store the one daemon of the data
//! dir (its instance lock) plays every role; on a shared PostgreSQL store a daemon holds a
//! role for a lease it renews, and another takes it over when the lease runs out.

use crate::clock::Millis;
use crate::store::StoreError;
use crate::Store;

/// A role one daemon plays at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Tracking the runs that check in over HTTP: stuck and crashed are found by one daemon.
    CheckIns,
    /// Polling the Slurm controller: one daemon per store turns jobs into runs.
    Slurm,
    /// Following the remotes (`runwatch remotes`): one daemon per store fetches their
    /// changes and sends them the acknowledgements made here, so nothing is fetched twice.
    Follow,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::CheckIns => "check-ins",
            Role::Slurm => "slurm",
            Role::Follow => "follow",
        }
    }
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Whether this daemon plays the role now.
    pub held: bool,
    /// When to claim again: before the lease runs out when held, else when the holder's
    /// lease would run out (`Millis::MAX`: never, the role cannot change hands).
    pub again_at: Millis,
}

/// How long a claimed role stays held without a renewal: long enough for a busy daemon to
/// renew it, short enough that a dead daemon's roles move on within a minute.
/// `RUNWATCH_ROLE_LEASE_MS` changes it (tests of a daemon killed while holding one).
pub const ROLE_LEASE_MS: Millis = 30_000;
pub const ROLE_LEASE_ENV: &str = "RUNWATCH_ROLE_LEASE_MS";

/// The role lease in force: [`ROLE_LEASE_MS`] unless the environment says otherwise.
pub fn role_lease() -> Millis {
    std::env::var(ROLE_LEASE_ENV).ok().and_then(|v| v.parse().ok()).filter(|ms: &Millis| *ms > 0).unwrap_or(ROLE_LEASE_MS)
}

pub use crate::host::{daemon_host, HOST_ENV};

impl Store {
    /// Takes `role` for this daemon, or renews it, at `now`.
    pub fn claim_role(&self, role: Role, now: Millis) -> Result<Claim, StoreError> {
        match self.pg() {
            Some(pg) => pg.claim_role(role.as_str(), now, role_lease()),
            None => Ok(Claim { held: true, again_at: Millis::MAX }),
        }
    }

    /// Gives `role` up (a daemon stopping), so that another takes it at once.
    pub fn release_role(&self, role: Role) -> Result<(), StoreError> {
        match self.pg() {
            Some(pg) => pg.release_role(role.as_str()),
            None => Ok(()),
        }
    }

    /// Who plays each role now, for `runwatch store check`: (role, "host (pid N)", until).
    pub fn role_holders(&self, now: Millis) -> Result<Vec<(String, String, Millis)>, StoreError> {
        match self.pg() {
            Some(pg) => pg.role_holders(now),
            None => Ok(Vec::new()),
        }
    }
}
