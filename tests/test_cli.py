"""`python -m app …`: output and exit codes, on the real local store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from app.adapters.local_store import LocalStore
from app.cli import DEMO_STORAGE_PATH, DEMO_USER_ID, main
from app.domain import JobStatus, NewJob
from app.processors.extraction.text import EXTRACTOR_VERSION
from tests.support import pg
from tests.support.messages_simulator import SimulatorConfig, running_simulator
from tests.support.postgrest_server import running_postgrest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / ".." / "shared" / "samples"


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


@pytest.mark.parametrize("command", ["process", "worker"])
def test_a_request_too_large_for_the_minute_stops_before_any_call(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-never-used")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens: no call
    monkeypatch.setenv("FACT_TOKEN_BUDGET", "60000")
    args = [command, str(SAMPLE)] if command == "process" else [command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "MEMORY's request reaches ~60,632 input tokens" in err
    assert "lower FACT_TOKEN_BUDGET to at most 39,368" in err


# --- configuration, as a person meets it -----------------------------------------------------


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` in `cwd` (where its `.env` is read), with only `env` set."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _env(**settings: str) -> dict[str, str]:
    kept = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    return kept | {"PYTHONPATH": str(ROOT), **settings}


def test_env_example_copied_as_it_is_runs_the_embedded_defaults(tmp_path: Path) -> None:
    shutil.copyfile(ROOT / ".env.example", tmp_path / ".env")
    inspected = _cli("inspect", str(SAMPLE), cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["conversations"] == 6
    logged = [json.loads(line) for line in inspected.stderr.splitlines()]
    assert {entry["level"] for entry in logged} == {"info"}  # no warning, no error
    processed = _cli("process", str(SAMPLE), "--json", "--out", "ws", cwd=tmp_path)
    assert processed.returncode == 0, processed.stderr
    result = json.loads(processed.stdout)
    # ANTHROPIC_API_KEY= and SUPABASE_URL= are empty: the offline provider on the local store.
    assert (result["status"], result["job"]["llm_provider"]) == ("complete", "offline")
    assert (tmp_path / "data" / "soulprint.db").is_file()


def test_settings_warnings_go_to_stderr_and_stdout_stays_json(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FACT_EXTRACTION_CONCURRENCY=99\nLOG_FORMAT=json\n")
    inspected = _cli("inspect", str(SAMPLE), cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["conversations"] == 6
    warning = json.loads(inspected.stderr.splitlines()[0])
    assert (warning["event"], warning["setting"], warning["using"]) == (
        "config.invalid_value",
        "FACT_EXTRACTION_CONCURRENCY",
        3,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["worker"],
        ["inspect", str(SAMPLE)],
        ["process", str(SAMPLE)],
        ["status", DEMO_USER_ID],
        ["retry", DEMO_USER_ID],
        ["demo"],
    ],
    ids=lambda argv: argv[0],
)
def test_an_invalid_setting_is_one_line_and_exit_2_for_every_command(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    monkeypatch.setenv("LEASE_SECONDS", "abc")
    assert main(argv) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err.splitlines() == [
        "error: invalid setting: LEASE_SECONDS must be an integer, at least 1, not 'abc' "
        "(set in the environment or .env; see .env.example)"
    ]
    assert not data_dir.exists()  # nothing was started


def test_an_invalid_setting_in_dotenv_stops_serve_with_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAX_CONCURRENT_JOBS=lots\n")
    served = _cli("serve", "--port", "9", cwd=tmp_path)
    assert served.returncode == 2
    assert served.stderr.splitlines() == [
        "error: invalid setting: MAX_CONCURRENT_JOBS must be an integer from 1 to 16, not 'lots' "
        "(set in the environment or .env; see .env.example)"
    ]


def test_ctrl_c_on_process_releases_the_job_promptly(tmp_path: Path) -> None:
    """SIGINT mid-extraction: out within seconds (not the 20 s shutdown grace), one line, exit
    130, and the job back on the queue with its attempt given back, ready for a re-run."""
    data = tmp_path / "data"
    with running_simulator(SimulatorConfig(latency_s=2.0)) as sim:
        env = _env(
            LOCAL_DATA_DIR=str(data), ANTHROPIC_API_KEY="sk-sim", ANTHROPIC_BASE_URL=sim.base_url
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "process", str(SAMPLE), "--out", "ws"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for_step(data / "soulprint.db", "extract_facts", process)
            time.sleep(0.5)  # the first calls are out, answers are seconds away
            interrupted = time.monotonic()
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
            took = time.monotonic() - interrupted
        finally:
            process.kill()
    assert process.returncode == 130, err
    assert took < 3.0
    assert out == ""
    assert err.splitlines() == [
        "error: interrupted; the job went back to the queue: run the same command again to go "
        "on (chunks already extracted are not paid for twice)"
    ]
    with sqlite3.connect(data / "soulprint.db") as db:
        jobs = db.execute(
            "SELECT status, lease_owner, attempts, current_step, note FROM processing_jobs"
        ).fetchall()
    note = "released at shutdown (a deploy or a restart); it resumes where it was"
    assert jobs == [("queued", None, 0, None, note)]
    assert not (tmp_path / "ws").exists()


def _wait_for_step(db_path: Path, step: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if db_path.exists():
            with sqlite3.connect(db_path) as db:
                try:
                    row = db.execute("SELECT current_step FROM processing_jobs").fetchone()
                except sqlite3.OperationalError:  # the schema is still being created
                    row = None
            if row is not None and row[0] == step:
                return
        time.sleep(0.05)
    raise AssertionError(f"the job never reached {step}")


# --- the fact cache --------------------------------------------------------------------------


def _run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(argv) == 0, capsys.readouterr().err
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_a_corrupt_cache_entry_heals_on_the_next_run(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One unreadable entry used to fail every re-run (`extract_facts: JSONDecodeError`): now it
    is a miss, its chunk is extracted again and the entry replaced."""
    first = _run_json(["process", str(SAMPLE), "--json", "--out", str(tmp_path / "a")], capsys)
    with sqlite3.connect(data_dir / "soulprint.db") as db:
        db.execute(
            'UPDATE fact_extraction_cache SET facts = \'[{"category": "Peo\''
            " WHERE rowid = (SELECT min(rowid) FROM fact_extraction_cache)"
        )
    before = _run_json(["cache", "validate"], capsys)
    assert (before["invalid"], before["invalid_by_reason"]) == (1, {"not_json": 1})
    second = _run_json(["process", str(SAMPLE), "--json", "--out", str(tmp_path / "b")], capsys)
    assert second["status"] == "complete"
    extracted = first["job"]["stats"]["counts"]["extract_facts"]["extracted"]
    again = second["job"]["stats"]["counts"]["extract_facts"]
    assert extracted > 1
    assert (again["extracted"], again["calls"]) == (1, 1)  # that chunk alone, paid again
    assert again["cached"] == extracted - 1
    after = _run_json(["cache", "validate"], capsys)
    assert (after["entries"], after["invalid"]) == (before["entries"], 0)


