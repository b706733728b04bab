"""hierarchical_reduce's asker as the pipeline builds it: answers cached per request in both modes,
one Message Batch a level in batch mode, resubmission, and a resume that pays nothing twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.adapters.local_store import LocalStore
from app.batch_port import BatchRequest, ResultKind
from app.domain import NewJob
from app.pricing import OFFLINE_PRICE
from app.processors.composing.reduce import ReduceOutcome, fact_tokens, reduce_facts
from app.processors.composing.reduce_batches import reduce_asker
from app.processors.context import JobContext
from app.processors.ledger import CostLedger
from tests.conftest import USER_ID, make_settings
from tests.processors.test_batch_extraction import _CrashOnce
from tests.processors.test_reduce import facts
from tests.support.fakes import ScriptedLLM

START = facts(700)
BUDGET = fact_tokens(START) // 3


def _shrink(request: Any) -> list[str]:
    return [f"Merged {request.category.value} fact {i}." for i in range(request.target_count)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    store = LocalStore(tmp_path / "store")
    yield store
    await store.aclose()


async def _reduce(
    store: LocalStore, llm: ScriptedLLM, tmp_path: Path, mode: str = "batch"
) -> tuple[ReduceOutcome, CostLedger]:
    settings = make_settings(tmp_path, llm_mode=mode, batch_poll_seconds=0.01)
    job, _ = await store.enqueue_job(NewJob(user_id=USER_ID, storage_path="imports/x/y.json"))
    ctx = JobContext(job=job, store=store, llm=llm, settings=settings)
    ledger = CostLedger(OFFLINE_PRICE, llm.provider, llm.model, mode=mode)
    out = await reduce_facts(
        START,
        llm=llm,
        token_budget=BUDGET,
        ledger=ledger,
        batch_size=50,
        ask=reduce_asker(ctx, ledger),
    )
    return out, ledger


async def test_each_level_is_one_batch_and_a_rerun_in_either_mode_pays_nothing(
    tmp_path: Path, store: LocalStore
) -> None:
    llm = ScriptedLLM(reduce=_shrink)
    out, ledger = await _reduce(store, llm, tmp_path)
    assert fact_tokens(out.facts) <= BUDGET
    created = llm.batches().created
    assert len(created) == out.levels >= 1, "one batch a level"
    assert out.calls == llm.calls["reduce_facts"] == sum(len(b) for b in created)
    assert ledger.step("hierarchical_reduce").calls == out.calls

    realtime = ScriptedLLM(reduce=_shrink)
    again, ledger = await _reduce(store, realtime, tmp_path, mode="realtime")
    assert realtime.calls["reduce_facts"] == 0, "every level answered from the cache"
    assert again.facts == out.facts
    assert ledger.step("hierarchical_reduce").cache_hits == out.calls


async def test_errored_requests_are_resubmitted_within_their_level(
    tmp_path: Path, store: LocalStore
) -> None:
    llm = ScriptedLLM(reduce=_shrink)
    failed: list[str] = []

    def first_errors(request: BatchRequest) -> ResultKind | None:
        if not failed:
            failed.append(request.custom_id)
            return "errored"
        return None

    llm.batch_outcome = first_errors
    out, _ = await _reduce(store, llm, tmp_path)
    created = llm.batches().created
    assert [len(b) for b in created][1] == 1, "the errored request again, alone in its batch"
    assert len(created) == out.levels + 1
    assert fact_tokens(out.facts) <= BUDGET


async def test_a_resumed_reduce_reads_the_batch_it_left_instead_of_submitting(
    tmp_path: Path, store: LocalStore
) -> None:
    llm = _CrashOnce(on="retrieve")
    llm._scripts["reduce_facts"] = _shrink
    with pytest.raises(RuntimeError, match="died in retrieve"):
        await _reduce(store, llm, tmp_path)
    [first] = llm.crashing.inner.created

    out, _ = await _reduce(store, llm, tmp_path)
    levels = llm.crashing.inner.created
    assert levels[0] is first
    assert len(levels) == out.levels, "level 1 was read from the batch the crash left"
    assert llm.calls["reduce_facts"] == sum(len(b) for b in levels)
