-- Audit chain checkpoints: the highest (sequence, chain head) written by each audit sink,
-- so `keybroker audit verify` detects a truncated log tail.
CREATE TABLE audit_checkpoints (
    sink     TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    head     BLOB NOT NULL
);
