from __future__ import annotations

import asyncio

import pytest

from app.ports import LLMCall, LLMUsage
from app.pricing import ModelPrice
from app.processors.ledger import CostLedger

PRICE = ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1)


def call(inp: int, out: int, *, cache_read: int = 0, retries: int = 0) -> LLMCall:
    usage = LLMUsage(input_tokens=inp, output_tokens=out, cache_read_input_tokens=cache_read)
    return LLMCall(task="t", model="m", usage=usage, retries=retries)


def test_per_step_and_total_costs() -> None:
    ledger = CostLedger(PRICE, "anthropic", "claude-haiku-4-5")
    ledger.record("extract_facts", call(1_000_000, 0))
    ledger.record("extract_facts", call(0, 200_000, retries=2))
    ledger.record("generate_memory", call(0, 0, cache_read=1_000_000))
    ledger.record_cache_hits("extract_facts", 7)
    ledger.record_failure("extract_facts", "rate limited")
    extract = ledger.step("extract_facts")
    assert extract.calls == 2
    assert extract.usd == pytest.approx(2.0)
    assert extract.retries == 2
    assert extract.cache_hits == 7
    total = ledger.totals()
    assert total.calls == 3
    assert total.usd == pytest.approx(2.1)
    data = ledger.to_json()
    assert data["provider"] == "anthropic"
    assert data["steps"]["extract_facts"]["failures"] == {"rate limited": 1}
    assert data["total"]["output_tokens"] == 200_000
    assert data["total"]["usd"] == pytest.approx(2.1)


async def test_concurrent_records_are_all_counted() -> None:
    ledger = CostLedger(PRICE, "fake", "m")

    async def worker() -> None:
        for _ in range(100):
            ledger.record("extract_facts", call(10, 1))
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(20)))
    assert ledger.totals().calls == 2_000
    assert ledger.totals().input_tokens == 20_000


def test_a_retry_adds_to_what_earlier_attempts_spent() -> None:
    first = CostLedger(PRICE, "anthropic", "m")
    first.record("extract_facts", call(1_000_000, 100_000))
    assert first.totals().usd == 1.5
    second = CostLedger(PRICE, "anthropic", "m")
    second.carry(first.to_json())
    second.record("extract_facts", call(1_000_000, 100_000))
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
