"""Extraction cost of an export, our way against the earlier design's, by one estimator.

    python -m bench.llm_cost [--size-mb 100 | --path EXPORT] [--shape short] [--quick]
    python -m bench.llm_cost --shape one-message --conversations 20000
    python -m bench.llm_cost --size-mb 100 --budgets 1,2000,8000   # + rows at other request
                                                                    #   budgets (1: one chunk)

No API call: every figure is an estimate. Both designs in the same run, both by
`estimate_tokens` (ceil(UTF-8 bytes / 4)), both output by `bench.cost_model`'s one model.

- **Ours** (`our_design_cost`): the export read and chunked as an import does (1,500-token
  chunks, no overlap, pastes cut at `max_message_chars`); per chunk `build_extraction_text`, no
  excerpt when it is empty; the requests packed as `extract_facts` packs them with an empty
  cache (`app.processors.extraction.plan.plan_requests`, `EXTRACTION_REQUEST_TOKENS` of
  excerpts a request, signals last); each request's input is the real one: `EXTRACT_SYSTEM` +
  the `record_facts` tool definition + `extraction_message(...)`.
- **Earlier design** (`bench.earlier_design.earlier_design_cost`): its own reading, formatting,
  chunking (2,000 tokens by len // 4, 200 of overlap) and request (its prompt, no tool), a call
  per chunk — reproduced from its code, see that module.
- **Output** (`bench.cost_model`): per call the empty reply, plus per fact the fact as the
  design's reply writes it; facts counted by the offline rules over what each call sends.
- **USD**: Haiku 4.5 prices from `app.pricing`; batch = the Message Batches API, half price. The
  earlier design ran realtime only, so "ours batch / earlier" divides by its realtime USD.

Exports are generated into bench/out/ once (`bench.make_export`, seed 7) and reused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from app.config import Settings
from app.pricing import ModelPrice, price_for
from app.processors.extraction.plan import (
    estimate_extraction,
    fixed_request_tokens,
    offline_answers,
)
from app.processors.reading.export_reader import iter_conversations
from app.processors.reading.text import estimate_tokens
from bench.common import OUT_DIR, USER_ID, bench_settings, ensure_export, machine, quiet_logs
from bench.cost_model import OUR_REPLY, DesignCost, ReplyFormat
from bench.earlier_design import earlier_design_cost
from bench.make_export import SHAPES

__all__ = ["main", "our_design_cost", "request_overhead"]


def request_overhead() -> int:
    """Tokens of every extraction request of ours besides its excerpts: system prompt + tool."""
    return fixed_request_tokens()


def our_design_cost(
    path: Path, *, settings: Settings, reply: ReplyFormat = OUR_REPLY
) -> DesignCost:
    """Our extraction requests over the export, packed as `extract_facts` packs them
    (`EXTRACTION_REQUEST_TOKENS` of excerpts a request): `estimate_extraction`, the same
    figures `inspect` shows, output as the reply JSON carrying the offline rules' facts."""
    name = f"ours, packed to {settings.extraction_request_tokens:,} tokens"
    conversations = iter_conversations(path, settings=settings)
    est = estimate_extraction(
        conversations, settings=settings, user_id=USER_ID, answer=offline_answers()
    )
    return DesignCost(
        name=name,
        reply=reply,
        max_tokens=0,
        chunks=est.chunks,
        calls=est.requests,
        excerpts=est.excerpts,
        skipped=est.skipped,
        text_tokens=est.excerpt_tokens,
        input_tokens=est.input_tokens,
        facts=est.facts,
        output_tokens=est.output_tokens,
        reserved_output_tokens=est.reserved_output_tokens,
    )


