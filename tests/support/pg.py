"""The real PostgreSQL the migration and store tests run against (127.0.0.1:5432, trust auth).

When the server is absent these helpers FAIL the test with a message saying how to start it:
CI must never skip the database tests silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

__all__ = [
    "MIGRATIONS",
    "STUB_SQL",
    "admin_conninfo",
    "apply_migrations",
    "connect",
    "migrated_database",
    "temporary_database",
]

_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS: tuple[Path, ...] = tuple(sorted((_ROOT / "supabase" / "migrations").glob("*.sql")))
STUB_SQL = Path(__file__).with_name("supabase_stub.sql")
_HOST = "host=127.0.0.1 port=5432 connect_timeout=3"
_USERS = ("postgres", "root")
_HOW_TO_START = (
    "PostgreSQL is needed at 127.0.0.1:5432 (trust auth, user postgres or root) for the migration "
    "and Supabase store tests. Start it with:\n"
    "    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)


def admin_conninfo() -> str:
    """A conninfo for the maintenance database; fails the test loudly when nothing answers."""
    errors: list[str] = []
    for user in _USERS:
        conninfo = f"{_HOST} user={user} dbname=postgres"
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {str(exc).strip()}")
            continue
        return conninfo
    pytest.fail(f"{_HOW_TO_START}\n(connection errors: {'; '.join(errors)})", pytrace=False)


def connect(conninfo: str, *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(conninfo, autocommit=autocommit)


@contextmanager
def temporary_database(prefix: str) -> Iterator[str]:
    """Create a uniquely named database, yield its conninfo, drop it (even after a failure)."""
    admin = admin_conninfo()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.replace("dbname=postgres", f"dbname={name}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def migrated_database(prefix: str) -> Iterator[str]:
    """`temporary_database` with the Supabase stand-in and every migration applied."""
    with temporary_database(prefix) as conninfo:
        apply_migrations(conninfo)
        yield conninfo


def apply_migrations(conninfo: str, *, stub: bool = True) -> None:
    """Apply the Supabase stand-in (optional) and each migration in order, one transaction each."""
    files = ((STUB_SQL,) if stub else ()) + MIGRATIONS
    with psycopg.connect(conninfo) as conn:
        for path in files:
            conn.execute(path.read_text())  # type: ignore[arg-type]  # trusted files of ours
            conn.commit()
