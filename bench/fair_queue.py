"""The fair queue (issue 11): small imports' waits while a 1 GB pass runs, the big pass's wall time
against running alone, the worker's peak RSS, and aging.

    python -m bench.fair_queue                        # run A, run B, the aging check
    python -m bench.fair_queue --size-mb 1024 --small 20 --small-max-mb 5 --latency 0.25
    python -m bench.fair_queue waits --latency 2.5    # run B at a real API's pace, ended once
                                                      # the small imports are done (no B/A)
    python -m bench.fair_queue waits --latency 2.5 --small-slots 1   # what fewer slots do
    python -m bench.fair_queue aging                  # the aging check alone (a second)
    python -m bench.fair_queue report bench/out/fair-queue-*.json   # the tables again
    python -m bench.fair_queue --quick                # 20 MB, 5 small imports, 0.05 s: does it run?

Each run is one `python -m app worker` process (tests/support/service_process.py) on a fresh
local store, with the 512 MB instance's settings: render.yaml's (FACT_EXTRACTION_CONCURRENCY 3,
MAX_CONCURRENT_JOBS 1, SHUTDOWN_GRACE_SECONDS 20) and app/config.py's defaults for the rest
(SMALL_JOB_SLOTS 3, POLL_SECONDS 2, ANTHROPIC_INPUT_TOKENS_PER_MINUTE 50,000,
EXTRACTION_REQUEST_TOKENS 8,000). Its LLM is the real `AnthropicLLM` against
`python -m bench.simulator` in another process, answering after `--latency` ± `--jitter`
(uniform), with no per-minute limits: a 1 GB pass (3,466 requests at C=3) at a real 2.5 s a
call would take ~50 minutes a run, so the default latency is 0.25 s (~6 minutes).

- Run A: the 1 GB job alone. Its wall time is the job's own clock, claimed to complete.
- Run B: the 1 GB job enqueued; `--small-after` seconds after it is claimed, `--small` generated
  imports of `--small-min-mb` to `--small-max-mb` (evenly spread sizes, shuffled, each its own
  seed and user) enqueued one after another. A small import's wait is enqueued → first claimed
  (`created_at` → `started_at` of its row; the `claimed` event's `waited_s` agrees).
- `waits`: run B, ended once every small import is done: their waits at a latency at which the
  big pass would take ~50 minutes (it runs throughout; its own time is not measured).
- Peak RSS: the worker's VmHWM (/proc/<pid>/status) at the end, and the largest sum of VmRSS
  over its process tree sampled every 0.5 s.
- Aging: bench/queue_aging.py (store-level, the local store's real `claim_job`).

No size hints are sent with the jobs (`message_count`, `conversation_count`): every job counts as
small until its download measures it, and small imports are claimed first come, first served.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from app.adapters.local_store import LocalStore
from app.domain import NewJob
from bench.common import OUT_DIR, ensure_export, machine, quiet_logs, simulator_process
from bench.queue_aging import aging_check
from tests.support.service_process import ServiceProcess, service_env

__all__ = ["INSTANCE_512MB", "main", "run_case"]

# render.yaml's environment for both services (plan: starter, 512 MB, 0.5 CPU); the rest of the
# instance's settings are app/config.py's defaults.
INSTANCE_512MB: dict[str, str | int] = {
    "anthropic_model": "claude-haiku-4-5-20251001",
    "fact_extraction_concurrency": 3,
    "max_concurrent_jobs": 1,
    "shutdown_grace_seconds": 20,
}
TERMINAL = ("complete", "failed", "canceled")


def _user(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


async def _enqueue(data_dir: Path, exports: list[tuple[str, Path]]) -> list[str]:
    """Enqueue each (user, export) as the API would, in order; the job ids."""
    store = LocalStore(data_dir)
    try:
        ids = []
        for user, export in exports:
            await store.ensure_profile(user)
            path = f"imports/{user}/{export.name}"
            store.put_export(path, export, link=True)
            job, _ = await store.enqueue_job(NewJob(user_id=user, storage_path=path))
            ids.append(job.id)
        return ids
    finally:
        await store.aclose()


def _rows(db: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 2)


class TreeRss:
    """Samples a process tree's resident memory in a thread: the largest sum of VmRSS seen, and
    the root's VmHWM and CPU time (user + system) when stopped."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid = pid
        self.every = every
        self.peak_tree_mb = 0.0
        self.hwm_mb = 0.0
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _status_kb(self, pid: int, field: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _tree(self, pid: int) -> list[int]:
        found = [pid]
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                found += self._tree(int(child))
        return found

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            tree_kb = sum(self._status_kb(pid, "VmRSS") for pid in self._tree(self.pid))
            self.peak_tree_mb = max(self.peak_tree_mb, tree_kb / 1024)
            self.hwm_mb = max(self.hwm_mb, self._status_kb(self.pid, "VmHWM") / 1024)

    def stop(self) -> None:
        self.hwm_mb = max(self.hwm_mb, self._status_kb(self.pid, "VmHWM") / 1024)
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            self.cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
        self._stop.set()
        self._thread.join()


def _small_exports(count: int, *, low_mb: float, high_mb: float, seed: int) -> list[Path]:
    """`count` generated exports, sizes evenly spread over [low, high] MiB, in a shuffled order."""
    step = (high_mb - low_mb) / max(1, count - 1)
    sizes = [round(low_mb + n * step, 2) for n in range(count)]
    random.Random(seed).shuffle(sizes)
    return [ensure_export(size, seed=100 + n) for n, size in enumerate(sizes)]


def _wait_for(condition: Any, *, worker: ServiceProcess, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if condition():
            return True
        if not worker.alive():
            return False
        time.sleep(0.5)
    return False


def run_case(
    big: Path,
    smalls: list[Path],
    *,
    latency: float,
    jitter: float,
    small_after: float,
    stop_after_smalls: bool = False,
    small_slots: int | None = None,
    timeout: float = 4 * 3600,
) -> dict[str, Any]:
    """One worker process, the big job, and (if any) the small imports after it; the figures."""
    with (
        simulator_process(latency=latency, jitter=jitter) as url,
        tempfile.TemporaryDirectory(prefix="bench-fair-") as tmp,
    ):
        data_dir = Path(tmp) / "data"
        db = data_dir / "soulprint.db"
        (big_id,) = asyncio.run(_enqueue(data_dir, [(_user(0), big)]))
        extra = {} if small_slots is None else {"small_job_slots": small_slots}
        env = service_env(
            **INSTANCE_512MB,
            **extra,
            local_data_dir=data_dir,
            anthropic_api_key="sk-sim-fair",
            anthropic_base_url=url,
        )
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        log_path = OUT_DIR / f"fair-queue-worker-{int(time.time())}.log"
        worker = ServiceProcess("worker", env=env, log_path=log_path, workdir=Path(tmp) / "cwd")
        rss = TreeRss(worker.pid)
        deadline = time.monotonic() + timeout

        def status(job_id: str) -> str:
            return str(_rows(db, "SELECT status FROM processing_jobs WHERE id = ?", job_id)[0][0])

        def all_done(ids: list[str]) -> bool:
            return all(status(job_id) in TERMINAL for job_id in ids)

        small_ids: list[str] = []
        try:
            worker.wait_healthy(timeout=60)
            _wait_for(lambda: status(big_id) != "queued", worker=worker, deadline=deadline)
            if smalls:
                time.sleep(small_after)
                users = [(_user(n + 1), path) for n, path in enumerate(smalls)]
                small_ids = asyncio.run(_enqueue(data_dir, users))
                _wait_for(lambda: all_done(small_ids), worker=worker, deadline=deadline)
            if not stop_after_smalls:
                _wait_for(lambda: all_done([big_id]), worker=worker, deadline=deadline)
        finally:
            rss.stop()
            worker.terminate()
        return {
            "latency_s": latency,
            "jitter": jitter,
            "small_after_s": small_after,
            "stopped_after_smalls": stop_after_smalls,
            "small_job_slots": small_slots,
            "big": _job(db, big_id, big, worker),
            "smalls": [
                _job(db, job_id, path, worker)
                for job_id, path in zip(small_ids, smalls, strict=True)
            ],
            "peak_rss_mb": round(rss.hwm_mb, 1),
            "peak_tree_rss_mb": round(rss.peak_tree_mb, 1),
            "worker_cpu_s": round(rss.cpu_s, 1),
            "log": str(log_path),
        }


def _job(db: Path, job_id: str, export: Path, worker: ServiceProcess) -> dict[str, Any]:
    row = _rows(db, "SELECT * FROM processing_jobs WHERE id = ?", job_id)[0]
    claims = [
        json.loads(r["detail"])
        for r in _rows(
            db,
            "SELECT detail FROM processing_job_events WHERE job_id = ? AND kind = 'claimed' "
            "ORDER BY id",
            job_id,
        )
    ]
    stats = json.loads(row["stats"] or "{}")
    calls = [e for e in worker.events("llm.call") if e.get("job_id") == job_id]
    return {
        "export": export.name,
        "mb": round(export.stat().st_size / 2**20, 2),
        "status": row["status"],
        "error": row["error_message"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "completed_at": row["completed_at"],
        "wait_s": _seconds(row["created_at"], row["started_at"]),
        "run_s": _seconds(row["started_at"], row["completed_at"]),
        "claims": claims,
        "llm_calls": len(calls),
        "input_tokens": row["input_tokens"],
        "steps_s": {k: round(v / 1000, 1) for k, v in stats.get("durations_ms", {}).items()},
    }


# --- reporting ----------------------------------------------------------------------------------


def _p95(values: list[float]) -> float:
    """Nearest rank: the smallest value at or above 95 % of them (the 19th of 20)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    alone, shared = result.get("alone"), result.get("with_smalls")
    summary: dict[str, Any] = {}
    if shared and shared["smalls"]:
        waits = [s["wait_s"] for s in shared["smalls"] if s["wait_s"] is not None]
        summary |= {
            "small_done": sum(s["status"] == "complete" for s in shared["smalls"]),
            "small_waits_s": waits,
            "wait_median_s": round(statistics.median(waits), 1),
            "wait_p95_s": round(_p95(waits), 1),
            "wait_max_s": round(max(waits), 1),
            "small_run_median_s": round(
                statistics.median(s["run_s"] for s in shared["smalls"] if s["run_s"]), 1
            ),
            "in_small_slot": sum(
                bool(s["claims"] and s["claims"][0].get("small_slot")) for s in shared["smalls"]
            ),
            "small_slot_idle_s": _idle_between(shared["smalls"]),
        }
    if alone and shared and alone["big"]["run_s"] and shared["big"]["run_s"]:
        summary["big_ratio"] = round(shared["big"]["run_s"] / alone["big"]["run_s"], 3)
    runs = [r for r in (alone, shared) if r]
    if runs:
        summary["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        summary["peak_tree_rss_mb"] = max(r["peak_tree_rss_mb"] for r in runs)
    return summary


def _idle_between(smalls: list[dict[str, Any]]) -> float:
    """Seconds, summed, between one small import's end and the next one's claim: the claim loop
    polling (POLL_SECONDS) rather than being woken by a freed slot."""
    done = sorted((s for s in smalls if s["started_at"]), key=lambda s: s["started_at"])
    idle = 0.0
    for before, after in itertools.pairwise(done):
        gap = _seconds(before["completed_at"], after["started_at"])
        if gap is not None and gap > 0:
            idle += gap
    return round(idle, 1)


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def report(result: dict[str, Any]) -> None:
    s = result["summary"]
    print(f"\nmachine: {result['machine']}")
    for name, key in (("A (alone)", "alone"), ("B (with small imports)", "with_smalls")):
        run = result.get(key)
        if run:
            big = run["big"]
            if run.get("stopped_after_smalls"):
                outcome = "stopped once the small imports were done (released to the queue)"
            else:
                outcome = f"{big['status']} in {_minutes(big['run_s'])}"
            print(
                f"run {name}: big job {big['mb']:,.0f} MiB {outcome} "
                f"({big['llm_calls']:,} LLM calls), peak RSS "
                f"{run['peak_rss_mb']} MB (tree {run['peak_tree_rss_mb']} MB), worker CPU "
                f"{run.get('worker_cpu_s', '—')} s, latency "
                f"{run['latency_s']} s ± {run['jitter']:.0%}, small-import slots "
                f"{run.get('small_job_slots') or 'as set'}"
            )
    shared = result.get("with_smalls")
    if shared and shared["smalls"]:
        print("\n| # | size | wait (enqueued → claimed) | run (claimed → done) | slot | calls |")
        print("|---|---|---|---|---|---|")
        for n, small in enumerate(shared["smalls"], 1):
            slot = "small" if small["claims"] and small["claims"][0].get("small_slot") else "any"
            print(
                f"| {n} | {small['mb']} MB | {small['wait_s']} s | {small['run_s']} s | "
                f"{slot} | {small['llm_calls']} |"
            )
        print(
            f"\nsmall imports: {s['small_done']} of {len(shared['smalls'])} complete; wait "
            f"median {s['wait_median_s']} s, p95 {s['wait_p95_s']} s, max {s['wait_max_s']} s; "
            f"run median {s['small_run_median_s']} s; small slot idle between them "
            f"{s['small_slot_idle_s']} s"
        )
    if "big_ratio" in s:
        print(f"big job B / A: {s['big_ratio']}")
    if "peak_rss_mb" in s:
        print(f"peak RSS: {s['peak_rss_mb']} MB (tree, sampled: {s['peak_tree_rss_mb']} MB)")
    if result.get("aging"):
        print("\n| aging case | claim order | as aging says |")
        print("|---|---|---|")
        for case in result["aging"]:
            print(f"| {case['case']} | {', '.join(case['order'])} | {case['ok']} |")


# --- the command ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.fair_queue", description=__doc__)
    add = parser.add_argument
    add("what", nargs="?", choices=("all", "waits", "aging"), default="all")
    add("--size-mb", type=float, default=1024, help="the big export")
    add("--small", type=int, default=20, help="small imports queued after it")
    add("--small-min-mb", type=float, default=0.5)
    add("--small-max-mb", type=float, default=5.0)
    add("--small-after", type=float, default=60.0, help="seconds after the big job's claim")
    add("--latency", type=float, default=0.25, help="mean seconds per reply")
    add("--jitter", type=float, default=0.4, help="± fraction of the latency")
    add("--small-slots", type=int, help="SMALL_JOB_SLOTS (default: the setting's)")
    add("--seed", type=int, default=11, help="the small imports' order")
    add("--timeout", type=float, default=4 * 3600, help="per run")
    add("--quick", action="store_true", help="20 MB, 5 small imports, 0.05 s")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_logs()
    if argv and argv[0] == "report":
        for name in argv[1:]:
            report(json.loads(Path(name).read_text()))
        return 0
    args = _parser().parse_args(argv)
    if args.quick:
        args.size_mb, args.small, args.small_max_mb, args.latency = 20, 5, 1.0, 0.05
        args.small_min_mb, args.small_after = 0.2, 5.0
    result: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    if args.what != "aging":
        big = ensure_export(args.size_mb)
        smalls = _small_exports(
            args.small, low_mb=args.small_min_mb, high_mb=args.small_max_mb, seed=args.seed
        )
        print(f"machine: {machine()}\nbig export: {big} ({big.stat().st_size / 2**20:,.0f} MiB)")
        common = {
            "latency": args.latency,
            "jitter": args.jitter,
            "timeout": args.timeout,
            "small_slots": args.small_slots,
        }
        if args.what == "all":
            print("run A: the big job alone …", flush=True)
            result["alone"] = run_case(big, [], small_after=0, **common)
        print(f"run B: the big job, then {args.small} small imports …", flush=True)
        result["with_smalls"] = run_case(
            big,
            smalls,
            small_after=args.small_after,
            stop_after_smalls=args.what == "waits",
            **common,
        )
    result["aging"] = aging_check()
    result["summary"] = summarise(result)
    report(result)
    out = OUT_DIR / f"fair-queue-{args.what}-{int(time.time())}.json"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written {out}")
    return 0 if all(case["ok"] for case in result["aging"]) else 1


if __name__ == "__main__":
    sys.exit(main())
