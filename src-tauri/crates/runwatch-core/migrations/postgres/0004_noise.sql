-- Schema 4: noise control (see src/noise.rs), the twin of the SQLite store's schema 8 —
-- snoozed, silenced and resolved notifications, group keys, silences, run snoozes,
-- per-notifier rules (delay, repeat, quiet hours) and the delivery state they need.

-- Hidden from the badge and the pending list until then; 9223372036854775807 (the
-- largest time) while it waits for its run's next state change.
ALTER TABLE notifications ADD COLUMN snoozed_until BIGINT;
-- The run's state when snoozed "until the run's next state change".
ALTER TABLE notifications ADD COLUMN snooze_state TEXT;
-- The silence that matched it when it arrived: stored, never popped up nor forwarded.
ALTER TABLE notifications ADD COLUMN silenced_by TEXT;
-- When its alarm ended by itself (a stuck run checked in again).
ALTER TABLE notifications ADD COLUMN resolved_at BIGINT;
-- A burst with one group key becomes one popup and one message per notifier.
ALTER TABLE notifications ADD COLUMN group_key TEXT;
CREATE INDEX notifications_snoozed ON notifications (snoozed_until) WHERE snoozed_until IS NOT NULL;
CREATE INDEX notifications_group ON notifications (group_key, created_at) WHERE group_key IS NOT NULL;

CREATE TABLE silences (
    id          TEXT COLLATE "C" PRIMARY KEY,          -- UUID
    matchers    TEXT NOT NULL,                         -- JSON list, all must match
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT NOT NULL,                       -- expiring one sets it to now
    comment     TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

-- A snoozed run: its pending notifications, and those that arrive meanwhile, are snoozed.
CREATE TABLE run_snoozes (
    run_id  TEXT PRIMARY KEY,
    until   BIGINT NOT NULL,                           -- as notifications.snoozed_until
    state   TEXT                                       -- the run's state, for "until it changes"
);

-- JSON: {"delay_ms":…, "repeat_ms":…, "quiet":{…}}; NULL for none.
ALTER TABLE notifiers ADD COLUMN rules TEXT;

-- How many times it was sent: a repeat is a pending delivery sent before. (Schema 1–3
-- derived it from the state: a sent delivery was sent once.)
ALTER TABLE deliveries ADD COLUMN sends BIGINT NOT NULL DEFAULT 0;
UPDATE deliveries SET sends = 1 WHERE state = 'sent';
-- Held by quiet hours: sent in the catch-up digest when they end.
ALTER TABLE deliveries ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE;

-- Pending counts leave out silenced and resolved notifications (snoozed ones are
-- subtracted when read: their return is a time, not a write).
CREATE OR REPLACE FUNCTION pending_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pending_counts p SET n = p.n - d.c
      FROM (SELECT level, COUNT(*) AS c FROM old_rows
             WHERE acked_at IS NULL AND silenced_by IS NULL AND resolved_at IS NULL
               AND seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
             GROUP BY level) d
     WHERE p.level = d.level;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION pending_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pending_counts p SET n = p.n + d.c
      FROM (SELECT level, SUM(c) AS c FROM (
                SELECT level, -1 AS c FROM old_rows
                 WHERE acked_at IS NULL AND silenced_by IS NULL AND resolved_at IS NULL
                   AND seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
                UNION ALL
                SELECT level, 1 AS c FROM new_rows
                 WHERE acked_at IS NULL AND silenced_by IS NULL AND resolved_at IS NULL
                   AND seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)) x
             GROUP BY level) d
     WHERE p.level = d.level AND d.c <> 0;
    RETURN NULL;
END $$;
