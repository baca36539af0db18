-- Schema 2: what the detector must remember across restarts.

-- The newest check-in file seen per run and flag, and when we first saw it: deadlines run
-- from that moment (never from the writer's clock or file mtimes), so a restart keeps them.
CREATE TABLE checkins (
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    flag            TEXT NOT NULL CHECK (flag IN ('starting', 'check_in', 'finished', 'new_logs', 'progress')),
    idx             INTEGER NOT NULL,
    expect_next_in  INTEGER NOT NULL,
    first_seen      INTEGER NOT NULL,
    PRIMARY KEY (run_id, flag)
) WITHOUT ROWID;

-- The last Aim log-record step already turned into notifications, per run.
ALTER TABLE runs ADD COLUMN log_step INTEGER;
