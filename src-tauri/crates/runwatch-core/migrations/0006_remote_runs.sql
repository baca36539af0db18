-- Schema 6: runs that report over HTTP from other machines (`POST /api/v1/check-ins`).
--
-- `runs` gains the host a run reports from, its labels (a JSON object: Slurm job id,
-- array task, sweep …), why it ended (`cause`), and the state 'failed' (it exited with an
-- error, as opposed to 'crashed': it fell silent). SQLite cannot widen a CHECK constraint,
-- so the table is rebuilt (migrations run with foreign keys off: nothing cascades).
CREATE TABLE runs_v6 (
    id                      TEXT PRIMARY KEY,
    repo                    TEXT,
    name                    TEXT,
    state                   TEXT NOT NULL DEFAULT 'running'
                            CHECK (state IN ('running', 'finished', 'stuck', 'crashed', 'ended', 'failed')),
    checkin_idx             INTEGER,
    checkin_flag            TEXT,
    checkin_expect_next_in  INTEGER,
    checkin_first_seen      INTEGER,
    deadline                INTEGER,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    log_step                INTEGER,
    host                    TEXT,
    labels                  TEXT,                      -- JSON object of strings, NULL if none
    cause                   TEXT                       -- why it ended, e.g. "exit code 3"
);
INSERT INTO runs_v6 (id, repo, name, state, checkin_idx, checkin_flag, checkin_expect_next_in, checkin_first_seen,
                     deadline, created_at, updated_at, log_step)
    SELECT id, repo, name, state, checkin_idx, checkin_flag, checkin_expect_next_in, checkin_first_seen,
           deadline, created_at, updated_at, log_step FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v6 RENAME TO runs;
CREATE INDEX runs_deadline ON runs (deadline) WHERE deadline IS NOT NULL;

-- The detector's memory gains Runwatch's own flag 'failed' (a failure reported over HTTP).
CREATE TABLE checkins_v6 (
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    flag            TEXT NOT NULL CHECK (flag IN ('starting', 'check_in', 'finished', 'new_logs', 'progress', 'failed')),
    idx             INTEGER NOT NULL,
    expect_next_in  INTEGER NOT NULL,
    first_seen      INTEGER NOT NULL,
    PRIMARY KEY (run_id, flag)
) WITHOUT ROWID;
INSERT INTO checkins_v6 SELECT run_id, flag, idx, expect_next_in, first_seen FROM checkins;
DROP TABLE checkins;
ALTER TABLE checkins_v6 RENAME TO checkins;

-- HTTP check-ins as they arrive, for the watcher's detector to take in order (`seq`).
-- A client's event id makes a resent check-in (from a spool, after a crash) a no-op.
CREATE TABLE check_in_reports (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          TEXT NOT NULL,
    event_id        TEXT UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('check_in', 'finished', 'failed')),
    expect_next_in  INTEGER NOT NULL DEFAULT 0,
    exit_code       INTEGER,
    message         TEXT,
    received_at     INTEGER NOT NULL,
    taken           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX check_in_reports_waiting ON check_in_reports (seq) WHERE taken = 0;
