"""SupabaseStore against respx: the exact requests it sends and how it handles each error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from app.adapters.supabase_store import SupabaseStore
from app.config import Settings
from app.domain import Chunk, Fact, FactCategory, JobStatus, NewJob
from app.errors import (
    ConfigError,
    ExportNotFound,
    JobNotFound,
    ProfileNotFound,
    StoreError,
    StoreUnavailable,
)
from app.job_endings import is_permanent
from app.ports import FactCacheKey

URL = "https://proj.supabase.co"
KEY = "sb_secret_test-key-never-logged"
USER = "11111111-1111-4111-8111-111111111111"
JOB = "22222222-2222-4222-8222-222222222222"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _job_row(**overrides: Any) -> dict[str, Any]:
    row = {
        "id": JOB,
        "user_id": USER,
        "status": "queued",
        "storage_path": f"imports/{USER}/export.json",
        "pipeline_version": "v2",
        "attempts": 0,
        "max_attempts": 3,
        "progress": 0,
        "stats": {},
        "force": False,
        "created_at": "2026-03-01T12:00:00.123456+00:00",
        "run_after": "2026-03-01T12:00:00+00:00",
        "lease_owner": None,
        "cost_usd": 0,
    }
    return row | overrides


def _query(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(request.url)).query, keep_blank_values=True)


def _json(request: httpx.Request) -> Any:
    return json.loads(request.content)


@pytest.fixture
async def store() -> AsyncIterator[SupabaseStore]:
    async with httpx.AsyncClient() as client:
        yield SupabaseStore(client, url=URL, service_key=KEY, max_retries=2, retry_base_delay=0)


@pytest.fixture
def api() -> AsyncIterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


# --- headers and profiles --------------------------------------------------------------------


async def test_update_profile_patches_by_user_and_asks_for_the_row(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    route = api.patch("/rest/v1/user_profiles").respond(200, json=[{"user_id": USER}])
    await store.update_profile(
        USER, {"full_pass_status": "processing", "full_pass_started_at": NOW}
    )
    request = route.calls.last.request
    assert request.headers["apikey"] == KEY
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["prefer"] == "return=representation"
    assert _query(request) == {"user_id": [f"eq.{USER}"], "select": ["user_id"]}
    assert _json(request) == {
        "full_pass_status": "processing",
        "full_pass_started_at": "2026-03-01T12:00:00+00:00",
    }


async def test_update_profile_matching_no_row_is_profile_not_found(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    api.patch("/rest/v1/user_profiles").respond(200, json=[])
    with pytest.raises(ProfileNotFound, match=f"no user_profiles row for user {USER}"):
        await store.update_profile(USER, {"memory_md": "# MEMORY"})


async def test_unknown_columns_are_refused_before_any_request(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    route = api.route()
    with pytest.raises(StoreError, match="embedding"):
        await store.update_profile(USER, {"embedding": [0.1]})
    with pytest.raises(StoreError, match="status"):
        await store.update_job(JOB, {"status": "complete"})
    assert not route.called


async def test_pgrst204_names_the_missing_column_and_is_not_retried(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    body = {
        "code": "PGRST204",
        "message": "Could not find the 'soulprint_text' column of 'user_profiles' "
        "in the schema cache",
        "details": None,
        "hint": None,
    }
    route = api.patch("/rest/v1/user_profiles").respond(400, json=body)
    with pytest.raises(StoreError, match="user_profiles has no column 'soulprint_text'") as info:
        await store.update_profile(USER, {"soulprint_text": "x"})
    assert "supabase/migrations" in info.value.message
    assert info.value.table == "user_profiles"
    assert route.call_count == 1


async def test_pgrst205_says_the_table_is_missing(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    body = {"code": "PGRST205", "message": "Could not find the table 'public.processing_jobs'"}
    api.get("/rest/v1/processing_jobs").respond(404, json=body)
    with pytest.raises(StoreError, match="table processing_jobs does not exist"):
        await store.get_job(JOB)


async def test_get_profile_status_selects_the_full_pass_columns(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    row = {"full_pass_status": "complete", "full_pass_started_at": None}
    route = api.get("/rest/v1/user_profiles").mock(
        side_effect=[httpx.Response(200, json=[row]), httpx.Response(200, json=[])]
    )
    assert await store.get_profile_status(USER) == row
    assert await store.get_profile_status(USER) is None
    assert _query(route.calls.last.request) == {
        "user_id": [f"eq.{USER}"],
        "select": ["full_pass_status,full_pass_started_at,full_pass_completed_at,full_pass_error"],
    }


# --- jobs ------------------------------------------------------------------------------------


async def test_enqueue_calls_the_rpc_with_named_arguments(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    route = api.post("/rest/v1/rpc/enqueue_full_pass_job").respond(
        200, json={"job": _job_row(), "created": True}
    )
    job, created = await store.enqueue_job(
        NewJob(user_id=USER, storage_path=f"imports/{USER}/e.json", conversation_count=4)
    )
    assert created
    assert job.id == JOB
    assert job.status is JobStatus.QUEUED
    assert _json(route.calls.last.request) == {
        "p_user_id": USER,
        "p_storage_path": f"imports/{USER}/e.json",
        "p_conversation_count": 4,
        "p_message_count": None,
        "p_pipeline_version": "v2",
        "p_max_attempts": 3,
        "p_force": False,
    }


async def test_claim_renew_finish_go_through_their_rpcs(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    claim = api.post("/rest/v1/rpc/claim_next_job").mock(
        side_effect=[
            httpx.Response(200, json=[]),
            httpx.Response(200, json=[_job_row(status="running", lease_owner="w1", attempts=1)]),
        ]
    )
    renew = api.post("/rest/v1/rpc/renew_job_lease").respond(200, json=False)
    finish = api.post("/rest/v1/rpc/finish_job").respond(200, json=True)
    assert await store.claim_job(worker_id="w1", lease_seconds=60) is None
    job = await store.claim_job(worker_id="w1", lease_seconds=60)
    assert job is not None
    assert (job.lease_owner, job.attempts) == ("w1", 1)
    assert _json(claim.calls.last.request) == {
        "p_worker_id": "w1",
        "p_lease_seconds": 60,
        "p_small_only": False,
    }
    assert await store.renew_lease(job_id=JOB, worker_id="w1", lease_seconds=30) is False
    assert _json(renew.calls.last.request) == {
        "p_job_id": JOB,
        "p_worker_id": "w1",
        "p_lease_seconds": 30,
    }
    ok = await store.finish_job(
        job_id=JOB, worker_id="w1", status=JobStatus.QUEUED, run_after=NOW, count_attempt=False
    )
    assert ok is True
    assert _json(finish.calls.last.request) == {
        "p_job_id": JOB,
        "p_worker_id": "w1",
        "p_status": "queued",
        "p_error": None,
        "p_run_after": "2026-03-01T12:00:00+00:00",
        "p_count_attempt": False,
    }
    with pytest.raises(ValueError, match="running"):
        await store.finish_job(job_id=JOB, worker_id="w1", status=JobStatus.RUNNING)


async def test_requeue_maps_missing_and_not_failed(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    api.post("/rest/v1/rpc/requeue_job").mock(
        side_effect=[
            httpx.Response(400, json={"code": "P0002", "message": "requeue_job: no row"}),
            httpx.Response(
                400,
                json={
                    "code": "P0001",
                    "message": "requeue_job: job x is running, not failed: only a failed job "
                    "can be retried",
                    "hint": "Wait for the job to fail, or leave it running.",
                },
            ),
            httpx.Response(200, json=_job_row(status="queued")),
        ]
    )
    with pytest.raises(JobNotFound):
        await store.requeue_job(JOB)
    with pytest.raises(StoreError, match="only a failed job can be retried"):
        await store.requeue_job(JOB)
    assert (await store.requeue_job(JOB)).status is JobStatus.QUEUED


async def test_update_job_patches_progress_and_detects_a_missing_job(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    route = api.patch("/rest/v1/processing_jobs").mock(
        side_effect=[httpx.Response(200, json=[{"id": JOB}]), httpx.Response(200, json=[])]
    )
    await store.update_job(JOB, {"current_step": "extract_facts", "progress": 40})
    request = route.calls.last.request
    assert _query(request) == {"id": [f"eq.{JOB}"], "select": ["id"]}
    body = _json(request)
    assert body.pop("updated_at")
    assert body == {"current_step": "extract_facts", "progress": 40}
    with pytest.raises(JobNotFound):
        await store.update_job(JOB, {"progress": 50})


async def test_latest_job_orders_by_creation(store: SupabaseStore, api: respx.MockRouter) -> None:
    route = api.get("/rest/v1/processing_jobs").respond(200, json=[_job_row()])
    job = await store.latest_job_for_user(USER)
    assert job is not None
    assert job.created_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert _query(route.calls.last.request) == {
        "user_id": [f"eq.{USER}"],
        "select": ["*"],
        "order": ["created_at.desc"],
        "limit": ["1"],
    }


# --- chunks ----------------------------------------------------------------------------------


def _chunk(n: int) -> Chunk:
    return Chunk(
        id=f"00000000-0000-4000-8000-{n:012d}",
        conversation_id=f"c{n}",
        title="t",
        created_at=NOW,
        index=n,
        content="text",
        message_count=2,
        content_hash=f"h{n}",
        token_estimate=3,
    )


async def test_250_chunks_go_out_as_3_calls_of_the_save_function(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    route = api.post("/rest/v1/rpc/save_conversation_chunks").respond(200, json=100)
    chunks = [_chunk(n) for n in range(250)]
    await store.upsert_chunks(user_id=USER, job_id=JOB, chunks=[*chunks, chunks[7]])
    bodies = [_json(call.request) for call in route.calls]
    assert [len(body["p_rows"]) for body in bodies] == [100, 100, 50]  # the duplicate went
    assert {(b["p_user_id"], b["p_job_id"]) for b in bodies} == {(USER, JOB)}
    ids = [row["id"] for body in bodies for row in body["p_rows"]]
    assert ids == sorted(ids)  # id order: concurrent writers lock rows in the same order
    first = bodies[0]["p_rows"][0]
    assert "embedding" not in first
    assert not {"user_id", "import_job_id"} & set(first)  # set by the function
    assert first["created_at"] == "2026-03-01T12:00:00+00:00"


async def test_a_conflict_on_the_save_is_retried_then_passes(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    conflict = {"code": "23505", "message": "duplicate key", "details": None, "hint": None}
    route = api.post("/rest/v1/rpc/save_conversation_chunks").mock(
        side_effect=[httpx.Response(409, json=conflict), httpx.Response(200, json=1)]
    )
    await store.upsert_chunks(user_id=USER, job_id=JOB, chunks=[_chunk(1)])
    assert route.call_count == 2


async def test_a_conflict_that_persists_fails_the_attempt_not_the_job(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    conflict = {"code": "23505", "message": "duplicate key", "details": None, "hint": None}
    route = api.post("/rest/v1/rpc/save_conversation_chunks").respond(409, json=conflict)
    with pytest.raises(StoreUnavailable, match="kept refusing") as caught:
        await store.upsert_chunks(user_id=USER, job_id=JOB, chunks=[_chunk(1)])
    assert route.call_count == 4
    assert not is_permanent(caught.value)  # the runner retries the job with backoff


async def test_commit_rollback_and_count(store: SupabaseStore, api: respx.MockRouter) -> None:
    commit = api.post("/rest/v1/rpc/commit_conversation_chunks").respond(200, json=2)
    rollback = api.post("/rest/v1/rpc/rollback_conversation_chunks").respond(
        200, json={"removed": 3, "restored": 1}
    )
    count = api.get("/rest/v1/conversation_chunks").respond(
        200, json=[{"id": "a"}], headers={"Content-Range": "0-0/412"}
    )
    assert await store.commit_chunks(user_id=USER, job_id=JOB) == 2
    assert _json(commit.calls.last.request) == {"p_user_id": USER, "p_job_id": JOB}
    assert await store.rollback_chunks(user_id=USER, job_id=JOB) == (3, 1)
    assert rollback.call_count == 1
    assert await store.count_chunks(USER) == 412
    assert count.calls.last.request.headers["prefer"] == "count=exact"


async def test_count_jobs_by_status_asks_for_exact_counts(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    route = api.get("/rest/v1/processing_jobs").respond(
        200, json=[], headers={"Content-Range": "*/7"}
    )
    assert await store.count_jobs_by_status() == {
        "queued": 7,
        "running": 7,
        "complete": 7,
        "failed": 7,
        "canceled": 7,
    }
    statuses = [_query(call.request)["status"] for call in route.calls]
    assert statuses == [
        ["eq.queued"],
        ["eq.running"],
        ["eq.complete"],
        ["eq.failed"],
        ["eq.canceled"],
    ]
    assert all(call.request.headers["prefer"] == "count=exact" for call in route.calls)


# --- fact cache ------------------------------------------------------------------------------


async def test_fact_cache_reads_in_url_sized_batches_and_writes_upserts(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    fact = Fact(category=FactCategory.PROJECTS, text="Builds a kiln.", conversation_id="c1")
    read = api.get("/rest/v1/fact_extraction_cache").mock(
        side_effect=lambda request: httpx.Response(
            200,
            json=[
                {
                    "content_hash": "h7",
                    "facts": [{"category": "Projects", "text": "Builds a kiln."}],
                }
            ]
            if '"h7"' in _query(request)["content_hash"][0]
            else [],
        )
    )
    hashes = [f"h{n}" for n in range(250)]
    found = await store.get_cached_facts(
        user_id=USER, extractor_version="x1", content_hashes=hashes
    )
    assert read.call_count == 3
    assert found == {"h7": [Fact(category=FactCategory.PROJECTS, text="Builds a kiln.")]}
    query = _query(read.calls[0].request)
    assert query["content_hash"][0].startswith('in.("h0","h1",')
    assert query["extractor_version"] == ["eq.x1"]
    assert len(str(read.calls[0].request.url)) < 8_000

    write = api.post("/rest/v1/fact_extraction_cache").respond(201)
    await store.put_cached_facts(user_id=USER, extractor_version="x1", entries={"h1": [fact]})
    request = write.calls.last.request
    assert _query(request)["on_conflict"] == ["user_id,content_hash,extractor_version"]
    assert request.headers["prefer"] == "resolution=merge-duplicates,return=minimal"
    (row,) = _json(request)
    assert row["facts"][0]["text"] == "Builds a kiln."
    assert (row["user_id"], row["content_hash"], row["extractor_version"]) == (USER, "h1", "x1")


async def test_fact_cache_scan_reads_keyset_pages_until_an_empty_one(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    def row(user: str, digest: str, facts: Any = ()) -> dict[str, Any]:
        return {"user_id": user, "content_hash": digest, "extractor_version": "x,1", "facts": facts}

    pages = [[row(USER, "h1"), row(USER, "h2", {"not": "a list"})], [row(USER, "h3")], []]
    read = api.get("/rest/v1/fact_extraction_cache").mock(
        side_effect=[httpx.Response(200, json=page) for page in pages]
    )
    seen = [page async for page in store.scan_fact_cache(user_id=USER, page_size=2)]
    assert [[(e.key.content_hash, e.problem) for e in page] for page in seen] == [
        [("h1", None), ("h2", "not_a_list")],
        [("h3", None)],  # short, yet not the last: only an empty page ends the scan
    ]
    first, second, third = (_query(call.request) for call in read.calls)
    assert first == {
        "select": ["user_id,content_hash,extractor_version,facts"],
        "order": ["user_id.asc,content_hash.asc,extractor_version.asc"],
        "limit": ["2"],
        "user_id": [f"eq.{USER}"],
    }
    assert second["or"] == [
        '(content_hash.gt."h2",and(content_hash.eq."h2",extractor_version.gt."x,1"))'
    ]
    assert third["or"] == [
        '(content_hash.gt."h3",and(content_hash.eq."h3",extractor_version.gt."x,1"))'
    ]

    api.get("/rest/v1/fact_extraction_cache").mock(
        side_effect=[httpx.Response(200, json=[row(USER, "h1")]), httpx.Response(200, json=[])]
    )
    assert len([page async for page in store.scan_fact_cache()]) == 1
    across_users = _query(api.routes[-1].calls.last.request)
    assert "user_id" not in across_users
    assert across_users["or"] == [
        f'(user_id.gt.{USER},and(user_id.eq.{USER},or(content_hash.gt."h1",'
        'and(content_hash.eq."h1",extractor_version.gt."x,1"))))'
    ]


async def test_fact_cache_deletes_in_bounded_batches_and_counts_rows(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    delete = api.delete("/rest/v1/fact_extraction_cache").mock(
        side_effect=lambda request: httpx.Response(
            200, json=[{"content_hash": "h"}] * (_query(request)["content_hash"][0].count(",") + 1)
        )
    )
    keys = [FactCacheKey(USER, f"{n:064x}", "x1") for n in range(250)]
    assert await store.delete_fact_cache_entries([*keys, keys[0]]) == 250
    assert delete.call_count == 3
    for call in delete.calls:
        query = _query(call.request)
        assert (query["user_id"], query["extractor_version"]) == ([f"eq.{USER}"], ["eq.x1"])
        assert query["content_hash"][0].count(",") < 100
        assert call.request.headers["prefer"] == "return=representation"
        assert len(str(call.request.url)) < 8_000


# --- storage ---------------------------------------------------------------------------------


async def test_download_streams_the_object_with_encoded_segments(
    store: SupabaseStore, api: respx.MockRouter, tmp_path: Path
) -> None:
    payload = b"PK\x03\x04" + b"x" * 3_000_000
    route = api.get(url__regex=r"/storage/v1/object/authenticated/.*").respond(200, content=payload)
    dest = tmp_path / "export.bin"
    size = await store.download_export(f"imports/{USER}/17 my export#1.zip", dest)
    assert size == len(payload)
    assert dest.read_bytes() == payload
    raw_path = route.calls.last.request.url.raw_path.decode()
    assert raw_path == f"/storage/v1/object/authenticated/imports/{USER}/17%20my%20export%231.zip"
    assert route.calls.last.request.headers["apikey"] == KEY


async def test_storage_400_with_status_404_is_export_not_found(
    store: SupabaseStore, api: respx.MockRouter, tmp_path: Path
) -> None:
    body = {"statusCode": "404", "error": "not_found", "message": "Object not found"}
    route = api.get(url__regex=r"/storage/v1/.*").respond(400, json=body)
    with pytest.raises(ExportNotFound, match="check storage_path"):
        await store.download_export(f"imports/{USER}/missing.json", tmp_path / "x")
    assert route.call_count == 1


# --- transient failures ----------------------------------------------------------------------


async def test_503_is_retried_then_store_unavailable(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    route = api.post("/rest/v1/rpc/claim_next_job").respond(503, json={"code": "PGRST001"})
    with capture_logs() as logs, pytest.raises(StoreUnavailable, match="after 3 attempts"):
        await store.claim_job(worker_id="w", lease_seconds=60)
    assert route.call_count == 3  # first try + max_retries=2
    assert [e["event"] for e in logs] == ["supabase.retry", "supabase.retry"]
    assert KEY not in repr(logs)


async def test_429_and_timeouts_are_retried_until_success(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    route = api.post("/rest/v1/rpc/renew_job_lease").mock(
        side_effect=[
            httpx.Response(429, json={"message": "slow down"}),
            httpx.ConnectTimeout("timed out"),
            httpx.Response(200, json=True),
        ]
    )
    assert await store.renew_lease(job_id=JOB, worker_id="w", lease_seconds=60) is True
    assert route.call_count == 3


async def test_pgrst003_is_transient(store: SupabaseStore, api: respx.MockRouter) -> None:
    route = api.get("/rest/v1/processing_jobs").mock(
        side_effect=[
            httpx.Response(504, json={"code": "PGRST003", "message": "pool timeout"}),
            httpx.Response(200, json=[]),
        ]
    )
    assert await store.get_job(JOB) is None
    assert route.call_count == 2


async def test_other_4xx_are_not_retried(store: SupabaseStore, api: respx.MockRouter) -> None:
    body = {"code": "23505", "message": "duplicate key value violates unique constraint"}
    route = api.post("/rest/v1/rpc/requeue_job").respond(409, json=body)
    with pytest.raises(StoreError, match="active job"):
        await store.requeue_job(JOB)
    bad = api.post("/rest/v1/rpc/save_conversation_chunks").respond(400, json={"code": "22P02"})
    with pytest.raises(StoreError, match="22P02") as info:
        await store.upsert_chunks(user_id=USER, job_id=JOB, chunks=[_chunk(1)])
    assert not isinstance(info.value, StoreUnavailable)
    assert route.call_count == 1
    assert bad.call_count == 1


async def test_a_wrong_key_says_which_setting_to_check(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    api.get("/rest/v1/processing_jobs").respond(401, json={"message": "Invalid API key"})
    with pytest.raises(StoreError, match="SUPABASE_SERVICE_KEY") as info:
        await store.ping()
    assert KEY not in info.value.message


# --- construction ----------------------------------------------------------------------------


async def test_from_settings_builds_and_closes_its_own_client(api: respx.MockRouter) -> None:
    settings = Settings(supabase_url=URL, supabase_service_key=KEY, supabase_timeout_seconds=7)
    store = SupabaseStore.from_settings(settings)
    client = store._http.client
    assert client.timeout.read == 7
    assert client.timeout.connect == 10
    await store.aclose()
    assert client.is_closed
    with pytest.raises(ConfigError, match="SUPABASE_URL"):
        SupabaseStore.from_settings(Settings(supabase_url=None))


async def test_last_finished_job_filters_by_user_and_final_status(
    store: SupabaseStore, api: respx.MockRouter
) -> None:
    route = api.get("/rest/v1/processing_jobs").respond(200, json=[])
    assert await store.last_finished_job(USER) is None
    assert _query(route.calls.last.request) == {
        "user_id": [f"eq.{USER}"],
        "status": ["in.(complete,failed)"],
        "select": ["*"],
        "order": ["completed_at.desc"],
        "limit": ["1"],
    }