def _report(path: Path, *, budgets: list[int]) -> dict[str, Any]:
    settings = bench_settings()
    price = price_for(settings)
    started = time.perf_counter()
    designs = [our_design_cost(path, settings=settings), earlier_design_cost(path)]
    budgets = [b for b in dict.fromkeys(budgets) if b != settings.extraction_request_tokens]
    for budget in budgets:
        if budget != settings.extraction_request_tokens:
            other = bench_settings(extraction_request_tokens=budget)
            designs.append(our_design_cost(path, settings=other))
    ours, earlier = designs[0], designs[1]
    print(f"machine: {machine()}\nexport: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    print(
        f"our request overhead (system prompt + tool): {request_overhead()} tokens a call; "
        f"reply skeletons: ours {estimate_tokens(ours.reply.skeleton)}, "
        f"earlier {estimate_tokens(earlier.reply.skeleton)} tokens a call"
    )
    print(
        "| design | chunks | calls | excerpt tokens | input tokens | facts (unpriced) "
        "| output tokens | USD realtime | USD batch |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d in designs:
        print(
            f"| {d.name} | {d.chunks:,} | {d.calls:,} | {d.text_tokens:,} | "
            f"{d.input_tokens:,} | {d.facts:,} ({d.unpriced_facts:,}) | {d.output_tokens:,} | "
            f"${d.usd(price):.2f} | ${d.usd(price, batch=True):.2f} |"
        )
    ratios = {
        "calls": ours.calls / earlier.calls,
        "input_tokens": ours.input_tokens / earlier.input_tokens,
        "output_tokens": ours.output_tokens / earlier.output_tokens,
        "usd_realtime": ours.usd(price) / earlier.usd(price),
        "usd_batch_vs_earlier_realtime": ours.usd(price, batch=True) / earlier.usd(price),
    }
    print("ours / earlier: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    by_budget = _budget_table(designs, [settings.extraction_request_tokens, *budgets], price)
    print(f"({time.perf_counter() - started:.1f} s)")
    return {
        "export": str(path),
        "bytes": path.stat().st_size,
        "designs": [d.as_dict(price) for d in designs],
        "ratios": ratios,
        "by_budget": by_budget,
    }


def _budget_table(
    designs: list[DesignCost], budgets: list[int], price: ModelPrice
) -> list[dict[str, Any]]:
    """Per request budget: calls (and against one chunk a call, when budget 1 was priced) and
    USD against the earlier design's realtime USD. `designs`: ours at the default budget, the
    earlier design, then ours at each other budget in `budgets[1:]` order (duplicates skipped)."""
    earlier = designs[1]
    ours: dict[int, DesignCost] = {budgets[0]: designs[0]}
    rest = iter(designs[2:])
    for budget in budgets[1:]:
        if budget not in ours:
            ours[budget] = next(rest)
    unpacked = ours.get(1)
    base = earlier.usd(price)
    print(
        "| request budget | calls | calls / one chunk a call | input tokens | USD realtime "
        "| USD batch | realtime / earlier | batch / earlier |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for budget in sorted(ours):
        d = ours[budget]
        row = {
            "budget": budget,
            "calls": d.calls,
            "calls_vs_unpacked": d.calls / unpacked.calls if unpacked else None,
            "input_tokens": d.input_tokens,
            "usd_realtime": d.usd(price),
            "usd_batch": d.usd(price, batch=True),
            "realtime_vs_earlier": d.usd(price) / base,
            "batch_vs_earlier": d.usd(price, batch=True) / base,
        }
        rows.append(row)
        vs = f"{row['calls_vs_unpacked']:.3f}" if unpacked else "—"
        print(
            f"| {budget:,} | {d.calls:,} | {vs} | {d.input_tokens:,} | "
            f"${row['usd_realtime']:.2f} | ${row['usd_batch']:.2f} | "
            f"{row['realtime_vs_earlier']:.3f} | {row['batch_vs_earlier']:.3f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=float, default=100)
    parser.add_argument("--shape", choices=SHAPES, default="default")
    parser.add_argument(
        "--conversations", type=int, help="generate this many conversations instead of a size"
    )
    parser.add_argument("--path", type=Path, help="an export to measure instead of a generated one")
    parser.add_argument(
        "--budgets",
        default="",
        help="also price these request budgets, comma-separated tokens (1 = one chunk a call)",
    )
    parser.add_argument("--quick", action="store_true", help="the generated 5 MB export")
    args = parser.parse_args()
    quiet_logs()
    path = args.path or ensure_export(
        5 if args.quick else args.size_mb, shape=args.shape, conversations=args.conversations
    )
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    result = _report(path, budgets=budgets)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"llm-cost-{int(time.time())}.json"
    out.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
