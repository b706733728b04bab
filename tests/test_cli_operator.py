"""`python -m app events | retry --failed | cancel | forget | stats steps`: output and exit
codes, on the real local store."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from app.adapters.local_store import LocalStore
from app.cli import main
from app.domain import Job
from tests.support.seeding import seed_job


def _seed(data_dir: Path, *, fail: str | None = None, run: bool = False) -> Job:
    async def seed() -> Job:
        store = LocalStore(data_dir)
        job = await seed_job(store, run=run, fail=fail, trail=True)
        await store.aclose()
        return job

    return asyncio.run(seed())


def test_events_are_readable_lines_or_json(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = _seed(data_dir, fail="extract_facts: LLMUnavailable: overloaded")
    assert main(["events", job.id]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "#1  claimed" in lines[0]
    assert lines[0].endswith("[w]")
    assert "step_failed      extract_facts" in lines[1]
    assert 'error="extract_facts: LLMUnavailable: overloaded" duration_ms=42' in lines[1]
    assert main(["events", job.id, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in body["events"]] == ["claimed", "step_failed"]
    assert main(["events", str(uuid.uuid4())]) == 1
    assert "no job" in capsys.readouterr().err
    assert main(["events", "nope"]) == 2


def test_bulk_retry_dry_run_then_real(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overloaded = _seed(data_dir, fail="extract_facts: LLMUnavailable: overloaded")
    missing = _seed(data_dir, fail="download_conversations: ExportNotFound: gone")
    args = ["retry", "--failed", "--since", "1h", "--error-contains", "OVERLOADED"]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run: 1 failed job(s) matched; 1 would be queued, 0 skipped")
    assert overloaded.id in out
    assert missing.id not in out
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["dry_run"], report["queued"], report["jobs"][0]["outcome"]) == (
        False,
        1,
        "queued",
    )
    assert report["filters"]["error_contains"] == "OVERLOADED"
    assert main(["status", overloaded.id]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "queued"
    assert main(["status", missing.id]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "failed"


@pytest.mark.parametrize(
    "argv",
    [
        ["retry"],
        ["retry", "--since", "2h"],
        ["retry", str(uuid.uuid4()), "--failed"],
        ["retry", str(uuid.uuid4()), "--step", "extract_facts"],
        ["retry", "--failed", "--since", "yesterday"],
        ["retry", "--failed", "--user", "someone"],
    ],
)
def test_bulk_retry_usage_errors_exit_2(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_cancel_queued_and_running(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    running = _seed(data_dir, run=True)  # first: seeding claims whatever is queued
    queued = _seed(data_dir)
    assert main(["cancel", queued.id]) == 0
    assert capsys.readouterr().out.startswith(f"canceled: job {queued.id} was withdrawn")
    assert main(["cancel", running.id, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["outcome"], body["job"]["status"]) == ("cancel_requested", "running")
    assert body["job"]["cancel_requested_at"] is not None
    assert main(["cancel", queued.id]) == 0
    assert "already canceled" in capsys.readouterr().out
    assert main(["cancel", str(uuid.uuid4())]) == 1
    assert "no job" in capsys.readouterr().err
    failed = _seed(data_dir, fail="x: Y: z")  # the only queued job now: seeding claims it
    assert main(["cancel", failed.id]) == 1
    assert "only a queued or running job" in capsys.readouterr().err


def test_forget_refuses_an_active_job_then_removes_with_cancel(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = _seed(data_dir)
    assert main(["forget", job.user_id]) == 1
    assert "cancel it first" in capsys.readouterr().err.lower()
    assert main(["forget", job.user_id, "--cancel", "--chunks", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["canceled_job_id"] == job.id
    assert body["removed"] == {"jobs": 1, "events": 2, "fact_cache": 0, "chunks": 0, "temp_dirs": 0}
    assert body["chunks_included"] is True
    assert main(["status", job.user_id]) == 0  # the profile is kept: the user is still known
    assert json.loads(capsys.readouterr().out)["full_pass_status"] == "failed"


def test_stats_steps_shows_every_step(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "steps"]) == 0
    out = capsys.readouterr().out
    assert "extract_facts" in out
    assert "default (too little history)" in out
    assert "stuck past max(600 s, 3 × p99/unit × units)" in out
    assert main(["stats", "steps", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["steps"]) == 10
    assert body["steps"][0]["step"] == "download_conversations"
