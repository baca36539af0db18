-- Schema 5: watching on a shared store. A failure reported over HTTP keeps its cause and
-- title until the detector takes it, as the SQLite store's schema 9 does. (Aim runs are
-- judged by the daemon of the host that watches their repository: `runs.host`, schema 1.)

ALTER TABLE check_in_reports ADD COLUMN cause TEXT;
ALTER TABLE check_in_reports ADD COLUMN title TEXT;
