"""What every daemon's command line shares: config loading with clean errors."""

from __future__ import annotations

import argparse
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


def daemon_config(cls: type[T], program: str, description: str | None,
                  argv: list[str] | None) -> tuple[T, Path | None] | None:
    """Parse `-c FILE` and `--check-config`; the loaded config and its file (read again on
    a reload), or None after a check."""
    parser = argparse.ArgumentParser(prog=program, description=description)
    parser.add_argument("-c", "--config", type=Path, help="TOML config file")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the config and exit (0: valid, 2: invalid)")
    args = parser.parse_args(argv)
    config = load_or_exit(cls, args.config, program)
    if args.check_config:
        print(f"{program}: config {args.config or '<defaults>'} is valid")
        return None
    return config, args.config
