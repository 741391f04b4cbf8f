"""PostgreSQL adapter: the one place that imports psycopg.

Everything else receives a :class:`Database` and calls its repository modules; library
exceptions are translated to :class:`common.errors.DatabaseError` here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from common.errors import DatabaseError, DataRefused

Connection = psycopg.Connection[dict[str, Any]]


class Database:
    """A small connection pool over a (multi-host) libpq DSN."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4,
                 connect_timeout: float = 5.0, name: str = "zeitplan") -> None:
        self.dsn = dsn
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "connect_timeout": max(1, int(connect_timeout)),
                    "application_name": name},
            timeout=connect_timeout,
            open=False,
            check=ConnectionPool.check_connection,
            reconnect_timeout=connect_timeout,
        )
        self._pool.open(wait=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection inside one transaction, committed on success, rolled back on error."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise DatabaseError(f"database unavailable: {_first_line(exc)}") from exc
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise DataRefused(f"data refused: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise DatabaseError(f"database error: {_first_line(exc)}") from exc

    def ping(self) -> bool:
        """True when a read-write primary answers."""
        try:
            with self.transaction() as conn:
                conn.execute("SELECT 1")
            return True
        except DatabaseError:
            return False

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()


def connect_once(dsn: str, *, connect_timeout: float = 5.0) -> Connection:
    """One plain connection in autocommit mode (for migrations and admin commands)."""
    try:
        return psycopg.connect(dsn, row_factory=dict_row, autocommit=True,
                               connect_timeout=max(1, int(connect_timeout)))
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to the database: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
