from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from app.domain import Chunk, Fact, FactCategory, Message, UserSignal
from app.errors import LLMBadOutput, LLMFatal, LLMRefused, LLMUnavailable, PipelineError
from app.ports import Excerpt, ExtractionRequest
from app.pricing import ModelPrice
from app.processors.extraction.stage import extract_facts
from app.processors.extraction.text import EXTRACTOR_VERSION, build_extraction_text
from app.processors.ledger import CostLedger
from app.processors.prompts import PROMPT_VERSION
from tests.support.fakes import CountingStore, ScriptedLLM

PRICE = ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1)
USER = "00000000-0000-0000-0000-000000000001"


def make_chunk(
    i: int, *, user: str | None = None, assistant: str = "Where do you live?", conv: str = ""
) -> Chunk:
    messages = (
        Message("assistant", assistant),
        Message("user", user if user is not None else f"I live in city number {i}."),
    )
    content = "\n".join(f"{m.role}: {m.text}" for m in messages)
    return Chunk(
        id=f"chunk-{i}",
        conversation_id=conv or f"conv-{i}",
        title=f"title {i}",
        created_at=datetime(2024, 1, 1 + i % 28, tzinfo=UTC),
        index=0,
        content=content,
        message_count=2,
        content_hash=hashlib.sha256(content.encode()).hexdigest(),
        token_estimate=len(content) // 4,
        messages=messages,
    )


async def stream(chunks: Sequence[Chunk], delay: float = 0.0) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        if delay:
            await asyncio.sleep(delay)
        yield chunk


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path)


async def run(
    chunks: Sequence[Chunk],
    llm: ScriptedLLM,
    store: CountingStore,
    *,
    concurrency: int = 3,
    ratio: float = 0.1,
    signals: Sequence[UserSignal] = (),
    ledger: CostLedger | None = None,
    found: list[Fact] | None = None,
    request_tokens: int = 1,
):  # type: ignore[no-untyped-def]
    """One excerpt a request unless `request_tokens` packs more (its own tests below)."""
    return await extract_facts(
        stream(chunks),
        user_id=USER,
        signals=signals,
        llm=llm,
        store=store,
        concurrency=concurrency,
        max_failure_ratio=ratio,
        ledger=ledger or CostLedger(PRICE, "fake", "fake-model"),
        sink=found.extend if found is not None else None,
        request_tokens=request_tokens,
    )


# --- what goes to the model ------------------------------------------------------------------


def test_text_keeps_user_words_and_only_the_tail_of_the_assistant() -> None:
    long_answer = "Intro sentence. " * 100 + "So, which city do you live in?"
    chunk = make_chunk(1, user="Berlin, since 2019.", assistant=long_answer)
    text = build_extraction_text(chunk, assistant_context_chars=60)
    assert "User: Berlin, since 2019." in text
    context = text.split("\n\n")[0]
    assert context.startswith("Assistant (context): …")
    assert context.endswith("which city do you live in?")
    assert len(context) <= len("Assistant (context): …") + 60


def test_chunk_without_user_words_produces_no_text() -> None:
    assert build_extraction_text(make_chunk(1, user="   ")) == ""


def test_long_code_pasted_by_the_user_is_folded() -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(200))
    chunk = make_chunk(1, user=f"My script:\n```python\n{code}\n```\nWhy is it slow?")
    text = build_extraction_text(chunk)
    assert "lines of code in all" in text
    assert "x199 = 199" not in text
    assert "Why is it slow?" in text


def test_extractor_version_includes_the_prompt_version() -> None:
    assert EXTRACTOR_VERSION.endswith(PROMPT_VERSION)


# --- concurrency, cache, streaming -----------------------------------------------------------


async def test_concurrency_never_exceeds_the_limit(store: CountingStore) -> None:
    llm = ScriptedLLM(latency=0.01)
    found: list[Fact] = []
    out = await run([make_chunk(i) for i in range(40)], llm, store, concurrency=4, found=found)
    assert llm.max_in_flight == 4
    assert out.calls == llm.calls["extract_facts"] == 40
    assert out.concurrency == 4
    assert out.facts_found == len(found) == 40


async def test_rerun_is_answered_by_the_cache(store: CountingStore) -> None:
    chunks = [make_chunk(i) for i in range(30)]
    first_llm, second_llm = ScriptedLLM(), ScriptedLLM()
    first_facts: list[Fact] = []
    second_facts: list[Fact] = []
    await run(chunks, first_llm, store, found=first_facts)
    ledger = CostLedger(PRICE, "fake", "fake-model")
    second = await run(chunks, second_llm, store, ledger=ledger, found=second_facts)
    assert first_llm.calls["extract_facts"] == 30
    assert second_llm.calls["extract_facts"] == 0
    assert second.chunks_cached == 30
    assert second_facts == first_facts  # same facts, same order
    assert ledger.step("extract_facts").cache_hits == 30


