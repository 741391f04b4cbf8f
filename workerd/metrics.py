"""workerd's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter("zeitplan_worker_attempts_total", "Attempts finished, by outcome",
                   ["outcome"])
RUNNING = Gauge("zeitplan_worker_running", "Attempts executing now")
START_LATENESS = Histogram(
    "zeitplan_start_lateness_seconds", "Attempt start minus fire time (first attempts)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
REJECTED = Counter("zeitplan_worker_messages_rejected_total",
                   "Run messages dead-lettered because they could not be parsed")
