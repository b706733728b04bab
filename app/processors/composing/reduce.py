"""hierarchical_reduce: bring the consolidated facts under the token budget. Always terminates.

1. Within budget: nothing to do (no call).
2. Pre-cut by priority to `precut_factor` × budget, so the cost of reducing is bounded by the
   budget, not by the size of the export.
3. Up to `max_levels` levels: each category's facts, in batches of `batch_size`, go to the model
   asking for half as many sentences. A batch's reply must be smaller (fewer estimated tokens)
   than its input, else it is rejected and the input kept; so does a batch the model could not
   process. `LLMFatal` and `LLMUnavailable` propagate: an unavailable provider is waited out,
   never cut around. A level that shrinks nothing ends the loop.
4. A deterministic cut by priority — user signals first, then how often a fact was seen, then
   recency — down to the budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date

import structlog

from app.domain import FactCategory
from app.errors import LLMError, LLMFatal, LLMUnavailable
from app.ports import LLM, ReduceRequest
from app.processors.composing.consolidation import ConsolidatedFact, normalise_text
from app.processors.ledger import CostLedger

__all__ = [
    "Answers",
    "Asker",
    "ReduceOutcome",
    "fact_tokens",
    "priority_cut",
    "realtime_asker",
    "reduce_facts",
]

STEP = "hierarchical_reduce"
_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReduceOutcome:
    facts: list[ConsolidatedFact]
    levels: int
    calls: int
    cut: int


def fact_tokens(facts: Sequence[ConsolidatedFact] | Sequence[str]) -> int:
    """~4 characters a token, plus a few for the bullet and date each fact is rendered with."""
    return sum((len(f if isinstance(f, str) else f.text) + 3) // 4 + 6 for f in facts)


def _priority(fact: ConsolidatedFact) -> tuple[bool, int, date]:
    return (fact.from_signal, fact.count, fact.last_date or date.min)


def priority_cut(facts: Sequence[ConsolidatedFact], budget: int) -> list[ConsolidatedFact]:
    """The highest-priority facts that fit in `budget` tokens, in their original order."""
    ranked = sorted(range(len(facts)), key=lambda i: _priority(facts[i]), reverse=True)
    keep: set[int] = set()
    used = 0
    for index in ranked:
        cost = fact_tokens([facts[index]])
        if used + cost > budget:
            continue
        keep.add(index)
        used += cost
    return [f for i, f in enumerate(facts) if i in keep]


def _request(batch: list[ConsolidatedFact]) -> ReduceRequest:
    return ReduceRequest(
        category=batch[0].category,
        facts=tuple(f.text for f in batch),
        target_count=max(1, len(batch) // 2),
    )


def _merged(
    category: FactCategory, texts: list[str], batch: list[ConsolidatedFact]
) -> list[ConsolidatedFact]:
    """Sentences of a reduced batch, carrying the provenance of the whole batch."""
    sources = tuple(dict.fromkeys(s for f in batch for s in f.sources))
    firsts = [f.first_date for f in batch if f.first_date]
    lasts = [f.last_date for f in batch if f.last_date]
    return [
        ConsolidatedFact(
            category=category,
            text=normalise_text(text),
            sources=sources,
            first_date=min(firsts) if firsts else None,
            last_date=max(lasts) if lasts else None,
            count=sum(f.count for f in batch),
            from_signal=any(f.from_signal for f in batch),
        )
        for text in texts
    ]


# Asks one level's requests; each answer is the sentences, or None when the request could not
# be answered (the batch is kept as it was). `calls` is what was paid for.
@dataclass(frozen=True, slots=True)
class Answers:
    texts: list[list[str] | None]
    calls: int


Asker = Callable[[list[ReduceRequest]], Awaitable[Answers]]


def realtime_asker(llm: LLM, ledger: CostLedger, *, concurrency: int = 3) -> Asker:
    """Each request a Messages API call, at most `concurrency` at once."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(request: ReduceRequest) -> list[str] | None:
        async with gate:
            try:
                reply = await llm.reduce_facts(request)
            except (LLMFatal, LLMUnavailable):
                raise  # an unavailable provider is waited out (app/breaker.py), never cut around
            except LLMError as exc:
                ledger.record_failure(STEP, type(exc).__name__)
                _log.warning(
                    "reduce.batch_failed", category=request.category.value, error=type(exc).__name__
                )
                return None
        ledger.record(STEP, reply.call)
        return reply.value

    async def ask(requests: list[ReduceRequest]) -> Answers:
        texts = list(await asyncio.gather(*(one(r) for r in requests)))
        return Answers(texts, sum(1 for t in texts if t is not None))

    return ask


def _judged(
    batch: list[ConsolidatedFact], answer: list[str] | None, ledger: CostLedger
) -> list[ConsolidatedFact]:
    """The batch's reduced sentences, or the batch itself when the answer does not shrink it."""
    if answer is None:
        return batch
    category = batch[0].category
    texts = [t for t in (normalise_text(x) for x in answer) if t]
    if not texts or fact_tokens(texts) >= fact_tokens(batch):
        ledger.record_failure(STEP, "did_not_shrink")
        _log.warning("reduce.batch_rejected", category=category.value, size=len(batch))
        return batch
    return _merged(category, texts, batch)


async def reduce_facts(
    facts: list[ConsolidatedFact],
    *,
    llm: LLM,
    token_budget: int,
    ledger: CostLedger,
    max_levels: int = 3,
    batch_size: int = 60,
    precut_factor: float = 4.0,
    concurrency: int = 3,
    ask: Asker | None = None,
) -> ReduceOutcome:
    """Facts within `token_budget`, in category and recency order; see the module docstring.

    `ask` answers each level's requests: by default Messages API calls; the pipeline passes one
    that caches answers and, in batch mode, sends each level as one Message Batch
    (reduce_batches.py)."""
    if fact_tokens(facts) <= token_budget:
        return ReduceOutcome(facts=list(facts), levels=0, calls=0, cut=0)
    current = priority_cut(facts, int(token_budget * precut_factor))
    cut = len(facts) - len(current)
    ask = ask or realtime_asker(llm, ledger, concurrency=concurrency)
    levels = calls = 0
    while levels < max_levels and fact_tokens(current) > token_budget:
        levels += 1
        batches: list[list[ConsolidatedFact]] = []
        for category in FactCategory:
            mine = [f for f in current if f.category is category]
            batches += [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
        batches = [b for b in batches if len(b) > 1]
        answers = await ask([_request(b) for b in batches])
        calls += answers.calls
        reduced = {
            id(b[0]): _judged(b, a, ledger) for b, a in zip(batches, answers.texts, strict=True)
        }
        before = fact_tokens(current)
        rebuilt: list[ConsolidatedFact] = []
        for category in FactCategory:
            mine = [f for f in current if f.category is category]
            for i in range(0, len(mine), batch_size):
                rebuilt += reduced.get(id(mine[i]), mine[i : i + batch_size])
        current = rebuilt
        _log.info("reduce.level", level=levels, tokens_before=before, tokens=fact_tokens(current))
        if fact_tokens(current) >= before:
            break  # nothing shrank: more levels would only spend calls
    if fact_tokens(current) > token_budget:
        kept = priority_cut(current, token_budget)
        cut += len(current) - len(kept)
        current = kept
    return ReduceOutcome(facts=current, levels=levels, calls=calls, cut=cut)
