-- Schema 2: users of a team store, who notifications are for, and acknowledgements per user.
--
-- A user calls the API with a token of their own; only its SHA-256 is stored. A
-- notification is for everyone unless it lists its audience (`addressed`): users, or users
-- on a host (Kopia's user@host; '' = on any host). Each user's list, summary, stream and
-- acknowledgements cover what is for them or for everyone; a user's acknowledgement is
-- theirs alone (`user_acks`, and "acknowledge all" as `user_ack_alls`, as `ack_alls` does
-- for the store as a whole).

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

ALTER TABLE notifications ADD COLUMN addressed BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE audiences (
    seq        BIGINT NOT NULL REFERENCES notifications (seq) ON DELETE CASCADE,
    user_name  TEXT NOT NULL,
    host       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_name, seq, host)
);
CREATE INDEX audiences_seq ON audiences (seq);

CREATE TABLE user_acks (
    user_name  TEXT NOT NULL,
    seq        BIGINT NOT NULL REFERENCES notifications (seq) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    PRIMARY KEY (user_name, seq)
);
CREATE INDEX user_acks_seq ON user_acks (seq);

CREATE TABLE user_ack_alls (
    user_name  TEXT NOT NULL,
    upto       BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (user_name, upto)
);
