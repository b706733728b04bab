"""FactBook: facts consolidated as they arrive, in bounded memory, the same on every run."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from app.domain import Chunk, Fact, FactCategory, Message
from app.ports import LLMReply
from app.pricing import ModelPrice
from app.processors.composing.consolidation import MAX_SOURCES, FactBook, consolidate
from app.processors.composing.reduce import priority_cut
from app.processors.extraction.stage import extract_facts
from app.processors.ledger import CostLedger
from tests.support.fakes import CountingStore, ScriptedLLM

C = FactCategory
PRICE = ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1)
USER = "00000000-0000-0000-0000-000000000001"
_WORDS = [
    "garden",
    "sister",
    "Lisbon",
    "budget",
    "piano",
    "thesis",
    "Python",
    "coffee",
    "novel",
    "marathon",
    "chess",
]


def fact(text: str, conv: str = "c", day: int | None = 1, **kw: object) -> Fact:
    return Fact(C.ABOUT_ME, text, conv, date(2024, 1, day) if day else None, **kw)  # type: ignore[arg-type]


def chatty(seed: int, n: int) -> list[Fact]:
    """Realistic-looking facts: some repeated, some reworded, most said once."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.choice((3, 4, 6))))
        category = list(C)[rng.randrange(len(C))]
        out.append(
            Fact(category, f"The user likes {words}", f"conv-{i % 97}", date(2024, 1, 1 + i % 28))
        )
    return out


def test_fed_one_by_one_it_gives_what_consolidate_gives() -> None:
    facts = chatty(1, 3_000)
    book = FactBook(limit=100_000)
    for each in sorted(facts, key=lambda f: (f.date is not None, f.date or date.min)):
        book.add(each)
    assert book.groups_pruned == 0
    assert book.facts_in == len(facts)
    assert book.consolidated() == consolidate(facts)


def test_it_never_holds_more_than_its_limit() -> None:
    book = FactBook(limit=200)
    sizes = []
    for i, each in enumerate(chatty(2, 5_000)):
        book.add(each)
        if i % 50 == 0:
            sizes.append(len(book))
    assert max(sizes) <= 200
    assert book.groups_pruned > 0
    assert book.facts_pruned >= book.groups_pruned
    assert sum(f.count for f in book.consolidated()) == book.facts_in - book.facts_pruned


def test_pruning_drops_the_least_likely_survivors_first() -> None:
    book = FactBook(limit=8)
    book.add(fact("I keep bees on the roof.", day=None, from_signal=True))  # once, a signal
    for day in range(1, 4):
        book.add(fact("I live in Leeds.", day=day))
        book.add(fact("I work as a nurse.", day=day))
    for day in range(1, 29):  # said once each, oldest first
        book.add(fact(f"I visited museum number {day} with friends.", day=day))
    kept = {f.text: f for f in book.consolidated()}
    assert len(kept) <= 8
    assert {"I keep bees on the roof.", "I live in Leeds.", "I work as a nurse."} <= set(kept)
    assert kept["I live in Leeds."].count == 3
    once = sorted(f.last_date.day for f in kept.values() if f.count == 1 and f.last_date)
    assert once == list(range(29 - len(once), 29))  # of those said once, the newest


def repeated_and_one_off(seed: int) -> list[Fact]:
    """60 facts said often (the k-th 60 // k times), 4,000 said once, in a random order."""
    rng = random.Random(seed)
    facts = [
        fact(f"The user fact {k} is said often.", conv=f"conv-{k}-{n}", day=1 + n % 28)
        for k in range(1, 61)
        for n in range(max(2, 60 // k))
    ]
    facts += [
        fact(f"The user noted {rng.getrandbits(48):x} once.", day=1 + i % 28) for i in range(4_000)
    ]
    rng.shuffle(facts)
    return facts


def test_what_survives_the_final_cut_is_unchanged_by_pruning() -> None:
    facts = repeated_and_one_off(3)
    unbounded = consolidate(facts)
    bounded = consolidate(facts, limit=1_000)
    assert len(bounded) <= 1_000 < len(unbounded)
    budget = 1_000  # tokens: ~60 facts, far fewer than the bounded book holds
    kept = priority_cut(bounded, budget)
    assert len(kept) > 40
    assert kept == priority_cut(unbounded, budget)


def test_sources_are_capped_but_the_count_is_not() -> None:
    book = FactBook()
    for i in range(50):
        book.add(fact("I live in Leeds.", conv=f"conv-{i}", day=1 + i % 28))
    [only] = book.consolidated()
    assert only.count == 50
    assert only.sources == tuple(f"conv-{i}" for i in range(MAX_SOURCES))


# --- through extraction: the same export always gives the same book ---------------------------


def make_chunk(i: int) -> Chunk:
    messages = (Message("user", f"Tell me about chunk {i}."),)
    content = f"user: chunk {i}"
    return Chunk(
        id=f"chunk-{i}",
        conversation_id=f"conv-{i // 3}",
        title=None,
        created_at=datetime(2024, 1, 1 + i % 28, tzinfo=UTC),
        index=i % 3,
        content=content,
        message_count=1,
        content_hash=hashlib.sha256(content.encode()).hexdigest(),
        token_estimate=5,
        messages=messages,
    )


async def stream(n: int) -> AsyncIterator[Chunk]:
    for i in range(n):
        yield make_chunk(i)


class JitteryLLM(ScriptedLLM):
    """Every call takes a random time (seeded): calls finish in a different order each run."""

    def __init__(self, seed: int) -> None:
        super().__init__(extract=lambda r: chatty(int(r.chunk_id.removeprefix("chunk-")), 6))
        self._delays = random.Random(seed)

    async def _answer(self, task: str, request: Any) -> LLMReply[Any]:
        await asyncio.sleep(self._delays.random() * 0.004)
        return await super()._answer(task, request)


async def book_of_a_run(tmp_path: Path, *, timing_seed: int) -> FactBook:
    llm = JitteryLLM(timing_seed)
    book = FactBook(limit=60)
    await extract_facts(
        stream(150),
        user_id=USER,
        signals=(),
        llm=llm,
        store=CountingStore(tmp_path / f"run-{timing_seed}"),
        concurrency=8,
        max_failure_ratio=0.1,
        ledger=CostLedger(PRICE, "fake", "fake-model"),
        sink=book.add_all,
    )
    return book


async def test_the_same_export_gives_the_same_facts_whatever_order_calls_finish_in(
    tmp_path: Path,
) -> None:
    first = await book_of_a_run(tmp_path, timing_seed=1)
    second = await book_of_a_run(tmp_path, timing_seed=2)
    assert first.groups_pruned > 0  # the cap was hit: pruning, too, must not depend on timing
    assert first.consolidated() == second.consolidated()
