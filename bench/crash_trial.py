"""Crash-resume trial: a full pass over a generated export, SIGKILLed at a random point, restarted.

    python -m bench.crash_trial --runs 10 --size-mb 10 --seed 1

One clean run first measures how long a pass takes (D) and how many extraction requests it
makes; its excerpts (one per distinct chunk content with the user's words, plus one per signal
batch) are the work to pay for once. Then each run starts `python -m app serve` on a fresh local
store with the Anthropic SDK pointed at the in-process Messages-API simulator (the service is the
measured process; the simulator's thread is not in it), POSTs the job, kills the process with
SIGKILL at a seeded random moment in [0.05·D, 0.95·D], starts a new process and waits for the job
to complete. Reported per run: completed or not, duplicate and missing chunk rows against the real
chunker's ids, and what was paid twice — counted in excerpts, since requests are packed anew after
a restart (the simulator's ledger: `excerpts_answered_more_than_once`, whatever request each rode
in). The bound is concurrency × `max_excerpts_per_request` (the fullest request of that run):
requests in flight plus results not yet cached never exceed the concurrency limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.adapters.local_store import LocalStore
from bench.make_export import write_export
from tests.support.export_truth import export_truth
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator
from tests.support.service_process import ServiceProcess, service_env

__all__ = ["main"]

USER_ID = "c0ffee00-1111-4222-8333-444455556666"
STORAGE_PATH = f"imports/{USER_ID}/export.json"
API_KEY = "crash-trial-secret"


def _truth_of(export: Path) -> tuple[set[str], int]:
    truth = export_truth(export, user_id=USER_ID)
    return set(truth.chunk_ids), truth.units  # units: excerpts a clean run answers


def _seed(data_dir: Path, export: Path) -> None:
    async def seed() -> None:
        store = LocalStore(data_dir)
        try:
            await store.ensure_profile(USER_ID)
            store.put_export(STORAGE_PATH, export)
        finally:
            await store.aclose()

    asyncio.run(seed())


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _status(db: Path) -> str | None:
    rows = _rows(db, "SELECT status FROM processing_jobs")
    return str(rows[0][0]) if rows else None


class _Trial:
    def __init__(self, *, root: Path, export: Path, sim: Simulator, concurrency: int) -> None:
        self.root, self.export, self.sim = root, export, sim
        self.concurrency = concurrency
        self.count = 0

    def _start(self, data_dir: Path) -> ServiceProcess:
        self.count += 1
        settings: dict[str, str | float | int | Path] = {
            "local_data_dir": data_dir,
            "rlm_api_key": API_KEY,
            "anthropic_api_key": "sk-sim-trial",
            "anthropic_base_url": self.sim.base_url,
            "fact_extraction_concurrency": self.concurrency,
            "lease_seconds": 3,
            "heartbeat_seconds": 0.5,
            "poll_seconds": 0.2,
        }
        service = ServiceProcess(
            "serve",
            env=service_env(**settings),
            log_path=self.root / f"serve-{self.count}.log",
            workdir=self.root / "cwd",
        )
        service.wait_healthy()
        return service

    def _wait(self, db: Path, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _status(db) in ("complete", "failed"):
                return _status(db) == "complete"
            time.sleep(0.1)
        return False

    def run(self, n: int, kill_after: float | None, timeout: float) -> dict[str, Any]:
        data_dir = self.root / f"run-{n}"
        db = data_dir / "soulprint.db"
        _seed(data_dir, self.export)
        self.sim.reset_ledger()
        service = self._start(data_dir)
        started = time.monotonic()
        response = httpx.post(
            f"{service.base_url}/process-full-v2",
            json={"user_id": USER_ID, "storage_path": STORAGE_PATH},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
        response.raise_for_status()
        step_at_kill = None
        retries_before = 0
        if kill_after is not None:
            time.sleep(kill_after)
            step_at_kill = _rows(db, "SELECT current_step FROM processing_jobs")[0][0]
            service.kill()
            retries_before = sum(e.get("retries", 0) for e in service.events("llm.call"))
            service = self._start(data_dir)
        completed = self._wait(db, timeout)
        elapsed = time.monotonic() - started
        service.terminate()
        retries = sum(e.get("retries", 0) for e in service.events("llm.call"))
        ids = [r[0] for r in _rows(db, "SELECT id FROM conversation_chunks")]  # one user
        ledger = self.sim.ledger()
        return {
            "run": n,
            "kill_after_s": None if kill_after is None else round(kill_after, 2),
            "step_at_kill": step_at_kill,
            "completed": completed,
            "seconds": round(elapsed, 1),
            "chunk_rows": len(ids),
            "distinct_ids": set(ids),
            "extract_calls": ledger["by_task"].get("extract_facts", 0),
            "excerpts": ledger["excerpts"],
            "excerpts_twice": ledger["excerpts_answered_more_than_once"],
            "max_excerpts_per_request": ledger["max_excerpts_per_request"],
            "bound": self.concurrency * ledger["max_excerpts_per_request"],
            "by_outcome": ledger["by_outcome"],
            "sdk_retries": retries_before + retries,
            "answered_twice": ledger["answered_more_than_once"],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_trial", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--size-mb", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill moments")
    # 0.5 s keeps extraction the bulk of a pass now that requests are packed (~70 requests for
    # 10 MB): most kills land while requests are in flight, which is what the bound is about.
    parser.add_argument("--latency", type=float, default=0.5, help="simulator seconds per call")
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="crash-trial-") as tmp:
        root = Path(tmp)
        export = write_export(root / "export.json", size_mb=args.size_mb, fmt="json", seed=7)
        truth_ids, units = _truth_of(export)
        export_bytes = export.stat().st_size
        config = SimulatorConfig(latency_s=args.latency, jitter=0.5, seed=args.seed)
        with running_simulator(config) as sim:
            trial = _Trial(root=root, export=export, sim=sim, concurrency=args.concurrency)
            clean = trial.run(0, None, timeout=600)
            duration = clean["seconds"]
            print(
                f"clean run: {duration} s, {clean['extract_calls']} requests, "
                f"{clean['excerpts']} excerpts ({units} expected), at most "
                f"{clean['max_excerpts_per_request']} a request"
            )
            results = [clean]
            for n in range(1, args.runs + 1):
                kill_after = rng.uniform(0.05, 0.95) * duration
                result = trial.run(n, kill_after, timeout=duration * 4 + 30)
                results.append(result)
                print(_line(result, truth_ids), flush=True)
    crashed = results[1:]
    summary = {
        "size_mb": args.size_mb,
        "export_bytes": export_bytes,
        "chunks": len(truth_ids),
        "extraction_units": units,
        "clean_seconds": duration,
        "clean_extract_requests": clean["extract_calls"],
        "clean_excerpts": clean["excerpts"],
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "completed": sum(r["completed"] for r in crashed),
        "runs": len(crashed),
        "duplicate_rows": sum(r["chunk_rows"] - len(r["distinct_ids"]) for r in crashed),
        "missing_rows": sum(len(truth_ids - r["distinct_ids"]) for r in crashed),
        "unexpected_rows": sum(len(r["distinct_ids"] - truth_ids) for r in crashed),
        "excerpts_twice_per_crash": [r["excerpts_twice"] for r in crashed],
        "bound_per_crash": [r["bound"] for r in crashed],
        "within_bound": sum(r["excerpts_twice"] <= r["bound"] for r in crashed),
        "extra_requests_per_crash": [r["extract_calls"] - clean["extract_calls"] for r in crashed],
        "inputs_answered_twice": [r["answered_twice"] for r in crashed],
        "kills": [(r["kill_after_s"], r["step_at_kill"]) for r in crashed],
    }
    twice = summary["excerpts_twice_per_crash"]
    summary["excerpts_twice_mean"] = round(sum(twice) / len(twice), 1) if twice else 0
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"crash-trial-{int(time.time())}.json"
    out.write_text(json.dumps(summary, indent=2))
    json.dump(summary, sys.stdout, indent=2)
    print(f"\nwritten to {out}")
    ok = summary["completed"] == summary["runs"] == summary["within_bound"]
    return 0 if ok else 1


def _line(result: dict[str, Any], truth: set[str]) -> str:
    ids = result["distinct_ids"]
    return (
        f"run {result['run']:2d}: killed after {result['kill_after_s']:6.2f} s "
        f"in {result['step_at_kill']}; completed={result['completed']} in {result['seconds']} s; "
        f"duplicates={result['chunk_rows'] - len(ids)} missing={len(truth - ids)}; "
        f"excerpts paid twice={result['excerpts_twice']} (bound {result['bound']}), "
        f"requests={result['extract_calls']}, SDK retries: {result['sdk_retries']}"
    )


if __name__ == "__main__":
    sys.exit(main())
