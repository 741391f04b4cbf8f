"""Job payload validation, shared by the scheduler (at job creation) and the worker (at run).

Pure functions of values: no I/O, no plug-in lookups. Each error names the job type and the
field, so the message can go straight back to the user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from common.errors import InvalidInput

JOB_TYPES = ("shell", "http", "sql", "python")

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_EXPECT_STATUS = tuple(range(200, 300))

# RFC 9110 token characters: a header name outside this set cannot be sent.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A name the worker's configuration maps to a DSN; anything DSN-like is refused so
# credentials never travel in a job definition.
_DSN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ENTRY_POINT = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def validate_payload(job_type: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Return the normalised payload of a `job_type` job, or raise InvalidInput naming the field."""
    validator = _VALIDATORS.get(job_type)
    if validator is None:
        raise InvalidInput(
            f"unknown job type {job_type!r} (expected one of {', '.join(JOB_TYPES)})"
        )
    if not isinstance(payload, Mapping):
        raise InvalidInput(f"{job_type} job: the payload must be an object")
    return validator(_Fields(job_type, payload))


def describe_statuses(statuses: Iterable[int]) -> str:
    """Say HTTP statuses compactly: 200 to 299 as "200-299", [200, 204] as "200, 204"."""
    ranges: list[list[int]] = []
    for status in sorted(set(statuses)):
        if ranges and status == ranges[-1][1] + 1:
            ranges[-1][1] = status
        else:
            ranges.append([status, status])
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


class _Fields:
    """Typed access to one payload's fields, with errors in the house format."""

    def __init__(self, job_type: str, payload: Mapping[str, Any]) -> None:
        self.job_type = job_type
        self.payload = payload

    def error(self, message: str) -> InvalidInput:
        return InvalidInput(f"{self.job_type} job: {message}")

    def only(self, *allowed: str) -> None:
        unknown = sorted(str(key) for key in self.payload if key not in allowed)
        if unknown:
            raise self.error(
                f"unknown field {unknown[0]!r} (allowed: {', '.join(repr(a) for a in allowed)})"
            )

    def text(self, name: str) -> str:
        value = self.payload.get(name)
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{name!r} must be a non-empty string")
        if "\0" in value:
            raise self.error(f"{name!r} must not contain a NUL character")
        return value

    def string_map(self, name: str) -> dict[str, str]:
        value = self.payload.get(name, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.error(f"{name!r} must be an object of strings")
        return dict(value)


def _shell(f: _Fields) -> dict[str, Any]:
    f.only("command", "argv", "env", "cwd")
    has_command, has_argv = "command" in f.payload, "argv" in f.payload
    if has_command == has_argv:
        raise f.error("give exactly one of 'command' and 'argv'")
    result: dict[str, Any] = {}
    if has_command:
        result["command"] = f.text("command")
    else:
        argv = f.payload["argv"]
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) and "\0" not in a for a in argv)
            or not argv[0]
        ):
            raise f.error("'argv' must be a non-empty list of strings, the first naming a program")
        result["argv"] = list(argv)
    env = f.string_map("env")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise f.error(f"'env' has an invalid variable {key!r}")
    result["env"] = env
    if f.payload.get("cwd") is not None:
        result["cwd"] = f.text("cwd")
    return result


def _http(f: _Fields) -> dict[str, Any]:
    f.only("url", "method", "headers", "body", "expect_status")
    url = f.text("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise f.error("'url' must be an http:// or https:// URL with a host")
    method = f.payload.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise f.error(f"'method' must be one of {', '.join(HTTP_METHODS)}")
    headers = f.string_map("headers")
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise f.error(f"'headers' has an invalid header {name!r}")
    body = f.payload.get("body")
    if body is not None and not isinstance(body, str):
        raise f.error("'body' must be a string")
    expect = f.payload.get("expect_status", list(DEFAULT_EXPECT_STATUS))
    if (
        not isinstance(expect, list)
        or not expect
        or not all(type(s) is int and 100 <= s <= 599 for s in expect)
    ):
        raise f.error("'expect_status' must be a non-empty list of HTTP status codes (100-599)")
    return {
        "url": url,
        "method": method.upper(),
        "headers": headers,
        "body": body,
        "expect_status": sorted(set(expect)),
    }


def _sql(f: _Fields) -> dict[str, Any]:
    f.only("dsn_name", "statement")
    dsn_name = f.payload.get("dsn_name")
    if not isinstance(dsn_name, str) or not _DSN_NAME.fullmatch(dsn_name):
        raise f.error(
            "'dsn_name' must name a DSN in the worker's configuration "
            "(letters, digits, '_', '.', '-'), never be a DSN itself"
        )
    return {"dsn_name": dsn_name, "statement": f.text("statement")}


def _python(f: _Fields) -> dict[str, Any]:
    f.only("entry_point", "args")
    entry_point = f.payload.get("entry_point")
    if not isinstance(entry_point, str) or not _ENTRY_POINT.fullmatch(entry_point):
        raise f.error("'entry_point' must be a plug-in name such as 'example.sleep_echo'")
    args = f.payload.get("args", {})
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        raise f.error("'args' must be an object")
    return {"entry_point": entry_point, "args": dict(args)}


_VALIDATORS: dict[str, Callable[[_Fields], dict[str, Any]]] = {
    "shell": _shell,
    "http": _http,
    "sql": _sql,
    "python": _python,
}
