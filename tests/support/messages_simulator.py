"""A local stand-in for the Anthropic Messages API, good enough for the real SDK.

`POST /v1/messages` answers through an `app.ports.LLM` (the offline provider by default): the task
is recovered from the forced tool's name and its input from the user message with the `parse_*`
helpers of `app.processors.prompts`; the value is wrapped in a reply of the API's shape (tool_use
or text block, stop_reason, usage, `request-id` header). A request with no tool is `write_memory`
when its message holds our `<facts>` block, else a **probe** ("is the API up?", e.g. "ping" with
`max_tokens` 1), answered with a short text and subject to storms, limits and faults like any other.

Faults, by rate or by a scripted sequence consumed first (`push`): 429 with `retry-after`, 529,
500, a response slower than any sane client timeout, a body that is not JSON, a reply cut at
`max_tokens`. Latency is a mean ± a fraction.

**Message Batches** (simulator_batches): `POST /v1/messages/batches`, `GET .../batches[?limit,
after_id, before_id]`, `GET|DELETE .../batches/{id}`, `POST .../{id}/cancel`, `GET .../{id}/results`
(JSONL); state lives here, so any client in any process may poll. Succeeded requests are answered
by the same responder as `/v1/messages` (`_reply`); batch endpoints are not rate limited.

**Rate limits** (simulator_limits): requests, input and output tokens per minute (None = no limit),
output reserved from `max_tokens` then corrected; a refusal is a 429 `rate_limit_error` with
`retry-after`, its message naming the limit as the API's does ("… of 50,000 input tokens per
minute …"); a request larger than a whole limit is refused every time (outcome `oversized`);
`anthropic-ratelimit-*` headers on every `/v1/messages` response.

**Storms** (simulator_storms): `storm(outcome, seconds=, retry_after=, on_task=)` applies one
outcome — `rate_limited`, `overloaded`, `server_error`, `connection_reset` (a TCP RST instead of a
response), `connection_refused` (the port stops listening), or a refusal to bill (`no_credit`: the
API's 400 "credit balance is too low"; `payment_required`: a 402) — to every `/v1` request for
`seconds` (None: an outage, until `clear()`), from now or from the first request of `on_task`.

Control over HTTP, for a simulator in another process: `POST /control/storm {"outcome",
"seconds", "retry_after", "on_task"}`, `POST /control/clear`, `GET /ledger` (also on the optional
`control_port`, which stays open while the main port refuses connections). The ledger
(simulator_ledger) counts realtime requests by outcome and task, batch requests by result, tokens
by mode (only what is billed), inputs answered twice, and the storm windows.

    with running_simulator(SimulatorConfig(latency_s=0.01)) as sim:
        client = sim.sdk()  # or anthropic.AsyncAnthropic(base_url=sim.base_url, ...)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, get_args

import anthropic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.ports import LLM
from app.processors import prompts
from app.processors.prompts.blocks import Tag, one
from tests.support.serving import serving
from tests.support.simulator_batches import BatchOutcome, BatchQueue
from tests.support.simulator_config import FaultDraw, Outcome, SimulatorConfig
from tests.support.simulator_gate import Gate
from tests.support.simulator_ledger import Answer, Ledger
from tests.support.simulator_routes import batch_routes, control_routes
from tests.support.simulator_storms import StormOutcome
from tests.support.simulator_wire import (
    FAULTS,
    ApiError,
    message_object,
    read_json,
    request_id,
    tokens,
)

__all__ = ["Outcome", "Simulator", "SimulatorConfig", "running_simulator"]


class _ResponderError(ApiError):
    """The responder's own bug: a 500 the SDK is told not to retry, visible in the ledger."""


@dataclass(frozen=True)
class _Prepared:
    task: str
    user_text: str
    model: str
    max_tokens: int
    input_tokens: int


