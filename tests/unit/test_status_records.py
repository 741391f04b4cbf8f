"""Status changes reach PostgreSQL as one JSON parameter (json_to_recordset)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from common.db.status import iso, records


def test_status_records_are_json_with_iso_times_and_no_nul_characters() -> None:
    rows = [{"id": 1, "st": iso(datetime(2026, 12, 1, 1, 2, 3, tzinfo=UTC)), "f": iso(None),
             "e": "bad\x00byte", "r": "a literal \\u0000 stays", "w": None, "x": "\\\x00"}]
    assert json.loads(records(rows)) == [
        {"id": 1, "st": "2026-12-01T01:02:03+00:00", "f": None, "e": "bad\ufffdbyte",
         "r": "a literal \\u0000 stays", "w": None, "x": "\\\ufffd"}]
