-- Runwatch on PostgreSQL, schema 1: the SQLite store's model (migrations 0001–0007) in one
-- step. Same tables, columns and meanings; times are integer milliseconds since the Unix
-- epoch (UTC). What differs, and why:
-- - event ids are a unique partial index: PostgreSQL has no write amplification to dodge
--   (the SQLite store's `event_ids` tail, see src/event_ids.rs);
-- - every write that changes the inbox takes one advisory lock first (src/pg/mod.rs), so
--   seq commits in order: "rows after seq N" and "acknowledge all up to N" stay exact with
--   several daemons writing;
-- - a delivery is leased by the daemon that sends it (`lease_until`, `lease_holder`), taken
--   with FOR UPDATE SKIP LOCKED: each is sent by one daemon, and by another once the lease
--   of one that died has run out;
-- - pending counts are kept by statement triggers over transition tables (one update per
--   statement, not per row), and by the inserts themselves.

CREATE TABLE runs (
    id                      TEXT COLLATE "C" PRIMARY KEY,
    repo                    TEXT,
    name                    TEXT,
    state                   TEXT NOT NULL DEFAULT 'running'
                            CHECK (state IN ('running', 'finished', 'stuck', 'crashed', 'ended', 'failed')),
    checkin_idx             BIGINT,
    checkin_flag            TEXT,
    checkin_expect_next_in  BIGINT,
    checkin_first_seen      BIGINT,
    deadline                BIGINT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL,
    log_step                BIGINT,
    host                    TEXT,
    labels                  TEXT,
    cause                   TEXT
);
CREATE INDEX runs_deadline ON runs (deadline) WHERE deadline IS NOT NULL;

CREATE TABLE checkins (
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    flag            TEXT NOT NULL CHECK (flag IN ('starting', 'check_in', 'finished', 'new_logs', 'progress', 'failed')),
    idx             BIGINT NOT NULL,
    expect_next_in  BIGINT NOT NULL,
    first_seen      BIGINT NOT NULL,
    PRIMARY KEY (run_id, flag)
);

CREATE TABLE notifications (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    level         BIGINT NOT NULL CHECK (level IN (10, 20, 30, 40, 50)),
    title         TEXT NOT NULL,
    body          TEXT NOT NULL DEFAULT '',
    run_id        TEXT,
    source        TEXT NOT NULL,
    dedupe_key    TEXT UNIQUE,
    event_id      TEXT,
    repeat_count  BIGINT NOT NULL DEFAULT 0,
    acked_at      BIGINT,
    expires_at    BIGINT,
    origin        TEXT,
    remote_id     TEXT,
    remote_seq    BIGINT
);
CREATE UNIQUE INDEX notifications_event_id ON notifications (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX notifications_run ON notifications (run_id, seq);
CREATE INDEX notifications_expiry ON notifications (expires_at) WHERE expires_at IS NOT NULL;
CREATE UNIQUE INDEX notifications_origin ON notifications (origin, remote_id) WHERE origin IS NOT NULL;
CREATE INDEX notifications_origin_seq ON notifications (origin, remote_seq) WHERE origin IS NOT NULL;

CREATE TABLE notifiers (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    config      TEXT NOT NULL,
    min_level   BIGINT NOT NULL DEFAULT 10,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE deliveries (
    notification_id  TEXT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    notifier_id      TEXT NOT NULL REFERENCES notifiers (id) ON DELETE CASCADE,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    updated_at       BIGINT NOT NULL,
    -- Creation order (SQLite's rowid): one notifier's messages go out in order.
    queued           BIGINT GENERATED ALWAYS AS IDENTITY,
    -- Taken by one daemon until then (several daemons share the outbox; see src/pg/tables.rs).
    lease_until      BIGINT,
    lease_holder     TEXT,
    PRIMARY KEY (notification_id, notifier_id)
);
CREATE INDEX deliveries_due ON deliveries (notifier_id, queued) WHERE state = 'pending';

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE pending_counts (
    level  BIGINT PRIMARY KEY,
    n      BIGINT NOT NULL DEFAULT 0
);
INSERT INTO pending_counts (level, n) VALUES (10, 0), (20, 0), (30, 0), (40, 0), (50, 0);

CREATE TABLE ack_alls (
    upto  BIGINT PRIMARY KEY,
    at    BIGINT NOT NULL
);

CREATE TABLE ack_log (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  TEXT NOT NULL,
    at               BIGINT NOT NULL
);

CREATE TABLE remotes (
    name               TEXT PRIMARY KEY,
    url                TEXT NOT NULL,
    token              TEXT NOT NULL,
    ca_file            TEXT,
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    deliver            BOOLEAN NOT NULL DEFAULT FALSE,
    state              TEXT NOT NULL DEFAULT 'connecting' CHECK (state IN ('connecting', 'connected', 'unreachable')),
    unreachable_since  BIGINT,
    warned             BOOLEAN NOT NULL DEFAULT FALSE,
    last_error         TEXT,
    last_sync          BIGINT,
    cursor             TEXT NOT NULL DEFAULT '0.0.0',
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE remote_acks (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin     TEXT NOT NULL,
    remote_id  TEXT,
    upto       BIGINT,
    at         BIGINT NOT NULL
);
CREATE INDEX remote_acks_origin ON remote_acks (origin, seq);

CREATE TABLE check_in_reports (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          TEXT NOT NULL,
    event_id        TEXT UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('check_in', 'finished', 'failed')),
    expect_next_in  BIGINT NOT NULL DEFAULT 0,
    exit_code       BIGINT,
    message         TEXT,
    received_at     BIGINT NOT NULL,
    taken           BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX check_in_reports_waiting ON check_in_reports (seq) WHERE NOT taken;

-- Pending counts after deletions and updates: a row leaves its level's count when it was
-- pending before and joins one when it is pending after. Rows an "acknowledge all" reached
-- are not pending, whatever their acked_at says.
CREATE FUNCTION pending_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pending_counts p SET n = p.n - d.c
      FROM (SELECT level, COUNT(*) AS c FROM old_rows
             WHERE acked_at IS NULL AND seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
             GROUP BY level) d
     WHERE p.level = d.level;
    RETURN NULL;
END $$;

CREATE FUNCTION pending_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pending_counts p SET n = p.n + d.c
      FROM (SELECT level, SUM(c) AS c FROM (
                SELECT level, -1 AS c FROM old_rows
                 WHERE acked_at IS NULL AND seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)
                UNION ALL
                SELECT level, 1 AS c FROM new_rows
                 WHERE acked_at IS NULL AND seq > (SELECT COALESCE(MAX(upto), 0) FROM ack_alls)) x
             GROUP BY level) d
     WHERE p.level = d.level AND d.c <> 0;
    RETURN NULL;
END $$;

CREATE TRIGGER pending_counts_delete AFTER DELETE ON notifications
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pending_counts_deleted();
CREATE TRIGGER pending_counts_update AFTER UPDATE ON notifications
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pending_counts_updated();
