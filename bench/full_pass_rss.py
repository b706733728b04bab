"""Peak RSS and wall time of a full pass, and whether ingestion and extraction overlap.

    python -m bench.full_pass_rss rss [--size-mb 1024] [--concurrency 50] [--llm sim|offline]
                                      [--latency 0.05] [--delete]
    python -m bench.full_pass_rss overlap [--size-mb 100] [--concurrency 50] [--latency 0.05]
                                          [--runs 3]
    … --quick  (rss: 20 MB; overlap: 10 MB, one run)

Every case runs in a fresh subprocess (`--worker`); peak RSS is that process's VmHWM. The
simulator, when used, is another subprocess: its memory and CPU are not ours.

- `rss`: `run_full_pass` (as the JobRunner calls it) over the generated export on a LocalStore.
- `overlap` (`--llm sim`, or `--llm sleep:SECONDS` for an idle wait without the SDK's CPU):
  three front halves (parse → chunk → save → extract, `ingest_and_extract`) of the
  same export: ingestion alone (`InstantLLM`: every extraction answered at once, no facts),
  extraction alone (`extract_facts` over the export's chunks, read into memory before the clock
  starts, against the simulator), and the two together (the real front half against the
  simulator). Overlap works when together ≈ max(alone), not their sum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.adapters.local_store import LocalStore
from bench.common import (
    OUT_DIR,
    bench_settings,
    ensure_export,
    export_chunks,
    machine,
    peak_rss_mb,
    quiet_logs,
    simulator_process,
)
from bench.full_pass import (
    extract_counts,
    make_llm,
    run_front_half,
    run_job,
    timed_extraction,
)

__all__ = ["main"]

MODES = ("full", "ingest", "extract", "together")


async def _worker(mode: str, export: Path, llm_kind: str, url: str, concurrency: int) -> Any:
    with tempfile.TemporaryDirectory(prefix="bench-full-pass-") as data_dir:
        settings = bench_settings(
            anthropic_api_key="sk-sim" if url else None,
            anthropic_base_url=url or None,
            local_data_dir=Path(data_dir),
            fact_extraction_concurrency=concurrency,
        )
        store = LocalStore(Path(data_dir))
        llm = make_llm(llm_kind, settings)
        try:
            if mode == "full":
                run = await run_job(store, export=export, llm=llm, settings=settings)
                return {
                    "wall_s": run["wall_s"],
                    "durations_ms": run["stats"].get("durations_ms"),
                    "extract": extract_counts(run["stats"]),
                    "consolidate": run["stats"].get("counts", {}).get("consolidate_facts"),
                }
            if mode in ("ingest", "together"):
                return await run_front_half(store, export=export, llm=llm, settings=settings)
            chunks = list(export_chunks(export, settings=settings))
            outcome, _, wall = await timed_extraction(
                chunks, llm=llm, store=store, settings=settings, concurrency=concurrency
            )
            return {"wall_s": round(wall, 2), "chunks": len(chunks), "calls": outcome.calls}
        finally:
            await llm.aclose()
            await store.aclose()


def _run_worker(
    mode: str, export: Path, llm_kind: str, url: str, concurrency: int
) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.full_pass_rss", "--worker", mode, "--export", str(export)]
    args += ["--llm", llm_kind, "--url", url, "--concurrency", str(concurrency)]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _rss(args: argparse.Namespace) -> dict[str, Any]:
    export = ensure_export(args.size_mb)
    print(
        f"machine: {machine()}\nexport: {export} ({export.stat().st_size / 2**20:.0f} MiB), "
        f"concurrency {args.concurrency}, llm {args.llm}"
        + (f" (simulator latency {args.latency} s)" if args.llm == "sim" else "")
    )
    try:
        if args.llm == "sim":
            with simulator_process(latency=args.latency) as url:
                result = _run_worker("full", export, "sim", url, args.concurrency)
        else:
            result = _run_worker("full", export, args.llm, "", args.concurrency)
    finally:
        if args.delete:
            export.unlink()
    print(f"wall {result['wall_s']} s, peak RSS {result['peak_rss_mb']:.1f} MB")
    print(f"steps (ms): {result['durations_ms']}\nextraction: {result['extract']}")
    print(f"consolidation: {result.get('consolidate')}")
    return result


def _overlap(args: argparse.Namespace) -> dict[str, Any]:
    export = ensure_export(args.size_mb)
    print(
        f"machine: {machine()}\nexport: {export}, concurrency {args.concurrency}, llm "
        f"{args.llm} (simulator latency {args.latency} s), {args.runs} run(s) each, medians"
    )
    walls: dict[str, list[float]] = {m: [] for m in ("ingest", "extract", "together")}
    runs: list[dict[str, Any]] = []
    llm = args.llm if args.llm.startswith("sleep:") else "sim"
    with simulator_process(latency=args.latency) as url:
        for _ in range(args.runs):
            for mode in walls:
                kind = "instant" if mode == "ingest" else llm
                result = _run_worker(mode, export, kind, url, args.concurrency)
                walls[mode].append(result["wall_s"])
                runs.append({"mode": mode, **result})
    med = {m: statistics.median(w) for m, w in walls.items()}
    longer, total = max(med["ingest"], med["extract"]), med["ingest"] + med["extract"]
    print("| ingestion alone | extraction alone | together | together / max | together / sum |")
    print("|---|---|---|---|---|")
    print(
        f"| {med['ingest']:.2f} s | {med['extract']:.2f} s | {med['together']:.2f} s | "
        f"{med['together'] / longer:.2f} | {med['together'] / total:.2f} |"
    )
    return {"medians": med, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("what", nargs="?", choices=("rss", "overlap"), default="rss")
    parser.add_argument("--worker", choices=MODES)
    parser.add_argument("--export", type=Path)
    parser.add_argument("--url", default="")
    parser.add_argument("--llm", default="sim", help="sim | offline | instant | facts:N")
    parser.add_argument("--size-mb", type=float)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delete", action="store_true", help="rss: delete the export after")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    if args.worker:
        result = asyncio.run(
            _worker(args.worker, args.export, args.llm, args.url, args.concurrency)
        )
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return
    if args.size_mb is None:
        args.size_mb = (
            (20 if args.what == "rss" else 10)
            if args.quick
            else (1024 if args.what == "rss" else 100)
        )
    if args.quick:
        args.runs = 1
    result = _rss(args) if args.what == "rss" else _overlap(args)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"full-pass-{args.what}-{int(time.time())}.json"
    out.write_text(
        json.dumps({"machine": machine(), "args": vars(args), **result}, indent=2, default=str)
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
