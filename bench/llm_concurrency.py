"""Concurrency efficiency and fault tolerance of `extract_facts` against the simulator.

    python -m bench.llm_concurrency [--plan 3:1,10:3,25:3] [--faults] [--quick]

The real `extract_facts` with the real `AnthropicLLM` (the SDK over HTTP, its own retries) against
the Messages-API simulator in a subprocess (latency 1.0 s ± 20 %), a fresh `LocalStore` in a temp
dir for the fact cache each run, N distinct chunks that all make a call (taken from the generated
export), one chunk a request by default (`--request-tokens 1`: the scheduler measured on its own;
a larger budget packs them, as a pass does). Efficiency = ceil(requests / C) × mean latency /
wall time. With `--faults` every clean run is
followed by one at the same concurrency with 10 % 429s (retry-after 1 s) and 2 % 529s: chunks lost,
retries (the SDK's, from each call's `retries_taken`, and the simulator's outcome counts) and the
wall-time overhead against the clean run of the same pair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from app.adapters.anthropic_llm import AnthropicLLM
from app.adapters.local_store import LocalStore
from app.domain import Chunk
from app.processors.extraction.text import build_extraction_text
from bench.common import (
    OUT_DIR,
    bench_settings,
    ensure_export,
    export_chunks,
    machine,
    quiet_logs,
    sim_ledger,
    simulator_process,
)
from bench.full_pass import timed_extraction

__all__ = ["main", "pick_chunks", "run_once"]

FAULTS = {"rate_429": 0.10, "retry_after": 1.0, "rate_529": 0.02}


def pick_chunks(n: int, *, export_mb: float = 6) -> list[Chunk]:
    """The first `n` chunks of the generated export that carry words of the user's (a call each)."""
    settings = bench_settings()
    picked: list[Chunk] = []
    seen: set[str] = set()
    for chunk in export_chunks(ensure_export(export_mb), settings=settings):
        if chunk.content_hash in seen or not build_extraction_text(chunk):
            continue
        seen.add(chunk.content_hash)
        picked.append(chunk)
        if len(picked) == n:
            return picked
    raise SystemExit(f"the {export_mb} MB export has only {len(picked)} usable chunks")


async def run_once(
    chunks: list[Chunk],
    *,
    concurrency: int,
    latency: float,
    jitter: float,
    faults: bool,
    seed: int,
    request_tokens: int = 1,
) -> dict[str, Any]:
    fault_args: dict[str, float] = FAULTS if faults else {}
    with (
        simulator_process(latency=latency, jitter=jitter, seed=seed, **fault_args) as url,
        tempfile.TemporaryDirectory(prefix="bench-llm-") as data_dir,
    ):
        settings = bench_settings(
            anthropic_api_key="sk-sim", anthropic_base_url=url, local_data_dir=Path(data_dir)
        )
        llm = AnthropicLLM.from_settings(settings)
        store = LocalStore(Path(data_dir))
        try:
            outcome, ledger, wall = await timed_extraction(
                chunks,
                llm=llm,
                store=store,
                settings=settings,
                concurrency=concurrency,
                request_tokens=request_tokens,
            )
        finally:
            await llm.aclose()
            await store.aclose()
        sim = sim_ledger(url)
    ideal = math.ceil(outcome.calls / concurrency) * latency
    step = ledger.step("extract_facts")
    return {
        "concurrency": concurrency,
        "faults": faults,
        "seed": seed,
        "chunks": len(chunks),
        "wall_s": round(wall, 2),
        "ideal_s": ideal,
        "efficiency": round(ideal / wall, 3),
        "extracted": outcome.chunks_extracted,
        "failed": outcome.chunks_failed,
        "lost": len(chunks) - outcome.chunks_extracted - outcome.chunks_cached,
        "calls": outcome.calls,
        "sdk_retries": step.retries,
        "sim_requests": sim["requests"],
        "sim_by_outcome": sim["by_outcome"],
    }


def _parse_plan(text: str) -> list[tuple[int, int]]:
    plan = []
    for item in text.split(","):
        c, _, runs = item.partition(":")
        plan.append((int(c), int(runs or 1)))
    return plan


def _row(label: str, runs: list[dict[str, Any]]) -> str:
    wall = statistics.median(r["wall_s"] for r in runs)
    eff = statistics.median(r["efficiency"] for r in runs)
    lost = sum(r["lost"] for r in runs)
    retries = sum(r["sdk_retries"] for r in runs)
    return (
        f"| {label} | {runs[0]['concurrency']} | {len(runs)} | {runs[0]['ideal_s']:g} s | "
        f"{wall:.2f} s | {eff:.3f} | {lost} | {retries} |"
    )


async def _main(args: argparse.Namespace) -> list[dict[str, Any]]:
    chunks = pick_chunks(args.chunks)
    print(f"machine: {machine()}")
    print(f"{len(chunks)} chunks, latency {args.latency} s ± {args.jitter:.0%}")
    print("| case | C | runs | ideal | wall (median) | efficiency | lost | SDK retries |")
    print("|---|---|---|---|---|---|---|---|")
    results: list[dict[str, Any]] = []
    for concurrency, runs in _parse_plan(args.plan):
        clean, faulty = [], []
        for n in range(runs):
            kwargs: dict[str, Any] = {
                "concurrency": concurrency,
                "latency": args.latency,
                "jitter": args.jitter,
                "request_tokens": args.request_tokens,
            }
            clean.append(await run_once(chunks, faults=False, seed=n, **kwargs))
            if args.faults:
                faulty.append(await run_once(chunks, faults=True, seed=n, **kwargs))
        print(_row("clean", clean), flush=True)
        results += clean
        if faulty:
            print(_row("faults", faulty), flush=True)
            overhead = statistics.median(
                f["wall_s"] / c["wall_s"] - 1 for c, f in zip(clean, faulty, strict=True)
            )
            outcomes: dict[str, int] = {}
            for f in faulty:
                for k, v in f["sim_by_outcome"].items():
                    outcomes[k] = outcomes.get(k, 0) + v
            print(
                f"  faults at C={concurrency}: overhead {overhead:+.1%} (median of pairs); "
                f"simulator outcomes over {runs} runs {outcomes}",
                flush=True,
            )
            results += faulty
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--plan", default="3:1,10:3,25:3", help="concurrency:runs,…")
    parser.add_argument("--chunks", type=int, default=300)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--jitter", type=float, default=0.2)
    parser.add_argument("--faults", action="store_true", help="pair each run with a faulty one")
    parser.add_argument(
        "--request-tokens", type=int, default=1, help="EXTRACTION_REQUEST_TOKENS (1: a chunk each)"
    )
    parser.add_argument("--quick", action="store_true", help="60 chunks at 0.2 s, one run each")
    args = parser.parse_args()
    if args.quick:
        args.chunks, args.latency, args.plan = 60, 0.2, "3:1,10:1,25:1"
    quiet_logs()
    results = asyncio.run(_main(args))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"llm-concurrency-{int(time.time())}.json"
    out.write_text(
        json.dumps({"machine": machine(), "args": vars(args), "runs": results}, indent=2)
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
