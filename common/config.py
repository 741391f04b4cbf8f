"""Typed configuration: one TOML file per daemon, environment variables override keys.

A config is a frozen dataclass of sections, each a frozen dataclass of typed keys. Every
problem (unknown key, wrong type, missing required key) is collected and reported
together, each naming the key and the file. An environment variable
``ZEITPLAN_<SECTION>__<KEY>`` (upper case) overrides a key; lists are comma-separated.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

from common.errors import ConfigError

T = TypeVar("T")


def required() -> Any:
    """A field that must be set by the file or the environment."""
    return dataclasses.field(default=None, metadata={"required": True})

ENV_PREFIX = "ZEITPLAN_"


def load(cls: type[T], path: Path | None, env: Mapping[str, str] | None = None) -> T:
    """Read `path` (None: defaults only) into `cls`, apply environment overrides, validate."""
    env = os.environ if env is None else env
    where = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError([f"{where}: file not found"]) from exc
        except OSError as exc:
            raise ConfigError([f"{where}: cannot read: {exc.strerror}"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{where}: not valid TOML: {exc}"]) from exc
    problems: list[str] = []
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in hints:
            problems.append(f"{where}: unknown section [{key}] (known: {', '.join(hints)})")
    for section, section_cls in hints.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            problems.append(f"{where}: [{section}] must be a table")
            table = {}
        sections[section] = _section(section_cls, section, table, env, where, problems)
    if problems:
        raise ConfigError(problems)
    return cls(**sections)


def _section(cls: type[Any], name: str, table: dict[str, Any], env: Mapping[str, str],
             where: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key in table:
        if key not in hints:
            problems.append(f"{where}: unknown key '{name}.{key}' "
                            f"(known: {', '.join(hints) or 'none'})")
    for field in dataclasses.fields(cls):
        dotted = f"{name}.{field.name}"
        env_name = f"{ENV_PREFIX}{name}__{field.name}".upper()
        if env_name in env:
            try:
                values[field.name] = _from_env(hints[field.name], env[env_name])
            except ValueError as exc:
                problems.append(f"{env_name}: {exc} (for '{dotted}')")
            continue
        if field.name in table:
            value = table[field.name]
            error = _type_error(hints[field.name], value)
            if error:
                problems.append(f"{where}: '{dotted}' {error}")
            else:
                values[field.name] = _coerce(hints[field.name], value)
        elif field.metadata.get("required"):
            problems.append(f"{where}: missing required key '{dotted}' (or set {env_name})")
    try:
        return cls(**values)
    except ValueError as exc:  # a section's own __post_init__ check
        problems.append(f"{where}: [{name}] {exc}")
        return None


def _base(tp: Any) -> tuple[Any, bool]:
    """The type without Optional, and whether None is allowed."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _type_error(tp: Any, value: Any) -> str | None:
    tp, _ = _base(tp)
    origin = typing.get_origin(tp)
    if tp is bool:
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"must be a whole number, not {value!r}"
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"must be a number, not {value!r}"
    if tp is str:
        return None if isinstance(value, str) else f"must be a string, not {value!r}"
    if origin is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else f"must be a list of strings, not {value!r}"
    if origin in (dict, Mapping) or tp is Mapping:
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        return None if ok else f"must be a table of strings, not {value!r}"
    return f"has an unsupported type {tp!r}"


def _coerce(tp: Any, value: Any) -> Any:
    tp, _ = _base(tp)
    if tp is float:
        return float(value)
    if typing.get_origin(tp) is tuple:
        return tuple(value)
    if typing.get_origin(tp) in (dict, Mapping):
        return types.MappingProxyType(dict(value))
    return value


def _from_env(tp: Any, text: str) -> Any:
    tp, _ = _base(tp)
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"must be true or false, not {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"must be a whole number, not {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"must be a number, not {text!r}") from None
    if typing.get_origin(tp) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if tp is str:
        return text
    raise ValueError("cannot be set from the environment")


def changed(old: Any, new: Any) -> list[str]:
    """The dotted keys (``section.key``) whose values differ between two configs."""
    found: list[str] = []
    for section in dataclasses.fields(old):
        before, after = getattr(old, section.name), getattr(new, section.name)
        found.extend(f"{section.name}.{key.name}" for key in dataclasses.fields(before)
                     if getattr(before, key.name) != getattr(after, key.name))
    return found


def merge(old: T, new: T, keys: Collection[str]) -> T:
    """`old` with the values of `new` for `keys`: whole sections (``retention``) or single
    keys (``log.level``)."""
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(old):  # type: ignore[arg-type]
        value = getattr(old, section.name)
        if section.name in keys:
            value = getattr(new, section.name)
        else:
            picked = {key.name: getattr(getattr(new, section.name), key.name)
                      for key in dataclasses.fields(value) if f"{section.name}.{key.name}" in keys}
            if picked:
                value = dataclasses.replace(value, **picked)
        sections[section.name] = value
    return dataclasses.replace(old, **sections)  # type: ignore[type-var]
