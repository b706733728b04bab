"""Fakes for the LLM stages: a scripted LLM implementing the whole port, a stand-in for runner
tests whose pipelines never call one, and a counting store.

`ScriptedLLM` answers each task through a function of the request (or a fixed reply), may raise
a scripted error instead, sleeps a configurable latency, and counts calls and the maximum number
in flight. `CountingStore` is the real `LocalStore` that also counts its fact-cache traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.adapters.instant_batches import InstantBatches, Outcome
from app.adapters.local_store import LocalStore
from app.batch_port import BatchRequest, ResultKind
from app.domain import Fact, FactCategory
from app.ports import (
    Excerpt,
    ExtractionRequest,
    ExtractionResult,
    LLMCall,
    LLMReply,
    LLMUsage,
    MemoryRequest,
    ReduceRequest,
    SectionsRequest,
)

__all__ = ["CountingStore", "NoLLM", "ScriptedLLM", "fact_per_user_line"]

Script = Callable[[Any], Any]


def fact_per_user_line(excerpt: Excerpt) -> list[Fact]:
    """One About Me fact per `User:` line: enough to see what reached the model."""
    return [
        Fact(category=FactCategory.ABOUT_ME, text="The user said: " + line[5:].strip())
        for line in excerpt.text.splitlines()
        if line.startswith("User:")
    ]


def _sequence(replies: Sequence[Any]) -> Script:
    """Replies in order; the last one repeats."""
    state = {"i": 0}

    def pick(_request: Any) -> Any:
        reply = replies[min(state["i"], len(replies) - 1)]
        state["i"] += 1
        return reply

    return pick


class ScriptedLLM:
    """An `LLM` whose answers (or errors: return an exception to raise it) are scripted.

    The `extract` script answers one excerpt: facts, `None` to leave the excerpt out of the
    reply, or an exception, which fails the whole request it is packed in."""

    def __init__(
        self,
        *,
        extract: Script = fact_per_user_line,
        reduce: Script | None = None,
        memory: Script | Sequence[Any] = ("## About Me\n- ok",),
        sections: Script | Sequence[Any] = ({},),
        latency: float = 0.0,
    ) -> None:
        self._scripts: dict[str, Script] = {
            "extract_facts": extract,
            "reduce_facts": reduce or (lambda r: list(r.facts[: r.target_count])),
            "write_memory": memory if callable(memory) else _sequence(memory),
            "write_sections": sections if callable(sections) else _sequence(sections),
        }
        self.latency = latency
        self.calls: dict[str, int] = dict.fromkeys(self._scripts, 0)
        self.requests: dict[str, list[Any]] = {task: [] for task in self._scripts}
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_log: list[int] = []  # in flight at the start of each call
        self.excerpts_per_request: list[int] = []
        self.closed = False
        # What `probe()` does, in order (the last repeats): None answers, an exception raises.
        self.probe_script: list[BaseException | None] = [None]
        self.probes = 0
        # Batch mode: in-process batches answered by the scripts above; `batch_outcome` may
        # plan a request's end (errored, expired, canceled) instead.
        self.batch_outcome: Outcome | None = None
        self._batches: InstantBatches | None = None

    @property
    def provider(self) -> str:
        return "fake"

    @property
    def model(self) -> str:
        return "fake-model"

    async def _answer(self, task: str, request: Any) -> LLMReply[Any]:
        self.calls[task] += 1
        self.requests[task].append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.in_flight_log.append(self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            value = self._value(task, request)
            if isinstance(value, BaseException):
                raise value
            usage = LLMUsage(input_tokens=100, output_tokens=20)
            return LLMReply(value, LLMCall(task=task, model=self.model, usage=usage))
        finally:
            self.in_flight -= 1

    def _value(self, task: str, request: Any) -> Any:
        if task != "extract_facts":
            return self._scripts[task](request)
        self.excerpts_per_request.append(len(request.excerpts))
        answers = [self._scripts[task](excerpt) for excerpt in request.excerpts]
        failure = next((a for a in answers if isinstance(a, BaseException)), None)
        return failure or ExtractionResult(tuple(answers))

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]:
        return await self._answer("extract_facts", request)

    async def reduce_facts(self, request: ReduceRequest) -> LLMReply[list[str]]:
        return await self._answer("reduce_facts", request)

    async def write_memory(self, request: MemoryRequest) -> LLMReply[str]:
        return await self._answer("write_memory", request)

    async def write_sections(self, request: SectionsRequest) -> LLMReply[dict[str, Any]]:
        return await self._answer("write_sections", request)

    def batches(self) -> InstantBatches:
        if self._batches is None:
            self._batches = InstantBatches(self, outcome=lambda r: self._plan(r))
        return self._batches

    def _plan(self, request: BatchRequest) -> ResultKind | None:
        return self.batch_outcome(request) if self.batch_outcome is not None else None

    async def probe(self) -> None:
        outcome = self.probe_script[min(self.probes, len(self.probe_script) - 1)]
        self.probes += 1
        if outcome is not None:
            raise outcome

    async def aclose(self) -> None:
        self.closed = True


class NoLLM:
    """The runner's LLM where the pipelines are scripted and never call one: a provider and a
    model to name, and `batches()` (none) for when the runner cancels a job's batches."""

    provider = "offline"
    model = "none"

    def batches(self) -> None:
        return None


class CountingStore(LocalStore):
    """The real local store, counting fact-cache reads and writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache_reads = 0
        self.cache_writes = 0
        self.hashes_written: list[str] = []

    async def get_cached_facts(
        self, *, user_id: str, extractor_version: str, content_hashes: Sequence[str]
    ) -> dict[str, list[Fact]]:
        self.cache_reads += 1
        return await super().get_cached_facts(
            user_id=user_id, extractor_version=extractor_version, content_hashes=content_hashes
        )

    async def put_cached_facts(
        self, *, user_id: str, extractor_version: str, entries: Mapping[str, Sequence[Fact]]
    ) -> None:
        self.cache_writes += 1
        self.hashes_written += list(entries)
        await super().put_cached_facts(
            user_id=user_id, extractor_version=extractor_version, entries=entries
        )