class Simulator:
    """The app and its state; `running_simulator` serves it on a free local port."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        llm: LLM | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._llm = llm if llm is not None else _offline_llm()
        self._faults = FaultDraw(config)
        self._ledger = Ledger()
        self.gate = Gate(config, clock=clock)
        self.batches = BatchQueue(
            respond=self._reply,
            ledger=self._ledger,
            settings=config.batch_settings(),
            script=config.batch_script,
            seed=None if config.seed is None else config.seed + 1,
            clock=clock,
        )
        self.base_url = ""
        self.control_url = ""
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                *batch_routes(self.batches, self.gate, task_of=lambda p: _task_and_text(p)[0]),
                *control_routes(self.gate, ledger=self.ledger),
            ]
        )

    def sdk(
        self, api_key: str = "sk-sim", *, max_retries: int = 0, timeout: float = 5.0
    ) -> anthropic.AsyncAnthropic:
        """The real Anthropic SDK pointed at this simulator (served: `base_url` is set)."""
        return anthropic.AsyncAnthropic(
            api_key=api_key, base_url=self.base_url, max_retries=max_retries, timeout=timeout
        )

    # --- control, in process (from any thread but the server's) -------------------------------

    def push(self, *outcomes: Outcome) -> None:
        """Script the next requests' outcomes (before any random fault)."""
        self._faults.push(*outcomes)

    def script_batch(self, outcomes: Mapping[str, BatchOutcome]) -> None:
        """Plan the outcome of batch requests by custom_id (each used by one batch only)."""
        self.batches.script(outcomes)

    def storm(
        self,
        outcome: StormOutcome,
        *,
        seconds: float | None = None,
        retry_after: float = 1.0,
        on_task: str | None = None,
    ) -> None:
        """Apply `outcome` to every request for `seconds` (None: until `clear()`)."""
        self.gate.start_storm(outcome, seconds=seconds, retry_after=retry_after, on_task=on_task)
        self.gate.on_loop(self.gate.sync_listener())

    def clear(self) -> None:
        """End the storm or outage, if any."""
        self.gate.storms.clear()
        self.gate.on_loop(self.gate.sync_listener())

    def ledger(self) -> dict[str, Any]:
        return self._ledger.snapshot(self.gate.storms.records())

    def reset_ledger(self) -> None:
        self._ledger.reset()
        self.gate.storms.reset()

    # --- HTTP: the Messages API -------------------------------------------------------------------

    async def _messages(self, request: Request) -> Response:
        rid, gate = request_id(), self.gate
        try:
            gate.authenticate(request)
            prepared: _Prepared | None = self._prepare(await read_json(request))
            invalid = None
        except ApiError as exc:
            if exc.status == 401:
                self._ledger.realtime(exc.kind)
                return exc.response(rid, gate.limit_headers())
            prepared, invalid = None, exc
        task = prepared.task if prepared is not None else None
        label = task or "unparsed"
        hit = await gate.hit(request, tasks={label}, label=label, request_id=rid)
        if hit is not None:
            self._ledger.realtime(hit[0].outcome, task=task)
            return hit[1]
        if prepared is None or invalid is not None:
            assert invalid is not None
            self._ledger.realtime(invalid.kind)
            return invalid.response(rid, gate.limit_headers())
        admission = gate.admit(input_tokens=prepared.input_tokens, max_tokens=prepared.max_tokens)
        if admission.retry_after:
            self._ledger.realtime("oversized" if admission.oversized else "throttled", task=task)
            return gate.throttled(admission).response(rid, gate.limit_headers())
        outcome = self._faults.outcome()
        if outcome in FAULTS:
            gate.settle(admission, 0)
            self._ledger.realtime(outcome, task=task)
            status, kind, message = FAULTS[outcome]
            retry = {"retry-after": f"{self.config.retry_after_s:g}"}
            return ApiError(status, kind, message, headers=retry).response(
                rid, gate.limit_headers()
            )
        await asyncio.sleep(self._faults.latency(outcome))
        try:
            answer = await self._reply_prepared(prepared, outcome)
        except _ResponderError as exc:
            gate.settle(admission, 0)
            self._ledger.realtime("responder_error", task=task)
            return exc.response(rid, gate.limit_headers())
        gate.settle(admission, answer.output_tokens)
        self._ledger.realtime(outcome, task=task, answer=answer)
        raw = json.dumps(answer.message)
        if outcome == "invalid_json":
            raw = raw[: len(raw) // 2]
        headers = {"request-id": rid, **gate.limit_headers()}
        return Response(raw, media_type="application/json", headers=headers)

    # --- the responder, shared by /v1/messages and batch requests -------------------------------

    async def _reply(self, params: Any, outcome: str) -> Answer:
        """A batch request's answer: what `/v1/messages` would reply to these params."""
        return await self._reply_prepared(self._prepare(params), outcome)

    def _prepare(self, body: Any) -> _Prepared:
        try:
            task, user_text = _task_and_text(body)
            model, max_tokens = str(body["model"]), int(body["max_tokens"])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ApiError(400, "invalid_request_error", f"bad request: {exc}") from exc
        if self.config.models is not None and model not in self.config.models:
            raise ApiError(404, "not_found_error", f"model: {model}")
        input_tokens = tokens(json.dumps(body.get("system", ""))) + tokens(user_text)
        input_tokens += tokens(json.dumps(body.get("tools", [])))
        return _Prepared(task, user_text, model, max_tokens, input_tokens)

    async def _reply_prepared(self, prepared: _Prepared, outcome: str) -> Answer:
        task = prepared.task
        try:
            content, stop_reason = await self._answer(task, prepared.user_text, outcome=outcome)
        except Exception as exc:
            raise _ResponderError(
                500,
                "api_error",
                f"simulator responder failed on {task}: {type(exc).__name__}: {exc}",
                headers={"x-should-retry": "false"},
            ) from exc
        output_tokens = tokens(json.dumps(content))
        if outcome == "truncated":
            output_tokens = prepared.max_tokens
        elif task == "probe":
            output_tokens = 1
        message = message_object(
            prepared.model, content, stop_reason, prepared.input_tokens, output_tokens
        )
        return Answer(task, message, prepared.input_tokens, output_tokens, prepared.user_text)

    async def _answer(
        self, task: str, user_text: str, *, outcome: str
    ) -> tuple[list[dict[str, Any]], str]:
        if task == "probe":
            return [{"type": "text", "text": "pong"}], "end_turn"
        value = await _call(self._llm, task, user_text)
        tool = prompts.tool_for(task)
        if tool is None:
            text = str(value)
            if outcome == "truncated":
                return [{"type": "text", "text": text[: len(text) // 2]}], "max_tokens"
            return [{"type": "text", "text": text}], "end_turn"
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:20]}",
            "name": tool.name,
            "input": {} if outcome == "truncated" else value,
        }
        return [block], "max_tokens" if outcome == "truncated" else "tool_use"


async def _call(llm: LLM, task: str, user_text: str) -> Any:
    """The offline provider's answer, shaped as the tool input the real model would send."""
    if task == "extract_facts":
        result = (await llm.extract_facts(prompts.parse_extraction_input(user_text))).value
        return prompts.extraction_tool_input(result)
    if task == "reduce_facts":
        return {"facts": (await llm.reduce_facts(prompts.parse_reduce_input(user_text))).value}
    if task == "write_sections":
        return (await llm.write_sections(prompts.parse_sections_input(user_text))).value
    return (await llm.write_memory(prompts.parse_memory_input(user_text))).value


def _task_and_text(body: dict[str, Any]) -> tuple[str, str]:
    tools = body.get("tools") or []
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not tools:  # MEMORY replies in markdown; anything else without a tool is a probe
        return ("write_memory" if one(str(content), Tag.FACTS) else "probe"), str(content)
    task = prompts.task_for_tool(tools[0]["name"])
    if task is None:
        raise ValueError(f"unknown tool {tools[0]['name']!r}")
    return task, str(content)


def _offline_llm() -> LLM:
    from app.adapters.offline_llm import OfflineLLM

    return OfflineLLM()


@contextmanager
def running_simulator(
    config: SimulatorConfig | None = None,
    *,
    llm: LLM | None = None,
    port: int = 0,
    control_port: int | None = None,
) -> Iterator[Simulator]:
    """Serve a simulator on 127.0.0.1 (a free port unless given) in a thread; stop it on exit.

    `control_port` (0: a free one) also serves it on a port that a `connection_refused` storm
    leaves open, so `/control/*` and `/ledger` stay reachable; `sim.control_url` names it.
    """
    simulator = Simulator(config or SimulatorConfig(), llm=llm)
    with serving(
        simulator.app, name="messages-simulator", port=port, control_port=control_port
    ) as served:
        simulator.gate.served = served
        simulator.base_url, simulator.control_url = served.base_url, served.control_url
        yield simulator


assert set(get_args(Outcome)) >= set(FAULTS)
