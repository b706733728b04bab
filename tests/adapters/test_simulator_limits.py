"""Per-minute rate limits in the simulator: the token buckets, then the real SDK against them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime

import anthropic
import pytest

from app.adapters.anthropic_llm import AnthropicLLM
from app.errors import LLMRequestTooLarge
from app.ports import SectionsRequest
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator
from tests.support.simulator_limits import RateLimiter

MODEL = "claude-haiku-4-5-20251001"
PING = {"model": MODEL, "messages": [{"role": "user", "content": "ping"}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_requests_refill_continuously_and_a_refusal_takes_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(requests=2, input_tokens=None, output_tokens=None, clock=clock)
    assert limiter.admit(input_tokens=10, max_tokens=10).retry_after == 0
    assert limiter.admit(input_tokens=10, max_tokens=10).retry_after == 0
    assert limiter.admit(input_tokens=10, max_tokens=10).retry_after == 30  # 2 a minute
    clock.now += 29
    assert limiter.admit(input_tokens=10, max_tokens=10).retry_after == 1
    clock.now += 1
    assert limiter.admit(input_tokens=10, max_tokens=10).retry_after == 0
    assert limiter.headers() == {
        "anthropic-ratelimit-requests-limit": "2",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "1970-01-12T13:48:10.000000Z",  # empty: full in 60 s
    }


def test_output_is_reserved_from_max_tokens_then_corrected_to_use() -> None:
    clock = Clock()
    limiter = RateLimiter(requests=None, input_tokens=None, output_tokens=1000, clock=clock)
    first = limiter.admit(input_tokens=1, max_tokens=800)
    assert first.reserved_output == 800
    refused = limiter.admit(input_tokens=1, max_tokens=800)
    assert refused.retry_after == 36  # 600 more at 1000 a minute
    limiter.settle(refused, 0)  # a refusal reserved nothing: nothing comes back
    assert limiter.headers()["anthropic-ratelimit-output-tokens-remaining"] == "200"
    limiter.settle(first, 100)
    assert limiter.headers()["anthropic-ratelimit-output-tokens-remaining"] == "900"
    assert limiter.admit(input_tokens=1, max_tokens=800).retry_after == 0


def test_a_need_beyond_the_whole_limit_is_refused_every_time_and_takes_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(requests=None, input_tokens=100, output_tokens=1000, clock=clock)
    assert limiter.admit(input_tokens=50, max_tokens=1).retry_after == 0
    refused = limiter.admit(input_tokens=500, max_tokens=1)
    assert (refused.oversized, refused.refused_by, refused.limit) == (True, "input-tokens", 100)
    assert refused.retry_after == 30  # until the bucket is full, which will not help
    clock.now += 30
    again = limiter.admit(input_tokens=500, max_tokens=1)
    assert (again.oversized, again.retry_after) == (True, 1)
    headers = limiter.headers()
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == "100", "no debt"
    output = limiter.admit(input_tokens=1, max_tokens=1001)
    assert (output.oversized, output.refused_by, output.limit) == (True, "output-tokens", 1000)
    assert limiter.admit(input_tokens=100, max_tokens=999).retry_after == 0  # exactly fits


def test_an_ordinary_refusal_names_the_bucket_that_waits_longest() -> None:
    clock = Clock()
    limiter = RateLimiter(requests=10, input_tokens=100, output_tokens=None, clock=clock)
    assert limiter.admit(input_tokens=90, max_tokens=1).retry_after == 0
    refused = limiter.admit(input_tokens=60, max_tokens=1)
    assert (refused.refused_by, refused.limit, refused.oversized) == ("input-tokens", 100, False)
    assert refused.retry_after == 30  # 50 more at 100 a minute


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    # "Per minute" on a 2-second clock: 2 requests, refilling one a second.
    settings = {"requests_per_minute": 2, "rate_window_s": 2.0}
    with running_simulator(SimulatorConfig(**(settings | getattr(request, "param", {})))) as sim:
        yield sim


async def test_a_refusal_is_a_429_with_retry_after_and_headers_on_every_response(
    simulator: Simulator,
) -> None:
    async with simulator.sdk() as client:
        raw = await client.messages.with_raw_response.create(max_tokens=1, **PING)
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert raw.headers["anthropic-ratelimit-requests-remaining"] == "1"
        datetime.fromisoformat(raw.headers["anthropic-ratelimit-requests-reset"])
        await client.messages.create(max_tokens=1, **PING)
        with pytest.raises(anthropic.RateLimitError) as refused:
            await client.messages.create(max_tokens=1, **PING)
    headers = refused.value.response.headers
    assert headers["retry-after"] == "1"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert simulator.ledger()["by_outcome"] == {"ok": 2, "throttled": 1}
    assert simulator.ledger()["by_task_outcome"] == {"probe": {"ok": 2, "throttled": 1}}


async def test_the_sdk_waits_the_retry_after_and_gets_through(simulator: Simulator) -> None:
    async with simulator.sdk(max_retries=2) as client:
        for _ in range(2):
            await client.messages.create(max_tokens=1, **PING)
        started = time.monotonic()
        raw = await client.messages.with_raw_response.create(max_tokens=1, **PING)
    assert raw.retries_taken == 1
    assert time.monotonic() - started >= 0.9
    assert simulator.ledger()["by_outcome"] == {"ok": 3, "throttled": 1}


@pytest.mark.parametrize(
    "simulator",
    [{"requests_per_minute": None, "output_tokens_per_minute": 1000, "latency_s": 0.5}],
    indirect=True,
)
async def test_max_tokens_is_held_while_a_request_runs(simulator: Simulator) -> None:
    async with simulator.sdk() as client:
        first = asyncio.create_task(client.messages.create(max_tokens=600, **PING))
        await asyncio.sleep(0.2)
        with pytest.raises(anthropic.RateLimitError):  # 600 + 600 > 1000 while the first runs
            await client.messages.create(max_tokens=600, **PING)
        await first  # it produced 1 token: 599 come back
        raw = await client.messages.with_raw_response.create(max_tokens=600, **PING)
    assert int(raw.headers["anthropic-ratelimit-output-tokens-remaining"]) >= 390
    assert "anthropic-ratelimit-requests-limit" not in raw.headers, "requests are unlimited"


@pytest.mark.parametrize("simulator", [{"requests_per_minute": 1}], indirect=True)
async def test_batches_are_not_subject_to_the_per_minute_limits(simulator: Simulator) -> None:
    async with simulator.sdk() as client:
        await client.messages.create(max_tokens=1, **PING)
        requests = [{"custom_id": f"b{i}", "params": {"max_tokens": 1, **PING}} for i in range(3)]
        batch = await client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while (await client.messages.batches.retrieve(batch.id)).processing_status != "ended":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        results = [r.result.type async for r in await client.messages.batches.results(batch.id)]
        assert results == ["succeeded"] * 3
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(max_tokens=1, **PING)


BIG = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 8_000}]}  # ~2,000 tokens


@pytest.mark.parametrize(
    "simulator", [{"requests_per_minute": None, "input_tokens_per_minute": 1_000}], indirect=True
)
async def test_a_request_larger_than_the_whole_minute_is_refused_every_time(
    simulator: Simulator,
) -> None:
    async with simulator.sdk(max_retries=1) as client:
        with pytest.raises(anthropic.RateLimitError) as refused:
            await client.messages.create(max_tokens=1, **BIG)
        await client.messages.create(max_tokens=1, **PING)  # it took nothing
    headers = refused.value.response.headers
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "1000"
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == "1000"
    assert "of 1,000 input tokens per minute" in refused.value.message
    assert "Please reduce the prompt length" in refused.value.message
    # The plain SDK cannot tell it from a busy minute: it waited and asked again, in vain.
    assert simulator.ledger()["by_outcome"] == {"oversized": 2, "ok": 1}


@pytest.mark.parametrize(
    "simulator", [{"requests_per_minute": None, "input_tokens_per_minute": 1_000}], indirect=True
)
async def test_the_adapter_asks_once_and_says_what_to_set(simulator: Simulator) -> None:
    llm = AnthropicLLM(simulator.sdk(max_retries=4), model=MODEL)
    request = SectionsRequest(conversations="User: tell me more\n" * 400, memory_md="")
    started = time.monotonic()
    with pytest.raises(LLMRequestTooLarge, match="ANTHROPIC_INPUT_TOKENS_PER_MINUTE to 1,000"):
        await llm.write_sections(request)
    elapsed = time.monotonic() - started
    await llm.aclose()
    assert simulator.ledger()["by_task_outcome"] == {"write_sections": {"oversized": 1}}
    assert elapsed < 0.9, "no retry-after wait"
