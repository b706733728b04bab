"""`python -m app …`: output and exit codes, on the real local store."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.adapters.local_store import LocalStore
from app.cli import DEMO_STORAGE_PATH, DEMO_USER_ID, main
from app.domain import JobStatus, NewJob

SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "samples"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("LOCAL_DATA_DIR", str(data))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    return data


def test_inspect_prints_a_summary(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = Path(__file__).resolve().parents[1] / "app" / "sample_data" / "sample-export.json"
    assert main(["inspect", str(sample)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "chatgpt"
    assert summary["conversations"] == 6
    assert summary["messages_by_role"] == {"user": 15, "assistant": 15}
    assert summary["estimated_cost_usd"] > 0


def test_inspect_reads_every_shared_sample(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = sorted(SAMPLES.glob("*.json"))
    assert samples, f"the shared samples folder is missing: {SAMPLES.resolve()}"
    for sample in samples:
        assert main(["inspect", str(sample)]) == 0, sample.name
        assert json.loads(capsys.readouterr().out)["conversations"] > 0, sample.name


@pytest.mark.parametrize(
    ("content", "message"), [(b"not json at all", "JSON"), (b"[]", "no conversations")]
)
def test_inspect_bad_export_exits_2_with_a_reason(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err


def test_inspect_missing_file(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "/no/such/export.zip"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_demo_then_status_and_retry(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert (data_dir / "storage" / DEMO_STORAGE_PATH).is_file()
    capsys.readouterr()
    assert main(["status", DEMO_USER_ID]) == 0
    assert json.loads(capsys.readouterr().out)["user_id"] == DEMO_USER_ID

    async def failed_job() -> str:
        store = LocalStore(data_dir)
        job, _ = await store.enqueue_job(
            NewJob(user_id=DEMO_USER_ID, storage_path=DEMO_STORAGE_PATH)
        )
        await store.claim_job(worker_id="w", lease_seconds=60)
        await store.finish_job(
            job_id=job.id, worker_id="w", status=JobStatus.FAILED, error_message="x: Y: z"
        )
        await store.aclose()
        return job.id

    job_id = asyncio.run(failed_job())
    assert main(["status", job_id]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "failed"
    assert main(["retry", job_id]) == 0
    retried = json.loads(capsys.readouterr().out)
    assert (retried["status"], retried["attempts"]) == ("queued", 0)
    assert main(["retry", job_id]) == 1
    assert "only a failed job" in capsys.readouterr().err


def test_status_of_unknown_or_malformed_ids(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "not-a-uuid"]) == 2
    assert main(["status", "00000000-0000-4000-8000-000000000009"]) == 1
    assert "no profile and no full-pass job" in capsys.readouterr().err


SAMPLE = Path(__file__).resolve().parents[1] / "app" / "sample_data" / "sample-export.json"


def test_process_writes_an_openclaw_workspace(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "workspace"
    assert main(["process", str(SAMPLE), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "complete: 6 conversations" in said
    names = sorted(p.name for p in out.iterdir())
    assert names == ["AGENTS.md", "IDENTITY.md", "MEMORY.md", "SOUL.md", "TOOLS.md", "USER.md"]
    assert (out / "SOUL.md").read_text().startswith("# SOUL.md - Who You Are")
    assert "Lisbon" in (out / "MEMORY.md").read_text()
    assert len((out / "USER.md").read_text()) <= 4_000


def test_process_json_and_a_rerun_from_the_cache(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["process", str(SAMPLE), "--json", "--out", str(tmp_path / "a")]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["process", str(SAMPLE), "--json", "--out", str(tmp_path / "b")]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["status"] == second["status"] == "complete"
    assert set(first["files"]) == {
        "SOUL.md",
        "IDENTITY.md",
        "USER.md",
        "AGENTS.md",
        "TOOLS.md",
        "MEMORY.md",
    }
    assert first["job"]["stats"]["counts"]["extract_facts"]["calls"] > 0
    assert second["job"]["stats"]["counts"]["extract_facts"]["calls"] == 0


def test_process_bad_export_exits_2_and_writes_nothing(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "an export"}')
    out = tmp_path / "workspace"
    assert main(["process", str(bad), "--out", str(out)]) == 2
    assert "BadExport" in capsys.readouterr().err
    assert not out.exists()


def test_stdout_stays_json_when_reading_settings_warns(tmp_path: Path) -> None:
    """A settings warning is logged before logging is configured: it must land on stderr."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "app", "inspect", str(SAMPLE)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(root), "FACT_EXTRACTION_CONCURRENCY": "999"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["conversations"] == 6
    assert "FACT_EXTRACTION_CONCURRENCY" in done.stderr
