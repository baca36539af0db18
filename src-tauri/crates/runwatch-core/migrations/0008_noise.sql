-- Schema 8: noise control (see src/noise.rs) — snoozed, silenced and resolved
-- notifications, group keys, silences, run snoozes, per-notifier rules (delay, repeat,
-- quiet hours) and the delivery state they need. Columns are added, nothing is rebuilt.

-- Hidden from the badge and the pending list until then; 9223372036854775807 (the
-- largest time) while it waits for its run's next state change.
ALTER TABLE notifications ADD COLUMN snoozed_until INTEGER;
-- The run's state when snoozed "until the run's next state change".
ALTER TABLE notifications ADD COLUMN snooze_state TEXT;
-- The silence that matched it when it arrived: stored, never popped up nor forwarded.
ALTER TABLE notifications ADD COLUMN silenced_by TEXT;
-- When its alarm ended by itself (a stuck run checked in again).
ALTER TABLE notifications ADD COLUMN resolved_at INTEGER;
-- A burst with one group key becomes one popup and one message per notifier.
ALTER TABLE notifications ADD COLUMN group_key TEXT;
CREATE INDEX notifications_snoozed ON notifications (snoozed_until) WHERE snoozed_until IS NOT NULL;
CREATE INDEX notifications_group ON notifications (group_key, created_at) WHERE group_key IS NOT NULL;

CREATE TABLE silences (
    id          TEXT PRIMARY KEY,                      -- UUID
    matchers    TEXT NOT NULL,                         -- JSON list, all must match
    starts_at   INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,                      -- expiring one sets it to now
    comment     TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

-- A snoozed run: its pending notifications, and those that arrive meanwhile, are snoozed.
CREATE TABLE run_snoozes (
    run_id  TEXT PRIMARY KEY,
    until   INTEGER NOT NULL,                          -- as notifications.snoozed_until
    state   TEXT                                       -- the run's state, for "until it changes"
);

-- JSON: {"delay_ms":…, "repeat_ms":…, "quiet":{…}}; NULL for none.
ALTER TABLE notifiers ADD COLUMN rules TEXT;

-- How many times it was sent: a repeat is a pending delivery sent before.
ALTER TABLE deliveries ADD COLUMN sends INTEGER NOT NULL DEFAULT 0;
-- Held by quiet hours: sent in the catch-up digest when they end.
ALTER TABLE deliveries ADD COLUMN held INTEGER NOT NULL DEFAULT 0;

-- Pending counts leave out silenced and resolved notifications (snoozed ones are
-- subtracted when read: their return is a time, not a write).
DROP TRIGGER pending_counts_delete;
CREATE TRIGGER pending_counts_delete AFTER DELETE ON notifications
WHEN old.acked_at IS NULL AND old.silenced_by IS NULL AND old.resolved_at IS NULL
     AND old.seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
BEGIN
    UPDATE pending_counts SET n = n - 1 WHERE level = old.level;
END;

DROP TRIGGER pending_counts_leave;
CREATE TRIGGER pending_counts_leave AFTER UPDATE OF acked_at, level, resolved_at ON notifications
WHEN old.acked_at IS NULL AND old.silenced_by IS NULL AND old.resolved_at IS NULL
     AND old.seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
BEGIN
    UPDATE pending_counts SET n = n - 1 WHERE level = old.level;
END;

DROP TRIGGER pending_counts_join;
CREATE TRIGGER pending_counts_join AFTER UPDATE OF acked_at, level, resolved_at ON notifications
WHEN new.acked_at IS NULL AND new.silenced_by IS NULL AND new.resolved_at IS NULL
     AND new.seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
BEGIN
    UPDATE pending_counts SET n = n + 1 WHERE level = new.level;
END;
