"""A local stand-in for the Anthropic Messages API, good enough for the real SDK.

`POST /v1/messages` answers through an `app.ports.LLM` (the offline provider by default): the task
is recovered from the forced tool's name (no tool = `write_memory`) and its input from the user
message with the `parse_*` helpers of `app.processors.prompts`; the value is wrapped in a reply of
the API's shape (tool_use or text block, stop_reason, usage, `request-id` header).

Configurable latency (mean ± a fraction) and faults, by rate or by a scripted sequence consumed
first: 429 with `retry-after`, 529, 500, a response slower than any sane client timeout, a body
that is not JSON, a reply cut at `max_tokens`. A ledger counts requests by outcome and tokens
(≈ characters / 4), readable as `Simulator.ledger()` and at `GET /ledger`.

    with running_simulator(SimulatorConfig(latency_s=0.01)) as sim:
        client = anthropic.AsyncAnthropic(api_key="sk-sim", base_url=sim.base_url)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.ports import LLM
from app.processors import prompts
from tests.support.serving import serve_in_thread

__all__ = ["Outcome", "Simulator", "SimulatorConfig", "running_simulator"]

Outcome = Literal[
    "ok", "rate_limited", "overloaded", "server_error", "slow", "invalid_json", "truncated"
]
_ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limited": (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your rate limit",
    ),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "server_error": (500, "api_error", "Internal server error"),
}


@dataclass(frozen=True)
class SimulatorConfig:
    """Latency is `latency_s` ± `jitter` × `latency_s` (uniform); rates are per request, 0–1."""

    latency_s: float = 0.0
    jitter: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_529: float = 0.0
    rate_500: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 30.0
    rate_invalid_json: float = 0.0
    rate_truncated: float = 0.0
    script: tuple[Outcome, ...] = ()
    valid_keys: frozenset[str] | None = None  # None: any non-empty key is accepted
    models: frozenset[str] | None = None  # None: any model name is accepted
    seed: int | None = 0

    def rates(self) -> list[tuple[Outcome, float]]:
        return [
            ("rate_limited", self.rate_429),
            ("overloaded", self.rate_529),
            ("server_error", self.rate_500),
            ("slow", self.rate_slow),
            ("invalid_json", self.rate_invalid_json),
            ("truncated", self.rate_truncated),
        ]


@dataclass
class _Ledger:
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_task: Counter[str] = field(default_factory=Counter)
    # How often each distinct input was answered: what was paid for more than once.
    by_input: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0


class Simulator:
    """The app and its state; `running_simulator` serves it on a free local port."""

    def __init__(self, config: SimulatorConfig, *, llm: LLM | None = None) -> None:
        self.config = config
        self._llm = llm if llm is not None else _offline_llm()
        self._random = random.Random(config.seed)
        self._script: deque[Outcome] = deque(config.script)
        self._ledger = _Ledger()
        self._lock = threading.Lock()
        self.base_url = ""
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/ledger", self._get_ledger, methods=["GET"]),
            ]
        )

    def push(self, *outcomes: Outcome) -> None:
        """Script the next requests' outcomes (before any random fault)."""
        with self._lock:
            self._script.extend(outcomes)

    def ledger(self) -> dict[str, Any]:
        with self._lock:
            led = self._ledger
            return {
                "requests": sum(led.by_outcome.values()),
                "by_outcome": dict(led.by_outcome),
                "by_task": dict(led.by_task),
                "answered_more_than_once": sum(n - 1 for n in led.by_input.values() if n > 1),
                "input_tokens": led.input_tokens,
                "output_tokens": led.output_tokens,
            }

    def reset_ledger(self) -> None:
        with self._lock:
            self._ledger = _Ledger()

    # --- HTTP ---------------------------------------------------------------------------------

    async def _get_ledger(self, request: Request) -> Response:
        return JSONResponse(self.ledger())

    async def _messages(self, request: Request) -> Response:
        request_id = f"req_sim_{uuid.uuid4().hex[:20]}"
        key = request.headers.get("x-api-key") or _bearer(request.headers.get("authorization"))
        if not key or (self.config.valid_keys is not None and key not in self.config.valid_keys):
            return self._error(request_id, 401, "authentication_error", "invalid x-api-key")
        try:
            body = json.loads(await request.body())
            task, user_text = _task_and_text(body)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return self._error(request_id, 400, "invalid_request_error", f"bad request: {exc}")
        model = str(body["model"])
        if self.config.models is not None and model not in self.config.models:
            return self._error(request_id, 404, "not_found_error", f"model: {model}")
        outcome = self._next_outcome()
        if outcome in _ERRORS:
            status, kind, message = _ERRORS[outcome]
            headers = {"retry-after": f"{self.config.retry_after_s:g}"}
            return self._error(request_id, status, kind, message, outcome=outcome, headers=headers)
        await asyncio.sleep(self._latency() + (self.config.slow_s if outcome == "slow" else 0.0))
        try:
            content, stop_reason = await self._answer(task, user_text, outcome=outcome)
        except Exception as exc:  # the responder's bug: visible in the ledger, not retried
            return self._error(
                request_id,
                500,
                "api_error",
                f"simulator responder failed on {task}: {type(exc).__name__}: {exc}",
                outcome="responder_error",
                headers={"x-should-retry": "false"},
            )
        input_tokens = _tokens(json.dumps(body.get("system", ""))) + _tokens(user_text)
        input_tokens += _tokens(json.dumps(body.get("tools", [])))
        output_tokens = _tokens(json.dumps(content))
        if outcome == "truncated":
            output_tokens = int(body["max_tokens"])
        with self._lock:
            self._ledger.by_outcome[outcome] += 1
            self._ledger.by_task[task] += 1
            self._ledger.by_input[hashlib.sha256(user_text.encode()).hexdigest()[:16]] += 1
            self._ledger.input_tokens += input_tokens
            self._ledger.output_tokens += output_tokens
        reply = {
            "id": f"msg_sim_{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        raw = json.dumps(reply)
        if outcome == "invalid_json":
            raw = raw[: len(raw) // 2]
        return Response(raw, media_type="application/json", headers={"request-id": request_id})

    async def _answer(
        self, task: str, user_text: str, *, outcome: Outcome
    ) -> tuple[list[dict[str, Any]], str]:
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

    def _error(
        self,
        request_id: str,
        status: int,
        kind: str,
        message: str,
        *,
        outcome: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        with self._lock:
            self._ledger.by_outcome[outcome or kind] += 1
        body = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": request_id,
        }
        return JSONResponse(
            body, status_code=status, headers={"request-id": request_id, **(headers or {})}
        )

    def _next_outcome(self) -> Outcome:
        with self._lock:
            if self._script:
                return self._script.popleft()
            draw = self._random.random()
        for outcome, rate in self.config.rates():
            if draw < rate:
                return outcome
            draw -= rate
        return "ok"

    def _latency(self) -> float:
        mean, spread = self.config.latency_s, self.config.latency_s * self.config.jitter
        with self._lock:
            return max(0.0, self._random.uniform(mean - spread, mean + spread))


async def _call(llm: LLM, task: str, user_text: str) -> Any:
    """The offline provider's answer, shaped as the tool input the real model would send."""
    if task == "extract_facts":
        facts = (await llm.extract_facts(prompts.parse_extraction_input(user_text))).value
        return {
            "facts": [
                {"category": f.category.value, "fact": f.text, "from_signal": f.from_signal}
                for f in facts
            ]
        }
    if task == "reduce_facts":
        return {"facts": (await llm.reduce_facts(prompts.parse_reduce_input(user_text))).value}
    if task == "write_sections":
        return (await llm.write_sections(prompts.parse_sections_input(user_text))).value
    return (await llm.write_memory(prompts.parse_memory_input(user_text))).value


def _task_and_text(body: dict[str, Any]) -> tuple[str, str]:
    tools = body.get("tools") or []
    task = prompts.task_for_tool(tools[0]["name"]) if tools else "write_memory"
    if task is None:
        raise ValueError(f"unknown tool {tools[0]['name']!r}")
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return task, str(content)


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _offline_llm() -> LLM:
    from app.adapters.offline_llm import OfflineLLM

    return OfflineLLM()


@contextmanager
def running_simulator(
    config: SimulatorConfig | None = None, *, llm: LLM | None = None, port: int = 0
) -> Iterator[Simulator]:
    """Serve a simulator on 127.0.0.1 (a free port unless given) in a thread; stop it on exit."""
    simulator = Simulator(config or SimulatorConfig(), llm=llm)
    with serve_in_thread(simulator.app, name="messages-simulator", port=port) as base_url:
        simulator.base_url = base_url
        yield simulator


assert set(get_args(Outcome)) >= set(_ERRORS)
