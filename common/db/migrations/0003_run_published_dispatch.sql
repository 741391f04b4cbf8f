-- Which copy of a run's message RabbitMQ confirmed (a `dispatch` number): the leader and
-- the status consumer write it once the copies they publish after a commit are confirmed.
-- A queued run whose `dispatch` is ahead of it may never have reached a queue: the
-- leader's sweep publishes those of older terms again (docs/ARCHITECTURE.md, "Leader
-- death"). It is in no index, so recording it can be a HOT update.
ALTER TABLE runs ADD COLUMN published_dispatch integer NOT NULL DEFAULT 0;
-- Runs queued before this migration were dispatched by a leader that did not record its
-- confirms: take them as confirmed rather than publish them all again.
UPDATE runs SET published_dispatch = dispatch WHERE state = 'queued';
-- cluster_epoch.last_dispatch_at is no longer written or read; it stays until a later
-- migration, so that schedulers of the previous version keep dispatching (they write it)
-- during a rolling upgrade.
COMMENT ON COLUMN cluster_epoch.last_dispatch_at IS
    'unused since 0003; kept for schedulers of the previous version during an upgrade';
