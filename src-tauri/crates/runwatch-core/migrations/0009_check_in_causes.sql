-- Schema 9: a failure reported over HTTP says why (`runwatch exec --server`): its cause
-- ("killed by the OOM killer (…)", "exit code 3") becomes the run's, and its title (the
-- exception that ended it) the notification's.
ALTER TABLE check_in_reports ADD COLUMN cause TEXT;
ALTER TABLE check_in_reports ADD COLUMN title TEXT;
