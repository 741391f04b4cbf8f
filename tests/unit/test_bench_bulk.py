from datetime import UTC, datetime, timedelta

import pytest

from bench import bulk, memory, schedules
from common.db import jobs as store
from common.jobs import JobSpec, validate

BASE = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _cron(expr: str) -> JobSpec:
    return JobSpec(name="bench-x", job_type="python",
                   payload={"entry_point": "example.sleep_echo"}, schedule_kind="cron",
                   schedule_expr=expr)


def test_copy_writes_the_columns_the_product_writes_when_it_creates_a_job():
    product = [*store._COLUMNS, "anchor_at", "next_fire_at", "state"]
    assert list(bulk.COLUMNS[:len(product)]) == product
    assert bulk.COLUMNS[len(product):] == ("version",)


def test_each_copy_has_the_next_fire_that_validate_gives_for_its_own_creation_instant():
    rows = list(bulk.rows(bulk.Template(_cron("30 * * * * *"), 5), 0, BASE))
    index = {name: n for n, name in enumerate(bulk.COLUMNS)}
    for n, row in enumerate(rows):
        now = row[index["anchor_at"]]
        assert now == bulk.created_at(BASE, n) and now < BASE
        _, first = validate(_cron("30 * * * * *"), now=now)
        assert row[index["next_fire_at"]] == first == BASE + timedelta(seconds=23)
        assert row[index["name"]] == f"bench-x-{n}"
        assert (row[index["state"]], row[index["version"]]) == ("active", 1)
    assert len({row[index["anchor_at"]] for row in rows}) == 5


def test_paused_copies_are_stored_as_set_state_leaves_them():
    row = next(bulk.rows(bulk.Template(_cron("* * * * *"), 1, paused=True), 0, BASE))
    index = {name: n for n, name in enumerate(bulk.COLUMNS)}
    assert (row[index["state"]], row[index["version"]]) == ("paused", 2)
    assert row[index["next_fire_at"]] is not None


def test_the_payload_is_the_normalised_one_as_json():
    row = next(bulk.rows(bulk.Template(_cron("* * * * *"), 1), 0, BASE))
    assert row[bulk.COLUMNS.index("payload")] == \
        '{"entry_point": "example.sleep_echo", "args": {}}'


def test_the_base_instant_must_be_a_whole_second():
    with pytest.raises(ValueError):
        next(bulk.rows(bulk.Template(_cron("* * * * *"), 1), 0, BASE + timedelta(milliseconds=5)))


def test_spread_splits_a_count_into_near_equal_shares():
    assert bulk.spread(10, 3) == [4, 3, 3]
    assert bulk.spread(2, 4) == [1, 1, 0, 0]
    assert sum(bulk.spread(100_000, 60)) == 100_000


def test_many_schedules_spreads_every_minute_jobs_over_the_sixty_seconds():
    specs = schedules.templates(120)
    assert len(specs) == 60 and {t.count for t in specs} == {2}
    assert specs[7].spec.schedule_expr == "7 * * * * *"


def test_every_job_fires_once_a_minute_in_a_window_of_whole_minutes():
    specs = schedules.templates(600)
    assert schedules.expected_fires(specs, BASE, BASE + timedelta(minutes=5)) == 3000


def test_the_memory_mix_has_the_stated_shares_and_adds_up():
    specs = memory.templates(100_000)
    assert sum(t.count for t in specs) == 100_000
    paused = sum(t.count for t in specs if t.paused)
    every_minute = sum(t.count for t in specs if not t.paused
                       and t.spec.name == "bench-mem-every_minute")
    assert (paused, every_minute) == (10_000, 1_000)
