"""The recorded runs (bench/results/*.json) and the latest figures of each mode.

A run with `--only` records some benchmarks; a mode's latest figures are merged from its
records, each benchmark from the latest record that has it and where it did not fail, so a
partial full-size run adds to the full-size section instead of hiding it, and a benchmark
that failed half-way (the Zeitplan half of the peer, say) leaves the earlier whole figures
in place. `merge` is pure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMAT = 2  # records before this (no "format") have another layout and are not merged
RESULT_KEYS = ("raw_broker", "throughput", "profile", "lateness", "failover", "peer",
               "throughput3", "profile3", "schedules", "memory", "outage")
MODES = ("default", "full")


def load(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file name, record) of every record of the current format, oldest first."""
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("format") == FORMAT:
            out.append((path.name, doc))
    return out


def merge(records: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
    """The latest figures of `records` (oldest first, one mode): each result key from the
    latest record that has it; machine, command and errors from the latest record; a
    `sources` list names the records used and what each contributed."""
    if not records:
        return None
    name, latest = records[-1]
    doc: dict[str, Any] = {k: v for k, v in latest.items() if k not in RESULT_KEYS}
    doc["environments"] = {}
    used: dict[str, list[str]] = {}
    for key in RESULT_KEYS:
        for source, record in reversed(records):
            if key in record and key not in _failed(record):
                doc[key] = record[key]
                used.setdefault(source, []).append(key)
                break
    for source, record in records:
        if source in used:
            doc["environments"].update(record.get("environments", {}))
    doc["sources"] = [{"file": source, "started_at": record["started_at"],
                       "command": record["command"], "benchmarks": used[source],
                       "code": record.get("code", {}), "errors": record.get("errors", [])}
                      for source, record in records if source in used]
    doc["errors"] = [f"{s['file']}: {e}" for s in doc["sources"] for e in s["errors"]]
    doc["record_file"] = name
    return doc


def _failed(record: dict[str, Any]) -> set[str]:
    """The result keys of the benchmarks that failed in `record` (its errors name them)."""
    names = {str(e).split(":", 1)[0] for e in record.get("errors", [])}
    return {"raw_broker" if name == "raw" else name for name in names}


def latest_by_mode(directory: Path) -> dict[str, dict[str, Any]]:
    """The merged latest figures of each mode that has records (default, then full; quick
    only when there is neither)."""
    records = load(directory)
    out: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        merged = merge([(n, d) for n, d in records if d["config"]["mode"] == mode])
        if merged is not None:
            out[mode] = merged
    if not out:
        merged = merge([(n, d) for n, d in records if d["config"]["mode"] == "quick"])
        if merged is not None:
            out["quick"] = merged
    return out
