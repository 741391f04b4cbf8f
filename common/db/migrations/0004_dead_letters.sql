-- Every message that reaches the dead-letter queue, recorded by the schedulers' dead-letter
-- consumer for the API to list and replay. No foreign keys: a dead letter may name a run or
-- job that never existed (a malformed message) or was pruned since, and must still be kept.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    -- sha256 of the message (id, body, headers but the per-delivery count, and the run's
    -- place in a pack): a letter recorded again after a lost ack, or seen in both the
    -- bounded queue and the queue of earlier versions, is recorded once.
    digest       bytea NOT NULL UNIQUE,
    run_id       bigint,
    job_id       bigint,
    attempt      integer,
    kind         text NOT NULL,             -- run, status, or unknown
    reason       text NOT NULL,             -- x-zeitplan-reason, else RabbitMQ's (delivery_limit, rejected, ...)
    stderr_tail  text,                      -- the end of the attempt's stderr, when it had any
    body         bytea NOT NULL,            -- the message as received (for a pack: this run's own message)
    headers      jsonb NOT NULL DEFAULT '{}',
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
CREATE INDEX dead_letters_run ON dead_letters (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX dead_letters_job ON dead_letters (job_id, received_at) WHERE job_id IS NOT NULL;
