//! Role leases on PostgreSQL (see `crate::roles`): one row per role, taken when free or
//! run out, renewed by its holder.

use super::Pg;
use crate::clock::Millis;
use crate::roles::Claim;
use crate::store::StoreError;

impl Pg {
    pub(crate) fn claim_role(&self, role: &str, now: Millis, lease: Millis) -> Result<Claim, StoreError> {
        let mut conn = self.conn();
        let stmt = conn.prepare(
            "INSERT INTO roles (name, holder, label, until) VALUES ($1, $2, $3, $4::bigint + $5::bigint)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, label = excluded.label, until = excluded.until
              WHERE roles.holder = excluded.holder OR roles.until <= $4::bigint
             RETURNING until",
        )?;
        if let Some(row) = conn.client.query_opt(&stmt, &[&role, &self.holder, &label(), &now, &lease])? {
            let until: Millis = row.get(0);
            // Renewed at a third of the lease: two renewals may fail before it runs out.
            return Ok(Claim { held: true, again_at: until - lease + lease / 3 });
        }
        // Released between the two statements: free now, for the next claim.
        let until: Option<Millis> = conn.client.query_opt("SELECT until FROM roles WHERE name = $1", &[&role])?.map(|r| r.get(0));
        Ok(Claim { held: false, again_at: until.unwrap_or(now).max(now) })
    }

    /// Gives a role up; the other daemons are woken (the change feed), so one takes it now.
    pub(crate) fn release_role(&self, role: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let mut tx = conn.client.transaction()?;
        tx.execute("DELETE FROM roles WHERE name = $1 AND holder = $2", &[&role, &self.holder])?;
        tx.batch_execute(super::NOTIFY)?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn role_holders(&self, now: Millis) -> Result<Vec<(String, String, Millis)>, StoreError> {
        let rows = self.conn().client.query("SELECT name, label, until FROM roles WHERE until > $1 ORDER BY name", &[&now])?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

/// "host (pid N)": who holds a role, for people reading `runwatch store check`.
fn label() -> String {
    format!("{} (pid {})", crate::roles::daemon_host(), std::process::id())
}
