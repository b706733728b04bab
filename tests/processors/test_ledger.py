"""The cost ledger carries what earlier attempts of a job spent: a retried job costs all of its
attempts, not only the last one."""

from __future__ import annotations

from app.ports import LLMCall, LLMUsage
from app.pricing import ModelPrice
from app.processors.ledger import CostLedger

PRICE = ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1)


def _call() -> LLMCall:
    return LLMCall(task="extract_facts", model="m", usage=LLMUsage(1_000_000, 100_000))


def test_a_retry_adds_to_what_earlier_attempts_spent() -> None:
    first = CostLedger(PRICE, "anthropic", "m")
    first.record("extract_facts", _call())
    assert first.totals().usd == 1.5
    second = CostLedger(PRICE, "anthropic", "m")
    second.carry(first.to_json())
    second.record("extract_facts", _call())
    assert second.totals().usd == 3.0
    assert second.totals().calls == 2
    # A third attempt carries the second's total, which already holds the first's: no double count.
    third = CostLedger(PRICE, "anthropic", "m")
    third.carry(second.to_json())
    assert third.totals().usd == 3.0
    assert third.to_json()["steps"]["earlier attempts"]["calls"] == 2


def test_nothing_to_carry_on_a_first_attempt() -> None:
    ledger = CostLedger(PRICE, "anthropic", "m")
    for earlier in (None, {}, {"total": {"calls": 0}}, "junk"):
        ledger.carry(earlier)
    assert ledger.to_json()["steps"] == {}
