from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from click.testing import CliRunner

from common import jobops
from common.errors import InvalidInput
from common.jobspec import validate_payload
from schedctl import job_cmd
from schedctl.job_options import policy_fields, schedule_fields, seconds, target_fields
from schedctl.main import cli


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30", 30.0), ("30s", 30.0), ("1.5m", 90.0), ("2h", 7200.0), ("250ms", 0.25),
     (" 5 m ", 300.0), ("0", 0.0), ("0.5", 0.5)],
)
def test_seconds_reads_a_duration(text: str, expected: float) -> None:
    assert seconds(text, "--timeout") == pytest.approx(expected)


def test_seconds_passes_an_absent_option_through() -> None:
    assert seconds(None, "--timeout") is None


@pytest.mark.parametrize("text", ["", "soon", "-5s", "5x", "5M", "1e3", ".5s", "ms", "5 s s",
                                  "1.5.2m", "1h30m"])
def test_seconds_refuses_junk_naming_the_option(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        seconds(text, "--misfire-grace")
    assert str(caught.value).startswith("--misfire-grace: expected a duration")
    assert repr(text) in str(caught.value)


# --- target_fields --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"shell_cmd": "echo hi"}, {"job_type": "shell", "payload": {"command": "echo hi"}}),
        ({"shell_cmd": "env", "env": ("A=1", "B=x=y"), "cwd": "/srv"},
         {"job_type": "shell",
          "payload": {"command": "env", "env": {"A": "1", "B": "x=y"}, "cwd": "/srv"}}),
        ({"argv": '["ls", "-l"]'}, {"job_type": "shell", "payload": {"argv": ["ls", "-l"]}}),
        ({"http_url": "https://example.com/hook", "method": "post",
          "header": ("X-Token: abc", "Accept:json"), "body": "", "expect": "200,204"},
         {"job_type": "http",
          "payload": {"url": "https://example.com/hook", "method": "POST",
                      "headers": {"X-Token": "abc", "Accept": "json"}, "body": "",
                      "expect_status": [200, 204]}}),
        ({"http_url": "http://h"}, {"job_type": "http", "payload": {"url": "http://h"}}),
        ({"sql_statement": "select 1", "sql_dsn_name": "reports"},
         {"job_type": "sql", "payload": {"statement": "select 1", "dsn_name": "reports"}}),
        ({"sql_statement": "select 1"},
         {"job_type": "sql", "payload": {"statement": "select 1", "dsn_name": ""}}),
        ({"entry_point": "example.sleep_echo", "plugin_args": '{"n": 2}'},
         {"job_type": "python", "payload": {"entry_point": "example.sleep_echo",
                                            "args": {"n": 2}}}),
        ({"entry_point": "example.sleep_echo"},
         {"job_type": "python", "payload": {"entry_point": "example.sleep_echo", "args": {}}}),
        ({}, {}),
        ({"shell_cmd": None, "http_url": None, "env": ()}, {}),
    ],
)
def test_target_fields_build_the_job_type_and_payload(
        options: dict[str, Any], expected: dict[str, Any]) -> None:
    assert target_fields(options) == expected


@pytest.mark.parametrize(
    "options",
    [
        {"shell_cmd": "echo", "http_url": "http://h"},
        {"shell_cmd": "echo", "argv": '["ls"]'},
        {"sql_statement": "select 1", "entry_point": "x"},
        {"http_url": "http://h", "sql_statement": "select 1", "entry_point": "x"},
    ],
)
def test_two_targets_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="give one of --shell/--argv, --http, --sql or --python"):
        target_fields(options)


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"shell_cmd": "x", "env": ("NOEQUALS",)}, "--env"),
        ({"shell_cmd": "x", "env": ("=value",)}, "--env"),
        ({"http_url": "http://h", "header": ("NoColon",)}, "--header"),
        ({"http_url": "http://h", "expect": "2xx"}, "--expect"),
        ({"argv": "[ls"}, "--argv"),
        ({"entry_point": "x", "plugin_args": "{n: 2}"}, "--args"),
    ],
)
def test_a_malformed_target_option_is_refused_naming_it(
        options: dict[str, Any], option: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        target_fields(options)
    assert str(caught.value).startswith(f"{option}: ")


def test_an_empty_shell_command_is_an_input_error() -> None:
    fields = target_fields({"shell_cmd": "", "argv": None})
    with pytest.raises(InvalidInput, match="command"):
        validate_payload(fields["job_type"], fields["payload"])


# --- schedule_fields ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"run_now": True}, {"schedule_kind": "now", "schedule_expr": "now"}),
        ({"at": "2030-01-01T09:00:00+01:00", "allow_past": True},
         {"schedule_kind": "at", "schedule_expr": "2030-01-01T09:00:00+01:00",
          "allow_past": True}),
        ({"cron": "0 2 * * *", "tz": "Europe/Berlin", "nonexistent": "skip",
          "ambiguous": "twice"},
         {"schedule_kind": "cron", "schedule_expr": "0 2 * * *", "time_zone": "Europe/Berlin",
          "dst_nonexistent": "skip", "dst_ambiguous": "twice"}),
        ({"every": "5 minutes", "run_now": False, "allow_past": False},
         {"schedule_kind": "every", "schedule_expr": "every 5 minutes"}),
        ({"every": "every 30s"}, {"schedule_kind": "every", "schedule_expr": "every 30s"}),
        ({"every": "PT1H"}, {"schedule_kind": "every", "schedule_expr": "PT1H"}),
        ({"tz": "UTC"}, {"time_zone": "UTC"}),
        ({}, {}),
    ],
)
def test_schedule_fields_build_the_schedule(
        options: dict[str, Any], expected: dict[str, Any]) -> None:
    assert schedule_fields(options) == expected


