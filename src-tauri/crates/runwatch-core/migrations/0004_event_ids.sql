-- Schema 4: ingest at tens of thousands of events a second into a large inbox.
--
-- A unique index over event ids, which clients mostly pick at random (UUIDv4), puts every
-- ingested event on a random page of a large B-tree, and that page is written twice (log,
-- then checkpoint): at 1,000 events a batch this capped ingest near 17k events/s. Event ids
-- now stay in the notification row without an index; `event_ids` indexes those up to a
-- watermark, merged in sorted runs, and the store keeps the few rows after it in memory
-- (see src/event_ids.rs). That needs seq to grow for ever — AUTOINCREMENT — so that "rows
-- after the watermark" is exact even after the newest rows were deleted.
--
-- The table is rebuilt to drop the UNIQUE constraint (SQLite cannot drop one); the store
-- runs migrations with foreign keys off, so deliveries survive the DROP.

CREATE TABLE notifications_v4 (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,   -- insertion order: cursor for paging
    id            TEXT NOT NULL UNIQUE,                -- UUID shown to users
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    level         INTEGER NOT NULL CHECK (level IN (10, 20, 30, 40, 50)),
    title         TEXT NOT NULL,
    body          TEXT NOT NULL DEFAULT '',
    run_id        TEXT,
    source        TEXT NOT NULL,                       -- aim, ingest, send, exec, detector ...
    dedupe_key    TEXT UNIQUE,                         -- one notification per event, across restarts
    event_id      TEXT,                                -- client event id: idempotent ingest (see event_ids)
    repeat_count  INTEGER NOT NULL DEFAULT 0,          -- "(N more messages logged)"
    acked_at      INTEGER,
    expires_at    INTEGER
);
INSERT INTO notifications_v4 (seq, id, created_at, updated_at, level, title, body, run_id, source, dedupe_key,
                              event_id, repeat_count, acked_at, expires_at)
SELECT seq, id, created_at, updated_at, level, title, body, run_id, source, dedupe_key,
       event_id, repeat_count, acked_at, expires_at
  FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_v4 RENAME TO notifications;

CREATE INDEX notifications_pending ON notifications (level, seq) WHERE acked_at IS NULL;
CREATE INDEX notifications_run ON notifications (run_id, seq);

-- Dropped with the old table; as in schema 3, but for inserts. An INSERT that fires a
-- trigger needs a statement journal (a copy of every page it changes, in case the trigger
-- fails): 15 % of an ingest batch. The one function that inserts notifications
-- (inbox::insert_new) counts them itself, in the same transaction.
CREATE TRIGGER pending_counts_delete AFTER DELETE ON notifications
WHEN old.acked_at IS NULL
BEGIN
    UPDATE pending_counts SET n = n - 1 WHERE level = old.level;
END;

CREATE TRIGGER pending_counts_leave AFTER UPDATE OF acked_at, level ON notifications
WHEN old.acked_at IS NULL
BEGIN
    UPDATE pending_counts SET n = n - 1 WHERE level = old.level;
END;

CREATE TRIGGER pending_counts_join AFTER UPDATE OF acked_at, level ON notifications
WHEN new.acked_at IS NULL
BEGIN
    UPDATE pending_counts SET n = n + 1 WHERE level = new.level;
END;

-- Event ids of the notifications with seq <= event_ids_merged.upto.
CREATE TABLE event_ids (
    event_id  TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL                         -- the notification's seq
) WITHOUT ROWID;

CREATE TABLE event_ids_merged (
    upto  INTEGER NOT NULL                             -- highest seq whose event id is in event_ids
);

INSERT INTO event_ids (event_id, seq)
SELECT event_id, seq FROM notifications WHERE event_id IS NOT NULL ORDER BY event_id;
INSERT INTO event_ids_merged (upto) SELECT COALESCE(MAX(seq), 0) FROM notifications;

-- An expired (deleted) notification frees its event id, as the unique column did.
CREATE TRIGGER event_ids_delete AFTER DELETE ON notifications
WHEN old.event_id IS NOT NULL
BEGIN
    DELETE FROM event_ids WHERE event_id = old.event_id AND seq = old.seq;
END;
