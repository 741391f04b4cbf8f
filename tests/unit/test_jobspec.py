from typing import Any

import pytest

from common.errors import InvalidInput
from common.jobspec import DEFAULT_EXPECT_STATUS, describe_statuses, validate_payload


def test_a_shell_command_is_normalised_with_an_empty_env() -> None:
    assert validate_payload("shell", {"command": "echo hi"}) == {"command": "echo hi", "env": {}}


def test_a_shell_argv_keeps_its_env_and_cwd() -> None:
    payload = {"argv": ["/bin/true", "x"], "env": {"A": "1"}, "cwd": "/tmp"}
    assert validate_payload("shell", payload) == payload


def test_an_http_payload_gets_get_and_2xx_by_default() -> None:
    assert validate_payload("http", {"url": "https://example.com/hook"}) == {
        "url": "https://example.com/hook",
        "method": "GET",
        "headers": {},
        "body": None,
        "expect_status": list(DEFAULT_EXPECT_STATUS),
    }


def test_an_http_method_is_upper_cased_and_statuses_sorted() -> None:
    payload = {"url": "http://h", "method": "post", "expect_status": [204, 200, 204]}
    result = validate_payload("http", payload)
    assert (result["method"], result["expect_status"]) == ("POST", [200, 204])


def test_a_sql_payload_is_accepted_as_given() -> None:
    payload = {"dsn_name": "reporting", "statement": "VACUUM"}
    assert validate_payload("sql", payload) == payload


def test_a_python_payload_gets_empty_args_by_default() -> None:
    assert validate_payload("python", {"entry_point": "example.sleep_echo"}) == {
        "entry_point": "example.sleep_echo",
        "args": {},
    }


@pytest.mark.parametrize(
    ("job_type", "payload", "message"),
    [
        ("shell", {}, "shell job: give exactly one of 'command' and 'argv'"),
        ("shell", {"command": "x", "argv": ["x"]}, "exactly one of 'command' and 'argv'"),
        ("shell", {"command": "  "}, "'command' must be a non-empty string"),
        ("shell", {"argv": []}, "'argv' must be a non-empty list"),
        ("shell", {"argv": ["ls", 3]}, "'argv' must be a non-empty list"),
        ("shell", {"command": "x", "env": {"A": 1}}, "'env' must be an object of strings"),
        ("shell", {"command": "x", "env": {"A=B": "1"}}, "'env' has an invalid variable 'A=B'"),
        ("shell", {"command": "x", "comand": "y"}, "shell job: unknown field 'comand'"),
        ("http", {"url": "ftp://h/x"}, "'url' must be an http:// or https:// URL"),
        ("http", {"url": "http://h", "method": "FETCH"}, "'method' must be one of GET"),
        ("http", {"url": "http://h", "headers": {"A B": "1"}}, "invalid header 'A B'"),
        ("http", {"url": "http://h", "headers": {"A": "1\r\nB: 2"}}, "invalid header 'A'"),
        ("http", {"url": "http://h", "body": {"a": 1}}, "'body' must be a string"),
        ("http", {"url": "http://h", "expect_status": [True]}, "'expect_status' must be"),
        ("http", {"url": "http://h", "expect_status": [700]}, "'expect_status' must be"),
        ("sql", {"dsn_name": "host=db password=x", "statement": "x"}, "never be a DSN itself"),
        ("sql", {"dsn_name": "postgresql://db/x", "statement": "x"}, "never be a DSN itself"),
        ("sql", {"dsn_name": "main"}, "sql job: 'statement' must be a non-empty string"),
        ("python", {"entry_point": "no spaces"}, "'entry_point' must be a plug-in name"),
        ("python", {"entry_point": "a.b", "args": [1]}, "python job: 'args' must be an object"),
        ("cron", {}, "unknown job type 'cron' (expected one of shell, http, sql, python)"),
    ],
)
def test_an_invalid_payload_is_refused_with_a_message_naming_the_field(
    job_type: str, payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_payload(job_type, payload)
    assert message in str(caught.value)


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidInput, match="shell job: the payload must be an object"):
        validate_payload("shell", ["echo"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("statuses", "text"),
    [
        (list(range(200, 300)), "200-299"),
        ([204, 200], "200, 204"),
        ([200, 201, 202, 301, 404, 405], "200-202, 301, 404-405"),
    ],
)
def test_statuses_are_described_as_ranges(statuses: list[int], text: str) -> None:
    assert describe_statuses(statuses) == text
