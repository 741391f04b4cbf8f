"""The options that define a job, shared by `job create` and `job update`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import click

from common.errors import InvalidInput

F = Callable[..., Any]
_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def seconds(text: str | None, label: str) -> float | None:
    """'30', '30s', '1.5m', '2h', '250ms' → seconds; InvalidInput naming the option."""
    if text is None:
        return None
    match = _SECONDS.match(text)
    if not match:
        raise InvalidInput(f"{label}: expected a duration like 30s, 5m or 2h, not {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match[2]]
    return float(match[1]) * scale


def _pairs(values: tuple[str, ...], sep: str, label: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, found, rest = value.partition(sep)
        if not found or not key.strip():
            raise InvalidInput(f"{label}: expected KEY{sep}VALUE, not {value!r}")
        out[key.strip()] = rest.strip() if sep == ":" else rest
    return out


TARGET_OPTIONS: list[Callable[[F], F]] = [
    click.option("--shell", "shell_cmd", metavar="CMD", help="Shell job: run CMD with /bin/sh -c."),
    click.option("--argv", metavar="JSON", help='Shell job: an argv list, e.g. \'["ls", "-l"]\'.'),
    click.option("--env", multiple=True, metavar="K=V",
                 help="Shell job: environment variable (repeat); the job sees these, PATH, "
                      "HOME, LANG and ZEITPLAN_* run variables, nothing of the worker's."),
    click.option("--cwd", metavar="DIR", help="Shell job: working directory."),
    click.option("--http", "http_url", metavar="URL", help="HTTP job: call URL."),
    click.option("--method", metavar="VERB", help="HTTP job: method (default GET)."),
    click.option("--header", multiple=True, metavar="K:V", help="HTTP job: header (repeat)."),
    click.option("--body", metavar="TEXT", help="HTTP job: request body."),
    click.option("--expect", metavar="CODES", help="HTTP job: expected statuses, e.g. 200,204."),
    click.option("--sql", "sql_statement", metavar="STATEMENT", help="SQL job: the statement."),
    click.option("--sql-dsn-name", metavar="NAME",
                 help="SQL job: a DSN name from the workers' [sql.dsns] config."),
    click.option("--python", "entry_point", metavar="NAME",
                 help="Python job: plug-in entry point name (group zeitplan.job_types)."),
    click.option("--args", "plugin_args", metavar="JSON", help="Python job: args object."),
]

SCHEDULE_OPTIONS: list[Callable[[F], F]] = [
    click.option("--now", "run_now", is_flag=True, help="Run once, now."),
    click.option("--at", metavar="TIME", help="Run once at an ISO 8601 time."),
    click.option("--cron", metavar="EXPR",
                 help="Cron: 5 fields, or 6 with seconds first. Check with `schedule preview`."),
    click.option("--every", metavar="INTERVAL", help="Interval: '5 minutes', '30s', PT1H."),
    click.option("--tz", metavar="ZONE", help="IANA time zone of --cron/--at (default UTC)."),
    click.option("--allow-past", is_flag=True, help="Accept an --at time in the past (runs now)."),
    click.option("--nonexistent", type=click.Choice(["shift", "skip"]),
                 help="Local times skipped by DST: fire at the gap's end (shift) or skip."),
    click.option("--ambiguous", type=click.Choice(["once", "twice"]),
                 help="Local times repeated by DST: fire once or twice."),
]

POLICY_OPTIONS: list[Callable[[F], F]] = [
    click.option("--priority", type=int, help="0 (lowest) to 9 (highest); default 5."),
    click.option("--pool", metavar="POOL", help="Worker pool (default 'default')."),
    click.option("--max-attempts", type=int, help="Attempts before the run is dead (default 1)."),
    click.option("--backoff", metavar="BASE", help="Retry backoff base, e.g. 2s (default 1s)."),
    click.option("--backoff-factor", type=float, help="Backoff growth factor (default 2)."),
    click.option("--backoff-cap", metavar="DURATION", help="Longest backoff (default 10m)."),
    click.option("--backoff-jitter", type=float, help="Backoff jitter fraction 0-1 (default 0)."),
    click.option("--timeout", metavar="DURATION", help="Kill an attempt after this long."),
    click.option("--concurrency", type=click.Choice(["allow", "forbid", "queue_one", "replace"]),
                 help="Overlapping runs: allow (default), forbid, queue_one or replace."),
    click.option("--misfire", type=click.Choice(["fire_once", "fire_all", "skip"]),
                 help="Fires missed while down: fire_once (default), fire_all or skip."),
    click.option("--misfire-grace", metavar="DURATION",
                 help="Lateness still counted on time (default 60s)."),
    click.option("--start-deadline", metavar="DURATION",
                 help="Skip a run that cannot start within this long of its fire time."),
    click.option("--jitter", "jitter_s", metavar="DURATION",
                 help="Spread fires by a deterministic per-job delay up to this long."),
    click.option("--pause-after-failures", type=int,
                 help="Pause the job after this many consecutive dead runs."),
]


def apply_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """Decorate a command with a list of click options."""
    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def target_fields(o: dict[str, Any]) -> dict[str, Any]:
    """job_type and payload from the target options (empty when none was given)."""
    given = [k for k in ("shell_cmd", "argv", "http_url", "sql_statement", "entry_point")
             if o.get(k) is not None]
    if len(given) > 1 and set(given) != {"shell_cmd"}:
        raise InvalidInput("give one of --shell/--argv, --http, --sql or --python")
    if not given:
        return {}
    if given[0] in ("shell_cmd", "argv"):
        payload: dict[str, Any] = ({"command": o["shell_cmd"]} if o.get("shell_cmd") is not None
                                   else {"argv": _json(o["argv"], "--argv")})
        if o.get("env"):
            payload["env"] = _pairs(o["env"], "=", "--env")
        if o.get("cwd"):
            payload["cwd"] = o["cwd"]
        return {"job_type": "shell", "payload": payload}
    if given[0] == "http_url":
        payload = {"url": o["http_url"]}
        if o.get("method"):
            payload["method"] = o["method"].upper()
        if o.get("header"):
            payload["headers"] = _pairs(o["header"], ":", "--header")
        if o.get("body") is not None:
            payload["body"] = o["body"]
        if o.get("expect"):
            try:
                payload["expect_status"] = [int(c) for c in o["expect"].split(",")]
            except ValueError:
                raise InvalidInput(f"--expect: expected codes like 200,204, "
                                   f"not {o['expect']!r}") from None
        return {"job_type": "http", "payload": payload}
    if given[0] == "sql_statement":
        return {"job_type": "sql", "payload": {"statement": o["sql_statement"],
                                               "dsn_name": o.get("sql_dsn_name") or ""}}
    args = _json(o["plugin_args"], "--args") if o.get("plugin_args") else {}
    return {"job_type": "python", "payload": {"entry_point": o["entry_point"], "args": args}}


def schedule_fields(o: dict[str, Any]) -> dict[str, Any]:
    """schedule_kind/expr and the time-zone settings from the schedule options."""
    chosen = [(k, v) for k, v in (("now", "now" if o.get("run_now") else None),
                                  ("at", o.get("at")), ("cron", o.get("cron")),
                                  ("every", o.get("every"))) if v]
    if len(chosen) > 1:
        raise InvalidInput("give one schedule: --now, --at, --cron or --every")
    out: dict[str, Any] = {}
    if chosen:
        kind, expr = chosen[0]
        if kind == "every" and not expr.strip().lower().startswith(("every", "p")):
            expr = f"every {expr.strip()}"  # --every '5 minutes'
        out["schedule_kind"], out["schedule_expr"] = kind, expr
    for option, name in (("tz", "time_zone"), ("nonexistent", "dst_nonexistent"),
                         ("ambiguous", "dst_ambiguous")):
        if o.get(option):
            out[name] = o[option]
    if o.get("allow_past"):
        out["allow_past"] = True
    return out


def policy_fields(o: dict[str, Any]) -> dict[str, Any]:
    """The policy options that were given, as JobSpec fields."""
    out: dict[str, Any] = {}
    for option, name in (("priority", "priority"), ("pool", "pool"),
                         ("max_attempts", "max_attempts"), ("backoff_factor", "backoff_factor"),
                         ("backoff_jitter", "backoff_jitter"), ("concurrency", "concurrency"),
                         ("misfire", "misfire"),
                         ("pause_after_failures", "pause_after_failures")):
        if o.get(option) is not None:
            out[name] = o[option]
    for option, name in (("backoff", "backoff_base_s"), ("backoff_cap", "backoff_cap_s"),
                         ("timeout", "timeout_s"), ("misfire_grace", "misfire_grace_s"),
                         ("start_deadline", "start_deadline_s"), ("jitter_s", "jitter_s")):
        if o.get(option) is not None:
            out[name] = seconds(o[option], "--" + option.replace("_s", "").replace("_", "-"))
    return out


def _json(text: str, label: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{label}: not valid JSON: {exc.msg}") from None
