-- Zeitplan core schema: tenants, tokens, jobs, runs, attempts, logs, audit, cluster epoch.

CREATE TABLE tenants (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (id, name) VALUES ('default', 'Default tenant');

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants(id),
    name        text NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,          -- sha256 of the token; the token itself is never stored
    scopes      text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);

CREATE TABLE jobs (
    id                   bigserial PRIMARY KEY,
    tenant_id            text NOT NULL REFERENCES tenants(id) DEFAULT 'default',
    owner                text NOT NULL DEFAULT '',
    name                 text NOT NULL,
    idempotency_key      text,
    job_type             text NOT NULL CHECK (job_type IN ('shell', 'http', 'sql', 'python')),
    payload              jsonb NOT NULL,
    schedule_kind        text NOT NULL CHECK (schedule_kind IN ('now', 'at', 'cron', 'every')),
    schedule_expr        text NOT NULL,
    time_zone            text NOT NULL DEFAULT 'UTC',
    dst_nonexistent      text NOT NULL DEFAULT 'shift' CHECK (dst_nonexistent IN ('shift', 'skip')),
    dst_ambiguous        text NOT NULL DEFAULT 'once' CHECK (dst_ambiguous IN ('once', 'twice')),
    anchor_at            timestamptz NOT NULL DEFAULT now(),   -- interval schedules count from here
    state                text NOT NULL DEFAULT 'active'
                         CHECK (state IN ('active', 'paused', 'cancelled', 'completed')),
    priority             smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    pool                 text NOT NULL DEFAULT 'default',
    max_attempts         integer NOT NULL DEFAULT 1 CHECK (max_attempts BETWEEN 1 AND 100),
    backoff_base_s       double precision NOT NULL DEFAULT 1 CHECK (backoff_base_s > 0),
    backoff_factor       double precision NOT NULL DEFAULT 2 CHECK (backoff_factor >= 1),
    backoff_cap_s        double precision NOT NULL DEFAULT 600,
    backoff_jitter       double precision NOT NULL DEFAULT 0 CHECK (backoff_jitter BETWEEN 0 AND 1),
    timeout_s            double precision CHECK (timeout_s > 0),
    concurrency          text NOT NULL DEFAULT 'allow'
                         CHECK (concurrency IN ('allow', 'forbid', 'queue_one', 'replace')),
    misfire              text NOT NULL DEFAULT 'fire_once' CHECK (misfire IN ('fire_once', 'fire_all', 'skip')),
    misfire_grace_s      double precision NOT NULL DEFAULT 60 CHECK (misfire_grace_s >= 0),
    start_deadline_s     double precision CHECK (start_deadline_s > 0),
    jitter_s             double precision NOT NULL DEFAULT 0 CHECK (jitter_s >= 0),
    pause_after_failures integer CHECK (pause_after_failures > 0),
    consecutive_failures integer NOT NULL DEFAULT 0,
    next_fire_at         timestamptz,           -- first fire time not yet materialised; NULL: none left
    version              integer NOT NULL DEFAULT 1,  -- optimistic concurrency for updates
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, idempotency_key)
);
-- The leader's materialisation scan.
CREATE INDEX jobs_due ON jobs (next_fire_at) WHERE state = 'active' AND next_fire_at IS NOT NULL;
CREATE INDEX jobs_tenant_name ON jobs (tenant_id, name);

CREATE TABLE runs (
    id              bigserial PRIMARY KEY,
    job_id          bigint NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    scheduled_for   timestamptz NOT NULL,      -- the fire time
    due_at          timestamptz NOT NULL,      -- fire time plus the job's deterministic jitter
    attempt         integer NOT NULL DEFAULT 0,
    state           text NOT NULL DEFAULT 'scheduled' CHECK (state IN (
                        'scheduled', 'queued', 'running', 'succeeded', 'failed', 'timed_out',
                        'retrying', 'cancelled', 'dead', 'skipped')),
    reason          text,                      -- why it was skipped, cancelled or is dead
    trigger         text NOT NULL DEFAULT 'schedule' CHECK (trigger IN ('schedule', 'manual')),
    priority        smallint NOT NULL,
    pool            text NOT NULL,
    queued_at       timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    worker          text,
    exit_code       integer,
    error           text,
    heartbeat_at    timestamptz,
    next_attempt_at timestamptz,
    epoch           bigint NOT NULL,           -- leadership term that created or last dispatched it
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, scheduled_for)             -- a fire time becomes at most one run
);
CREATE INDEX runs_pending ON runs (due_at) WHERE state = 'scheduled';
CREATE INDEX runs_running ON runs (heartbeat_at) WHERE state = 'running';
CREATE INDEX runs_queued ON runs (epoch, queued_at) WHERE state = 'queued';
CREATE INDEX runs_job_time ON runs (job_id, scheduled_for DESC);
CREATE INDEX runs_state_time ON runs (state, scheduled_for DESC);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE run_attempts (
    run_id       bigint NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    state        text NOT NULL,
    worker       text,
    started_at   timestamptz,
    finished_at  timestamptz,
    exit_code    integer,
    error        text,
    PRIMARY KEY (run_id, attempt)
);

CREATE TABLE run_logs (
    run_id    bigint NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    attempt   integer NOT NULL,
    stream    text NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    seq       integer NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    data      bytea NOT NULL,
    PRIMARY KEY (run_id, attempt, stream, seq)
);
CREATE INDEX run_logs_at ON run_logs (at);

CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    tenant_id text NOT NULL DEFAULT 'default',
    actor     text NOT NULL,
    action    text NOT NULL,
    job_id    bigint,
    details   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_job ON audit_log (job_id, at);

-- The fencing token: the current leadership epoch. Only ever moves up.
CREATE TABLE cluster_epoch (
    id          smallint PRIMARY KEY CHECK (id = 1),
    epoch       bigint NOT NULL,
    leader      text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    -- queued_at of this term's latest dispatch batch: the only batch whose publish can be
    -- unconfirmed when the leader dies (batches are confirmed one after another).
    last_dispatch_at timestamptz
);
INSERT INTO cluster_epoch (id, epoch, leader) VALUES (1, 0, '');
