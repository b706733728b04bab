from __future__ import annotations

from datetime import date

import pytest

from app.domain import FactCategory
from app.errors import LLMBadOutput, LLMFatal, LLMUnavailable
from app.ports import ReduceRequest
from app.pricing import ModelPrice
from app.processors.composing.consolidation import ConsolidatedFact
from app.processors.composing.reduce import fact_tokens, priority_cut, reduce_facts
from app.processors.ledger import CostLedger
from tests.support.fakes import ScriptedLLM

PRICE = ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1)
CATEGORIES = list(FactCategory)


def facts(n: int) -> list[ConsolidatedFact]:
    return [
        ConsolidatedFact(
            category=CATEGORIES[i % len(CATEGORIES)],
            text=f"The user mentioned detail number {i} about their life in some words.",
            sources=(f"c{i}",),
            first_date=date(2024, 1, 1 + i % 28),
            last_date=date(2024, 1, 1 + i % 28),
            count=1 + i % 3,
            from_signal=i % 50 == 0,
        )
        for i in range(n)
    ]


def ledger() -> CostLedger:
    return CostLedger(PRICE, "fake", "fake-model")


async def test_within_budget_makes_no_call() -> None:
    llm = ScriptedLLM()
    out = await reduce_facts(facts(10), llm=llm, token_budget=10_000, ledger=ledger())
    assert (out.levels, out.calls, out.cut, len(out.facts)) == (0, 0, 0, 10)
    assert llm.calls["reduce_facts"] == 0


async def test_a_shrinking_model_reduces_under_budget() -> None:
    llm = ScriptedLLM(
        reduce=lambda r: [f"Merged {r.category.value} fact {i}." for i in range(r.target_count)]
    )
    start = facts(700)
    budget = fact_tokens(start) // 3
    out = await reduce_facts(start, llm=llm, token_budget=budget, ledger=ledger(), batch_size=50)
    assert fact_tokens(out.facts) <= budget
    assert out.levels >= 1
    assert out.calls == llm.calls["reduce_facts"] > 0
    assert out.cut == 0
    merged = out.facts[0]
    assert len(merged.sources) > 1  # a merged sentence keeps its batch's provenance


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(lambda r: list(r.facts), id="never-shrinks"),
        pytest.param(lambda r: [*r.facts, "One more."], id="grows"),
        pytest.param(lambda r: LLMBadOutput("not JSON"), id="broken-json"),
        pytest.param(lambda r: [], id="empty"),
    ],
)
async def test_reduce_always_terminates_within_budget(behaviour) -> None:  # type: ignore[no-untyped-def]
    llm = ScriptedLLM(reduce=behaviour)
    start = facts(400)
    budget = fact_tokens(start) // 4
    out = await reduce_facts(start, llm=llm, token_budget=budget, ledger=ledger(), max_levels=3)
    assert fact_tokens(out.facts) <= budget
    assert out.cut == len(start) - len(out.facts) > 0
    assert out.levels == 1  # a level that shrinks nothing ends the loop
    assert llm.calls["reduce_facts"] <= 7 * (400 // 60 + 1)


@pytest.mark.parametrize(
    "error", [LLMFatal("bad key"), LLMUnavailable("529", reason="overloaded")], ids=type
)
async def test_fatal_and_unavailable_propagate(error: Exception) -> None:
    """An unavailable provider is waited out, never cut around: reduce does not keep its input
    and carry on when the model did not answer."""
    llm = ScriptedLLM(reduce=lambda r: error)
    with pytest.raises(type(error)):
        await reduce_facts(facts(400), llm=llm, token_budget=1_000, ledger=ledger())


def test_priority_cut_keeps_signals_then_frequency_then_recency() -> None:
    start = facts(200)
    kept = priority_cut(start, fact_tokens(start[:20]))
    assert all(f in kept for f in start if f.from_signal)
    kept_counts = [f.count for f in kept if not f.from_signal]
    assert min(kept_counts) == 3
    assert [start.index(f) for f in kept] == sorted(start.index(f) for f in kept)


async def test_requests_ask_for_half() -> None:
    seen: list[ReduceRequest] = []

    def reduce(r: ReduceRequest) -> list[str]:
        seen.append(r)
        return list(r.facts[: r.target_count])

    await reduce_facts(
        facts(300),
        llm=ScriptedLLM(reduce=reduce),
        token_budget=2_000,
        ledger=ledger(),
        batch_size=20,
    )
    assert seen
    assert all(r.target_count == len(r.facts) // 2 for r in seen)
    assert all(len(r.facts) <= 20 for r in seen)
