"""The provider breaker (app/breaker.py): calls wait out an unavailable provider and are made
again; one probe at a time, paced; one announcement per outage."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from app.breaker import GuardedLLM, Outage, ProviderBreaker
from app.domain import Fact, FactCategory
from app.errors import LLMBadOutput, LLMFatal, LLMUnavailable
from app.ports import Excerpt, ExtractionRequest, MemoryRequest
from tests.support.fakes import ScriptedLLM


def _request(n: int) -> ExtractionRequest:
    return ExtractionRequest.of(
        Excerpt(chunk_id=f"c{n}", conversation_id="conv", title=None, date=None, text=f"User: {n}")
    )


class _Flaky:
    """Fails every call with `LLMUnavailable` until `back` is set."""

    def __init__(self) -> None:
        self.back = asyncio.Event()
        self.attempts = 0

    def __call__(self, request: object) -> list[Fact] | Exception:
        self.attempts += 1
        if not self.back.is_set():
            return LLMUnavailable("429", reason="rate limited", retry_after=0.05)
        return [Fact(category=FactCategory.ABOUT_ME, text="The user is back.")]


def _guarded(llm: ScriptedLLM, **pacing: float) -> tuple[GuardedLLM, list[Outage | None]]:
    breaker = ProviderBreaker(
        provider="anthropic",
        probe=llm.probe,
        probe_initial_s=pacing.get("initial", 0.02),
        probe_max_s=pacing.get("max", 0.05),
    )
    seen: list[Outage | None] = []

    async def listen(outage: Outage | None) -> None:
        seen.append(outage)

    breaker.subscribe(listen)
    return GuardedLLM(llm, breaker), seen


async def test_calls_wait_for_the_provider_and_none_is_lost() -> None:
    flaky = _Flaky()
    llm = ScriptedLLM(extract=flaky)
    unavailable = LLMUnavailable("529", reason="overloaded")
    llm.probe_script = [unavailable, unavailable, unavailable, None]
    guarded, seen = _guarded(llm)
    calls = [asyncio.create_task(guarded.extract_facts(_request(n))) for n in range(5)]
    await asyncio.sleep(0.03)
    assert guarded.breaker.state == "open"
    assert not any(call.done() for call in calls)
    flaky.back.set()
    replies = await asyncio.wait_for(asyncio.gather(*calls), timeout=5)
    assert [(r.value.facts[0] or [])[0].text for r in replies] == ["The user is back."] * 5
    assert guarded.breaker.state == "closed"
    assert llm.probes == 4  # one probe at a time, until one is answered
    # Announced once when it opened and once when it closed, however many calls waited.
    await asyncio.sleep(0)
    assert len(seen) == 2
    assert seen[0] is not None
    assert seen[0].reason == "rate limited"
    assert seen[1] is None
    await guarded.breaker.aclose()


async def test_no_call_starts_while_open_and_probes_are_paced() -> None:
    flaky = _Flaky()
    llm = ScriptedLLM(extract=flaky)
    llm.probe_script = [LLMUnavailable("529", reason="overloaded", retry_after=0.3), None]
    guarded, _ = _guarded(llm, initial=0.01, max=0.02)
    first = asyncio.create_task(guarded.extract_facts(_request(1)))
    await asyncio.sleep(0.005)
    attempts = flaky.attempts
    waiting = [asyncio.create_task(guarded.extract_facts(_request(n))) for n in range(2, 6)]
    await asyncio.sleep(0.1)
    assert flaky.attempts == attempts  # nothing new went out while the breaker was open
    flaky.back.set()
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(first, *waiting), timeout=5)
    # The second probe waited for the provider's retry-after (0.3 s), not the 0.02 s pacing.
    assert time.monotonic() - started >= 0.15
    assert llm.probes == 2
    await guarded.breaker.aclose()


async def test_a_probe_answered_with_an_error_closes_the_breaker() -> None:
    """A rejected key during an outage: the provider answers, so the breaker closes and the
    next real call meets the error (its job fails for it) instead of waiting forever."""
    calls = {"n": 0}

    def extract(request: object) -> list[Fact] | Exception:
        calls["n"] += 1
        if calls["n"] == 1:
            return LLMUnavailable("503", reason="server error")
        return LLMFatal("401", reason="rejected key")

    llm = ScriptedLLM(extract=extract)
    llm.probe_script = [LLMFatal("401", reason="rejected key")]
    guarded, _ = _guarded(llm)
    with pytest.raises(LLMFatal):
        await asyncio.wait_for(guarded.extract_facts(_request(1)), timeout=5)
    assert guarded.breaker.state == "closed"


async def test_unusable_replies_do_not_open_the_breaker() -> None:
    llm = ScriptedLLM(memory=[LLMBadOutput("not markdown")])
    guarded, seen = _guarded(llm)
    with pytest.raises(LLMBadOutput):
        await guarded.write_memory(MemoryRequest(facts=()))
    assert guarded.breaker.state == "closed"
    assert seen == []


def test_the_note_says_who_why_and_since_when() -> None:
    outage = Outage("anthropic", "rate limited", datetime(2026, 12, 1, 10, 2, 41, tzinfo=UTC))
    assert outage.note() == "waiting for Anthropic: rate limited since 10:02 UTC"
    assert outage.to_json()["since"] == "2026-12-01T10:02:41+00:00"