@pytest.mark.parametrize(
    "options",
    [
        {"cron": "* * * * *", "every": "5m"},
        {"run_now": True, "at": "2030-01-01T00:00:00Z"},
        {"run_now": True, "cron": "* * * * *", "every": "1h", "at": "2030-01-01T00:00:00Z"},
    ],
)
def test_two_schedules_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="give one schedule: --now, --at, --cron or --every"):
        schedule_fields(options)


# --- policy_fields --------------------------------------------------------------------------

def test_policy_fields_convert_every_given_option() -> None:
    options = {"priority": 0, "pool": "gpu", "max_attempts": 3, "backoff": "2s",
               "backoff_factor": 1.5, "backoff_cap": "10m", "backoff_jitter": 0.2,
               "timeout": "1.5m", "concurrency": "forbid", "misfire": "skip",
               "misfire_grace": "250ms", "start_deadline": "2h", "jitter_s": "30",
               "pause_after_failures": 4}
    assert policy_fields(options) == {
        "priority": 0, "pool": "gpu", "max_attempts": 3, "backoff_base_s": 2.0,
        "backoff_factor": 1.5, "backoff_cap_s": 600.0, "backoff_jitter": 0.2,
        "timeout_s": 90.0, "concurrency": "forbid", "misfire": "skip",
        "misfire_grace_s": 0.25, "start_deadline_s": 7200.0, "jitter_s": 30.0,
        "pause_after_failures": 4}


def test_policy_fields_leave_out_options_not_given() -> None:
    assert policy_fields({"priority": None, "timeout": None, "pool": None}) == {}


@pytest.mark.parametrize(
    ("option", "flag"),
    [("backoff", "--backoff"), ("backoff_cap", "--backoff-cap"), ("timeout", "--timeout"),
     ("misfire_grace", "--misfire-grace"), ("start_deadline", "--start-deadline"),
     ("jitter_s", "--jitter")],
)
def test_a_bad_duration_option_is_refused_under_its_flag_name(option: str, flag: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        policy_fields({option: "a while"})
    assert str(caught.value).startswith(f"{flag}: expected a duration")


# --- the command line -----------------------------------------------------------------------

def no_database(dsn: str | None) -> Any:
    raise AssertionError(f"bad input must be refused before connecting (dsn={dsn!r})")


def create(monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setattr(job_cmd, "database", no_database)
    runner = CliRunner(env={"ZEITPLAN_PG_DSN": None})
    return runner.invoke(cli, ["job", "create", "--name", "x", *args])


def test_job_create_with_a_bad_cron_reports_the_field_without_a_database(
        monkeypatch: pytest.MonkeyPatch) -> None:
    result = create(monkeypatch, "--shell", "echo hi", "--cron", "61 * * * *")
    assert result.exit_code == 2, result.output
    assert result.stderr == ("error: cron expression '61 * * * *': minute field '61': "
                             "61 is out of range 0-59\n")
    assert result.stdout == ""
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--shell", "echo", "--cron", "* * * * *", "--every", "5m"],
         "error: give one schedule: --now, --at, --cron or --every\n"),
        (["--shell", "echo", "--http", "http://h", "--now"],
         "error: give one of --shell/--argv, --http, --sql or --python\n"),
        (["--shell", "echo"], "error: give a schedule: --now, --at, --cron or --every\n"),
        (["--now"], "error: give a target: --shell, --argv, --http, --sql or --python\n"),
        (["--shell", "echo", "--now", "--timeout", "soon"],
         "error: --timeout: expected a duration like 30s, 5m or 2h, not 'soon'\n"),
        (["--shell", "echo", "--now", "--priority", "10"],
         "error: priority: must be between 0 and 9, not 10\n"),
        (["--shell", "echo", "--cron", "0 2 * * *", "--tz", "Nowhere/City"],
         "error: unknown time zone 'Nowhere/City'\n"),
        (["--shell", "", "--now"], "error: shell job: "),
    ],
)
def test_job_create_refuses_bad_input_with_one_line_and_exit_code_2(
        monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str) -> None:
    result = create(monkeypatch, *args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1, result.stderr
    assert isinstance(result.exception, SystemExit)


def test_job_create_with_good_input_stores_the_spec_it_was_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stored: list[Any] = []

    @contextmanager
    def fake_database(dsn: str | None) -> Iterator[str]:
        assert dsn == "host=test"
        yield "db"

    def fake_create(db: str, spec: Any, *, actor: str) -> tuple[dict[str, Any], bool]:
        stored.append(spec)
        row = {"id": 3, "name": spec.name, "job_type": spec.job_type, "state": "active",
               "schedule_kind": spec.schedule_kind, "schedule_expr": spec.schedule_expr,
               "time_zone": spec.time_zone, "next_fire_at": None}
        return row, True

    monkeypatch.setattr(job_cmd, "database", fake_database)
    monkeypatch.setattr(jobops, "create_job", fake_create)
    result = CliRunner().invoke(cli, [
        "job", "create", "--name", "ping", "--http", "https://example.com/health",
        "--every", "5 minutes", "--priority", "7", "--timeout", "30s", "--dsn", "host=test"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.startswith("created job 3 'ping': http, ")
    assert "every 5 minutes" in result.stdout and "every every" not in result.stdout
    (spec,) = stored
    assert (spec.job_type, spec.payload, spec.schedule_kind, spec.priority, spec.timeout_s) == (
        "http", {"url": "https://example.com/health"}, "every", 7, 30.0)