async def test_facts_carry_the_provenance_of_each_chunk(store: CountingStore) -> None:
    twin_a = make_chunk(1, user="I have two cats.", conv="conv-a")
    twin_b = make_chunk(2, user="I have two cats.", conv="conv-b")
    llm = ScriptedLLM(latency=0.01)
    found: list[Fact] = []
    await run([twin_a, twin_b], llm, store, found=found)
    assert llm.calls["extract_facts"] == 1  # same content: paid once
    assert {(f.conversation_id, f.date) for f in found} == {
        ("conv-a", date(2024, 1, 2)),
        ("conv-b", date(2024, 1, 3)),
    }


async def test_extraction_starts_while_chunks_are_still_streaming(store: CountingStore) -> None:
    produced: list[int] = []
    seen_at_first_call: list[int] = []

    def extract(excerpt: Excerpt) -> list[Fact]:
        if not seen_at_first_call:
            seen_at_first_call.append(len(produced))
        return []

    async def slow() -> AsyncIterator[Chunk]:
        for i in range(10):
            await asyncio.sleep(0.005)
            produced.append(i)
            yield make_chunk(i)

    await extract_facts(
        slow(),
        user_id=USER,
        signals=(),
        llm=ScriptedLLM(extract=extract),
        store=store,
        concurrency=3,
        max_failure_ratio=0.1,
        ledger=CostLedger(PRICE, "fake", "fake-model"),
        request_tokens=1,
    )
    assert seen_at_first_call[0] < 10


async def test_signals_become_facts_once(store: CountingStore) -> None:
    signals = [
        UserSignal("custom_instructions", "I am a nurse in Leeds.", "conv-1"),
        UserSignal("bio", "User has a dog named Rex.", "conv-2"),
    ]
    llm = ScriptedLLM(extract=lambda r: [Fact(FactCategory.ABOUT_ME, s.text) for s in r.signals])
    found: list[Fact] = []
    out = await run([make_chunk(1, user="   ")], llm, store, signals=signals, found=found)
    assert llm.calls["extract_facts"] == 1
    assert out.chunks_skipped == 1
    assert out.signal_batches == 1
    assert [f.text for f in found] == [s.text for s in signals]
    assert all(f.from_signal for f in found)
    again = ScriptedLLM()
    await run([], again, store, signals=signals)
    assert again.calls["extract_facts"] == 0


# --- failure policy --------------------------------------------------------------------------


async def test_fatal_error_stops_at_once(store: CountingStore) -> None:
    llm = ScriptedLLM(extract=lambda r: LLMFatal("bad key"), latency=0.005)
    with pytest.raises(LLMFatal):
        await run([make_chunk(i) for i in range(100)], llm, store, concurrency=5)
    assert llm.calls["extract_facts"] <= 5


async def test_work_done_before_a_fatal_error_is_cached(store: CountingStore) -> None:
    def extract(excerpt: Excerpt) -> list[Fact] | Exception:
        return LLMFatal("no credit") if excerpt.chunk_id == "chunk-6" else []

    with pytest.raises(LLMFatal):
        await run(
            [make_chunk(i) for i in range(20)], ScriptedLLM(extract=extract), store, concurrency=1
        )
    assert len(store.hashes_written) == 6


async def test_partial_failures_are_counted_not_fatal(store: CountingStore) -> None:
    def extract(excerpt: Excerpt) -> list[Fact] | Exception:
        return LLMRefused("no") if excerpt.chunk_id == "chunk-3" else []

    ledger = CostLedger(PRICE, "fake", "fake-model")
    out = await run(
        [make_chunk(i) for i in range(20)], ScriptedLLM(extract=extract), store, ledger=ledger
    )
    assert out.chunks_failed == 1
    assert out.chunks_extracted == 19
    assert out.failures_by_kind == {"refused": 1}
    assert ledger.step("extract_facts").failures == {"refused": 1}


async def test_unusable_replies_are_asked_again_then_counted_as_failed(
    store: CountingStore,
) -> None:
    answers: dict[str, list[Any]] = {
        "chunk-1": [LLMBadOutput("x"), []],  # unusable once: asked again, fine
        "chunk-2": [LLMBadOutput("x"), LLMBadOutput("x")],
        "chunk-3": [LLMRefused("no")],
    }

    def extract(excerpt: Excerpt) -> list[Fact] | Exception:
        script = answers.get(excerpt.chunk_id, [[]])
        value: list[Fact] | Exception = script.pop(0) if len(script) > 1 else script[0]
        return value

    llm = ScriptedLLM(extract=extract)
    with pytest.raises(PipelineError) as caught:
        await run([make_chunk(i) for i in range(10)], llm, store)
    assert caught.value.message == (
        "2 of 10 chunks failed (1 bad output, 1 refused); above the 10% limit — retry the job later"
    )
    assert llm.calls["extract_facts"] == 10 + 2  # chunks 1 and 2 were asked twice
    assert len(store.hashes_written) == 8  # the chunks that worked are not paid for again


