"""What a job's LLM calls cost, per step and in total, at the configured model's prices.

The ledger is written to the job row's `stats` (`to_json()`), and its totals fill the row's
token and cost columns. Every mutation is synchronous and takes a lock, so concurrent tasks on
one event loop (or a thread, e.g. a benchmark's reporter) never interleave half an update.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from app.metrics import METRICS
from app.ports import LLMCall
from app.pricing import ModelPrice, call_cost_usd

__all__ = ["CostLedger", "StepCost"]


@dataclass(slots=True)
class StepCost:
    """Running totals for one pipeline step (or for the whole job)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_hits: int = 0
    retries: int = 0
    duration_ms: int = 0
    usd: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, other: StepCost) -> None:
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens
        self.cache_hits += other.cache_hits
        self.retries += other.retries
        self.duration_ms += other.duration_ms
        self.usd += other.usd
        for kind, n in other.failures.items():
            self.failures[kind] = self.failures.get(kind, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "duration_ms": self.duration_ms,
            "usd": round(self.usd, 6),
            "failures": dict(sorted(self.failures.items())),
        }


class CostLedger:
    """Calls, tokens by kind, fact-cache hits, retries, failures and USD, per step."""

    def __init__(
        self, price: ModelPrice, provider: str, model: str, *, mode: str = "realtime"
    ) -> None:
        self.price = price
        self.provider = provider
        self.model = model
        self.mode = mode  # LLM_MODE: batch calls are priced at BATCH_DISCOUNT (`LLMCall.batch`)
        self._steps: dict[str, StepCost] = {}
        self._lock = threading.Lock()

    def _step(self, step: str) -> StepCost:
        cost = self._steps.get(step)
        if cost is None:
            cost = self._steps[step] = StepCost()
        return cost

    def record(self, step: str, call: LLMCall) -> None:
        usage = call.usage
        with self._lock:
            cost = self._step(step)
            cost.calls += 1
            cost.input_tokens += usage.input_tokens
            cost.output_tokens += usage.output_tokens
            cost.cache_creation_input_tokens += usage.cache_creation_input_tokens
            cost.cache_read_input_tokens += usage.cache_read_input_tokens
            cost.retries += call.retries
            cost.duration_ms += call.duration_ms
            cost.usd += call_cost_usd(call, self.price)

    def record_cache_hits(self, step: str, n: int) -> None:
        """Chunks answered from the fact cache: work that was paid for by an earlier run."""
        if n <= 0:
            return
        METRICS.fact_cache_hits.inc(n)
        with self._lock:
            self._step(step).cache_hits += n

    def record_failure(self, step: str, kind: str) -> None:
        with self._lock:
            failures = self._step(step).failures
            failures[kind] = failures.get(kind, 0) + 1

    def step(self, step: str) -> StepCost:
        """A copy of one step's totals (zeros if the step made no call)."""
        with self._lock:
            copy = StepCost()
            if step in self._steps:
                copy.add(self._steps[step])
            return copy

    def carry(self, earlier: Any) -> None:
        """What earlier attempts of the job spent (their `stats.llm`), kept as one line of its
        own: a retried job's cost is all its attempts', not only the last one's."""
        total = earlier.get("total") if isinstance(earlier, dict) else None
        if not isinstance(total, dict) or not total.get("calls"):
            return
        carried = StepCost(
            calls=int(total.get("calls", 0)),
            input_tokens=int(total.get("input_tokens", 0)),
            output_tokens=int(total.get("output_tokens", 0)),
            cache_creation_input_tokens=int(total.get("cache_creation_input_tokens", 0)),
            cache_read_input_tokens=int(total.get("cache_read_input_tokens", 0)),
            usd=float(total.get("usd", 0.0)),
        )
        with self._lock:
            self._steps["earlier attempts"] = carried

    def totals(self) -> StepCost:
        with self._lock:
            total = StepCost()
            for cost in self._steps.values():
                total.add(cost)
            return total

    def to_json(self) -> dict[str, Any]:
        """The job row's `stats.llm`: provider, model, prices used, per-step and total costs."""
        total = self.totals()
        with self._lock:
            steps = {name: cost.to_json() for name, cost in self._steps.items()}
        return {
            "provider": self.provider,
            "model": self.model,
            "mode": self.mode,
            "price_per_mtok": {
                "input": self.price.input,
                "output": self.price.output,
                "cache_write": self.price.cache_write,
                "cache_read": self.price.cache_read,
            },
            "steps": steps,
            "total": total.to_json(),
        }
