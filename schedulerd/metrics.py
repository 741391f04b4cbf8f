"""schedulerd's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

IS_LEADER = Gauge("zeitplan_scheduler_is_leader", "1 while this node is the leader")
EPOCH = Gauge("zeitplan_scheduler_epoch", "Leadership epoch of this node's current term")
DISPATCHED = Counter("zeitplan_runs_dispatched_total", "Run attempts published to workers")
SKIPPED = Counter("zeitplan_runs_skipped_total",
                  "Fire times skipped (one summary row may record many misfires)")
MATERIALISED = Counter("zeitplan_runs_materialised_total", "Fire times recorded as runs")
REDISPATCHED = Counter("zeitplan_runs_redispatched_total",
                       "Attempts re-published after a lost worker or leader", ["cause"])
DEAD = Counter("zeitplan_runs_dead_total", "Runs that ran out of attempts")
DISPATCH_LATENESS = Histogram(
    "zeitplan_dispatch_lateness_seconds", "Publish time minus due time",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
STATUS_EVENTS = Counter("zeitplan_status_events_total", "Status events consumed",
                        ["outcome"])
TIMER_HEAP = Gauge("zeitplan_leader_timer_heap_size", "Runs held for their due time")
DEAD_LETTERS = Counter("zeitplan_dead_letters_total",
                       "Dead letters consumed into the dead-letter table", ["kind"])
