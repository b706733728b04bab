"""The real SDK's `messages.batches` against the simulator's Message Batches endpoints.

Params are built as the adapter builds them (reduce: a forced tool; MEMORY: markdown; a probe),
so a succeeded result is checked against what `/v1/messages` answers for the same params.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types.messages import MessageBatch

from app.domain import Fact, FactCategory
from app.ports import MemoryRequest, ReduceRequest
from app.processors import prompts
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator

MODEL = "claude-haiku-4-5-20251001"
KEY = "sk-sim-batch"


def reduce_params(n: int) -> dict[str, Any]:
    tool = prompts.tool_for("reduce_facts")
    assert tool is not None
    facts = tuple(f"The user's friend number {i} is called Person{i}." for i in range(n))
    request = ReduceRequest(category=FactCategory.PEOPLE, facts=facts, target_count=2)
    return {
        "model": MODEL,
        "max_tokens": 512,
        "system": prompts.REDUCE_SYSTEM,
        "messages": [{"role": "user", "content": prompts.reduce_message(request)}],
        "tools": [tool.param()],
        "tool_choice": {"type": "tool", "name": tool.name},
    }


def memory_params() -> dict[str, Any]:
    fact = Fact(category=FactCategory.PROJECTS, text="The user builds a boat.")
    return {
        "model": MODEL,
        "max_tokens": 2048,
        "system": prompts.MEMORY_SYSTEM,
        "messages": [
            {"role": "user", "content": prompts.memory_message(MemoryRequest(facts=(fact,)))}
        ],
    }


def probe_params() -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    settings = {"valid_keys": frozenset({KEY}), "batch_processing_s": 0.3}
    config = SimulatorConfig(**(settings | getattr(request, "param", {})))
    with running_simulator(config) as sim:
        yield sim


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with simulator.sdk(KEY) as sdk:
        yield sdk


async def ended(client: anthropic.AsyncAnthropic, batch_id: str) -> MessageBatch:
    deadline = time.monotonic() + 10
    while (batch := await client.messages.batches.retrieve(batch_id)).processing_status != "ended":
        assert time.monotonic() < deadline, batch
        await asyncio.sleep(0.05)
    return batch


async def test_create_poll_and_read_results_with_the_sdk(
    simulator: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    requests: list[Any] = [
        {"custom_id": "reduce-1", "params": reduce_params(6)},
        {"custom_id": "memory-1", "params": memory_params()},
        {"custom_id": "probe-1", "params": probe_params()},
    ]
    created = await client.messages.batches.create(requests=requests)
    assert created.type == "message_batch"
    assert created.processing_status == "in_progress"
    assert created.request_counts.processing == 3
    assert (created.ended_at, created.results_url, created.cancel_initiated_at) == (None,) * 3
    assert created.expires_at - created.created_at == timedelta(hours=24)

    await asyncio.sleep(0.2)  # most requests are done inside; the API shows none until the end
    early = await client.messages.batches.retrieve(created.id)
    assert early.processing_status == "in_progress"
    assert early.request_counts.processing == 3
    assert early.request_counts.succeeded == 0

    batch = await ended(client, created.id)
    assert batch.request_counts.succeeded == 3
    assert batch.request_counts.processing == 0
    assert batch.ended_at is not None
    assert batch.ended_at - batch.created_at >= timedelta(seconds=0.3)
    assert batch.results_url == f"{simulator.base_url}/v1/messages/batches/{batch.id}/results"

    results = {r.custom_id: r.result async for r in await client.messages.batches.results(batch.id)}
    assert set(results) == {"reduce-1", "memory-1", "probe-1"}
    assert all(r.type == "succeeded" for r in results.values())
    reduce, memory, probe = (results[k] for k in ("reduce-1", "memory-1", "probe-1"))
    assert reduce.type == memory.type == probe.type == "succeeded"
    assert reduce.message.content[0].type == "tool_use"
    assert memory.message.content[0].type == "text"
    assert "## Projects" in memory.message.content[0].text
    assert probe.message.usage.output_tokens == 1

    ledger = simulator.ledger()
    assert ledger["requests"] == 0, "batch requests are not realtime requests"
    assert ledger["batch"]["batches"] == 1
    assert ledger["batch"]["requests"] == 3
    assert ledger["batch"]["by_result"] == {"succeeded": 3}
    assert ledger["batch"]["by_task"] == {"reduce_facts": 1, "write_memory": 1, "probe": 1}
    billed = sum(r.message.usage.input_tokens for r in results.values() if r.type == "succeeded")
    assert ledger["batch"]["input_tokens"] == billed


async def test_a_succeeded_request_is_what_the_messages_endpoint_answers(
    client: anthropic.AsyncAnthropic,
) -> None:
    params = reduce_params(9)
    realtime = await client.messages.create(**params)
    batch = await client.messages.batches.create(requests=[{"custom_id": "r", "params": params}])
    await ended(client, batch.id)
    [line] = [r async for r in await client.messages.batches.results(batch.id)]
    assert line.result.type == "succeeded"
    message = line.result.message
    assert message.model_dump(exclude={"id", "content"}) == realtime.model_dump(
        exclude={"id", "content"}
    )
    assert [b.model_dump(exclude={"id"}) for b in message.content] == [
        b.model_dump(exclude={"id"}) for b in realtime.content
    ]


@pytest.mark.parametrize(
    "simulator", [{"batch_rate_errored": 0.25, "batch_rate_expired": 0.15}], indirect=True
)
async def test_errors_expiry_scripted_outcomes_and_order(
    simulator: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    simulator.script_batch(
        {
            "s-invalid": "invalid_request",
            "s-cut": "truncated",
            "s-err": "errored",
            "s-exp": "expired",
        }
    )
    ids = [f"p-{i:02d}" for i in range(40)]
    requests: list[Any] = [{"custom_id": i, "params": probe_params()} for i in ids]
    requests += [{"custom_id": s, "params": reduce_params(3)} for s in ("s-cut", "s-err", "s-exp")]
    requests += [
        {"custom_id": "s-invalid", "params": probe_params()},
        {"custom_id": "bad-params", "params": {"model": MODEL, "max_tokens": 5}},
    ]
    batch = await ended(client, (await client.messages.batches.create(requests=requests)).id)
    lines = [r async for r in await client.messages.batches.results(batch.id)]
    results = {r.custom_id: r.result for r in lines}

    assert results["s-invalid"].type == results["s-err"].type == results["bad-params"].type
    for custom_id, kind in [
        ("s-invalid", "invalid_request_error"),
        ("s-err", "api_error"),
        ("bad-params", "invalid_request_error"),
    ]:
        result = results[custom_id]
        assert result.type == "errored"
        assert result.error.error.type == kind
    assert results["s-exp"].type == "expired"
    cut = results["s-cut"]
    assert cut.type == "succeeded"
    assert cut.message.stop_reason == "max_tokens"

    counts = batch.request_counts.model_dump()
    drawn = [results[i].type for i in ids]
    assert {"succeeded", "errored", "expired"} <= set(drawn), "the rates are applied"
    ledger = simulator.ledger()["batch"]
    assert ledger["by_result"] == {k: v for k, v in counts.items() if v}
    assert sum(counts.values()) == len(requests) == ledger["requests"]
    succeeded = [r for r in results.values() if r.type == "succeeded"]
    assert ledger["output_tokens"] == sum(r.message.usage.output_tokens for r in succeeded)
    answered = [r.custom_id for r in lines if r.custom_id in ids and r.result.type != "expired"]
    assert answered != sorted(answered), "results come in completion order, not request order"

    again = await client.messages.batches.create(
        requests=[{"custom_id": "s-err", "params": probe_params()}]
    )
    [retry] = [
        r async for r in await client.messages.batches.results((await ended(client, again.id)).id)
    ]
    assert retry.result.type == "succeeded", "a scripted outcome is used once"


@pytest.mark.parametrize(
    "simulator", [{"batch_processing_s": 60.0, "batch_cancel_s": 0.2}], indirect=True
)
async def test_cancel_then_delete(simulator: Simulator, client: anthropic.AsyncAnthropic) -> None:
    requests: list[Any] = [{"custom_id": f"c{i}", "params": probe_params()} for i in range(5)]
    batch = await client.messages.batches.create(requests=requests)
    with pytest.raises(anthropic.BadRequestError, match="in progress"):
        await client.messages.batches.delete(batch.id)

    canceling = await client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    done = await ended(client, batch.id)
    assert done.request_counts.canceled == 5
    assert done.ended_at is not None
    assert done.ended_at - canceling.cancel_initiated_at >= timedelta(seconds=0.2)
    results = [r async for r in await client.messages.batches.results(batch.id)]
    assert {r.result.type for r in results} == {"canceled"}
    assert simulator.ledger()["batch"]["by_result"] == {"canceled": 5}
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        await client.messages.batches.cancel(batch.id)

    deleted = await client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve(batch.id)


@pytest.mark.parametrize(
    "simulator", [{"batch_processing_s": 1.0, "batch_counts_advance": True}], indirect=True
)
async def test_counts_advance_for_any_client_that_polls(
    simulator: Simulator, client: anthropic.AsyncAnthropic
) -> None:
    requests: list[Any] = [{"custom_id": f"a{i}", "params": probe_params()} for i in range(20)]
    batch_id = (await client.messages.batches.create(requests=requests)).id
    seen = set()
    async with (
        anthropic.AsyncAnthropic(api_key=KEY, base_url=simulator.base_url) as other,
        httpx.AsyncClient(base_url=simulator.base_url, headers={"x-api-key": KEY}) as raw,
    ):
        while (batch := await other.messages.batches.retrieve(batch_id)).ended_at is None:
            seen.add(batch.request_counts.succeeded)
            await asyncio.sleep(0.05)
        assert batch.request_counts.succeeded == 20
        assert len(seen - {0, 20}) >= 3, f"counts moved while in progress: {sorted(seen)}"
        assert batch.results_url is not None
        response = await raw.get(batch.results_url)
    assert response.status_code == 200
    assert len(response.text.splitlines()) == 20


async def test_list_pages_newest_first(client: anthropic.AsyncAnthropic) -> None:
    ids = []
    for n in range(3):
        batch = await client.messages.batches.create(
            requests=[{"custom_id": f"l{n}", "params": probe_params()}]
        )
        ids.append(batch.id)
    page = await client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[:0:-1]
    assert page.has_more
    assert [b.id async for b in await client.messages.batches.list(limit=2)] == ids[::-1]
