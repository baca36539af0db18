-- Schema 3: roles that one daemon of a shared store plays at a time (taking the check-ins
-- that arrive over HTTP, polling Slurm). A daemon holds a role for a lease it renews; when
-- it dies, the lease runs out and another daemon takes the role over.

CREATE TABLE roles (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    -- Who holds it, for people: "host (pid N)".
    label   TEXT NOT NULL,
    until   BIGINT NOT NULL
);
