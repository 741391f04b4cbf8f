"""Fresh state directories for local clusters."""

from __future__ import annotations

import tempfile
from pathlib import Path


def new_state_dir(prefix: str = "zeitplan-") -> Path:
    """A new directory under the system's temporary directory that every user can
    traverse (the postgres user must reach its data directory below it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path
