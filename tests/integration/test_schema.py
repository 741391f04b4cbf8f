"""The schema: migrations apply once, a second run changes nothing."""

from __future__ import annotations

import psycopg

from common.db.migrate import available, migrate
from common.devcluster import LocalCluster

_SHAPE = """
SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL SELECT tablename, indexname, indexdef, '', '' FROM pg_indexes
WHERE schemaname = 'public' ORDER BY 1, 2
"""


def _shape(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(_SHAPE).fetchall()


def test_the_schema_migrates_twice_without_change(cluster: LocalCluster) -> None:
    dsn = cluster.settings.pg_dsn
    migrate(dsn)
    before = _shape(dsn)
    again = migrate(dsn)
    assert again == []
    assert _shape(dsn) == before
    with psycopg.connect(dsn) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in available()]
    assert any(row[0] == "runs" and "UNIQUE" in str(row[2]) and "scheduled_for" in str(row[2])
               for row in before)


def test_a_fire_time_can_become_only_one_run(cluster: LocalCluster) -> None:
    dsn = cluster.settings.pg_dsn
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        job = conn.execute(
            "INSERT INTO jobs (name, job_type, payload, schedule_kind, schedule_expr) "
            "VALUES ('unique', 'shell', '{\"command\": \"true\"}', 'now', 'now') RETURNING id"
        ).fetchone()
        assert job is not None
        insert = ("INSERT INTO runs (job_id, scheduled_for, due_at, priority, pool, epoch) "
                  "VALUES (%s, '2030-01-01T00:00:00Z', '2030-01-01T00:00:00Z', 5, 'default', 1)")
        conn.execute(insert, (job[0],))
        try:
            conn.execute(insert, (job[0],))
            raise AssertionError("a second run for the same fire time was accepted")
        except psycopg.errors.UniqueViolation:
            conn.rollback()
