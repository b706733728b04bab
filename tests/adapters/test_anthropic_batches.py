"""`AnthropicBatches`: the real SDK's `messages.batches` against the simulator's batch endpoints,
and the breaker over batch calls (`GuardedBatches`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

import anthropic
import pytest

from app.adapters.anthropic_batches import AnthropicBatches
from app.adapters.anthropic_llm import AnthropicLLM
from app.batch_guard import GuardedBatches
from app.batch_port import BatchKind, BatchProgress, BatchRequest, BatchResult
from app.breaker import ProviderBreaker
from app.domain import FactCategory
from app.errors import LLMBadOutput, LLMBatchNotFound, LLMError, LLMUnavailable
from app.ports import ExtractionRequest, ExtractionResult, ReduceRequest
from tests.adapters.test_simulator_sdk import CHUNK
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator

MODEL = "claude-haiku-4-5-20251001"
KEY = "sk-sim-batches"
REDUCE = ReduceRequest(
    category=FactCategory.PEOPLE,
    facts=tuple(f"The user's friend number {i} is called Person{i}." for i in range(6)),
    target_count=3,
)


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(valid_keys=frozenset({KEY}), batch_processing_s=0.3)
    with running_simulator(config) as sim:
        yield sim


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with simulator.sdk(KEY) as sdk:
        yield sdk


async def _ended(api: AnthropicBatches, batch_id: str) -> BatchProgress:
    for _ in range(200):
        progress = await api.retrieve(batch_id)
        if progress.ended:
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError("the batch did not end")


async def _results(
    api: AnthropicBatches, batch_id: str, kind: BatchKind, parts: Mapping[str, int]
) -> dict[str, BatchResult]:
    return {r.custom_id: r async for r in api.results(batch_id, kind=kind, parts=parts)}


async def test_a_batch_asks_and_reads_exactly_what_realtime_does(
    simulator: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    api = AnthropicBatches(client, model=MODEL)
    realtime = AnthropicLLM(client, model=MODEL)
    batch_id = await api.create([BatchRequest("x1", CHUNK)])
    reduce_id = await api.create([BatchRequest("r1", REDUCE)])
    early = await api.retrieve(batch_id)
    assert not early.ended
    assert early.total == 1

    progress = await _ended(api, batch_id)
    assert dict(progress.counts) == {
        "processing": 0,
        "succeeded": 1,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    [extracted] = (await _results(api, batch_id, "extract", {"x1": 2})).values()
    await _ended(api, reduce_id)
    [reduced] = (await _results(api, reduce_id, "reduce", {"r1": 1})).values()

    expected = (await realtime.extract_facts(CHUNK)).value
    assert extracted.kind == "succeeded"
    assert extracted.error is None
    assert isinstance(extracted.value, ExtractionResult)
    assert extracted.value == expected
    assert all(facts for facts in expected.facts), "both excerpts answered"
    assert reduced.value == (await realtime.reduce_facts(REDUCE)).value
    for result, task in ((extracted, "extract_facts"), (reduced, "reduce_facts")):
        assert result.call is not None
        assert (result.call.task, result.call.batch) == (task, True)
        assert result.call.usage.input_tokens > 0
    ledger = simulator.ledger()
    assert ledger["batch"]["batches"] == 2
    assert ledger["batch"]["by_task"] == {"extract_facts": 1, "reduce_facts": 1}
    assert ledger["batch"]["input_tokens"] == sum(
        r.call.usage.input_tokens for r in (extracted, reduced) if r.call is not None
    )


async def test_errored_expired_and_cut_results_say_what_happened(
    simulator: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    simulator.script_batch(
        {"x-err": "errored", "x-bad": "invalid_request", "x-exp": "expired", "x-cut": "truncated"}
    )
    api = AnthropicBatches(client, model=MODEL)
    ids = ("x-err", "x-bad", "x-exp", "x-cut", "x-ok")
    batch_id = await api.create([BatchRequest(i, CHUNK) for i in ids])
    await _ended(api, batch_id)
    results = await _results(api, batch_id, "extract", dict.fromkeys(ids, 2))

    errored = results["x-err"]
    assert errored.kind == "errored"
    assert isinstance(errored.error, LLMUnavailable), "an api_error may pass: asked again"
    assert errored.call is None
    invalid = results["x-bad"]
    assert invalid.kind == "errored"
    assert isinstance(invalid.error, LLMError)
    assert not isinstance(invalid.error, LLMUnavailable), "an invalid request will not pass"
    assert (results["x-exp"].kind, results["x-exp"].error) == ("expired", None)
    cut = results["x-cut"]
    assert cut.kind == "succeeded"
    assert isinstance(cut.error, LLMBadOutput), "billed, but cut at max_tokens: not read"
    assert cut.call is not None
    assert cut.value is None
    assert results["x-ok"].value is not None


async def test_an_unknown_batch_is_not_found_and_cancel_stops_one(
    simulator: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    api = AnthropicBatches(client, model=MODEL)
    with pytest.raises(LLMBatchNotFound, match="msgbatch_nope"):
        await api.retrieve("msgbatch_nope")
    batch_id = await api.create([BatchRequest("c1", REDUCE)])
    await api.cancel(batch_id)
    await _ended(api, batch_id)
    await api.cancel(batch_id)  # already ended: nothing to stop, no error


class _Flaky:
    """Batch calls that fail as an unavailable provider does, then answer."""

    def __init__(self) -> None:
        self.creates = 0
        self.streams = 0

    async def create(self, requests: Sequence[BatchRequest]) -> str:
        self.creates += 1
        if self.creates == 1:
            raise LLMUnavailable("Anthropic overloaded (529)", reason="overloaded")
        return "msgbatch_1"

    async def retrieve(self, batch_id: str) -> BatchProgress:
        return BatchProgress(ended=True, counts={"succeeded": 3})

    async def results(
        self, batch_id: str, *, kind: BatchKind, parts: Mapping[str, int]
    ) -> AsyncIterator[BatchResult]:
        self.streams += 1
        for n in range(3):
            if self.streams == 1 and n == 2:
                raise LLMUnavailable("the connection broke off", reason="cannot connect")
            yield BatchResult(f"x{n}", "expired")

    async def cancel(self, batch_id: str) -> None:
        return None


async def test_the_breaker_waits_out_an_unavailable_batch_api() -> None:
    inner = _Flaky()

    async def probe() -> None:
        return None

    breaker = ProviderBreaker(provider="anthropic", probe=probe, probe_initial_s=0.01)
    api = GuardedBatches(inner, breaker)
    request = BatchRequest("x0", ExtractionRequest(()))
    assert await api.create([request]) == "msgbatch_1"
    assert (inner.creates, breaker.outages) == (2, 1)
    seen = [r.custom_id async for r in api.results("msgbatch_1", kind="extract", parts={})]
    assert seen == ["x0", "x1", "x2"], "the stream started again, nothing handed over twice"
    assert (inner.streams, breaker.outages) == (2, 2)
    await breaker.aclose()
