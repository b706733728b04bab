"""The operator migration (20261201100000) on a real PostgreSQL: the trail is append-only for
the service role, only forget_user_data deletes it, 'canceled' is a status, and the SQL claim
penalty is the Python one (app/queue_order.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from app.queue_order import claim_penalty_seconds, estimated_bytes
from tests.support import pg

pytestmark = pytest.mark.postgres

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with pg.migrated_database("soulprint_operator") as conninfo:
        yield conninfo


@pytest.fixture
def db(dsn: str) -> Iterator[Conn]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def _job(db: Conn, status: str = "failed") -> tuple[str, str]:
    user = str(uuid.uuid4())
    row = db.execute(
        "INSERT INTO processing_jobs (user_id, storage_path, status) VALUES (%s, 'imports/x', %s)"
        " RETURNING id",
        (user, status),
    ).fetchone()
    assert row is not None
    return str(row["id"]), user


def _as(db: Conn, role: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement as `role` in its own transaction."""
    with db.transaction():
        db.execute(f"SET LOCAL ROLE {role}")  # type: ignore[arg-type]
        db.execute(statement, params)  # type: ignore[arg-type]


def _append(db: Conn, job_id: str, user: str, kind: str = "claimed") -> None:
    db.execute(
        "INSERT INTO processing_job_events (job_id, user_id, kind, attempt, worker_id)"
        " VALUES (%s, %s, %s, 1, 'w')",
        (job_id, user, kind),
    )


def test_the_service_role_may_append_and_read_events_but_never_change_them(db: Conn) -> None:
    job_id, user = _job(db)
    with db.transaction():
        db.execute("SET LOCAL ROLE service_role")
        _append(db, job_id, user)
        row = db.execute("SELECT * FROM processing_job_events WHERE job_id = %s", (job_id,))
        event = row.fetchone()
        assert event is not None
        assert event["at"] is not None
    forbidden = [
        ("UPDATE processing_job_events SET kind = 'failed'", ()),
        ("DELETE FROM processing_job_events", ()),
        ("TRUNCATE processing_job_events", ()),
        (  # the time is the database's, not the writer's
            "INSERT INTO processing_job_events (job_id, user_id, kind, at)"
            " VALUES (%s, %s, 'claimed', now() - interval '1 day')",
            (job_id, user),
        ),
    ]
    for statement, params in forbidden:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(db, "service_role", statement, params)
    for role in ("anon", "authenticated"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(db, role, "SELECT count(*) FROM processing_job_events")
    # Not even the owner may rewrite history.
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        db.execute("UPDATE processing_job_events SET kind = 'failed' WHERE job_id = %s", (job_id,))


def test_only_forget_user_data_deletes_events_and_only_the_users(db: Conn) -> None:
    job_id, user = _job(db)
    other_job, other = _job(db)
    for _ in range(3):
        _append(db, job_id, user)
    _append(db, other_job, other)
    with db.transaction():
        db.execute("SET LOCAL ROLE service_role")
        row = db.execute("SELECT forget_user_data(%s, false) AS r", (user,)).fetchone()
    assert row is not None
    assert row["r"] == {
        "jobs": 1,
        "events": 3,
        "fact_cache": 0,
        "chunks": 0,
        "job_ids": [job_id],
    }
    left = db.execute(
        "SELECT job_id FROM processing_job_events WHERE user_id IN (%s, %s)", (user, other)
    )
    assert [str(r["job_id"]) for r in left.fetchall()] == [other_job]
    for role in ("anon", "authenticated"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(db, role, "SELECT forget_user_data(%s, true)", (other,))


def test_forget_with_chunks_also_drops_the_record_of_their_import(db: Conn) -> None:
    # The table issue 9's migration creates (20261201000000), where it exists.
    db.execute(
        "CREATE TABLE IF NOT EXISTS conversation_chunk_imports (user_id uuid PRIMARY KEY,"
        " import_job_id uuid NOT NULL, committed_at timestamptz NOT NULL DEFAULT now())"
    )
    job_id, user = _job(db, status="complete")
    _, other = _job(db, status="complete")
    for owner in (user, other):
        db.execute(
            "INSERT INTO conversation_chunk_imports (user_id, import_job_id) VALUES (%s, %s)",
            (owner, job_id),
        )
        db.execute("INSERT INTO conversation_chunks (user_id, content) VALUES (%s, 'x')", (owner,))
    row = db.execute("SELECT forget_user_data(%s, true) AS r", (user,)).fetchone()
    assert row is not None
    assert row["r"]["chunks"] == 1
    left = db.execute("SELECT user_id FROM conversation_chunk_imports").fetchall()
    assert [str(r["user_id"]) for r in left] == [other]


def test_forget_refuses_a_user_with_an_active_job(db: Conn) -> None:
    _, user = _job(db, status="running")
    with pytest.raises(psycopg.errors.RaiseException, match="has a running job"):
        db.execute("SELECT forget_user_data(%s, false)", (user,))


def test_canceled_is_a_status_and_the_check_is_not_valid_for_old_rows(db: Conn) -> None:
    job_id, _ = _job(db, status="canceled")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE processing_jobs SET status = 'paused' WHERE id = %s", (job_id,))
    check = db.execute(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'processing_jobs_status_check'"
    ).fetchone()
    assert check == {"convalidated": False}
    claims = db.execute("SELECT count(*) AS n FROM pg_proc WHERE proname = 'claim_next_job'")
    assert claims.fetchone() == {"n": 1}  # one function, no overload for PostgREST to trip on


@pytest.mark.parametrize(
    ("export_bytes", "messages", "conversations"),
    [
        (None, None, None),
        (0, 10, 10),
        (5 * 1024**2, None, None),
        (1024**3, 1, 1),
        (8 * 1024**3, None, None),
        (None, 7_202, 412),
        (None, 700_000, None),
        (None, None, 5_000),
        (None, -3, None),
    ],
)
def test_the_sql_claim_penalty_is_the_python_one(
    db: Conn, export_bytes: int | None, messages: int | None, conversations: int | None
) -> None:
    row = db.execute(
        "SELECT job_estimated_bytes(%s, %s, %s) AS size,"
        " job_claim_penalty_seconds(%s, %s, %s) AS p",
        (export_bytes, messages, conversations) * 2,
    ).fetchone()
    assert row is not None
    assert row["size"] == estimated_bytes(export_bytes, messages, conversations)
    assert row["p"] == pytest.approx(claim_penalty_seconds(export_bytes, messages, conversations))


def test_find_failed_jobs_answers_pages_of_at_most_500(db: Conn) -> None:
    for _ in range(510):
        _job(db)
    rows = db.execute("SELECT * FROM find_failed_jobs(p_limit => 10000)").fetchall()
    assert len(rows) == 500
    rest = db.execute("SELECT * FROM find_failed_jobs(p_after => %s)", (rows[-1]["id"],))
    assert len(rest.fetchall()) >= 10
