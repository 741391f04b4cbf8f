"""The dead-letter table: recording letters (idempotently) and what they need to know."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from common.db import Connection
from common.dead_letters import DeadLetter

TAIL_BYTES = 4096  # bytes kept of the end of an attempt's stderr
_TAIL_CHUNKS = 8  # last log chunks read for it (a chunk holds at most 64 KiB)


def runs(conn: Connection, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The state and attempt of these runs, locked (so a status batch cannot move them
    between this read and what is decided on it)."""
    if not run_ids:
        return {}
    return {row["id"]: row for row in conn.execute(
        "SELECT id, attempt, state FROM runs WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
        (sorted(set(run_ids)),))}


def record(conn: Connection, letters: Sequence[DeadLetter]) -> int:
    """Insert the letters, each with the end of its attempt's stderr as stored by then; a
    letter already recorded (same digest) is skipped. Returns how many are new."""
    if not letters:
        return 0
    tails = _stderr_tails(conn, sorted({(d.run_id, d.attempt) for d in letters
                                        if d.run_id is not None and d.attempt is not None}))
    added = 0
    with conn.cursor() as cur:
        for letter in letters:
            cur.execute(
                "INSERT INTO dead_letters (digest, run_id, job_id, attempt, kind, reason, "
                "stderr_tail, body, headers) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) "
                "ON CONFLICT (digest) DO NOTHING",
                (letter.digest, letter.run_id, letter.job_id, letter.attempt, letter.kind,
                 letter.reason, tails.get((letter.run_id, letter.attempt)), letter.body,
                 json.dumps(letter.headers)))
            added += cur.rowcount
    return added


def _stderr_tails(conn: Connection,
                  keys: Sequence[tuple[int | None, int | None]]) -> dict[tuple[Any, Any], str]:
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT t.r, t.a, (SELECT substring(x.d FROM greatest(1, octet_length(x.d) - %s)) "
        "  FROM (SELECT string_agg(c.data, ''::bytea ORDER BY c.seq) AS d FROM ("
        "    SELECT data, seq FROM run_logs WHERE run_id = t.r AND attempt = t.a "
        "    AND stream = 'stderr' ORDER BY seq DESC LIMIT %s) c) x) AS tail "
        "FROM unnest(%s::bigint[], %s::int[]) AS t(r, a)",
        (TAIL_BYTES - 1, _TAIL_CHUNKS, [k[0] for k in keys], [k[1] for k in keys])).fetchall()
    return {(row["r"], row["a"]): bytes(row["tail"]).decode("utf-8", "replace")
            .replace("\x00", "\ufffd") for row in rows if row["tail"]}
