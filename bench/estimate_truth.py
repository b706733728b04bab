"""Does `inspect` tell the truth? Its estimate against what a simulator run's ledger shows.

    python -m bench.estimate_truth bench/out/export-100mb.json bench/out/export-short-100mb.json \
        bench/out/export-one-message-20000conv.json
    python -m bench.estimate_truth --mode batch EXPORT...      # LLM_MODE=batch: one batch

For each export: `inspect_export` (what `python -m app inspect` prints: calls, input and output
tokens, USD by mode; no call), then a full pass by `python -m app worker` against the simulator
(no latency, no limits, `FACT_EXTRACTION_CONCURRENCY` 10; `bench.time_to_complete.run_pass`),
whose ledger counts the requests it billed and their tokens — realtime at full price, batch
(succeeded requests) at half. Each figure is compared as ledger / estimate; the target is
within ±25 %.

What this checks and what it cannot: the simulator answers through the offline rules and counts
tokens as characters / 4 (tests/support/simulator_wire.py), the estimate as UTF-8 bytes / 4, so
the comparison tests the estimate's *plan* — how many requests packing makes, what each carries,
what MEMORY and v2 add, the offline rules' output — not Anthropic's tokenizer, nor a model's
output, which is larger than the rules' (docs/BENCHMARKS.md, "Cost on every shape").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from app.pricing import BATCH_DISCOUNT, price_for
from app.processors.inspect import inspect_export
from bench.common import OUT_DIR, bench_settings, machine, quiet_logs
from bench.rate_limits import TIERS
from bench.time_to_complete import NO_LIMIT_ITPM, run_pass

__all__ = ["TOLERANCE", "compare", "ledger_totals", "main"]

TOLERANCE = 0.25


def ledger_totals(ledger: dict[str, Any]) -> dict[str, Any]:
    """Billed requests, tokens and USD of a simulator ledger, realtime and batch together."""
    price = price_for(bench_settings())
    batch = ledger.get("batch", {})
    rt_in, rt_out = ledger["input_tokens"], ledger["output_tokens"]
    b_in, b_out = batch.get("input_tokens", 0), batch.get("output_tokens", 0)
    usd = (rt_in * price.input + rt_out * price.output) / 1e6
    usd += (b_in * price.input + b_out * price.output) / 1e6 * BATCH_DISCOUNT
    by_task = dict(ledger.get("by_task", {}))
    for task, n in batch.get("by_task", {}).items():
        by_task[task] = by_task.get(task, 0) + n
    return {
        "calls": sum(by_task.values()),
        "extract_requests": by_task.get("extract_facts", 0),
        "input_tokens": rt_in + b_in,
        "output_tokens": rt_out + b_out,
        "usd": usd,
        "batch_requests": sum(batch.get("by_task", {}).values()),
    }


def compare(estimate: dict[str, Any], ledger: dict[str, Any], *, mode: str) -> dict[str, Any]:
    """Each figure: the estimate, the ledger's, their ratio, and whether it is within ±25 %."""
    est = {
        "calls": estimate["estimated_llm_calls"],
        "extract_requests": estimate["extraction"]["requests"],
        "input_tokens": estimate["estimated_llm_input_tokens"],
        "output_tokens": estimate["estimated_llm_output_tokens"],
        "usd": estimate["estimated_cost_usd_by_mode"][mode],
    }
    seen = ledger_totals(ledger)
    rows = {}
    for key, value in est.items():
        ratio = seen[key] / value if value else float("inf")
        rows[key] = {
            "estimate": value,
            "ledger": seen[key],
            "ratio": round(ratio, 3),
            "within": abs(ratio - 1) <= TOLERANCE,
        }
    return rows


def _fmt(value: float, key: str) -> str:
    return f"${value:.2f}" if key == "usd" else f"{value:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.estimate_truth", description=__doc__)
    parser.add_argument("exports", type=Path, nargs="+")
    parser.add_argument("--mode", choices=("realtime", "batch"), default="realtime")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    quiet_logs()
    print(f"machine: {machine()}")
    print("| export | mode | figure | inspect | simulator ledger | ledger / inspect | ±25 % |")
    print("|---|---|---|---|---|---|---|")
    results, ok = [], True
    for export in args.exports:
        # The worker's settings: with no limits `run_pass` tells it NO_LIMIT_ITPM, which sizes
        # v2's sample; inspect must size it alike.
        settings = bench_settings(
            llm_mode=args.mode, anthropic_input_tokens_per_minute=NO_LIMIT_ITPM
        )
        estimate = inspect_export(export, settings=settings)
        run = run_pass(
            export,
            concurrency=args.concurrency,
            limits=TIERS["none"],
            latency=0.0,
            jitter=0.0,
            mode=args.mode,
            batch_processing=1.0,
        )
        rows = compare(estimate, run["ledger"], mode=args.mode)
        for key, row in rows.items():
            ok = ok and row["within"]
            print(
                f"| {export.name} | {args.mode} | {key} | {_fmt(row['estimate'], key)} | "
                f"{_fmt(row['ledger'], key)} | {row['ratio']:.3f} | "
                f"{'yes' if row['within'] else '**no**'} |",
                flush=True,
            )
        if args.mode == "batch" and not ledger_totals(run["ledger"])["batch_requests"]:
            print("  (no batch was made: this build has no batch mode yet)")
        results.append(
            {
                "export": export.name,
                "mode": args.mode,
                "status": run["status"],
                "rows": rows,
                "inspect": estimate,
                "extract_counts": run["extract_counts"],
                "tokens_by_task": run["tokens_by_task"],
                "ledger": run["ledger"],
            }
        )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"estimate-truth-{int(time.time())}.json"
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2, default=str))
    print(f"written {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
