"""extract_facts with LLM_MODE=batch, as the pipeline runs it (parse → save → batches → the
realtime stage over the cache), with the scripted LLM's in-process batches on the real local
store: the same facts in the same order as realtime, batches as they fill, resubmissions, failures
for a recorded reason, and a resumed job that polls instead of submitting again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from app.adapters.instant_batches import InstantBatches
from app.adapters.local_store import LocalStore
from app.batch_port import BatchKind, BatchProgress, BatchRequest, BatchResult, ResultKind
from app.config import Settings
from app.domain import NewJob
from app.ports import Excerpt, ExtractionRequest
from app.pricing import OFFLINE_PRICE
from app.processors.context import JobContext, StepFailed
from app.processors.ingest_flow import IngestResult, ingest_and_extract
from app.processors.ledger import CostLedger
from tests.conftest import USER_ID, make_settings
from tests.support.fakes import ScriptedLLM, fact_per_user_line

SAMPLE = Path(str(resources.files("app.sample_data").joinpath("sample-export.json")))


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_mode": "batch",
        "extraction_request_tokens": 1,  # one excerpt a request: 7 requests for the sample
        "batch_max_requests": 3,
        "batch_poll_seconds": 0.01,
    }
    return make_settings(tmp_path, **(values | overrides))


async def _pass(
    store: LocalStore, llm: ScriptedLLM, settings: Settings, job_id: str | None = None
) -> tuple[IngestResult, CostLedger, str]:
    if job_id is None:
        job, _ = await store.enqueue_job(NewJob(user_id=USER_ID, storage_path="imports/x/y.json"))
    else:
        found = await store.get_job(job_id)
        assert found is not None
        job = found
    ctx = JobContext(job=job, store=store, llm=llm, settings=settings)
    ledger = CostLedger(OFFLINE_PRICE, llm.provider, llm.model, mode=settings.llm_mode)
    return await ingest_and_extract(ctx, path=SAMPLE, ledger=ledger), ledger, job.id


def _excerpts(request: BatchRequest) -> tuple[Excerpt, ...]:
    assert isinstance(request.request, ExtractionRequest)
    return request.request.excerpts


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    store = LocalStore(tmp_path / "store")
    yield store
    await store.aclose()


async def test_batch_mode_gives_realtimes_facts_in_realtimes_order(
    tmp_path: Path, store: LocalStore
) -> None:
    realtime_store = LocalStore(tmp_path / "realtime")
    realtime, _, _ = await _pass(
        realtime_store, ScriptedLLM(), _settings(tmp_path, llm_mode="realtime")
    )
    await realtime_store.aclose()

    llm = ScriptedLLM()
    batched, ledger, job_id = await _pass(store, llm, _settings(tmp_path))

    assert batched.book.consolidated() == realtime.book.consolidated()
    assert batched.book.facts_in == realtime.book.facts_in > 0
    created = llm.batches().created
    assert [len(b) for b in created] == [3, 3, 1], "submitted as each batch filled"
    assert llm.calls["extract_facts"] == 7, "every call went through a batch: none in realtime"
    assert all(len({r.custom_id for r in b}) == len(b) for b in created)
    recorded = await store.list_llm_batches(job_id)
    assert [(b.kind, b.state, b.request_count) for b in recorded] == [
        ("extract", "read", 3)
    ] * 2 + [("extract", "read", 1)]
    out = batched.extraction
    assert (out.chunks_total, out.chunks_extracted, out.chunks_cached, out.calls) == (7, 7, 0, 7)
    assert ledger.to_json()["mode"] == "batch"
    assert ledger.step("extract_facts").cache_hits == 0

    again, ledger, _ = await _pass(store, llm, _settings(tmp_path))  # a re-run pays nothing
    assert llm.calls["extract_facts"] == 7
    assert len(created) == 3, "nothing left to submit"
    assert (again.extraction.chunks_cached, again.extraction.calls) == (7, 0)
    assert ledger.step("extract_facts").cache_hits == 7


async def test_errored_expired_and_canceled_requests_are_resubmitted(
    tmp_path: Path, store: LocalStore
) -> None:
    llm = ScriptedLLM()
    plan: list[ResultKind] = ["errored", "expired", "canceled"]
    seen: set[str] = set()

    def first_time_fails(request: BatchRequest) -> ResultKind | None:
        chunk = _excerpts(request)[0].chunk_id
        if chunk in seen or not plan:
            return None
        seen.add(chunk)
        return plan.pop(0)

    llm.batch_outcome = first_time_fails
    result, ledger, _ = await _pass(store, llm, _settings(tmp_path))
    counts = result.extraction
    assert (counts.chunks_extracted, counts.chunks_failed) == (7, 0)
    created = llm.batches().created
    assert [len(b) for b in created] == [3, 3, 1, 3], "the three asked again, in a later batch"
    failures = ledger.step("extract_facts").failures
    assert failures == {
        "api_error, resubmitted": 1,
        "expired, resubmitted": 1,
        "canceled, resubmitted": 1,
    }


async def test_requests_that_keep_failing_fail_their_chunks_for_the_recorded_reason(
    tmp_path: Path, store: LocalStore
) -> None:
    llm = ScriptedLLM()
    doomed: set[str] = set()

    def one_chunk_always_expires(request: BatchRequest) -> ResultKind | None:
        chunk = _excerpts(request)[0].chunk_id
        if not doomed:
            doomed.add(chunk)
        return "expired" if chunk in doomed else None

    llm.batch_outcome = one_chunk_always_expires
    settings = _settings(tmp_path, batch_max_resubmits=1, extraction_failure_ratio=0.5)
    result, _, _ = await _pass(store, llm, settings)
    counts = result.extraction
    assert (counts.chunks_extracted, counts.chunks_failed) == (6, 1)
    assert counts.failures_by_kind == {"expired": 1}
    asked = [r for b in llm.batches().created for r in b if _excerpts(r)[0].chunk_id in doomed]
    assert len(asked) == 2, "asked once, resubmitted once (BATCH_MAX_RESUBMITS=1), then failed"

    strict = _settings(tmp_path, batch_max_resubmits=0, extraction_failure_ratio=0.0)
    with pytest.raises(StepFailed, match="1 of 7 chunks failed \\(1 expired\\)"):
        await _pass(LocalStore(tmp_path / "strict"), llm, strict)


async def test_an_excerpt_a_reply_left_out_is_resubmitted_alone(
    tmp_path: Path, store: LocalStore
) -> None:
    skipped: list[str] = []

    def skip_the_second_excerpt_once(excerpt: Excerpt) -> Any:
        if not skipped and "Lisbon" in excerpt.text:
            skipped.append(excerpt.chunk_id)
            return None  # the reply says nothing about this excerpt
        return fact_per_user_line(excerpt)

    llm = ScriptedLLM(extract=skip_the_second_excerpt_once)
    settings = _settings(tmp_path, extraction_request_tokens=100_000, batch_max_requests=10)
    result, _, _ = await _pass(store, llm, settings)
    first, again = llm.batches().created
    assert [len(_excerpts(r)) for r in first] == [7], "one packed request"
    assert [[e.chunk_id for e in _excerpts(r)] for r in again] == [skipped], "asked alone"
    assert result.extraction.asked_alone == 1
    assert (result.extraction.chunks_extracted, result.extraction.chunks_failed) == (7, 0)


class _Crashing:
    """The scripted LLM's batches, except that polling (or creating) dies once, as a process
    does in a deploy or a crash."""

    def __init__(self, inner: InstantBatches, *, on: str) -> None:
        self.inner, self.on, self.crashed = inner, on, False

    def _maybe_crash(self, where: str) -> None:
        if where == self.on and not self.crashed:
            self.crashed = True
            raise RuntimeError(f"the process died in {where}")

    async def create(self, requests: Sequence[BatchRequest]) -> str:
        self._maybe_crash("create")
        return await self.inner.create(requests)

    async def retrieve(self, batch_id: str) -> BatchProgress:
        self._maybe_crash("retrieve")
        return await self.inner.retrieve(batch_id)

    def results(
        self, batch_id: str, *, kind: BatchKind, parts: Mapping[str, int]
    ) -> AsyncIterator[BatchResult]:
        return self.inner.results(batch_id, kind=kind, parts=parts)

    async def cancel(self, batch_id: str) -> None:
        await self.inner.cancel(batch_id)


class _CrashOnce(ScriptedLLM):
    def __init__(self, *, on: str) -> None:
        super().__init__()
        self.crashing = _Crashing(super().batches(), on=on)

    def batches(self) -> Any:
        return self.crashing


async def test_a_resumed_job_polls_its_batches_and_packs_none_of_their_chunks(
    tmp_path: Path, store: LocalStore
) -> None:
    llm = _CrashOnce(on="retrieve")
    settings = _settings(tmp_path)
    with pytest.raises(StepFailed, match="died in retrieve"):
        await _pass(store, llm, settings)
    submitted = [len(b) for b in llm.crashing.inner.created]
    assert submitted == [3, 3, 1], "all submitted before the first poll"

    result, _, job_id = await _pass(store, llm, settings, job_id=(await _job_id(store)))
    assert [len(b) for b in llm.crashing.inner.created] == submitted, "nothing submitted again"
    assert llm.calls["extract_facts"] == 7
    assert (result.extraction.chunks_extracted, result.extraction.chunks_failed) == (7, 0)
    assert {b.state for b in await store.list_llm_batches(job_id)} == {"read"}


async def test_a_batch_recorded_but_never_created_is_abandoned_and_packed_again(
    tmp_path: Path, store: LocalStore
) -> None:
    llm = _CrashOnce(on="create")
    settings = _settings(tmp_path)
    with pytest.raises(StepFailed, match="died in create"):
        await _pass(store, llm, settings)
    job_id = await _job_id(store)
    [recorded] = await store.list_llm_batches(job_id)
    assert (recorded.state, recorded.provider_batch_id) == ("submitting", None)

    result, _, _ = await _pass(store, llm, settings, job_id=job_id)
    states = [b.state for b in await store.list_llm_batches(job_id)]
    assert states == ["abandoned", "read", "read", "read"]
    assert await store.get_llm_batch_requests(recorded.id) == {}
    assert (result.extraction.chunks_extracted, result.extraction.chunks_failed) == (7, 0)


async def _job_id(store: LocalStore) -> str:
    job = await store.latest_job_for_user(USER_ID)
    assert job is not None
    return job.id
