"""What every daemon's command line shares: config loading with clean errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from common import config
from common.errors import ConfigError

T = TypeVar("T")
EXIT_CONFIG = 2  # systemd units list it in RestartPreventExitStatus


def load_or_exit(cls: type[T], path: Path | None, program: str) -> T:
    """Load the config or print one line per problem and exit with code 2."""
    try:
        return config.load(cls, path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{program}: config error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
