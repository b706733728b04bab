"""Storms in the simulator: the window logic alone, then what the real SDK sees in one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from app.domain import Fact, FactCategory
from app.ports import MemoryRequest
from app.processors import prompts
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator
from tests.support.simulator_storms import Storms

MODEL = "claude-haiku-4-5-20251001"
PING: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 1,
    "messages": [{"role": "user", "content": "ping"}],
}
MEMORY: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 1024,
    "system": prompts.MEMORY_SYSTEM,
    "messages": [
        {
            "role": "user",
            "content": prompts.memory_message(
                MemoryRequest(facts=(Fact(category=FactCategory.PEOPLE, text="Ana is a friend."),))
            ),
        }
    ],
}


class Clock:
    now = 500.0

    def __call__(self) -> float:
        return self.now


def test_a_window_opens_at_its_task_hits_everything_and_closes() -> None:
    clock = Clock()
    storms = Storms(clock=clock)
    storms.start("overloaded", seconds=10, on_task="write_memory")
    assert storms.check({"extract_facts"}, "extract_facts") is None, "armed, not started"
    clock.now += 5
    assert storms.check({"write_memory"}, "write_memory") is not None
    clock.now += 9
    assert storms.check({"extract_facts"}, "extract_facts") is not None
    clock.now += 1
    assert storms.check({"write_memory"}, "write_memory") is None, "10 s after it started"
    storms.start("connection_refused", seconds=None)
    assert storms.refusing() is not None
    clock.now += 3600
    assert storms.check(set(), "batches") is not None, "an outage lasts until cleared"
    storms.clear()
    assert storms.refusing() is None
    assert storms.check(set(), "batches") is None
    first, outage = storms.records()
    assert first["armed_at"] == 500
    assert (first["started_at"], first["ended_at"], first["trigger_task"]) == (
        505,
        515,
        "write_memory",
    )
    assert first["by_task"] == {"write_memory": 1, "extract_facts": 1}
    assert (outage["started_at"], outage["ended_at"], outage["requests"]) == (515, 4115, 1)


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with running_simulator(SimulatorConfig(), control_port=0) as sim:
        yield sim


@pytest.mark.parametrize(
    ("outcome", "error", "status"),
    [
        ("rate_limited", anthropic.RateLimitError, 429),
        ("overloaded", anthropic.OverloadedError, 529),
        ("server_error", anthropic.InternalServerError, 500),
    ],
)
async def test_an_http_storm_answers_every_request_until_it_ends(
    simulator: Simulator, outcome: Any, error: type[anthropic.APIStatusError], status: int
) -> None:
    simulator.storm(outcome, seconds=0.5, retry_after=7)
    async with simulator.sdk() as client:
        with pytest.raises(error) as hit:
            await client.messages.create(**PING)
        assert hit.value.status_code == status
        retry_after = hit.value.response.headers.get("retry-after")
        assert retry_after == ("7" if outcome == "rate_limited" else None)
        await asyncio.sleep(0.5)
        await client.messages.create(**PING)
    ledger = simulator.ledger()
    assert ledger["by_outcome"] == {outcome: 1, "ok": 1}
    [storm] = ledger["storms"]
    assert storm["ended_at"] - storm["started_at"] == pytest.approx(0.5)
    assert storm["by_task"] == {"probe": 1}


async def test_a_storm_armed_on_a_task_starts_at_its_first_request(simulator: Simulator) -> None:
    simulator.storm("overloaded", seconds=30, on_task="write_memory")
    async with simulator.sdk() as client:
        await client.messages.create(**PING)
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(**MEMORY)
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(**PING)
        with pytest.raises(anthropic.OverloadedError):  # batch endpoints too
            await client.messages.batches.list()
    simulator.clear()
    [storm] = simulator.ledger()["storms"]
    assert storm["trigger_task"] == "write_memory"
    assert storm["by_task"] == {"write_memory": 1, "probe": 1, "batches": 1}
    assert storm["ended_at"] - storm["started_at"] < 30, "cleared early"
    assert simulator.ledger()["by_task_outcome"] == {
        "probe": {"ok": 1, "overloaded": 1},
        "write_memory": {"overloaded": 1},
    }


async def test_the_sdk_retries_through_a_short_429_storm(simulator: Simulator) -> None:
    simulator.storm("rate_limited", seconds=0.5, retry_after=0.3)
    async with simulator.sdk(max_retries=4) as client:
        started = time.monotonic()
        raw = await client.messages.with_raw_response.create(**PING)
    assert raw.retries_taken >= 1
    assert time.monotonic() - started >= 0.5


async def test_a_reset_connection_is_a_connection_error(simulator: Simulator) -> None:
    async with simulator.sdk() as client:
        await client.messages.create(**PING)  # a kept-alive connection exists
        simulator.storm("connection_reset", seconds=0.4)
        with pytest.raises(anthropic.APIConnectionError) as hit:
            await client.messages.create(**PING)
        assert "ConnectError" not in type(hit.value.__cause__).__name__
        await asyncio.sleep(0.4)
        await client.messages.create(**PING)
    assert simulator.ledger()["by_outcome"] == {"ok": 2, "connection_reset": 1}


async def test_refused_connections_then_the_port_opens_again(simulator: Simulator) -> None:
    async with simulator.sdk() as client:
        await client.messages.create(**PING)
        simulator.storm("connection_refused", seconds=0.5)
        with pytest.raises(anthropic.APIConnectionError) as hit:
            await client.messages.create(**PING)
        assert type(hit.value.__cause__).__name__ == "ConnectError"
        await asyncio.sleep(0.6)
        await client.messages.create(**PING)


async def test_an_outage_driven_over_http_from_the_control_port(simulator: Simulator) -> None:
    async with (
        httpx.AsyncClient(base_url=simulator.control_url) as control,
        simulator.sdk() as client,
    ):
        bad = await control.post("/control/storm", json={"outcome": "meteor"})
        assert bad.status_code == 400
        started = await control.post(
            "/control/storm", json={"outcome": "connection_refused", "on_task": "write_memory"}
        )
        assert started.json()["seconds"] is None
        await client.messages.create(**PING)
        with pytest.raises(anthropic.APIConnectionError):
            await client.messages.create(**MEMORY)
        with pytest.raises(anthropic.APIConnectionError):
            await client.messages.create(**PING)
        ledger = (await control.get("/ledger")).json()
        assert ledger["storms"][0]["trigger_task"] == "write_memory"
        assert ledger["storms"][0]["ended_at"] is None
        cleared = (await control.post("/control/clear")).json()
        assert cleared["storms"][0]["ended_at"] is not None
        reply = await client.messages.create(**MEMORY)
    assert reply.content[0].type == "text"
