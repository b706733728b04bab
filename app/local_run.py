"""`python -m app process <export>`: a whole full pass on this machine, then an OpenClaw workspace.

The same pipeline as the service — the embedded store under LOCAL_DATA_DIR, Anthropic when a key is
set, the offline provider otherwise — driven by the same runner, so a re-run pays only for chunks it
has not seen. Progress (step, chunks, ETA, running cost) is drawn on a terminal and kept quiet
otherwise.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx

from app.adapters.local_store import LocalStore
from app.config import Settings
from app.domain import SECTION_NAMES, Job, JobStatus, NewJob
from app.errors import AppError
from app.jobs import JobRunner
from app.main import build_guarded_llm, build_runner, check_settings
from app.metrics import REGISTRY
from app.sections import SectionSet
from app.workspace import render_workspace, write_workspace

__all__ = ["LOCAL_USER_ID", "ProcessResult", "process_export"]

# One local user, so re-running on a new export of the same history hits the fact cache.
LOCAL_USER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "soulprint-rlm/local-cli-user"))
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class ProcessResult:
    job: Job
    files: dict[str, str]
    out_dir: Path | None


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


class _Progress:
    """One redrawn status line on a terminal; nothing at all when output is not a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self.base_calls = self._chunks_done()
        self.base_usd = _sample("soulprint_llm_cost_usd_total")

    def _chunks_done(self) -> float:
        calls = sum(
            _sample("soulprint_llm_calls_total", task="extract_facts", outcome=outcome)
            for outcome in ("ok", "llm_unavailable", "llm_bad_output", "llm_refused", "llm_error")
        )
        return calls + _sample("soulprint_fact_cache_hits_total")

    def draw(self, job: Job) -> None:
        if not self.enabled:
            return
        total = job.chunk_count
        done = int(self._chunks_done() - self.base_calls)
        if job.status is JobStatus.COMPLETE and total:
            done = total  # chunks with no words of the user's are done without a call
        usd = _sample("soulprint_llm_cost_usd_total") - self.base_usd
        elapsed = time.monotonic() - self.started
        chunks = f"{done}/{total}" if total else f"{done}"
        eta = ""
        if total and 0 < done < total:
            eta = f"  ETA {int(elapsed / done * (total - done))}s"
        line = f"{job.current_step or 'queued':22s} chunks {chunks}{eta}  ${usd:.4f}"
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


async def process_export(
    export: Path,
    *,
    settings: Settings,
    out_dir: Path | None,
    user_id: str = LOCAL_USER_ID,
    progress: TextIO | None = None,
) -> ProcessResult:
    """Run the full pass over `export` and write the workspace into `out_dir` (if given)."""
    settings = settings.model_copy(update={"store_backend": "local", "run_worker": True})
    check_settings(settings, serving=False)  # e.g. a request too large for the minute: say so now
    store = LocalStore(settings.local_data_dir)
    llm = build_guarded_llm(settings)
    display = _Progress(progress or sys.stderr)
    try:
        await store.ensure_profile(user_id)
        storage_path = f"imports/{user_id}/{export.name}"
        store.put_export(storage_path, export, link=True)
        job, _ = await store.enqueue_job(
            NewJob(user_id=user_id, storage_path=storage_path, max_attempts=1, force=True)
        )
        async with httpx.AsyncClient() as http:
            runner = build_runner(settings, store=store, llm=llm, http=http, alerts=False)
            runner.start()
            try:
                job = await _wait(store, job.id, display)
            except asyncio.CancelledError:
                display.close()
                await _stop_now(runner)
                raise
            except BaseException:
                await runner.stop()
                raise
            await runner.stop()
        display.close()
        files = await _workspace(store, user_id) if job.status is JobStatus.COMPLETE else {}
    finally:
        await llm.aclose()
        await store.aclose()
    if files and out_dir is not None:
        write_workspace(out_dir, files)
    return ProcessResult(job=job, files=files, out_dir=out_dir if files else None)


async def _stop_now(runner: JobRunner) -> None:
    """Ctrl-C: the person wants the terminal back, not the service's shutdown grace. Running work
    is cancelled at once and the runner releases its job to the queue (attempt not counted), so
    running the command again resumes it from the fact cache."""
    await runner.stop(grace=0)


async def _wait(store: LocalStore, job_id: str, display: _Progress) -> Job:
    while True:
        job = await store.get_job(job_id)
        if job is None:
            raise AppError(f"job {job_id} disappeared from the local store")
        display.draw(job)
        if not job.status.active and job.lease_owner is None:  # complete, failed or canceled
            return job
        await asyncio.sleep(_POLL_SECONDS)


async def _workspace(store: LocalStore, user_id: str) -> dict[str, str]:
    profile = await store.get_profile(user_id) or {}
    sections = SectionSet.model_validate(
        {name: json.loads(profile[f"{name}_md"] or "{}") for name in SECTION_NAMES}
    )
    return render_workspace(sections, profile.get("memory_md") or "")
