"""The overlapped front half of the pass: parse → save → extract, as the pipeline runs it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from app.adapters.local_store import LocalStore
from app.adapters.offline_llm import OfflineLLM
from app.config import Settings
from app.domain import NewJob
from app.pricing import OFFLINE_PRICE
from app.processors.context import JobContext
from app.processors.ingest_flow import ingest_and_extract
from app.processors.ledger import CostLedger
from tests.conftest import USER_ID

SAMPLE = Path(str(resources.files("app.sample_data").joinpath("sample-export.json")))


class SlowStepStore(LocalStore):
    """Recording `chunk_conversations` on the job row is slow, as a remote write can be."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.steps: list[str] = []

    async def update_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        if fields.get("current_step") == "chunk_conversations":
            await asyncio.sleep(0.2)
        await super().update_job(job_id, fields)
        if "current_step" in fields:
            self.steps.append(fields["current_step"])


async def test_steps_reach_the_job_row_in_pipeline_order(settings: Settings) -> None:
    store = SlowStepStore(settings.local_data_dir)
    job, _ = await store.enqueue_job(NewJob(user_id=USER_ID, storage_path="imports/x/y.json"))
    ctx = JobContext(job=job, store=store, llm=OfflineLLM(), settings=settings)
    ledger = CostLedger(OFFLINE_PRICE, "offline", "offline-rules-v1")
    result = await ingest_and_extract(ctx, path=SAMPLE, ledger=ledger)
    current = await store.get_job(job.id)
    await store.aclose()
    assert result.stats.conversations == 6
    # The facts were consolidated as they arrived; the outcome keeps only counts.
    assert result.book.facts_in == result.extraction.facts_found > 0
    assert 0 < len(result.book) <= result.book.facts_in
    assert store.steps == ["chunk_conversations", "save_chunks", "extract_facts"]
    assert current is not None
    assert current.current_step == "extract_facts"
    assert (current.conversation_count, current.chunk_count) == (6, result.stats.chunks)


async def test_a_running_extraction_moves_the_jobs_progress_and_says_how_many_are_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between 35 and 80 while extraction runs, with `done` in the step's counts."""
    from bench.make_export import write_export
    from tests.conftest import make_settings
    from tests.support.fakes import ScriptedLLM

    monkeypatch.setattr("app.processors.ingest_flow._PROGRESS_EVERY_S", 0.02)
    settings = make_settings(tmp_path, extraction_request_tokens=1)
    store = LocalStore(settings.local_data_dir)
    export = write_export(tmp_path / "e.json", size_mb=0.3, fmt="json", seed=3)
    job, _ = await store.enqueue_job(NewJob(user_id=USER_ID, storage_path="imports/x/e.json"))
    llm = ScriptedLLM(latency=0.02)
    ctx = JobContext(job=job, store=store, llm=llm, settings=settings)
    seen: list[int] = []

    async def watch() -> None:
        while True:
            row = await store.get_job(job.id)
            if row is not None and row.current_step == "extract_facts":
                seen.append(row.progress)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    ledger = CostLedger(OFFLINE_PRICE, "fake", "fake-model")
    try:
        await ingest_and_extract(ctx, path=export, ledger=ledger)
    finally:
        watcher.cancel()
        await store.aclose()
    assert len(set(seen)) > 1, seen  # it moved
    assert 35 <= min(seen) < max(seen) <= 80
    assert ctx.counts["extract_facts"]["done"] > 0
