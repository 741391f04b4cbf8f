"""structlog, configured once: JSON under systemd or without a terminal, readable on one."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = ("password", "token", "secret", "dsn", "authorization")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "exception": logging.ERROR,
           "critical": logging.CRITICAL}
_threshold = logging.INFO  # events below it are dropped; set_level changes it at run time


def _by_level(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop events below the current level. A processor, not the bound logger's own filter:
    loggers are cached on first use with the filter of their time, and a reload must reach
    them too."""
    if _LEVELS.get(method, logging.INFO) < _threshold:
        raise structlog.DropEvent
    return event


def set_level(level: str) -> None:
    """Log events of `level` (debug, info, warning, error) and above from now on."""
    global _threshold  # noqa: PLW0603 - the one process-wide setting a reload changes
    _threshold = _LEVELS[level.lower()]


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never log a secret: mask keys that name one, and passwords inside URLs and DSNs."""
    for key, value in list(event.items()):
        if any(word in key.lower() for word in _SECRET_KEYS) and isinstance(value, str):
            event[key] = redact_text(value)
    return event


def redact_text(text: str) -> str:
    """`text` with the password of any URL (user:pw@) or DSN (password=...) masked."""
    text = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.I)


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the standard library's logging for this process."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if as_json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    set_level(level)
    structlog.configure(
        processors=[
            _by_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info if as_json else structlog.dev.set_exc_info,
            renderer,
        ],
        # Every level reaches the processors (the lowest a config may ask for is debug).
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Quieten the libraries: their warnings still come through.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    for noisy in ("pika", "kazoo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
