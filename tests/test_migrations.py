"""The Supabase migrations against a real PostgreSQL: shape, idempotency, RLS and the job queue's
guarantees under concurrency (a job is never claimed twice; an expired lease can be reclaimed)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support import pg

pytestmark = pytest.mark.postgres

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with pg.migrated_database("soulprint_migrations") as conninfo:
        yield conninfo


def _conn(dsn: str) -> Conn:
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


@pytest.fixture
def db(dsn: str) -> Iterator[Conn]:
    with _conn(dsn) as conn:
        conn.execute(
            "TRUNCATE processing_jobs, conversation_chunks, fact_extraction_cache, llm_batches,"
            " llm_batch_requests"
        )
        yield conn


def _schema_snapshot(conn: Conn) -> dict[str, list[Any]]:
    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = 'public'",
        "constraints": "SELECT conrelid::regclass::text AS t, conname,"
        " pg_get_constraintdef(oid) AS d FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
        "policies": "SELECT tablename, policyname, roles::text, cmd, qual, with_check"
        " FROM pg_policies WHERE schemaname = 'public'",
        "functions": "SELECT p.proname, pg_get_functiondef(p.oid) AS def, p.proacl::text AS acl"
        " FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace",
        "tables": "SELECT relname, relrowsecurity, relacl::text AS acl FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'",
    }
    return {
        name: sorted(conn.execute(q).fetchall(), key=lambda row: repr(sorted(row.items())))  # type: ignore[arg-type]
        for name, q in queries.items()
    }


def _new_user(conn: Conn) -> str:
    user_id = str(uuid.uuid4())
    conn.execute("INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
    conn.execute("INSERT INTO user_profiles (user_id) VALUES (%s)", (user_id,))
    return user_id


def _enqueue(conn: Conn, user_id: str | None = None) -> tuple[dict[str, Any], bool]:
    user_id = user_id or str(uuid.uuid4())
    row = conn.execute(
        "SELECT enqueue_full_pass_job(%s, %s, 10, 100, 'v2', 3, false) AS r",
        (user_id, f"imports/{user_id}/export.json"),
    ).fetchone()
    assert row is not None
    return row["r"]["job"], row["r"]["created"]


def _claim(conn: Conn, worker: str, lease: int = 60) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM claim_next_job(%s, %s)", (worker, lease)).fetchone()
    return None if row is None else {**row, "id": str(row["id"])}  # jsonb gives ids as text


def _scalar(conn: Conn, query: str, params: tuple[Any, ...]) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return next(iter(row.values()))


# --- shape -----------------------------------------------------------------------------------


def test_applying_again_changes_nothing(dsn: str) -> None:
    with _conn(dsn) as conn:
        before = _schema_snapshot(conn)
    pg.apply_migrations(dsn)
    with _conn(dsn) as conn:
        after = _schema_snapshot(conn)
    assert after == before
    assert before["functions"], "the snapshot must see the functions it compares"


def test_user_profiles_gains_the_full_pass_columns_and_keeps_its_own(db: Conn) -> None:
    rows = db.execute(
        "SELECT column_name, data_type, column_default FROM information_schema.columns"
        " WHERE table_name = 'user_profiles'"
    ).fetchall()
    types = {r["column_name"]: r["data_type"] for r in rows}
    for column in ("full_pass_error", "memory_md", "soul_md", "identity_md", "user_md"):
        assert types[column] == "text"
    for column in ("agents_md", "tools_md", "soulprint_text", "full_pass_status"):
        assert types[column] == "text"
    assert (
        types["full_pass_started_at"]
        == types["full_pass_completed_at"]
        == ("timestamp with time zone")
    )
    assert {"display_name", "import_status", "created_at"} <= set(types)  # the product's own
    user_id = _new_user(db)
    status = _scalar(
        db, "SELECT full_pass_status FROM user_profiles WHERE user_id = %s", (user_id,)
    )
    assert status == "pending"
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "UPDATE user_profiles SET full_pass_status = 'done' WHERE user_id = %s", (user_id,)
        )


def test_conversation_chunks_never_gets_an_embedding_column(db: Conn) -> None:
    columns = {
        r["column_name"]
        for r in db.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'conversation_chunks'"
        ).fetchall()
    }
    assert "embedding" not in columns
    assert {
        "id",
        "user_id",
        "chunk_tier",
        "chunk_index",
        "content_hash",
        "import_job_id",
    } <= columns
    indexes = db.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'conversation_chunks'"
    ).fetchall()
    assert any("(user_id)" in r["indexdef"] for r in indexes)


def test_processing_jobs_defaults_and_checks(db: Conn) -> None:
    job, created = _enqueue(db)
    assert created
    assert job["status"] == "queued"
    assert (job["attempts"], job["max_attempts"], job["progress"]) == (0, 3, 0)
    assert (job["input_tokens"], job["output_tokens"], job["stats"]) == (0, 0, {})
    assert job["pipeline_version"] == "v2"
    assert job["force"] is False
    assert job["run_after"] is not None
    assert job["lease_owner"] is None
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE processing_jobs SET status = 'pending' WHERE id = %s", (job["id"],))
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE processing_jobs SET progress = 101 WHERE id = %s", (job["id"],))
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO processing_jobs (user_id, storage_path) VALUES (%s, 'imports/x')",
            (job["user_id"],),
        )


def test_fact_cache_is_keyed_by_user_hash_and_extractor_version(db: Conn) -> None:
    user_id = str(uuid.uuid4())
    insert = (
        "INSERT INTO fact_extraction_cache (user_id, content_hash, extractor_version, facts)"
        " VALUES (%s, 'h1', %s, '[]')"
    )
    db.execute(insert, (user_id, "x1"))
    db.execute(insert, (user_id, "x2"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert, (user_id, "x1"))


def test_rls_lets_only_the_service_role_in(db: Conn) -> None:
    tables = db.execute(
        "SELECT relname FROM pg_class"
        " WHERE relrowsecurity AND relnamespace = 'public'::regnamespace"
    ).fetchall()
    assert {"conversation_chunks", "processing_jobs", "fact_extraction_cache"} <= {
        r["relname"] for r in tables
    }
    _enqueue(db)
    with db.transaction():
        db.execute("SET LOCAL ROLE anon")
        assert _scalar(db, "SELECT count(*) AS n FROM processing_jobs", ()) == 0
    with db.transaction():
        db.execute("SET LOCAL ROLE service_role")
        assert _scalar(db, "SELECT count(*) AS n FROM processing_jobs", ()) == 1
        assert _claim(db, "w-service") is not None
    for role in ("anon", "authenticated"):
        with db.transaction():
            db.execute(f"SET LOCAL ROLE {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                _claim(db, "w-anon")


# --- enqueue ---------------------------------------------------------------------------------


def test_enqueue_returns_the_active_job_until_it_finishes(db: Conn) -> None:
    first, created = _enqueue(db)
    user = first["user_id"]
    again, created_again = _enqueue(db, user)
    assert created
    assert not created_again
    assert again["id"] == first["id"]
    claimed = _claim(db, "w1")
    assert claimed is not None
    assert claimed["id"] == first["id"]
    assert _enqueue(db, user)[0]["id"] == first["id"]  # running is active too
    assert _scalar(db, "SELECT finish_job(%s, 'w1', 'complete') AS ok", (first["id"],)) is True
    third, created_third = _enqueue(db, user)
    assert created_third
    assert third["id"] != first["id"]


def test_concurrent_enqueues_create_one_job(dsn: str, db: Conn) -> None:
    user_id = str(uuid.uuid4())
    barrier = threading.Barrier(6)
    results: list[tuple[str, bool]] = []

    def enqueue() -> None:
        with _conn(dsn) as conn:
            barrier.wait()
            job, created = _enqueue(conn, user_id)
            results.append((str(job["id"]), created))

    threads = [threading.Thread(target=enqueue) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


# --- claims and leases -----------------------------------------------------------------------


def test_two_racing_claimers_never_take_the_same_job(dsn: str, db: Conn) -> None:
    job_ids = {str(_enqueue(db)[0]["id"]) for _ in range(60)}
    barrier = threading.Barrier(2)
    claimed: dict[str, list[str]] = {"a": [], "b": []}

    def claimer(name: str) -> None:
        with _conn(dsn) as conn:
            barrier.wait()
            while (job := _claim(conn, f"worker-{name}")) is not None:
                claimed[name].append(str(job["id"]))

    threads = [threading.Thread(target=claimer, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = claimed["a"] + claimed["b"]
    assert sorted(everything) == sorted(job_ids)  # each job exactly once
    rows = db.execute("SELECT lease_owner, attempts FROM processing_jobs").fetchall()
    assert all(r["attempts"] == 1 for r in rows)
    owners = {r["lease_owner"] for r in rows}
    assert owners <= {"worker-a", "worker-b"}


def test_an_uncommitted_claim_is_skipped_not_waited_for(dsn: str, db: Conn) -> None:
    first, _ = _enqueue(db)
    second, _ = _enqueue(db)
    with psycopg.connect(dsn, row_factory=dict_row) as holder, _conn(dsn) as other:
        taken = _claim(holder, "holder")  # transaction left open: the row stays locked
        other.execute("SET statement_timeout = '2s'")
        assert taken is not None
        got = _claim(other, "other")
        assert got is not None
        assert got["id"] != taken["id"]
        assert {taken["id"], got["id"]} == {first["id"], second["id"]}
        assert _claim(other, "other") is None
        holder.rollback()
    again = _claim(db, "after")
    assert again is not None
    assert again["id"] == taken["id"]


def test_claim_takes_the_oldest_due_job_and_ignores_future_ones(db: Conn) -> None:
    later, _ = _enqueue(db)
    db.execute(
        "UPDATE processing_jobs SET run_after = now() + interval '1 hour' WHERE id = %s",
        (later["id"],),
    )
    older, _ = _enqueue(db)
    newer, _ = _enqueue(db)
    db.execute(
        "UPDATE processing_jobs SET run_after = now() - interval '1 minute' WHERE id = %s",
        (older["id"],),
    )
    first = _claim(db, "w")
    second = _claim(db, "w")
    assert first is not None
    assert second is not None
    assert (first["id"], second["id"]) == (older["id"], newer["id"])
    assert _claim(db, "w") is None


def test_an_expired_lease_is_reclaimed_and_the_old_owner_loses_it(dsn: str, db: Conn) -> None:
    job, _ = _enqueue(db)
    with _conn(dsn) as a, _conn(dsn) as b:
        held = _claim(a, "worker-a", 60)
        assert held is not None
        assert held["attempts"] == 1
        assert held["started_at"] is not None
        assert _claim(b, "worker-b") is None  # lease still valid
        assert _scalar(a, "SELECT renew_job_lease(%s, 'worker-a', 60) AS ok", (job["id"],))
        db.execute(
            "UPDATE processing_jobs SET lease_expires_at = now() - interval '1 second'"
            " WHERE id = %s",
            (job["id"],),
        )
        taken = _claim(b, "worker-b")
        assert taken is not None
        assert taken["id"] == job["id"]
        assert taken["lease_owner"] == "worker-b"
        assert taken["attempts"] == 2
        assert taken["started_at"] == held["started_at"]  # first start kept
        renew = "SELECT renew_job_lease(%s, 'worker-a', 60) AS ok"
        assert _scalar(a, renew, (job["id"],)) is False
        finish = "SELECT finish_job(%s, 'worker-a', 'failed', 'stale', null, true) AS ok"
        assert _scalar(a, finish, (job["id"],)) is False
        row = db.execute("SELECT * FROM processing_jobs WHERE id = %s", (job["id"],)).fetchone()
        assert row is not None
        assert row["status"] == "running"
        assert row["lease_owner"] == "worker-b"
        done = "SELECT finish_job(%s, 'worker-b', 'complete', null, null, true) AS ok"
        assert _scalar(b, done, (job["id"],)) is True


def test_finish_requeue_and_release(db: Conn) -> None:
    job, _ = _enqueue(db)
    job_id = job["id"]
    assert _claim(db, "w") is not None
    release = "SELECT finish_job(%s, 'w', 'queued', 'shutdown', now(), false) AS ok"
    assert _scalar(db, release, (job_id,)) is True
    row = db.execute("SELECT * FROM processing_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("queued", 0, None)
    assert _claim(db, "w") is not None
    fail = "SELECT finish_job(%s, 'w', 'failed', 'extract_facts: boom', null, true) AS ok"
    assert _scalar(db, fail, (job_id,)) is True
    row = db.execute("SELECT * FROM processing_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    assert row["status"] == "failed"
    assert row["completed_at"] is not None
    assert row["error_message"] == "extract_facts: boom"
    assert row["lease_expires_at"] is None
    requeued = db.execute("SELECT * FROM requeue_job(%s)", (job_id,)).fetchone()
    assert requeued is not None
    assert (requeued["status"], requeued["attempts"], requeued["error_message"]) == (
        "queued",
        0,
        None,
    )
    with pytest.raises(psycopg.errors.RaiseException, match="only a failed job can be retried"):
        db.execute("SELECT * FROM requeue_job(%s)", (job_id,))
    with pytest.raises(psycopg.errors.NoDataFound, match="no processing_jobs row"):
        db.execute("SELECT * FROM requeue_job(%s)", (str(uuid.uuid4()),))
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT finish_job(%s, 'w', 'running') AS ok", (job_id,))


# --- an existing product database ------------------------------------------------------------


def test_migrations_extend_tables_the_product_already_has() -> None:
    """Production already has conversation_chunks (with `embedding`) and older processing_jobs,
    whose rows may hold statuses and progress of the earlier service: the checks are added
    NOT VALID, so those rows neither abort the migration nor get rewritten, and new writes are
    checked."""
    with pg.temporary_database("soulprint_legacy") as conninfo:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(pg.STUB_SQL.read_text())  # type: ignore[arg-type]
            conn.execute(
                "CREATE TABLE conversation_chunks (id uuid PRIMARY KEY, user_id uuid NOT NULL,"
                " content text, created_at timestamptz NOT NULL DEFAULT now(),"
                " embedding text, chunk_tier text DEFAULT 'medium');"
                "CREATE TABLE processing_jobs (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
                " user_id uuid NOT NULL, status text NOT NULL DEFAULT 'queued',"
                " storage_path text NOT NULL, progress int DEFAULT 0, error_message text,"
                " created_at timestamptz NOT NULL DEFAULT now());"
                "INSERT INTO conversation_chunks (id, user_id, content, embedding)"
                " VALUES (gen_random_uuid(), gen_random_uuid(), 'x', '[0.1]');"
                "INSERT INTO processing_jobs (user_id, status, storage_path, progress) VALUES"
                " (gen_random_uuid(), 'processing', 'imports/a/old.json', 40),"
                " (gen_random_uuid(), 'completed', 'imports/b/old.json', 250);"
            )
        pg.apply_migrations(conninfo, stub=False)
        pg.apply_migrations(conninfo, stub=False)
        with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
            chunk = conn.execute("SELECT * FROM conversation_chunks").fetchone()
            assert chunk is not None
            assert chunk["embedding"] == "[0.1]"
            assert chunk["import_job_id"] is None
            assert "content_hash" in chunk
            job, created = _enqueue(conn)
            assert created
            assert job["lease_owner"] is None
            assert job["max_attempts"] == 3
            claimed = _claim(conn, "w")
            assert claimed is not None
            assert claimed["id"] == str(job["id"])  # never a legacy row
            legacy = conn.execute(
                "SELECT status, progress FROM processing_jobs WHERE id <> %s ORDER BY status",
                (job["id"],),
            ).fetchall()
            assert [(r["status"], r["progress"]) for r in legacy] == [
                ("completed", 250),
                ("processing", 40),
            ]
            checks = conn.execute(
                "SELECT conname, convalidated FROM pg_constraint"
                " WHERE conrelid = 'public.processing_jobs'::regclass AND contype = 'c'"
                " ORDER BY conname"
            ).fetchall()
            assert [(c["conname"], c["convalidated"]) for c in checks] == [
                ("processing_jobs_export_bytes_check", False),
                ("processing_jobs_progress_check", False),
                ("processing_jobs_status_check", False),
            ]
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    "UPDATE processing_jobs SET status = 'pending' WHERE id = %s", (job["id"],)
                )
