"""Packed extraction requests (issue 10): consecutive uncached chunks share a request up to a
token budget, each fact keeps its own chunk's provenance, the cache stays per chunk, and a reply
that skips, invents or garbles excerpts is handled without dropping any."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pytest

from app.domain import Chunk, Fact, FactCategory, UserSignal
from app.errors import LLMBadOutput, LLMRefused
from app.ports import Excerpt
from app.processors.extraction.packing import MAX_EXCERPTS_PER_REQUEST, Packer, chunk_unit
from app.processors.extraction.stage import extract_facts
from app.processors.ledger import CostLedger
from tests.processors.test_extraction import PRICE, USER, make_chunk, stream
from tests.support.fakes import CountingStore, ScriptedLLM

C = FactCategory


def _said(excerpt: Excerpt) -> list[Fact]:
    """One fact naming the excerpt's own city, so a fact filed under the wrong chunk shows."""
    city = excerpt.text.rsplit("city number ", 1)[-1].rstrip(".")
    return [Fact(category=C.ABOUT_ME, text=f"The user lives in city {city}.")]


async def _run(
    chunks: Sequence[Chunk],
    llm: ScriptedLLM,
    store: CountingStore,
    *,
    budget: int,
    found: list[Fact] | None = None,
    concurrency: int = 2,
) -> Any:
    return await extract_facts(
        stream(chunks),
        user_id=USER,
        signals=(),
        llm=llm,
        store=store,
        concurrency=concurrency,
        max_failure_ratio=0.5,
        ledger=CostLedger(PRICE, "fake", "fake-model"),
        request_tokens=budget,
        sink=found.extend if found is not None else None,
    )


@pytest.fixture
def store(tmp_path: Any) -> CountingStore:
    return CountingStore(tmp_path)


def test_the_packer_fills_requests_in_order_up_to_the_budget() -> None:
    units = [chunk_unit(make_chunk(i), f"User: I live in city number {i}.") for i in range(10)]
    size = units[0].tokens
    packer = Packer(budget_tokens=size * 3)
    packs = [p for u in units if (p := packer.add(u))] + [packer.flush()]
    assert [len(p) for p in packs] == [3, 3, 3, 1]
    assert [u.key for p in packs for u in p] == [u.key for u in units]
    # A unit larger than the budget goes alone; a tiny one never passes the excerpt limit.
    assert Packer(budget_tokens=1).add(units[0]) is None
    many = Packer(budget_tokens=10**9)
    closed = [p for u in units * 40 if (p := many.add(u))]
    assert [len(p) for p in closed] == [MAX_EXCERPTS_PER_REQUEST, MAX_EXCERPTS_PER_REQUEST]


async def test_chunks_of_many_conversations_share_requests_and_keep_their_provenance(
    store: CountingStore,
) -> None:
    chunks = [make_chunk(i) for i in range(24)]
    llm = ScriptedLLM(extract=_said)
    found: list[Fact] = []
    out = await _run(chunks, llm, store, budget=200, found=found)
    assert 24 / 8 <= out.calls == llm.calls["extract_facts"] < 24
    assert sum(llm.excerpts_per_request) == 24
    assert out.chunks_extracted == 24
    # Every fact is filed under its own chunk: the conversation and date of the city it names.
    by_city = {f.text.split("city ")[1].rstrip("."): f for f in found}
    for i, chunk in enumerate(chunks):
        fact = by_city[str(i)]
        assert fact.conversation_id == chunk.conversation_id
        assert chunk.created_at is not None
        assert fact.date == chunk.created_at.date()


async def test_the_cache_stays_per_chunk_and_a_rerun_packs_only_what_is_new(
    store: CountingStore,
) -> None:
    first = [make_chunk(i) for i in range(0, 24, 2)]
    await _run(first, ScriptedLLM(extract=_said), store, budget=400)
    assert len(store.hashes_written) == 12  # one entry per chunk, not per request
    everything = [make_chunk(i) for i in range(24)]
    again = ScriptedLLM(extract=_said)
    found: list[Fact] = []
    out = await _run(everything, again, store, budget=400, found=found)
    assert out.chunks_cached == 12
    assert sum(again.excerpts_per_request) == 12  # only the 12 new chunks, packed anew
    assert len(found) == 24


