"""Time to complete a full pass against the Messages-API simulator at a real API's pace.

    python -m bench.time_to_complete --size-mb 10 --tier 1,2 --concurrency 3,10
    python -m bench.time_to_complete --size-mb 100 --tier 1 --concurrency 3
    python -m bench.time_to_complete --size-mb 100 --shape short --tier 2 --concurrency 3,10
    python -m bench.time_to_complete predict bench/out/export-1024mb.json   # no call: bounds
    python -m bench.time_to_complete report bench/out/ttc-*.json       # the tables again
    python -m bench.time_to_complete --quick          # 5 MB, no limits, 0.05 s: does it run?

Each run is the service as production runs it: `python -m app worker` (the JobRunner on a fresh
local store, the real `AnthropicLLM` and SDK, the provider breaker) in its own process, pointed
at `python -m bench.simulator` in another. The job is enqueued on the store before the worker
starts and timed by its own clock, claimed to `complete`. The simulator answers
after `--latency` ± `--jitter` (uniform; default 2.5 s ± 40 %) and enforces Anthropic's
per-minute limits of `--tier` as token buckets, refusing with 429 + `retry-after` (requests,
input tokens, and output reserved from `max_tokens` then corrected: tests/support/
simulator_limits.py). Tiers: `1` as FACTS.md states it, `2` the next tier's published figures
(check the console for yours), `none`, or `RPM:ITPM:OTPM`.

Reported per run: the pass's time (the wall time from the worker's start is kept too), each
step's duration (the job row's `stats.durations_ms`), requests by outcome (`throttled` =
refused by a limit), tokens (per task, from the worker's `llm.call` events), the breaker's
openings, and extraction's lower bound: its (input tokens − ITPM) / ITPM, (requests − RPM) / RPM
(the buckets start full: the first minute's worth is free) and requests × latency /
concurrency, whichever is longest.

`--mode batch` runs the worker with `LLM_MODE=batch` and the simulator's batches ending after
`--batch-processing` seconds (no per-minute limit bounds a batched extraction: no bound is shown).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from app.adapters.local_store import LocalStore
from app.domain import NewJob
from app.pricing import BATCH_DISCOUNT, price_for
from app.processors.extraction.plan import estimate_extraction, offline_answers
from app.processors.reading.export_reader import iter_conversations
from bench.common import (
    OUT_DIR,
    USER_ID,
    bench_settings,
    ensure_export,
    machine,
    quiet_logs,
    sim_ledger,
    simulator_process,
)
from bench.make_export import SHAPES
from bench.rate_limits import TIERS, Limits, lower_bound_s, parse_tier
from tests.support.service_process import ServiceProcess, service_env

__all__ = ["NO_LIMIT_ITPM", "main", "predict", "run_pass", "summarise"]

# ANTHROPIC_INPUT_TOKENS_PER_MINUTE told to the worker when the simulator has no limits: large
# enough for DESIGN's whole v2 sample.
NO_LIMIT_ITPM = 1_000_000


# --- one run ------------------------------------------------------------------------------------


def _rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _seed(data_dir: Path, export: Path) -> str:
    async def seed() -> str:
        store = LocalStore(data_dir)
        try:
            await store.ensure_profile(USER_ID)
            path = f"imports/{USER_ID}/{export.name}"
            store.put_export(path, export, link=True)
            job, _ = await store.enqueue_job(NewJob(user_id=USER_ID, storage_path=path))
            return job.id
        finally:
            await store.aclose()

    return asyncio.run(seed())


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)


def run_pass(
    export: Path,
    *,
    concurrency: int,
    limits: Limits,
    latency: float,
    jitter: float,
    mode: str = "realtime",
    batch_processing: float = 60.0,
    request_tokens: int | None = None,
    timeout: float = 6 * 3600,
    seed: int = 0,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """One full pass by a worker process against a simulator process; its figures."""
    extra = [*limits.simulator_args(), f"--batch-processing={batch_processing}"]
    with (
        simulator_process(latency=latency, jitter=jitter, seed=seed, extra=extra) as url,
        tempfile.TemporaryDirectory(prefix="bench-ttc-") as tmp,
    ):
        data_dir = Path(tmp) / "data"
        job_id = _seed(data_dir, export)
        db = data_dir / "soulprint.db"
        settings: dict[str, str | float | int | Path] = {
            "local_data_dir": data_dir,
            "anthropic_api_key": "sk-sim-ttc",
            "anthropic_base_url": url,
            "fact_extraction_concurrency": concurrency,
            "llm_mode": mode,
            "poll_seconds": 0.2,
            # The account's tier, as its operator sets it: v2's request is sized to fit it (no
            # limit: NO_LIMIT_ITPM).
            "anthropic_input_tokens_per_minute": limits.itpm or NO_LIMIT_ITPM,
        }
        if request_tokens is not None:
            settings["extraction_request_tokens"] = request_tokens
        log_path = (log_dir or Path(tmp)) / f"worker-{int(time.time())}.log"
        started = time.monotonic()
        worker = ServiceProcess(
            "worker", env=service_env(**settings), log_path=log_path, workdir=Path(tmp) / "cwd"
        )
        status, steps_seen, notes = None, {}, set()
        try:
            worker.wait_healthy(timeout=60)
            deadline = started + timeout
            while time.monotonic() < deadline:
                status, step, note = _rows(
                    db, "SELECT status, current_step, note FROM processing_jobs"
                )[0]
                if step and step not in steps_seen:
                    steps_seen[step] = round(time.monotonic() - started, 1)
                if note:
                    notes.add(str(note).split(" since ")[0])
                if status in ("complete", "failed", "canceled"):
                    break
                if not worker.alive():
                    break
                time.sleep(1.0)
            wall = time.monotonic() - started
        finally:
            worker.terminate()
        ledger = sim_ledger(url)
        stats_text, error, job_started, job_completed = _rows(
            db,
            "SELECT stats, error_message, started_at, completed_at FROM processing_jobs "
            "WHERE id = ?",
            job_id,
        )[0]
        stats = json.loads(stats_text or "{}")
        return {
            "export": export.name,
            "export_bytes": export.stat().st_size,
            "mode": mode,
            "tier": limits.name,
            "limits": asdict(limits),
            "concurrency": concurrency,
            "latency_s": latency,
            "jitter": jitter,
            "status": status,
            "error": error,
            "wall_s": round(wall, 1),
            # The job's own clock: claimed (started_at) to complete, without the worker's start.
            "job_s": _seconds_between(job_started, job_completed),
            "steps_s": {k: round(v / 1000, 1) for k, v in stats.get("durations_ms", {}).items()},
            "step_first_seen_s": steps_seen,
            "notes": sorted(notes),
            "extract_counts": stats.get("counts", {}).get("extract_facts", {}),
            "ledger": {k: v for k, v in ledger.items() if k != "storms"},
            **_from_log(worker),
        }


def _from_log(worker: ServiceProcess) -> dict[str, Any]:
    """Per task: requests answered and their tokens (the worker's `llm.call` events, which the
    simulator's ledger does not split); SDK retries; the breaker's outages and their length."""
    by_task: dict[str, dict[str, int]] = {}
    retries = 0
    for event in worker.events("llm.call"):
        task = by_task.setdefault(event["task"], {"calls": 0, "input": 0, "output": 0})
        task["calls"] += 1
        task["input"] += event.get("input_tokens", 0)
        task["output"] += event.get("output_tokens", 0)
        retries += event.get("retries", 0)
    back = worker.events("provider.available")
    return {
        "tokens_by_task": by_task,
        "sdk_retries": retries,
        "outages": len(worker.events("provider.unavailable")),
        "outage_s": round(sum(e.get("duration_ms", 0) for e in back) / 1000, 1),
    }


# --- reporting ----------------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """The run's headline: wall, extraction, requests and 429s, bound by the limits."""
    ledger = run["ledger"]
    by_task = ledger.get("by_task", {})
    limits = Limits(**run["limits"])
    requests = sum(by_task.values())
    extraction = run.get("tokens_by_task", {}).get("extract_facts", {})
    bounds = lower_bound_s(
        requests=extraction.get("calls", by_task.get("extract_facts", 0)),
        input_tokens=extraction.get("input", ledger["input_tokens"]),
        limits=limits,
        latency=run["latency_s"],
        concurrency=run["concurrency"],
    )
    extract_s = run["steps_s"].get("extract_facts") or 0.0
    # Batched requests (LLM_MODE=batch) are billed at half and exempt from the per-minute limits:
    # with none made in realtime, no limit bounds extraction and there is no bound to be over.
    batch = ledger.get("batch", {})
    batch_in, batch_out = batch.get("input_tokens", 0), batch.get("output_tokens", 0)
    bound_s = max(bounds.values())
    price = price_for(bench_settings())
    usd = (ledger["input_tokens"] * price.input + ledger["output_tokens"] * price.output) / 1e6
    usd += (batch_in * price.input + batch_out * price.output) / 1e6 * BATCH_DISCOUNT
    pass_s = run["job_s"] or run["wall_s"]
    return {
        "pass_s": pass_s,
        "wall_s": run["wall_s"],
        "extract_s": extract_s,
        "extract_input_tokens": extraction.get("input"),
        "chunk_s": run["steps_s"].get("chunk_conversations"),
        "requests": requests,
        "extract_requests": by_task.get("extract_facts", 0)
        + batch.get("by_task", {}).get("extract_facts", 0),
        "throttled": ledger.get("by_outcome", {}).get("throttled", 0),
        "input_tokens": ledger["input_tokens"] + batch_in,
        "output_tokens": ledger["output_tokens"] + batch_out,
        "usd": round(usd, 2),
        "excerpts": ledger.get("excerpts", 0),
        "bound_s": round(bound_s, 1),
        "bound_by": max(bounds, key=bounds.__getitem__),
        "extract_over_bound": round(extract_s / bound_s, 2) if bound_s else None,
        "outages": run.get("outages"),
        "outage_s": run.get("outage_s"),
        "batch_requests": batch.get("requests", 0),
    }


def _print_header() -> None:
    print(
        "| export | mode | limits | C | pass | extract_facts | its bound | extract / bound "
        "| extraction requests | 429s | breaker openings | input tokens (all calls) | status |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def _print_row(run: dict[str, Any]) -> None:
    s = run["summary"]
    over = s["extract_over_bound"]
    bound = "—" if over is None else f"{_minutes(s['bound_s'])} ({s['bound_by']})"
    print(
        f"| {run['export']} | {run['mode']} | {run['tier']} | {run['concurrency']} | "
        f"**{_minutes(s['pass_s'])}** | {_minutes(s['extract_s'])} | "
        f"{bound} | {'—' if over is None else over} | "
        f"{s['extract_requests']:,} | {s['throttled']:,} | {s['outages']} | "
        f"{s['input_tokens']:,} | {run['status']} |",
        flush=True,
    )


def predict(path: Path, *, latency: float) -> dict[str, Any]:
    """Requests and input tokens a pass over `path` would make (no call), and the bounds."""
    settings = bench_settings()
    est = estimate_extraction(
        iter_conversations(path, settings=settings),
        settings=settings,
        user_id=USER_ID,
        answer=offline_answers(),
    )
    print(f"{path}: {est.requests:,} extraction requests, {est.input_tokens:,} input tokens")
    bounds = {}
    for key in ("1", "2"):
        for concurrency in (3, 10):
            b = lower_bound_s(
                requests=est.requests,
                input_tokens=est.input_tokens,
                limits=TIERS[key],
                latency=latency,
                concurrency=concurrency,
            )
            bounds[f"tier {key}, C={concurrency}"] = {k: round(v / 60, 1) for k, v in b.items()}
            print(
                f"tier {key}, C={concurrency}: "
                + ", ".join(f"{k} {v / 60:.1f} min" for k, v in b.items())
            )
    return {
        "export": str(path),
        "requests": est.requests,
        "input_tokens": est.input_tokens,
        "bounds_min": bounds,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.time_to_complete", description=__doc__)
    add = parser.add_argument
    add("--size-mb", type=float, default=10)
    add("--shape", choices=SHAPES, default="default")
    add("--path", type=Path, help="an export to run instead of a generated one")
    add("--tier", default="1", help="comma-separated: 1, 2, none or RPM:ITPM:OTPM")
    add("--concurrency", default="3,10", help="FACT_EXTRACTION_CONCURRENCY values")
    add("--latency", type=float, default=2.5, help="mean seconds per reply")
    add("--jitter", type=float, default=0.4, help="± fraction of the latency")
    add("--mode", choices=("realtime", "batch"), default="realtime")
    add("--batch-processing", type=float, default=60.0, help="seconds until a batch ends")
    add("--request-tokens", type=int, help="EXTRACTION_REQUEST_TOKENS (default: the setting's)")
    add("--runs", type=int, default=1, help="runs per case (the median is reported)")
    add("--timeout", type=float, default=6 * 3600)
    add("--quick", action="store_true", help="5 MB, no limits, 0.05 s: a check that it runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_logs()
    if argv and argv[0] == "report":
        _print_header()
        for name in argv[1:]:
            for run in json.loads(Path(name).read_text())["runs"]:
                run["summary"] = summarise(run)
                _print_row(run)
        return 0
    if argv and argv[0] == "predict":
        sub = argparse.ArgumentParser(prog="python -m bench.time_to_complete predict")
        sub.add_argument("export", type=Path)
        sub.add_argument("--latency", type=float, default=2.5)
        args = sub.parse_args(argv[1:])
        result = predict(args.export, latency=args.latency)
        _write("ttc-predict", result)
        return 0
    args = _parser().parse_args(argv)
    if args.quick:
        args.size_mb, args.tier, args.concurrency, args.latency = 5, "none", "3", 0.05
    export = args.path or ensure_export(args.size_mb, shape=args.shape)
    print(f"machine: {machine()}\nexport: {export} ({export.stat().st_size / 2**20:.1f} MiB)")
    _print_header()
    results = []
    ok = True
    for tier in args.tier.split(","):
        limits = parse_tier(tier.strip())
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            runs = []
            for n in range(args.runs):
                run = run_pass(
                    export,
                    concurrency=concurrency,
                    limits=limits,
                    latency=args.latency,
                    jitter=args.jitter,
                    mode=args.mode,
                    batch_processing=args.batch_processing,
                    request_tokens=args.request_tokens,
                    timeout=args.timeout,
                    seed=n,
                    log_dir=OUT_DIR if OUT_DIR.is_dir() else None,
                )
                run["summary"] = summarise(run)
                ok = ok and run["status"] == "complete"
                runs.append(run)
            run = sorted(runs, key=lambda r: r["summary"]["pass_s"])[len(runs) // 2]
            run["passes_s"] = [r["summary"]["pass_s"] for r in runs]
            _print_row(run)
            if args.mode == "batch" and not run["summary"]["batch_requests"]:
                print("  (no batch was made: this build has no batch mode yet)")
            results.append(run)
    _write(
        "ttc", {"machine": machine(), "args": vars(args) | {"path": str(export)}, "runs": results}
    )
    return 0 if ok else 1


def _write(prefix: str, result: dict[str, Any]) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"{prefix}-{int(time.time())}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written {out}")


if __name__ == "__main__":
    sys.exit(main())
