-- The durable list of cancellations: one row per cancelled job, and per run cancelled
-- while a copy of it could be on its way to a worker (queued, running or retrying). The
-- leader writes a ZooKeeper mark for each row (workers hold no database credentials, so
-- they read the marks) and drops the row and its mark after the run retention.
CREATE TABLE cancellations (
    kind         text        NOT NULL CHECK (kind IN ('run', 'job')),
    target_id    bigint      NOT NULL,
    cancelled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, target_id)
);
CREATE INDEX cancellations_at ON cancellations (cancelled_at);