_USER_A = "aaaaaaaa-0000-4000-8000-000000000001"
_USER_B = "bbbbbbbb-0000-4000-8000-000000000002"
_OLD = "t0-retired"
_GOOD = '[{"category": "People", "text": "Has a sister, Ana."}]'
_CACHE = [
    (_USER_A, "h1", EXTRACTOR_VERSION, _GOOD),
    (_USER_A, "h2", _OLD, _GOOD),
    (_USER_A, "h3", EXTRACTOR_VERSION, '[{"category": "Hobbies", "text": "x"}]'),
    (_USER_A, "h4", _OLD, '[{"category": "People"}]'),
    (_USER_B, "h1", EXTRACTOR_VERSION, _GOOD),
    (_USER_B, "h5", EXTRACTOR_VERSION, '[{"category": "People", "text": "x", "date": "May"}]'),
]


@pytest.fixture(params=["local", pytest.param("supabase", marks=pytest.mark.postgres)])
def seeded_cache(
    request: pytest.FixtureRequest, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The entries of `_CACHE` in the local store, or in PostgreSQL behind the PostgREST
    stand-in (SUPABASE_URL), written as raw rows."""
    if request.param == "local":
        asyncio.run(LocalStore(data_dir).aclose())  # creates the schema
        with closing(sqlite3.connect(data_dir / "soulprint.db")) as db, db:
            db.executemany(
                "INSERT INTO fact_extraction_cache VALUES (?, ?, ?, ?, '2026-03-01')", _CACHE
            )
        yield "local"
        return
    with pg.migrated_database("soulprint_cache_cli") as conninfo:
        with pg.connect(conninfo) as db:
            for row in _CACHE:
                db.execute(
                    "INSERT INTO fact_extraction_cache"
                    " (user_id, content_hash, extractor_version, facts) VALUES (%s, %s, %s, %s)",
                    row,
                )
        with running_postgrest(conninfo, tmp_path / "storage") as server:
            monkeypatch.setenv("SUPABASE_URL", server.base_url)
            monkeypatch.setenv("SUPABASE_SERVICE_KEY", "cli-test-key")
            yield "supabase"


def test_cache_validate_counts_valid_invalid_and_stale(
    seeded_cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    one = _run_json(["cache", "validate", "--user", _USER_A], capsys)
    assert one == {
        "user_id": _USER_A,
        "current_extractor_version": EXTRACTOR_VERSION,
        "entries": 4,
        "valid": 2,
        "invalid": 2,
        "invalid_by_reason": {"missing_text": 1, "unknown_category": 1},
        "stale": 2,
        "by_extractor_version": {
            EXTRACTOR_VERSION: {"entries": 2, "valid": 1, "invalid": 1},
            _OLD: {"entries": 2, "valid": 1, "invalid": 1},
        },
    }
    everyone = _run_json(["cache", "validate"], capsys)
    assert (everyone["user_id"], everyone["entries"], everyone["valid"]) == (None, 6, 3)
    assert everyone["invalid_by_reason"] == {
        "bad_date": 1,
        "missing_text": 1,
        "unknown_category": 1,
    }


def test_cache_purge_removes_invalid_then_stale_then_all_of_a_user(
    seeded_cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    purged = _run_json(["cache", "purge", "--user", _USER_A], capsys)
    assert (purged["scanned"], purged["removed"], purged["kept"]) == (4, 2, 2)
    assert purged["removed_by_reason"] == {"invalid": 2, "stale": 0, "all": 0}
    stale = _run_json(["cache", "purge", "--stale"], capsys)
    assert (stale["scanned"], stale["removed"], stale["kept"]) == (4, 2, 2)
    assert stale["removed_by_reason"] == {"invalid": 1, "stale": 1, "all": 0}

    assert main(["cache", "purge", "--all"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --all deletes every entry of one user: name the user with --user UUID"
    ]
    wiped = _run_json(["cache", "purge", "--all", "--user", _USER_B], capsys)
    assert (wiped["removed"], wiped["removed_by_reason"]["all"]) == (1, 1)
    left = _run_json(["cache", "validate"], capsys)
    assert (left["entries"], left["valid"], left["stale"]) == (1, 1, 0)


def test_cache_needs_a_uuid_for_user(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "validate", "--user", "alice"]) == 2
    assert capsys.readouterr().err == "error: --user must be a UUID, not 'alice'\n"
