-- Schema 7: following other Runwatch servers (remotes), and the change feed they are
-- followed by.
--
-- A follower keeps a remote's notifications in its own inbox with their origin (the
-- remote's name), their id and their seq on the remote; (origin, remote_id) is unique, so a
-- notification fetched twice (a retry after a crash) is stored once.
ALTER TABLE notifications ADD COLUMN origin TEXT;          -- NULL: this instance's own
ALTER TABLE notifications ADD COLUMN remote_id TEXT;       -- its id on the origin
ALTER TABLE notifications ADD COLUMN remote_seq INTEGER;   -- its seq on the origin (for the origin's ack-alls)
CREATE UNIQUE INDEX notifications_origin ON notifications (origin, remote_id) WHERE origin IS NOT NULL;
CREATE INDEX notifications_origin_seq ON notifications (origin, remote_seq) WHERE origin IS NOT NULL;

-- Acknowledgements one by one, in order, for followers (`GET /api/v1/changes`): a
-- follower's cursor holds the last notification seq, ack_log seq and ack_alls upto it saw.
-- An "acknowledge all" stays one row (in ack_alls).
CREATE TABLE ack_log (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id  TEXT NOT NULL,
    at               INTEGER NOT NULL
);

-- The servers this instance follows. The token is a secret: the store file is 0600 and
-- nothing prints it.
CREATE TABLE remotes (
    name               TEXT PRIMARY KEY,
    url                TEXT NOT NULL,
    token              TEXT NOT NULL,
    ca_file            TEXT,
    enabled            INTEGER NOT NULL DEFAULT 1,
    deliver            INTEGER NOT NULL DEFAULT 0,  -- its notifications also go to this instance's notifiers
    state              TEXT NOT NULL DEFAULT 'connecting'
                       CHECK (state IN ('connecting', 'connected', 'unreachable')),
    unreachable_since  INTEGER,
    warned             INTEGER NOT NULL DEFAULT 0,  -- the "unreachable for long" warning was stored
    last_error         TEXT,
    last_sync          INTEGER,
    cursor             TEXT NOT NULL DEFAULT '0.0.0',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

-- Local acknowledgements of remote notifications, waiting to be sent to their origin
-- (written in the same transaction as the acknowledgement). `remote_id` NULL: acknowledge
-- everything up to `upto` (this instance's "acknowledge all").
CREATE TABLE remote_acks (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    origin     TEXT NOT NULL,
    remote_id  TEXT,
    upto       INTEGER,
    at         INTEGER NOT NULL
);
CREATE INDEX remote_acks_origin ON remote_acks (origin, seq);
