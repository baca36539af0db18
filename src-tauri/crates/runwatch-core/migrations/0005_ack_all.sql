-- Schema 5: "acknowledge all" in constant time.
--
-- Acknowledging half a million notifications one row at a time rewrote nearly every page of
-- the table (pending and acknowledged rows are interleaved): ~400 MB through the write-ahead
-- log and two seconds. Now "acknowledge all" records how far it reached: every notification
-- with seq <= an `ack_alls.upto` is acknowledged, at the `at` of the first such row, whether
-- or not its own `acked_at` was ever set (src/inbox.rs derives it when reading). New rows
-- come after it: seq grows for ever (schema 4).

CREATE TABLE ack_alls (
    upto  INTEGER PRIMARY KEY,                         -- the newest seq when it ran
    at    INTEGER NOT NULL                             -- when
);

-- Rows an ack-all reached are no longer counted, whatever their acked_at says.
DROP TRIGGER pending_counts_delete;
CREATE TRIGGER pending_counts_delete AFTER DELETE ON notifications
WHEN old.acked_at IS NULL AND old.seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
BEGIN
    UPDATE pending_counts SET n = n - 1 WHERE level = old.level;
END;

DROP TRIGGER pending_counts_leave;
CREATE TRIGGER pending_counts_leave AFTER UPDATE OF acked_at, level ON notifications
WHEN old.acked_at IS NULL AND old.seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
BEGIN
    UPDATE pending_counts SET n = n - 1 WHERE level = old.level;
END;

DROP TRIGGER pending_counts_join;
CREATE TRIGGER pending_counts_join AFTER UPDATE OF acked_at, level ON notifications
WHEN new.acked_at IS NULL AND new.seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
BEGIN
    UPDATE pending_counts SET n = n + 1 WHERE level = new.level;
END;

-- No query reads it any more (lists walk seq; counts are in pending_counts), and every
-- insert and acknowledgement paid for it.
DROP INDEX notifications_pending;