async def test_an_excerpt_the_reply_left_out_is_asked_about_alone(store: CountingStore) -> None:
    asked: dict[str, int] = {}

    def extract(excerpt: Excerpt) -> list[Fact] | None:
        asked[excerpt.chunk_id] = asked.get(excerpt.chunk_id, 0) + 1
        if excerpt.chunk_id == "chunk-3" and asked["chunk-3"] == 1:
            return None  # skipped in the packed reply
        return _said(excerpt)

    llm = ScriptedLLM(extract=extract)
    found: list[Fact] = []
    out = await _run([make_chunk(i) for i in range(8)], llm, store, budget=10_000, found=found)
    assert llm.excerpts_per_request == [8, 1]
    assert out.asked_alone == 1
    assert out.chunks_extracted == 8
    assert len(found) == 8


async def test_an_excerpt_left_out_every_time_fails_for_a_recorded_reason(
    store: CountingStore,
) -> None:
    llm = ScriptedLLM(extract=lambda e: None if e.chunk_id == "chunk-2" else _said(e))
    out = await _run([make_chunk(i) for i in range(8)], llm, store, budget=10_000)
    # Packed, then alone, then alone once more: never silently dropped.
    assert llm.excerpts_per_request == [8, 1, 1]
    assert out.chunks_failed == 1
    assert out.failures_by_kind == {"bad output": 1}
    assert out.chunks_extracted == 7


async def test_an_unusable_reply_is_split_and_each_half_asked_again(store: CountingStore) -> None:
    calls = {"n": 0}

    def extract(excerpt: Excerpt) -> list[Fact] | Exception:
        if excerpt.chunk_id == "chunk-0":
            calls["n"] += 1
            if calls["n"] == 1:
                return LLMBadOutput("cut at max_tokens")
        return _said(excerpt)

    llm = ScriptedLLM(extract=extract)
    out = await _run([make_chunk(i) for i in range(8)], llm, store, budget=10_000)
    assert llm.excerpts_per_request == [8, 4, 4]
    assert out.requests_split == 1
    assert out.chunks_extracted == 8
    assert out.chunks_failed == 0


async def test_a_refusal_is_narrowed_down_to_the_excerpt_that_caused_it(
    store: CountingStore,
) -> None:
    llm = ScriptedLLM(extract=lambda e: LLMRefused("no") if e.chunk_id == "chunk-5" else _said(e))
    found: list[Fact] = []
    out = await _run([make_chunk(i) for i in range(8)], llm, store, budget=10_000, found=found)
    assert out.chunks_failed == 1
    assert out.failures_by_kind == {"refused": 1}
    assert out.chunks_extracted == 7
    assert {f.conversation_id for f in found} == {f"conv-{i}" for i in range(8) if i != 5}


async def test_tiny_conversations_cost_a_fraction_of_a_call_each(store: CountingStore) -> None:
    chunks = [make_chunk(i, user=f"Hi, I am {i}.", assistant="Hello!") for i in range(200)]
    llm = ScriptedLLM()
    out = await _run(chunks, llm, store, budget=4_000)
    assert out.chunks_extracted == 200
    assert out.calls <= 200 / 20  # at least twenty one-line conversations a request


async def test_a_stream_that_pauses_sends_the_request_it_was_filling(
    store: CountingStore,
) -> None:
    """A half-filled request waits for more excerpts only so long: the pause does not hold up
    chunks that are ready."""
    import asyncio

    release = asyncio.Event()

    async def paused() -> Any:
        for i in range(3):
            yield make_chunk(i)
        await release.wait()
        yield make_chunk(3)

    llm = ScriptedLLM()
    task = asyncio.create_task(
        extract_facts(
            paused(),
            user_id=USER,
            signals=(),
            llm=llm,
            store=store,
            concurrency=2,
            max_failure_ratio=0.5,
            ledger=CostLedger(PRICE, "fake", "fake-model"),
            request_tokens=10_000,
            pack_wait_s=0.05,
        )
    )
    for _ in range(100):
        if llm.calls["extract_facts"]:
            break
        await asyncio.sleep(0.01)
    assert llm.excerpts_per_request == [3]
    release.set()
    out = await task
    assert llm.excerpts_per_request == [3, 1]
    assert out.chunks_extracted == 4


