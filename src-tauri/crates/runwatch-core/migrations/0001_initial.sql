-- Runwatch store, schema 1. Times are integer milliseconds since the Unix epoch (UTC),
-- taken from the engine's clock. Names match the domain model in DESIGN.md.

CREATE TABLE runs (
    id                      TEXT PRIMARY KEY,          -- Aim run hash or client-chosen id
    repo                    TEXT,                      -- Aim repository (NULL for ingested runs)
    name                    TEXT,
    state                   TEXT NOT NULL DEFAULT 'running'
                            CHECK (state IN ('running', 'finished', 'stuck', 'crashed', 'ended')),
    checkin_idx             INTEGER,                   -- last check-in: Aim's idx
    checkin_flag            TEXT,                      -- ... its flag
    checkin_expect_next_in  INTEGER,                   -- ... seconds promised until the next one
    checkin_first_seen      INTEGER,                   -- when we first saw that check-in (persisted clock)
    deadline                INTEGER,                   -- when the run turns stuck/crashed, NULL if none
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
);
CREATE INDEX runs_deadline ON runs (deadline) WHERE deadline IS NOT NULL;

CREATE TABLE notifications (
    seq           INTEGER PRIMARY KEY,                 -- insertion order: cursor for paging
    id            TEXT NOT NULL UNIQUE,                -- UUID shown to users
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    level         INTEGER NOT NULL CHECK (level IN (10, 20, 30, 40, 50)),
    title         TEXT NOT NULL,
    body          TEXT NOT NULL DEFAULT '',
    run_id        TEXT,
    source        TEXT NOT NULL,                       -- aim, ingest, send, exec, detector ...
    dedupe_key    TEXT UNIQUE,                         -- one notification per event, across restarts
    event_id      TEXT UNIQUE,                         -- client event id: idempotent ingest
    repeat_count  INTEGER NOT NULL DEFAULT 0,          -- "(N more messages logged)"
    acked_at      INTEGER,
    expires_at    INTEGER
);
CREATE INDEX notifications_pending ON notifications (level, seq) WHERE acked_at IS NULL;
CREATE INDEX notifications_run ON notifications (run_id, seq);

CREATE TABLE notifiers (
    id          TEXT PRIMARY KEY,                      -- UUID
    type        TEXT NOT NULL,                         -- slack, workplace, logger, webhook, desktop
    status      TEXT NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    config      TEXT NOT NULL DEFAULT '{}',            -- JSON: url, token, group id, message template
    min_level   INTEGER NOT NULL DEFAULT 10,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE deliveries (
    notification_id  TEXT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    notifier_id      TEXT NOT NULL REFERENCES notifiers (id) ON DELETE CASCADE,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (notification_id, notifier_id)
);
CREATE INDEX deliveries_due ON deliveries (notifier_id, next_attempt_at) WHERE state = 'pending';

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,                           -- log_level, popup_level, grace, ...
    value  TEXT NOT NULL                               -- JSON
);
