"""Quality per request budget: full passes over a planted-fact export, MEMORY scored.

    python -m bench.quality --budgets 1,2000,4000,8000                    # offline rules
    python -m bench.quality --budgets 1,4000 --provider sim               # the real SDK → simulator
    ANTHROPIC_API_KEY=sk-... python -m bench.quality --budgets 1,4000,8000 --provider anthropic

For each `EXTRACTION_REQUEST_TOKENS` budget, one `run_full_pass` (enqueued, claimed, finished on a
fresh `LocalStore`, as the JobRunner does) over the planted export (`bench.planted`: facts
about one user at known places, half of them stated once early in a long conversation), then
`bench.quality_score.score_memory` on the MEMORY it wrote: recall of the planted facts (and
under their heading), and the share of MEMORY lines that no planted fact and no user statement
of the export supports.

Providers: `offline` (default) the deterministic rules in process; `sim` the real
`AnthropicLLM` and SDK against the Messages-API simulator in a subprocess (which answers through
the same rules: the packed prompt's round trip, ids and all); `anthropic` the real API with the
key and model of the environment (`ANTHROPIC_API_KEY`, `ANTHROPIC_MODEL`) — that one costs money
(about $0.35 a budget at 4,000 on the 10 MB export, ~$1 at budget 1) and is the one that measures
whether a model's attention thins as a request grows. The rules read each excerpt on its own
whatever the request holds, so offline and `sim` runs measure plumbing: that every planted fact
the rules can see still reaches MEMORY, under its heading, at every budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from app.adapters.anthropic_llm import AnthropicLLM
from app.adapters.local_store import LocalStore
from app.adapters.offline_llm import OfflineLLM
from app.config import Settings
from app.ports import LLM
from bench.common import OUT_DIR, USER_ID, bench_settings, machine, quiet_logs, simulator_process
from bench.full_pass import extract_counts, run_job
from bench.planted import write_planted_export
from bench.quality_score import score_memory

__all__ = ["main", "score_budget"]

PROVIDERS = ("offline", "sim", "anthropic")


def _llm(provider: str, settings: Settings) -> LLM:
    if provider == "offline":
        return OfflineLLM()
    return AnthropicLLM.from_settings(settings)


async def score_budget(
    export: Path, manifest: Path, *, settings: Settings, provider: str
) -> dict[str, Any]:
    """One full pass at `settings.extraction_request_tokens`; its MEMORY's score."""
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as data_dir:
        store = LocalStore(Path(data_dir))
        llm = _llm(provider, settings)
        try:
            run = await run_job(store, export=export, llm=llm, settings=settings)
            profile = await store.get_profile(USER_ID)
        finally:
            await llm.aclose()
            await store.aclose()
    memory = (profile or {}).get("memory_md") or ""
    score = score_memory(memory, manifest, export)
    counts = extract_counts(run["stats"])
    return {
        "budget": settings.extraction_request_tokens,
        "provider": provider,
        "model": llm.model,
        "wall_s": run["wall_s"],
        "requests": counts.get("calls"),
        "excerpts": counts.get("extracted"),
        "asked_alone": counts.get("asked_alone"),
        "requests_split": counts.get("requests_split"),
        "facts": counts.get("facts"),
        "memory_chars": len(memory),
        **score,
    }


def _settings(provider: str, budget: int, url: str | None, concurrency: int) -> Settings:
    common: dict[str, Any] = {
        "extraction_request_tokens": budget,
        "fact_extraction_concurrency": concurrency,
    }
    if provider == "sim":
        return bench_settings(anthropic_api_key="sk-sim-quality", anthropic_base_url=url, **common)
    # anthropic: the key and model come from the environment (Settings reads it).
    return bench_settings(**common)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument("--budgets", default="1,2000,4000,8000")
    parser.add_argument("--provider", choices=PROVIDERS, default="offline")
    parser.add_argument("--size-mb", type=float, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--export", type=Path, help="a planted export (its .manifest.json beside)")
    args = parser.parse_args(argv)
    quiet_logs()
    if args.provider == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
        parser.error("--provider anthropic needs ANTHROPIC_API_KEY in the environment")
    suffix = "" if args.seed == 7 else f"-seed{args.seed}"
    export = args.export or OUT_DIR / f"planted-{args.size_mb:g}mb{suffix}.json"
    manifest = export.with_name(export.name + ".manifest.json")
    if not manifest.exists():
        write_planted_export(export, size_mb=args.size_mb, seed=args.seed)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    print(f"machine: {machine()}\nexport: {export}, provider: {args.provider}")
    print(
        "| budget | requests | recalled | under heading | unsupported lines | missed "
        "| MEMORY lines |"
    )
    print("|---|---|---|---|---|---|---|")
    results = []
    with ExitStack() as stack:
        url = stack.enter_context(simulator_process()) if args.provider == "sim" else None
        for budget in budgets:
            settings = _settings(args.provider, budget, url, args.concurrency)
            result = asyncio.run(
                score_budget(export, manifest, settings=settings, provider=args.provider)
            )
            results.append(result)
            print(
                f"| {budget:,} | {result['requests']} | {result['recalled']} / "
                f"{result['planted']} | {result['under_heading']} | {result['unsupported']} / "
                f"{result['lines']} ({result['unsupported_share']:.1%}) | "
                f"{', '.join(result['missed']) or '—'} | {result['lines']} |",
                flush=True,
            )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"quality-{args.provider}-{int(time.time())}.json"
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
