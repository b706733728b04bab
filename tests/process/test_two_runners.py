"""Two `python -m app worker` processes on one store — SQLite, and PostgreSQL through the
migration's claim functions over HTTP: every job runs once at a time, and when one worker is
killed mid-job the other takes the job over after its lease expires and completes it."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bench.make_export import write_export
from tests.process.backends import Backend
from tests.process.conftest import (
    API_KEY,
    FAST_JOBS,
    SIM_KEY,
    Services,
    wait_until,
)
from tests.support.export_truth import ExportTruth, export_truth
from tests.support.messages_simulator import Simulator
from tests.support.service_process import ServiceProcess

USERS = (
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
    "44444444-4444-4444-8444-444444444444",
)
# Every attempt ends with exactly one canonical `job.finished` line, whatever its outcome.
_ENDINGS = ("job.finished",)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runner-exports")
    return {
        user: write_export(folder / f"{n}.json", size_mb=0.5, fmt="json", seed=100 + n)
        for n, user in enumerate(USERS)
    }


def _jobs(backend: Backend) -> dict[str, dict[str, Any]]:
    columns = ("id", "user_id", "status", "current_step", "attempts", "lease_owner")
    rows = backend.rows(f"SELECT {', '.join(columns)} FROM processing_jobs")  # noqa: S608
    return {str(r[0]): dict(zip(columns, r, strict=True)) for r in rows}


def _cached(backend: Backend, user_id: str) -> int:
    rows = backend.rows("SELECT COUNT(*) FROM fact_extraction_cache WHERE user_id = ?", user_id)
    return int(rows[0][0])


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def _holdings(worker: ServiceProcess, died_at: float | None) -> list[tuple[str, float, float]]:
    """(job, from, to) for each time this worker held a job, from its own log lines."""
    held: list[tuple[str, float, float]] = []
    open_claims: dict[str, float] = {}
    for event in worker.events():
        name, job = event.get("event"), event.get("job_id")
        if name == "job.claimed" and job:
            open_claims[job] = _ts(event)
        elif name in _ENDINGS and job in open_claims:
            held.append((job, open_claims.pop(job), _ts(event)))
    for job, start in open_claims.items():
        assert died_at is not None, f"{worker.command} left job {job} open without dying"
        held.append((job, start, died_at))
    return held


def _holder(jobs: dict[str, dict[str, Any]], worker_ids: dict[str, ServiceProcess]) -> Any:
    """A worker that holds a job mid-extraction with some results cached, and that job."""
    for job in jobs.values():
        owner = job["lease_owner"]
        mid = job["status"] == "running" and job["current_step"] == "extract_facts"
        if mid and owner in worker_ids:
            return worker_ids[owner], job
    return None


def test_two_workers_share_the_queue_and_take_over_a_dead_ones_job(
    backend: Backend,
    services: Services,
    simulator: Simulator,
    exports: dict[str, Path],
) -> None:
    truths: dict[str, ExportTruth] = {}
    for user, export in exports.items():
        backend.seed(user, f"imports/{user}/export.json", export)
        truths[user] = export_truth(export, user_id=user)
    settings = {
        **FAST_JOBS,
        **backend.settings(),
        "rlm_api_key": API_KEY,
        "anthropic_api_key": SIM_KEY,
        "anthropic_base_url": simulator.base_url,
    }
    workers = [services.start("worker", **settings) for _ in range(2)]
    worker_ids = {w.events("runner.started")[0]["worker_id"]: w for w in workers}
    job_ids = {backend.enqueue(user, f"imports/{user}/export.json"): user for user in USERS}

    def mid_job() -> Any:
        found = _holder(_jobs(backend), worker_ids)
        return found if found and _cached(backend, found[1]["user_id"]) > 0 else None

    victim, taken = wait_until(
        mid_job, timeout=30, what="a worker mid-extraction", context=lambda: _jobs(backend)
    )
    victim_id = next(wid for wid, w in worker_ids.items() if w is victim)
    # A worker holds a job in its general slot and may hold one in its small-import slot:
    # everything the victim held when it died is taken over.
    held_by_victim = {j["id"] for j in _jobs(backend).values() if j["lease_owner"] == victim_id}
    victim.kill()
    died_at = time.time()
    survivor = next(w for w in workers if w is not victim)
    wait_until(
        lambda: all(j["status"] == "complete" for j in _jobs(backend).values()),
        timeout=90,
        what="every job complete",
        context=lambda: (_jobs(backend), survivor.tail(5)),
    )
    survivor.terminate()

    jobs = _jobs(backend)
    assert set(jobs) == set(job_ids)
    for job_id, job in jobs.items():
        expected_attempts = 2 if job_id in held_by_victim | {taken["id"]} else 1
        assert job["attempts"] == expected_attempts, job
        assert job["lease_owner"] is None
        user = job_ids[job_id]
        ids = [
            r[0] for r in backend.rows("SELECT id FROM conversation_chunks WHERE user_id = ?", user)
        ]
        assert len(ids) == len(set(ids)) == len(truths[user].chunk_ids)
        assert {str(i) for i in ids} == truths[user].chunk_ids
        status = backend.rows(
            "SELECT full_pass_status, full_pass_error FROM user_profiles WHERE user_id = ?", user
        )
        assert status == [("complete", None)]

    # Exactly once at a time: no two holdings of one job overlap, across both workers' logs.
    holdings = _holdings(victim, died_at) + _holdings(survivor, None)
    for job_id in job_ids:
        spans = sorted((start, end) for job, start, end in holdings if job == job_id)
        assert spans, f"job {job_id} was never claimed"
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"job {job_id} held by two workers at once"
    # The dead worker's job was taken over by the survivor, and only after its lease ran out.
    takeover = [e for e in survivor.events("job.claimed") if e["job_id"] == taken["id"]]
    assert len(takeover) == 1
    assert _ts(takeover[0]) >= died_at
    completions = [
        e["job_id"]
        for w in workers
        for e in w.events("job.finished")
        if e.get("outcome") == "complete"
    ]
    assert sorted(completions) == sorted(job_ids)
