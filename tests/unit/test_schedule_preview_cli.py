from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from schedctl.schedule_cmd import schedule


def preview(*args: str) -> Result:
    return CliRunner().invoke(schedule, ["preview", *args])


def test_preview_prints_the_description_then_local_fire_times() -> None:
    result = preview(
        "*/15 9-17 * * MON-FRI", "--tz", "Europe/Berlin", "--from", "2026-03-01", "-n", "3"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "cron '*/15 9-17 * * MON-FRI' in Europe/Berlin",
        "2026-03-02T09:00:00+01:00",
        "2026-03-02T09:15:00+01:00",
        "2026-03-02T09:30:00+01:00",
    ]


def test_preview_shows_dst_handling_and_its_policy() -> None:
    args = ["30 2 * * *", "--tz", "America/New_York", "--from", "2026-03-07T12:00", "-n", "2"]
    assert preview(*args).stdout.splitlines()[1:] == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    skipping = preview(*args, "--nonexistent", "skip", "--ambiguous", "twice")
    assert skipping.stdout.splitlines() == [
        "cron '30 2 * * *' in America/New_York (nonexistent: skip, ambiguous: twice)",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_preview_json_is_one_object() -> None:
    result = preview("every 90 minutes", "-o", "json", "-n", "2", "--from", "2026-01-01T00:00Z")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "schedule": "every 90 minutes from 2026-01-01T00:00:00+00:00",
        "kind": "every",
        "tz": "UTC",
        "fires": ["2026-01-01T00:00:00+00:00", "2026-01-01T01:30:00+00:00"],
    }


def test_preview_reads_seconds_first_in_six_fields() -> None:
    result = preview("*/20 * * * * *", "--from", "2026-01-01T00:00:00Z", "-n", "3", "-o", "json")
    assert json.loads(result.stdout)["fires"] == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:00:20+00:00",
        "2026-01-01T00:00:40+00:00",
    ]


def test_preview_shows_the_quartz_day_forms() -> None:
    last_weekday = preview("0 9 LW * *", "--from", "2026-01-01T00:00Z", "-n", "3")
    assert last_weekday.stdout.splitlines() == [
        "cron '0 9 LW * *' in UTC",
        "2026-01-30T09:00:00+00:00",
        "2026-02-27T09:00:00+00:00",
        "2026-03-31T09:00:00+00:00",
    ]
    third_friday = preview(
        "0 9 * * 5#3", "--tz", "Europe/Berlin", "--from", "2026-03-01", "-n", "2"
    )
    assert third_friday.stdout.splitlines()[1:] == [
        "2026-03-20T09:00:00+01:00",
        "2026-04-17T09:00:00+02:00",
    ]


def test_preview_lists_a_one_off_time_and_now_once() -> None:
    once = preview("2026-12-01T09:30:00", "--tz", "Europe/Berlin", "--from", "2026-01-01")
    assert once.stdout.splitlines() == [
        "at 2026-12-01T09:30:00+01:00 in Europe/Berlin",
        "2026-12-01T09:30:00+01:00",
    ]
    now = preview("now", "--from", "2026-01-01T00:00Z", "--kind", "now")
    assert now.stdout.splitlines()[1:] == ["2026-01-01T00:00:00+00:00"]


def test_preview_runs_a_past_one_off_time_now_only_when_allowed() -> None:
    refused = preview("2025-12-01T09:30:00Z", "--from", "2026-01-01T00:00Z")
    assert refused.exit_code == 2 and "is in the past" in refused.stderr
    allowed = preview("2025-12-01T09:30:00Z", "--from", "2026-01-01T00:00Z", "--allow-past")
    assert allowed.stdout.splitlines()[1:] == ["2026-01-01T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["61 * * * *"], "error: cron expression '61 * * * *': minute field '61': 61 is out of"
                         " range 0-59"),
        (["* * * *"], "error: cron expression '* * * *': 4 fields given, expected 5"),
        (["0 9 * * 5#6"], "error: cron expression '0 9 * * 5#6': day-of-week field '5#6': #6 is"
                          " out of range 1-5"),
        (["0 9 32W * *"], "error: cron expression '0 9 32W * *': day-of-month field '32W': 32"
                          " is out of range 1-31"),
        (["* * * * *", "--tz", "Europe/Berln"], "error: unknown time zone 'Europe/Berln'"),
        (["every 0.5s"], "error: interval 'every 0.5s': the period must be a whole number"),
        (["P1M"], "error: interval 'P1M': years and months have no fixed length"),
        (["* * * * *", "--from", "yesterday"], "error: time 'yesterday' is not ISO 8601"),
        (["* * * * *", "--kind", "weekly"], "error: Invalid value for '--kind': 'weekly'"),
        (["* * * * *", "-n", "0"], "error: Invalid value for '-n': 0 is not in the range"),
        ([], "error: Missing argument 'EXPR'."),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_line_with_exit_code_2(args: list[str], message: str) -> None:
    result = preview(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_help_explains_the_syntax_with_examples() -> None:
    result = preview("--help")
    assert result.exit_code == 0
    assert "SECONDS FIRST" in result.stdout
    assert "schedctl schedule preview '*/15 9-17 * * MON-FRI' --tz Europe/Berlin" in result.stdout
    assert "schedctl schedule preview '0 9 LW * *'" in result.stdout
