"""Bring a SQLite file made by an older version up to `local_schema.sql`.

`CREATE TABLE IF NOT EXISTS` leaves an existing table as it was, so a `./data/soulprint.db` from
before a change would miss new columns (an INSERT naming them fails) or keep an old CHECK (a
`canceled` job would be refused). Run before the schema script, on the tables that exist:

- a column the schema has and the table lacks is added (`ALTER TABLE … ADD COLUMN`);
- a column whose definition changed (a CHECK, a default) makes the table be rebuilt with the
  schema's definition and its rows copied over — SQLite cannot alter a column in place. Its
  indexes go with the old table; the schema script that runs next creates them again.

Everything happens in one IMMEDIATE transaction, so two processes opening the file at once
cannot both upgrade it.
"""

from __future__ import annotations

import re
import sqlite3

from app.errors import StoreError

__all__ = ["upgrade_local_schema"]

_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", re.DOTALL)
_COMMENT = re.compile(r"--[^\n]*")
_TABLE_CONSTRAINT = ("PRIMARY KEY", "UNIQUE", "CHECK", "FOREIGN KEY", "CONSTRAINT")


def _split_top_level(body: str) -> list[str]:
    parts: list[str] = []
    depth, current, quoted = 0, "", False
    for ch in _COMMENT.sub("", body):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [" ".join(part.split()) for part in parts if part.strip()]


def _columns(body: str) -> dict[str, str]:
    """Column name → its whole definition, whitespace collapsed (table constraints skipped)."""
    columns: dict[str, str] = {}
    for part in _split_top_level(body):
        if part.upper().startswith(_TABLE_CONSTRAINT):
            continue
        columns[part.split(" ", 1)[0].strip('"')] = part
    return columns


def _body_of(create_sql: str) -> str:
    return create_sql[create_sql.index("(") + 1 : create_sql.rindex(")")]


def _plan(conn: sqlite3.Connection, schema: str) -> list[tuple[str, str, str, dict[str, str]]]:
    """(table, action, schema body, columns to add) for each table that needs work."""
    work: list[tuple[str, str, str, dict[str, str]]] = []
    for table, body in _CREATE.findall(schema):
        row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if row is None:
            continue  # the schema script creates it
        have, want = _columns(_body_of(row[0])), _columns(body)
        changed = [name for name in have if name in want and have[name] != want[name]]
        missing = {name: want[name] for name in want if name not in have}
        if changed:
            work.append((table, "rebuild", body, {}))
        elif missing:
            work.append((table, "add", body, missing))
    return work


def _rebuild(conn: sqlite3.Connection, table: str, body: str) -> None:
    old = [r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]
    new = _columns(body)
    common = ", ".join(c for c in old if c in new)
    temp = f"{table}__upgrade"
    conn.execute(f"CREATE TABLE {temp} ({body})")
    conn.execute(f"INSERT INTO {temp} ({common}) SELECT {common} FROM {table}")  # noqa: S608
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {temp} RENAME TO {table}")


def upgrade_local_schema(conn: sqlite3.Connection, schema: str) -> list[str]:
    """Apply what `schema` adds or changes to tables that already exist; return what was done."""
    if not _plan(conn, schema):
        return []
    done: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, action, body, missing in _plan(conn, schema):  # again, under the lock
            if action == "rebuild":
                _rebuild(conn, table, body)
                done.append(f"rebuilt {table}")
                continue
            for name, definition in missing.items():
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")
                except sqlite3.OperationalError as exc:
                    raise StoreError(
                        f"cannot add column {name!r} to {table} in the local store ({exc}); "
                        "move the old soulprint.db aside and start again",
                        table=table,
                    ) from exc
                done.append(f"added {table}.{name}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return done
