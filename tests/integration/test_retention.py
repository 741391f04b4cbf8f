"""Retention deletes old finished runs, output, audit rows and dead letters, and nothing
else."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from common.db import Database
from common.db.migrate import migrate
from common.db.retention import prune
from common.devcluster import LocalCluster


def test_pruning_deletes_only_finished_runs_logs_audit_and_letters_past_their_age(
        cluster: LocalCluster) -> None:
    dsn = cluster.settings.pg_dsn
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        job = conn.execute(
            "INSERT INTO jobs (name, job_type, payload, schedule_kind, schedule_expr) "
            "VALUES ('retention', 'shell', '{\"command\": \"true\"}', 'now', 'now') "
            "RETURNING id").fetchone()
        assert job is not None
        ids = {}
        for label, age, state in (("old", "100 days", "succeeded"),
                                  ("recent", "10 days", "succeeded"),
                                  ("running", None, "running")):
            row = conn.execute(
                "INSERT INTO runs (job_id, scheduled_for, due_at, priority, pool, epoch, state,"
                " finished_at) VALUES (%s, now() - %s::interval, now(), 5, 'default', 1, %s,"
                " now() - %s::interval) RETURNING id",
                (job[0], {"old": "200 days", "recent": "11 days"}.get(label, "1 day"), state,
                 age)).fetchone()
            assert row is not None
            ids[label] = row[0]
        for label, age in (("recent", "40 days"), ("running", "1 day")):
            conn.execute("INSERT INTO run_logs (run_id, attempt, stream, seq, at, data) "
                         "VALUES (%s, 1, 'stdout', 1, now() - %s::interval, 'x')",
                         (ids[label], age))
        for age in ("100 days", "10 days"):
            conn.execute("INSERT INTO audit_log (at, actor, action, details) "
                         "VALUES (now() - %s::interval, 'test', %s, '{}')", (age, age))
            conn.execute("INSERT INTO dead_letters (digest, kind, reason, body, received_at) "
                         "VALUES (%s, 'unknown', %s, 'x', now() - %s::interval)",
                         (age.encode(), age, age))
    db = Database(dsn, max_size=1)
    try:
        with db.transaction() as conn:
            pruned = prune(conn, runs_age=timedelta(days=90), logs_age=timedelta(days=30))
    finally:
        db.close()
    assert (pruned.runs, pruned.logs, pruned.audit, pruned.dead_letters) == (1, 1, 1, 1)
    with psycopg.connect(dsn) as conn:
        left = {r[0] for r in conn.execute("SELECT id FROM runs WHERE job_id = %s", (job[0],))}
        logs = {r[0] for r in conn.execute("SELECT run_id FROM run_logs WHERE run_id = ANY(%s)",
                                            (list(ids.values()),))}
    assert left == {ids["recent"], ids["running"]}
    assert logs == {ids["running"]}
    with psycopg.connect(dsn) as conn:
        ages = ["100 days", "10 days"]
        audit = [r[0] for r in conn.execute(
            "SELECT action FROM audit_log WHERE action = ANY(%s)", (ages,))]
        letters = [r[0] for r in conn.execute(
            "SELECT reason FROM dead_letters WHERE reason = ANY(%s)", (ages,))]
    assert audit == ["10 days"] and letters == ["10 days"]