async def test_a_chunk_the_provider_did_not_answer_is_never_dropped(store: CountingStore) -> None:
    """Without the breaker to wait it out, an unanswered chunk fails the step, retryably."""

    def extract(excerpt: Excerpt) -> list[Fact] | Exception:
        if excerpt.chunk_id == "chunk-4":
            return LLMUnavailable("429", reason="rate limited")
        return []

    with pytest.raises(LLMUnavailable) as caught:
        await run([make_chunk(i) for i in range(20)], ScriptedLLM(extract=extract), store)
    assert caught.value.message.startswith(
        "1 of 20 chunks could not be extracted because the provider did not answer (1 rate limited)"
    )
    assert caught.value.reason == "rate limited"
    assert len(store.hashes_written) == 19


async def test_sustained_rate_limiting_backs_off_to_one_in_flight(store: CountingStore) -> None:
    llm = ScriptedLLM(extract=lambda r: LLMUnavailable("429", reason="rate limited"), latency=0.002)
    with pytest.raises(LLMUnavailable, match="40 of 40 chunks could not be extracted"):
        await run([make_chunk(i) for i in range(40)], llm, store, concurrency=8, ratio=1.0)
    assert max(llm.in_flight_log[:8]) == 8
    assert set(llm.in_flight_log[-10:]) == {1}


def test_no_context_unless_the_assistant_asked_and_the_user_was_brief() -> None:
    statement = make_chunk(1, user="Make it shorter.", assistant="Here is the summary you wanted.")
    assert build_extraction_text(statement) == "User: Make it shorter."
    long_turn = "I run a bakery in Leeds and want a plan for the winter. " * 10
    asked = make_chunk(2, user=long_turn, assistant="Anything else?")
    assert "Assistant (context)" not in build_extraction_text(asked)


async def test_each_result_reaches_the_cache_before_the_stream_ends(store: CountingStore) -> None:
    """A crash must lose only the calls in flight: results are written through, not batched."""
    first = [make_chunk(i) for i in range(3)]
    release = asyncio.Event()

    async def held_open() -> AsyncIterator[Chunk]:
        for chunk in first:
            yield chunk
        await release.wait()  # the export is still streaming…
        yield make_chunk(99)

    extraction = asyncio.create_task(
        extract_facts(
            held_open(),
            user_id=USER,
            signals=(),
            llm=ScriptedLLM(),
            store=store,
            concurrency=3,
            max_failure_ratio=0.1,
            ledger=CostLedger(PRICE, "fake", "fake-model"),
            pack_wait_s=0.05,  # the three go as one request once the stream pauses
        )
    )
    hashes = [chunk.content_hash for chunk in first]
    cached: dict[str, list[Fact]] = {}
    for _ in range(200):
        cached = await store.get_cached_facts(
            user_id=USER, extractor_version=EXTRACTOR_VERSION, content_hashes=hashes
        )
        if len(cached) == len(hashes):
            break
        await asyncio.sleep(0.01)
    release.set()
    outcome = await extraction
    assert sorted(cached) == sorted(hashes)
    assert outcome.chunks_extracted == 4


async def test_results_wait_for_a_slow_earlier_call_only_up_to_a_bound(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Facts go to the sink in stream order; behind a slow call, at most REORDER_LIMIT results
    wait before new calls stop starting — memory stays bounded while one call hangs."""
    monkeypatch.setattr("app.processors.extraction.requests.REORDER_LIMIT", 5)
    release = asyncio.Event()
    started_while_held: list[str] = []

    class HeadHeld(ScriptedLLM):
        async def extract_facts(self, request: ExtractionRequest):  # type: ignore[no-untyped-def]
            chunk_id = request.excerpts[0].chunk_id
            if chunk_id == "chunk-0":
                asyncio.get_running_loop().call_later(0.2, release.set)
                await release.wait()
            elif not release.is_set():
                started_while_held.append(chunk_id)
            return await super().extract_facts(request)

    found: list[Fact] = []
    await extract_facts(
        stream([make_chunk(i) for i in range(60)]),
        user_id=USER,
        signals=(),
        llm=HeadHeld(),
        store=store,
        concurrency=3,
        max_failure_ratio=0.1,
        ledger=CostLedger(PRICE, "fake", "fake-model"),
        lookup_batch=4,
        sink=found.extend,
        request_tokens=1,
    )
    assert [f.conversation_id for f in found] == [f"conv-{i}" for i in range(60)]
    assert 5 <= len(started_while_held) <= 5 + 4 + 3  # limit + one lookup batch + slots
