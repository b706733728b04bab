"""Paying once: the fact cache across a re-run and a re-export, through the real full pass.

    python -m bench.pay_once [--size-mb 10] [--growth 0.1] [--concurrency 10] [--quick]

Three full passes (`run_full_pass`, as the JobRunner calls it) on one `LocalStore`, with the real
`AnthropicLLM` against the simulator (subprocess, no latency): (1) the generated export, (2) the
same export again, (3) a re-export with `growth` more data: the generator with the same seed and a
larger size yields the very same conversations first, then new ones (it draws conversations from
one seeded stream), which is what a later export of a still-active account looks like.

Excerpts extracted and requests per run come from the job row (`stats.counts.extract_facts`:
`extracted`, `calls`) and from the simulator's ledger (requests by task). The excerpts to
extract in run 3 are counted independently: chunks of the re-export whose content hash was not
in the first export and that carry words of the user's, plus the user-signal batches that
changed; they are packed into requests like any uncached chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from app.adapters.local_store import LocalStore
from app.domain import UserSignal
from app.processors.extraction.text import build_extraction_text, signal_batches
from app.processors.reading.chunking import chunk_as_configured
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
from bench.full_pass import close_all, extract_counts, make_llm, run_job

__all__ = ["export_census", "main"]


def export_census(path: Path) -> dict[str, Any]:
    """Conversations, chunk hashes (and which make a call), signal batches of an export."""
    settings = bench_settings()
    conversations: list[str] = []
    hashes: dict[str, bool] = {}
    signals: list[UserSignal] = []
    for conversation in iter_conversations(path, settings=settings):
        conversations.append(conversation.id)
        signals.extend(conversation.signals)
        for chunk in chunk_as_configured(conversation, user_id=USER_ID, settings=settings):
            hashes[chunk.content_hash] = bool(build_extraction_text(chunk))
    batches = {tuple((s.kind, s.text) for s in b) for b in signal_batches(signals)}
    return {"conversations": conversations, "hashes": hashes, "signal_batches": batches}


async def _runs(old: Path, new: Path, *, concurrency: int) -> list[dict[str, Any]]:
    results = []
    with (
        simulator_process() as url,
        tempfile.TemporaryDirectory(prefix="bench-pay-once-") as data_dir,
    ):
        settings = bench_settings(
            anthropic_api_key="sk-sim",
            anthropic_base_url=url,
            local_data_dir=Path(data_dir),
            fact_extraction_concurrency=concurrency,
        )
        store = LocalStore(Path(data_dir))
        llm = make_llm("sim", settings)
        try:
            before: dict[str, int] = {}
            runs = (
                ("first", old, False),
                ("re-sent (skipped: unchanged export)", old, False),
                ("re-run with force (fact cache)", old, True),
                ("re-export", new, False),
            )
            for label, export, force in runs:
                run = await run_job(store, export=export, llm=llm, settings=settings, force=force)
                by_task = sim_ledger(url)["by_task"]
                delta = {k: v - before.get(k, 0) for k, v in by_task.items()}
                before = dict(by_task)
                counts = extract_counts(run["stats"])
                results.append(
                    {
                        "run": label,
                        "export": export.name,
                        "wall_s": run["wall_s"],
                        "chunks": counts.get("chunks"),
                        "cached": counts.get("cached"),
                        "calls": counts.get("calls"),
                        "extracted": counts.get("extracted"),
                        "failed": counts.get("failed"),
                        "sim_requests_by_task": delta,
                    }
                )
        finally:
            await close_all([llm])
            await store.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=float, default=10)
    parser.add_argument("--growth", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="a 1 MB export")
    args = parser.parse_args()
    if args.quick:
        args.size_mb = 1
    quiet_logs()
    size_new = round(args.size_mb * (1 + args.growth), 3)
    old = ensure_export(args.size_mb)
    new = ensure_export(size_new, name=f"export-{args.size_mb:g}mb-grown-{size_new:g}mb.json")
    a, b = export_census(old), export_census(new)
    kept = b["conversations"][: len(a["conversations"])] == a["conversations"]
    new_conversations = len(b["conversations"]) - len(a["conversations"])
    new_hashes = {h: calls for h, calls in b["hashes"].items() if h not in a["hashes"]}
    expected = sum(new_hashes.values()) + len(b["signal_batches"] - a["signal_batches"])
    print(f"machine: {machine()}")
    print(
        f"first export {old.name}: {len(a['conversations'])} conversations, "
        f"{len(a['hashes'])} chunks; re-export {new.name}: {len(b['conversations'])} "
        f"conversations (+{new_conversations}, {new_conversations / len(a['conversations']):.1%}; "
        f"old ones first and unchanged: {kept}), {len(b['hashes'])} chunks, "
        f"{len(new_hashes)} new ({sum(new_hashes.values())} with user words), changed signal "
        f"batches {len(b['signal_batches'] - a['signal_batches'])} → expected excerpts to "
        f"extract {expected} (packed into requests)"
    )
    results = asyncio.run(_runs(old, new, concurrency=args.concurrency))
    print(
        "| run | export | chunks | cache hits | excerpts extracted | extraction requests "
        "| simulator requests | wall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['export']} | {r['chunks']} | {r['cached']} | {r['extracted']} | "
            f"{r['calls']} | "
            f"{r['sim_requests_by_task']} | {r['wall_s']} s |"
        )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"pay-once-{int(time.time())}.json"
    summary = {"machine": machine(), "expected_excerpts_re_export": expected, "runs": results}
    out.write_text(json.dumps(summary, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
