-- Following a team store: each user's acknowledgements in the order they were made, for
-- the change feed their followers read (`GET /api/v1/changes` with a user's token). A
-- follower's cursor holds the last notification seq, `user_acks.log` and `user_ack_alls`
-- upto it saw, as it holds `ack_log` seq for the store as a whole. Acknowledgements take
-- the inbox lock (src/pg/users.rs), so `log` commits in order and no cursor passes one
-- that commits later.

ALTER TABLE user_acks ADD COLUMN log BIGINT GENERATED ALWAYS AS IDENTITY;
CREATE INDEX user_acks_log ON user_acks (user_name, log);
