"""Zeitplan's benchmarks: `python -m bench.run` (see bench/RESULTS.md for the latest figures).

One module per benchmark: `raw_broker` (the RabbitMQ ceiling, no Zeitplan), `throughput`
(no-op runs end to end), `lateness` (start delay at steady rates, and a 1-s periodic job),
`schedules` (many cron jobs), `memory` (RSS idle and with many jobs stored), `failover`
(signal to the next leader's first dispatch), `peer` with `peer_celery` (Celery 5 on the
same workload), `profile` (py-spy on the daemons). Around them: `run` (the command line and
the environments), `steps` (each benchmark wired to the record), `harness` (a cluster with
the daemons, always stopped), `jobs` and `bulk` (creating jobs through the product's path,
or with COPY for set-up), `rss`, `sizes`, `machine`; and the pure parts: `stats`, `targets`,
`table`, `records` and `report` (the JSON records and the generated part of RESULTS.md).
"""
