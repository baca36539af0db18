-- Schema 7: each user's pending notifications counted by level, kept as things change, so
-- that a user's summary (their badge) reads a few rows instead of counting the inbox.
--
-- A notification is pending for a user when it is for them (for everyone, or addressed to
-- them), counts at all (not silenced, not resolved, and, from a followed server, not
-- acknowledged there), and the user has not acknowledged it (on its own, or by an
-- "acknowledge all" that reached it). Snoozed ones are subtracted when read, as for the
-- store's own counts. Every change is counted by the triggers below, in the transaction
-- that makes it; what is rare and wide (a new user, an "acknowledge all") is counted anew.

CREATE TABLE user_pending_counts (
    user_name  TEXT NOT NULL,
    level      BIGINT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (user_name, level)
);

-- Whether a notification counts for anyone at all.
CREATE FUNCTION notification_counts(silenced_by TEXT, resolved_at BIGINT, origin TEXT, acked_at BIGINT) RETURNS BOOLEAN
    LANGUAGE sql IMMUTABLE AS
$$ SELECT silenced_by IS NULL AND resolved_at IS NULL AND (origin IS NULL OR acked_at IS NULL) $$;

-- Counts one user's pending notifications anew: those after their last "acknowledge all"
-- (an index range on seq: after one, the count is quick).
CREATE FUNCTION user_pending_recount(who TEXT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    last_all BIGINT := (SELECT COALESCE(MAX(x.upto), 0) FROM user_ack_alls x WHERE x.user_name = who);
BEGIN
    DELETE FROM user_pending_counts WHERE user_name = who;
    INSERT INTO user_pending_counts (user_name, level, n)
    SELECT who, n.level, COUNT(*) FROM notifications n
     WHERE n.seq > last_all
       AND (NOT n.addressed OR EXISTS (SELECT 1 FROM audiences a WHERE a.seq = n.seq AND a.user_name = who))
       AND notification_counts(n.silenced_by, n.resolved_at, n.origin, n.acked_at)
       AND NOT EXISTS (SELECT 1 FROM user_acks k WHERE k.user_name = who AND k.seq = n.seq)
     GROUP BY n.level;
END $$;

-- New notifications for everyone: one more for every user (no user has acknowledged
-- them yet; their seq is past every "acknowledge all").
CREATE FUNCTION user_pending_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_pending_counts (user_name, level, n)
    SELECT u.name, d.level, d.c FROM users u CROSS JOIN
           (SELECT level, COUNT(*) AS c FROM new_rows
             WHERE NOT addressed AND notification_counts(silenced_by, resolved_at, origin, acked_at)
             GROUP BY level) d
    ON CONFLICT (user_name, level) DO UPDATE SET n = user_pending_counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER user_pending_inserted AFTER INSERT ON notifications
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION user_pending_inserted();

-- A notification addressed to a user (its audience is written right after it): one more
-- for them, once however many of their hosts it names.
CREATE FUNCTION user_pending_addressed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM audiences WHERE user_name = NEW.user_name AND seq = NEW.seq AND host < NEW.host) THEN
        RETURN NULL;
    END IF;
    INSERT INTO user_pending_counts (user_name, level, n)
    SELECT NEW.user_name, n.level, 1 FROM notifications n
     WHERE n.seq = NEW.seq AND notification_counts(n.silenced_by, n.resolved_at, n.origin, n.acked_at)
       AND n.seq > (SELECT COALESCE(MAX(upto), 0) FROM user_ack_alls WHERE user_name = NEW.user_name)
       AND NOT EXISTS (SELECT 1 FROM user_acks k WHERE k.user_name = NEW.user_name AND k.seq = n.seq)
    ON CONFLICT (user_name, level) DO UPDATE SET n = user_pending_counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER user_pending_addressed AFTER INSERT ON audiences
    FOR EACH ROW EXECUTE FUNCTION user_pending_addressed();

