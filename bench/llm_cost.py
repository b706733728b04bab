"""Extraction cost of an export, our way against the earlier design's, by one estimator.

    python -m bench.llm_cost [--size-mb 100 | --path EXPORT] [--output-tokens 250] [--quick]

No API call: every figure is an estimate, by `app.processors.reading.chunking.estimate_tokens`
(ceil(UTF-8 bytes / 4)) applied the same way to both designs in the same run.

- **Ours**: the export read and chunked as an import does (defaults: 1,500-token chunks, no
  overlap, pastes cut at `max_message_chars`); per chunk `build_extraction_text`, and a call only
  when it is not empty; each call's input is the real request: `EXTRACT_SYSTEM` + the
  `record_facts` tool definition + `extraction_message(...)`; plus one call per batch of user
  signals, as `extract_facts` makes them.
- **Earlier design**: all message text (no paste cut), ~2,000-token chunks with 200 of overlap,
  one call per chunk. Its prompt is not known here, so it is given exactly our per-call overhead
  (system prompt + tool + the excerpt wrapper): the comparison is about what is sent, and how
  often, not about prompt wording.

Output tokens cannot be estimated without a model, so two stated assumptions, both the same
for both designs: `--output-tokens` per call (default 250: a short fact list), and the
reservation view (`max_tokens` per call: 1,024 ours, 2,048 earlier), which is what counts
against the per-minute output-token limit and is the upper bound of output cost.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.adapters.anthropic_llm import MAX_TOKENS
from app.config import Settings
from app.domain import UserSignal
from app.ports import ExtractionRequest
from app.pricing import price_for
from app.processors import prompts
from app.processors.extraction.text import build_extraction_text, signal_batches
from app.processors.reading.chunking import chunk_as_configured, chunk_conversation, estimate_tokens
from app.processors.reading.export_reader import iter_conversations
from bench.common import OUT_DIR, USER_ID, bench_settings, ensure_export, machine, quiet_logs

__all__ = ["DesignCost", "earlier_cost", "main", "our_cost"]

EARLIER_TARGET_TOKENS = 2_000
EARLIER_OVERLAP_TOKENS = 200
EARLIER_MAX_TOKENS = 2_048
_NO_CUT = 10**12  # max_message_chars for "all message text"


@dataclass
class DesignCost:
    chunks: int = 0
    calls: int = 0
    skipped: int = 0  # chunks without words of the user's: no call
    text_tokens: int = 0  # excerpt text only
    input_tokens: int = 0  # the whole request
    max_tokens: int = 0

    def usd(self, *, output_per_call: int, settings: Settings) -> dict[str, float]:
        price = price_for(settings)
        inp = self.input_tokens * price.input / 1e6
        return {
            "input": round(inp, 2),
            "with_assumed_output": round(
                inp + self.calls * output_per_call * price.output / 1e6, 2
            ),
            "with_reserved_output": round(
                inp + self.calls * self.max_tokens * price.output / 1e6, 2
            ),
        }


def _overhead() -> int:
    """Tokens of every extraction request besides the message: system prompt + tool."""
    tool = prompts.tool_for("extract_facts")
    assert tool is not None
    return estimate_tokens(prompts.EXTRACT_SYSTEM) + estimate_tokens(json.dumps(tool.param()))


def _group(texts: list[str], budget: int) -> list[str]:
    """Consecutive excerpts of one conversation joined while the result stays within `budget`."""
    groups: list[str] = []
    for text in texts:
        if groups and estimate_tokens(groups[-1]) + estimate_tokens(text) <= budget:
            groups[-1] += "\n\n" + text
        else:
            groups.append(text)
    return groups


def our_cost(path: Path, *, settings: Settings, group_tokens: int | None = None) -> DesignCost:
    """Our requests; with `group_tokens`, the proposal of one call per run of a conversation's
    chunks whose excerpts fit `group_tokens` together (not what extract_facts does today)."""
    cost = DesignCost(max_tokens=MAX_TOKENS["extract_facts"])
    overhead = _overhead()
    signals: list[UserSignal] = []
    for conversation in iter_conversations(path, settings=settings):
        signals.extend(conversation.signals)
        texts: list[str] = []
        for chunk in chunk_as_configured(conversation, user_id=USER_ID, settings=settings):
            cost.chunks += 1
            text = build_extraction_text(chunk)
            if not text:
                cost.skipped += 1
                continue
            texts.append(text)
        for text in _group(texts, group_tokens) if group_tokens else texts:
            request = ExtractionRequest(
                chunk_id="chunk",
                conversation_id=conversation.id,
                title=conversation.title,
                date=conversation.created_at.date() if conversation.created_at else None,
                text=text,
            )
            cost.calls += 1
            cost.text_tokens += estimate_tokens(text)
            cost.input_tokens += overhead + estimate_tokens(prompts.extraction_message(request))
    for batch in signal_batches(signals):
        request = ExtractionRequest(
            chunk_id="signals",
            conversation_id="",
            title="signals",
            date=None,
            text="",
            signals=batch,
        )
        cost.calls += 1
        cost.input_tokens += overhead + estimate_tokens(prompts.extraction_message(request))
    return cost


def earlier_cost(path: Path, *, settings: Settings) -> DesignCost:
    cost = DesignCost(max_tokens=EARLIER_MAX_TOKENS)
    overhead = _overhead()
    uncut = settings.model_copy(update={"max_message_chars": _NO_CUT})
    for conversation in iter_conversations(path, settings=uncut):
        for chunk in chunk_conversation(
            conversation,
            user_id=USER_ID,
            target_tokens=EARLIER_TARGET_TOKENS,
            overlap_tokens=EARLIER_OVERLAP_TOKENS,
            max_message_chars=_NO_CUT,
        ):
            request = ExtractionRequest(
                chunk_id=chunk.id,
                conversation_id=chunk.conversation_id,
                title=chunk.title,
                date=chunk.created_at.date() if chunk.created_at else None,
                text=chunk.content,
            )
            cost.chunks += 1
            cost.calls += 1
            cost.text_tokens += estimate_tokens(chunk.content)
            cost.input_tokens += overhead + estimate_tokens(prompts.extraction_message(request))
    return cost


def _report(path: Path, output_tokens: int, chunk_target: int | None) -> dict[str, Any]:
    settings = bench_settings()
    if chunk_target:
        settings = bench_settings(chunk_target_tokens=chunk_target)
    started = time.perf_counter()
    ours = our_cost(path, settings=settings)
    grouped = our_cost(path, settings=settings, group_tokens=settings.chunk_target_tokens)
    earlier = earlier_cost(path, settings=settings)
    rows = {}
    print(f"machine: {machine()}\nexport: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    print(
        f"our chunks: {settings.chunk_target_tokens} tokens, "
        f"{settings.chunk_overlap_tokens} overlap"
    )
    print(
        f"per-call overhead (system prompt + tool): {_overhead()} tokens; "
        f"assumed output {output_tokens} tokens/call"
    )
    print(
        "| design | chunks | calls | excerpt tokens | input tokens | USD in | "
        f"USD in + {output_tokens} out/call | USD in + max_tokens out |"
    )
    print("|---|---|---|---|---|---|---|---|")
    designs = (("ours", ours), ("earlier", earlier), ("ours, grouped (proposal)", grouped))
    for name, cost in designs:
        usd = cost.usd(output_per_call=output_tokens, settings=settings)
        rows[name] = {**asdict(cost), "usd": usd}
        print(
            f"| {name} | {cost.chunks:,} | {cost.calls:,} | {cost.text_tokens:,} | "
            f"{cost.input_tokens:,} | ${usd['input']} | ${usd['with_assumed_output']} | "
            f"${usd['with_reserved_output']} |"
        )
    ratios = {
        "input_tokens": ours.input_tokens / earlier.input_tokens,
        "excerpt_tokens": ours.text_tokens / earlier.text_tokens,
        "calls": ours.calls / earlier.calls,
        **{
            f"usd_{k}": rows["ours"]["usd"][k] / rows["earlier"]["usd"][k]
            for k in ("input", "with_assumed_output", "with_reserved_output")
        },
    }
    print("ours / earlier: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    proposal = {
        k: rows["ours, grouped (proposal)"]["usd"][k] / rows["earlier"]["usd"][k]
        for k in ("input", "with_assumed_output", "with_reserved_output")
    }
    print("grouped / earlier, USD: " + ", ".join(f"{k} {v:.3f}" for k, v in proposal.items()))
    print(f"({time.perf_counter() - started:.1f} s)")
    return {"export": str(path), "rows": rows, "ratios": ratios, "proposal_ratios": proposal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=float, default=100)
    parser.add_argument("--path", type=Path, help="an export to measure instead of a generated one")
    parser.add_argument("--output-tokens", type=int, default=250)
    parser.add_argument(
        "--chunk-target", type=int, help="our chunk target in tokens (default: the setting's)"
    )
    parser.add_argument("--quick", action="store_true", help="the generated 5 MB export")
    args = parser.parse_args()
    quiet_logs()
    path = args.path or ensure_export(5 if args.quick else args.size_mb)
    result = _report(path, args.output_tokens, args.chunk_target)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"llm-cost-{int(time.time())}.json"
    out.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