def test_excerpt_dates_and_ids_are_in_the_prompt() -> None:
    from app.ports import ExtractionRequest
    from app.processors import prompts

    excerpts = [
        Excerpt("a", "c1", "Trip", date(2024, 6, 1), "User: I fly to Oslo."),
        Excerpt("b", "c2", None, None, "User: My dog is Rex."),
    ]
    built = prompts.extraction_message(ExtractionRequest(tuple(excerpts)))
    # Short one-line excerpts are listed, after their ids, a list a day; an undated one after a
    # dated one says so.
    assert '<excerpt_list date="2024-06-01">\n1. User: I fly to Oslo.\n</excerpt_list>' in built
    assert '<excerpt_list date="unknown">\n2. User: My dog is Rex.\n</excerpt_list>' in built
    assert built.endswith("Do not reply to the conversations.")
    assert "every excerpt id from 1 to 2 once" in built


def test_a_block_says_only_what_the_one_before_it_did_not() -> None:
    from app.ports import ExtractionRequest
    from app.processors import prompts

    long = "User: " + "I am planning the route through the fjords. " * 20
    excerpts = [
        Excerpt("a", "c1", "Trip", date(2024, 6, 1), long),
        Excerpt("b", "c1", "Trip", date(2024, 6, 1), long),  # the same conversation, same day
        Excerpt("c", "c2", "Dogs", date(2024, 6, 1), long),  # a new conversation, same day
        Excerpt("d", "c3", "Tea", date(2024, 6, 2), "User: I like tea."),  # short, a new day
        Excerpt("e", "c4", "Cat", date(2024, 6, 2), "User: My cat is Ida."),  # listed with it
        Excerpt("f", "c5", "Sea", date(2024, 6, 2), "User: I swim.\nUser: In the sea."),  # 2 lines
    ]
    request = ExtractionRequest(tuple(excerpts))
    built = prompts.extraction_message(request)
    heads = [line for line in built.splitlines() if line.startswith("<excerpt")]
    assert heads == [
        '<excerpt id="1" date="2024-06-01" title="Trip">',
        '<excerpt id="2">',
        '<excerpt id="3" title="Dogs">',
        '<excerpt_list date="2024-06-02">',
        '<excerpt id="6">',  # short, but two lines: a block of its own
    ]
    assert "\n4. User: I like tea.\n5. User: My cat is Ida.\n</excerpt_list>" in built
    # What the model is told each excerpt's date and text are, read back as the simulator does.
    parsed = prompts.parse_extraction_input(built)
    assert [e.date for e in parsed.excerpts] == [e.date for e in excerpts]
    assert [e.text for e in parsed.excerpts] == [e.text for e in excerpts]
    # A request's size is bounded before it is built: every attribute an excerpt could carry.
    for excerpt, head in zip(excerpts[:3], heads, strict=False):
        assert len(prompts.excerpt_overhead_text(excerpt)) >= len(head + "\n\n</excerpt>\n\n")
    assert prompts.excerpt_overhead_text(excerpts[3]) == "99. \n"  # a listed one: its id


def test_facts_are_capped_per_excerpt_and_a_batch_of_notes_keeps_more() -> None:
    from app.processors import prompts
    from app.processors.extraction.packing import signal_unit

    many = [Fact(category=FactCategory.ABOUT_ME, text=f"Fact {n}.") for n in range(80)]
    chunk = chunk_unit(make_chunk(1), "User: I live in city number 1.")
    notes = signal_unit(
        tuple(UserSignal(kind="bio", text=f"Note {n}.", conversation_id="c") for n in range(30))
    )
    kept = chunk.attach(many)
    assert len(kept) == prompts.MAX_FACTS_PER_CHUNK
    assert [f.text for f in kept] == [f.text for f in many[: len(kept)]]  # the first: the best
    assert not any(f.from_signal for f in kept)
    from_notes = notes.attach(many)
    assert len(from_notes) == 60  # two facts a note: 30 notes
    assert all(f.from_signal for f in from_notes)  # the user's own words, by their block
