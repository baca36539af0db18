-- Schema 3: the unread summary without counting.
--
-- The tray badge, the SSE stream and GET /notifications/summary ask for pending counts by
-- level after every change. Counting them walks the whole pending index (half a million
-- entries in a big inbox: tens of milliseconds); these five rows, kept by triggers in the
-- same transaction as every insert, acknowledgement and deletion, answer at once.

CREATE TABLE pending_counts (
    level  INTEGER PRIMARY KEY,                        -- 10, 20, 30, 40, 50
    n      INTEGER NOT NULL DEFAULT 0                  -- notifications at that level with acked_at NULL
);
INSERT INTO pending_counts (level, n) VALUES (10, 0), (20, 0), (30, 0), (40, 0), (50, 0);
UPDATE pending_counts
   SET n = (SELECT COUNT(*) FROM notifications WHERE acked_at IS NULL AND level = pending_counts.level);

CREATE TRIGGER pending_counts_insert AFTER INSERT ON notifications
WHEN new.acked_at IS NULL
BEGIN
    UPDATE pending_counts SET n = n + 1 WHERE level = new.level;
END;

CREATE TRIGGER pending_counts_delete AFTER DELETE ON notifications
WHEN old.acked_at IS NULL
BEGIN
    UPDATE pending_counts SET n = n - 1 WHERE level = old.level;
END;

-- A row that was pending leaves its level's count (acknowledged, or moved to another level);
-- a row that is pending afterwards joins its level's. Acknowledging runs one statement.
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