-- A user's acknowledgements: one less for each that was pending for them.
CREATE FUNCTION user_pending_acked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_pending_counts c SET n = c.n - d.c
      FROM (SELECT k.user_name, n.level, COUNT(*) AS c FROM new_rows k JOIN notifications n ON n.seq = k.seq
             WHERE (NOT n.addressed OR EXISTS (SELECT 1 FROM audiences a WHERE a.seq = n.seq AND a.user_name = k.user_name))
               AND notification_counts(n.silenced_by, n.resolved_at, n.origin, n.acked_at)
               AND n.seq > (SELECT COALESCE(MAX(upto), 0) FROM user_ack_alls u WHERE u.user_name = k.user_name)
             GROUP BY k.user_name, n.level) d
     WHERE c.user_name = d.user_name AND c.level = d.level;
    RETURN NULL;
END $$;
CREATE TRIGGER user_pending_acked AFTER INSERT ON user_acks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION user_pending_acked();

-- A user's "acknowledge all", and a new user: counted anew; a user removed: forgotten.
CREATE FUNCTION user_pending_recounted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        IF TG_OP = 'DELETE' THEN
            DELETE FROM user_pending_counts WHERE user_name = OLD.name;
            RETURN NULL;
        END IF;
        PERFORM user_pending_recount(NEW.name);
    ELSE
        PERFORM user_pending_recount(NEW.user_name);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER user_pending_ack_all AFTER INSERT ON user_ack_alls
    FOR EACH ROW EXECUTE FUNCTION user_pending_recounted();
CREATE TRIGGER user_pending_user AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION user_pending_recounted();

-- A notification that stops counting (resolved, silenced, acknowledged on its server) or
-- starts again: one less or one more for every user it was pending for.
CREATE FUNCTION user_pending_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_pending_counts (user_name, level, n)
    SELECT u.name, d.level, SUM(d.delta) FROM
           (SELECT n.seq, n.level, n.addressed,
                   CASE WHEN notification_counts(n.silenced_by, n.resolved_at, n.origin, n.acked_at) THEN 1 ELSE -1 END AS delta
              FROM new_rows n JOIN old_rows o ON o.seq = n.seq
             WHERE notification_counts(n.silenced_by, n.resolved_at, n.origin, n.acked_at)
                   <> notification_counts(o.silenced_by, o.resolved_at, o.origin, o.acked_at)) d
      JOIN users u ON NOT d.addressed OR EXISTS (SELECT 1 FROM audiences a WHERE a.seq = d.seq AND a.user_name = u.name)
     WHERE d.seq > (SELECT COALESCE(MAX(upto), 0) FROM user_ack_alls x WHERE x.user_name = u.name)
       AND NOT EXISTS (SELECT 1 FROM user_acks k WHERE k.user_name = u.name AND k.seq = d.seq)
     GROUP BY u.name, d.level
    ON CONFLICT (user_name, level) DO UPDATE SET n = user_pending_counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER user_pending_updated AFTER UPDATE ON notifications
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION user_pending_updated();

-- Notifications deleted (expired): one less for every user they were pending for. Their
-- audiences and users' acknowledgements go here, after they are counted, instead of by a
-- cascade that would remove them first.
ALTER TABLE audiences DROP CONSTRAINT audiences_seq_fkey;
ALTER TABLE user_acks DROP CONSTRAINT user_acks_seq_fkey;
CREATE FUNCTION user_pending_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_pending_counts c SET n = c.n - d.c
      FROM (SELECT u.name AS user_name, o.level, COUNT(*) AS c
              FROM old_rows o
              JOIN users u ON NOT o.addressed OR EXISTS (SELECT 1 FROM audiences a WHERE a.seq = o.seq AND a.user_name = u.name)
             WHERE notification_counts(o.silenced_by, o.resolved_at, o.origin, o.acked_at)
               AND o.seq > (SELECT COALESCE(MAX(upto), 0) FROM user_ack_alls x WHERE x.user_name = u.name)
               AND NOT EXISTS (SELECT 1 FROM user_acks k WHERE k.user_name = u.name AND k.seq = o.seq)
             GROUP BY u.name, o.level) d
     WHERE c.user_name = d.user_name AND c.level = d.level;
    DELETE FROM audiences WHERE seq IN (SELECT seq FROM old_rows);
    DELETE FROM user_acks WHERE seq IN (SELECT seq FROM old_rows);
    RETURN NULL;
END $$;
CREATE TRIGGER user_pending_deleted AFTER DELETE ON notifications
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION user_pending_deleted();

SELECT user_pending_recount(name) FROM users;
