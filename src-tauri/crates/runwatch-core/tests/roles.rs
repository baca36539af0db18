//! Roles one daemon plays at a time: on SQLite always this one; on PostgreSQL one store
//! connection (a daemon) at a time, handed over when its lease runs out or it lets go.

mod common;

use common::{store, Backend};
use runwatch_core::roles::{role_lease, ROLE_LEASE_MS};
use runwatch_core::Role;

#[test]
fn on_sqlite_the_one_daemon_plays_every_role() {
    let (_place, s) = store(Backend::Sqlite);
    let claim = s.claim_role(Role::CheckIns, 1_000).unwrap();
    assert!(claim.held);
    assert_eq!(claim.again_at, i64::MAX);
    assert!(s.role_holders(1_000).unwrap().is_empty());
}

#[test]
fn on_postgres_one_daemon_holds_a_role_until_its_lease_runs_out() {
    assert_eq!(role_lease(), ROLE_LEASE_MS);
    let (place, a) = store(Backend::Postgres);
    let b = place.open();
    let t0 = 1_000_000;

    let first = a.claim_role(Role::CheckIns, t0).unwrap();
    assert!(first.held);
    assert_eq!(first.again_at, t0 + ROLE_LEASE_MS / 3, "the holder renews at a third of the lease");
    // Another daemon is told when the lease would run out, and does not get it before.
    let other = b.claim_role(Role::CheckIns, t0 + 1).unwrap();
    assert_eq!(other, runwatch_core::Claim { held: false, again_at: t0 + ROLE_LEASE_MS });
    // Roles are independent.
    assert!(b.claim_role(Role::Slurm, t0 + 1).unwrap().held);
    assert!(a.claim_role(Role::Follow, t0 + 1).unwrap().held);

    // The holder renews; the other still waits.
    assert!(a.claim_role(Role::CheckIns, t0 + 10_000).unwrap().held);
    assert!(!b.claim_role(Role::CheckIns, t0 + ROLE_LEASE_MS).unwrap().held);
    let holders = a.role_holders(t0 + 10_000).unwrap();
    assert_eq!(holders.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), ["check-ins", "follow", "slurm"]);
    assert!(holders[0].1.contains(&format!("(pid {})", std::process::id())), "{holders:?}");

    // The holder stops renewing (it died): the lease runs out and the other takes it.
    let taken = b.claim_role(Role::CheckIns, t0 + 10_000 + ROLE_LEASE_MS).unwrap();
    assert!(taken.held);
    assert!(!a.claim_role(Role::CheckIns, t0 + 10_001 + ROLE_LEASE_MS).unwrap().held);

    // A daemon that stops lets go, and the other takes the role at once.
    b.release_role(Role::CheckIns).unwrap();
    assert!(a.claim_role(Role::CheckIns, t0 + 10_002 + ROLE_LEASE_MS).unwrap().held);
    // Letting go of a role held by another changes nothing.
    b.release_role(Role::CheckIns).unwrap();
    assert!(!b.claim_role(Role::CheckIns, t0 + 10_003 + ROLE_LEASE_MS).unwrap().held);
}
