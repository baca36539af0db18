//! Client event ids: idempotent ingest without a random index write for every event.
//!
//! Clients mostly pick event ids at random (UUIDv4). A unique index over them puts each
//! new event on a random page of a large B-tree, written to the log and again at the
//! checkpoint — a thousand scattered page writes per batch. Instead (schema 4) the ids are
//! indexed in two parts:
//! - `event_ids`: every notification's event id up to a watermark (`event_ids_merged`);
//! - the rows after the watermark — the *tail* — which each store connection reads once
//!   and then keeps in memory ([`Tail`]), following other writers' rows by seq.
//!
//! When the tail spans [`MERGE_AT`] rows, the next ingest merges it into `event_ids` in one
//! sorted pass, which writes each index page once for many events. Seq never repeats
//! (AUTOINCREMENT), so "the rows after the watermark" is exact; all of this runs inside the
//! write transaction, so two processes ingesting at once see each other's events.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::StoreError;

/// Tail length (in rows) at which it is merged into `event_ids`.
pub const MERGE_AT: i64 = 65_536;

/// The event ids after the watermark, as this connection last read them.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// The watermark these were read against.
    upto: i64,
    /// The highest seq read.
    seen: i64,
    /// Event id → seq, for the rows in (upto, seen].
    ids: HashMap<String, i64>,
}

impl Tail {
    /// Brings the tail up to date; call inside the write transaction that will use it.
    /// Merges it first when it has grown to [`MERGE_AT`] rows.
    pub(crate) fn catch_up(&mut self, tx: &Connection) -> Result<(), StoreError> {
        let upto: i64 = tx.prepare_cached("SELECT upto FROM event_ids_merged")?.query_row([], |r| r.get(0))?;
        if upto != self.upto || self.seen < upto {
            // Another connection merged (or this is the first use): start from its watermark.
            *self = Tail { upto, seen: upto, ids: HashMap::new() };
        }
        let mut stmt = tx.prepare_cached("SELECT seq, event_id FROM notifications WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = stmt.query([self.seen])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            if let Some(event_id) = row.get::<_, Option<String>>(1)? {
                self.ids.insert(event_id, seq);
            }
            self.seen = seq;
        }
        if self.seen - self.upto >= MERGE_AT {
            self.merge(tx)?;
        }
        Ok(())
    }

    /// The id of the stored notification with this event id, if any (`catch_up` first).
    pub(crate) fn find(&self, tx: &Connection, event_id: &str) -> Result<Option<String>, StoreError> {
        let found = match self.ids.get(event_id) {
            // Its row may have expired since it was read: then the id is free again.
            Some(&seq) => tx.prepare_cached("SELECT id FROM notifications WHERE seq = ?1")?.query_row([seq], |r| r.get(0)).optional()?,
            // Entries leave `event_ids` with their rows (trigger `event_ids_delete`).
            None => tx
                .prepare_cached("SELECT n.id FROM event_ids e JOIN notifications n ON n.seq = e.seq WHERE e.event_id = ?1")?
                .query_row([event_id], |r| r.get(0))
                .optional()?,
        };
        Ok(found)
    }

    /// A row this transaction just inserted.
    pub(crate) fn inserted(&mut self, seq: i64, event_id: Option<&str>) {
        if let Some(event_id) = event_id {
            self.ids.insert(event_id.to_string(), seq);
        }
        self.seen = self.seen.max(seq);
    }

    /// Moves the tail into `event_ids` and the watermark to its end. Read from the table,
    /// not from memory, so rows that expired meanwhile are left out.
    pub(crate) fn merge(&mut self, tx: &Connection) -> Result<(), StoreError> {
        // OR IGNORE: were an id there already, it keeps its first notification rather than
        // failing this merge (and with it every ingest after).
        tx.execute(
            "INSERT OR IGNORE INTO event_ids (event_id, seq)
             SELECT event_id, seq FROM notifications
              WHERE seq > ?1 AND seq <= ?2 AND event_id IS NOT NULL
              ORDER BY event_id",
            params![self.upto, self.seen],
        )?;
        tx.execute("UPDATE event_ids_merged SET upto = ?1", [self.seen])?;
        self.upto = self.seen;
        self.ids.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{DataDir, Inserted, NewNotification, Store, StoreError};

    #[test]
    fn a_rolled_back_insert_leaves_no_event_id_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(&DataDir::at(tmp.path())).unwrap();
        let n = NewNotification { title: "t".into(), source: "test".into(), event_id: Some("e".into()), ..Default::default() };
        let failed = store.write_tracked(|tx, inserts| {
            inserts.insert(tx, &n, 1, None)?;
            Err::<(), _>(StoreError::BadCursor("stand-in for a failure after the insert".into()))
        });
        assert!(failed.is_err());
        assert!(matches!(store.insert_notification(&n, 2).unwrap(), Inserted::New(_)));
        assert!(matches!(store.insert_notification(&n, 3).unwrap(), Inserted::Duplicate(_)));
    }
}
