"""Zeitplan's benchmarks: `python -m bench.run` (see bench/RESULTS.md for the latest figures).

Each benchmark is one module: `raw_broker` (the RabbitMQ ceiling, no Zeitplan), `throughput`
(no-op runs end to end), `lateness` (start delay at a steady rate). `harness` starts the
cluster and daemons, `jobs` creates and watches jobs, `stats` holds the pure arithmetic,
`report` writes the JSON file and RESULTS.md.
"""
