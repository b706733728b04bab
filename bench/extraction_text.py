"""What share of an export's message text extraction sends to the model (docs/EXTRACTION.md).

    python -m bench.extraction_text --size-mb 20          # the generated export, seed 7

Reads the export with `iter_conversations`, chunks each conversation as an import does and sums,
over the chunks: all message text (`len` of every message's text: what the earlier design sent),
the user's turns alone, and `len(build_extraction_text(chunk))` — what the model reads now
(the current layout, `EXTRACTOR_VERSION`), split into the user's turns as sent (long code folded,
turns past `LONG_TURN_CHARS` cut to head and tail) and the assistant context before short
answers. Characters, not tokens; chunks with none of the user's words make no request.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from app.processors.extraction.text import EXTRACTOR_VERSION, build_extraction_text
from app.processors.reading.chunking import chunk_as_configured
from app.processors.reading.export_reader import iter_conversations
from bench.common import OUT_DIR, USER_ID, bench_settings, ensure_export, machine, quiet_logs

__all__ = ["main", "measure"]

_CONTEXT = "Assistant (context): "


def measure(path: Path) -> dict[str, Any]:
    """Characters of the export's messages, of the user's turns, and of what is sent."""
    settings = bench_settings()
    totals = {"conversations": 0, "chunks": 0, "chunks_without_user_words": 0}
    chars = {"all": 0, "user": 0, "sent": 0, "context": 0}
    for conversation in iter_conversations(path, settings=settings):
        totals["conversations"] += 1
        for chunk in chunk_as_configured(conversation, user_id=USER_ID, settings=settings):
            totals["chunks"] += 1
            chars["all"] += sum(len(m.text) for m in chunk.messages)
            chars["user"] += sum(len(m.text) for m in chunk.messages if m.role == "user")
            text = build_extraction_text(chunk)
            if not text:
                totals["chunks_without_user_words"] += 1
            chars["sent"] += len(text)
            chars["context"] += sum(
                len(block) for block in text.split("\n\n") if block.startswith(_CONTEXT)
            )
    return {"export": str(path), "layout": EXTRACTOR_VERSION, **totals, "chars": chars}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.extraction_text", description=__doc__)
    parser.add_argument("--size-mb", type=float, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    quiet_logs()
    result = measure(ensure_export(args.size_mb, seed=args.seed))
    c = result["chars"]
    print(f"machine: {machine()}\n{result['export']}: {result['conversations']:,} conversations,")
    print(
        f"{result['chunks']:,} chunks, {result['chunks_without_user_words']:,} without words of "
        f"the user's; layout {result['layout']}"
    )
    print("| text | chars | share of all message text |\n|---|---|---|")
    rows = (
        ("all message text", c["all"]),
        ("user turns only", c["user"]),
        ("sent: user turns as sent (code and long turns folded)", c["sent"] - c["context"]),
        ("sent: assistant context before short answers", c["context"]),
        (f"sent in all ({result['layout'].split('-')[0]})", c["sent"]),
    )
    for label, n in rows:
        print(f"| {label} | {n:,} | {n / c['all']:.1%} |")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"extraction-text-{int(time.time())}.json"
    out.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
