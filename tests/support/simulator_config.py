"""What a Messages-API simulator does, fixed at start (storms and scripts change at run time)."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tests.support.simulator_batches import BatchOutcome, BatchSettings

__all__ = ["FaultDraw", "Outcome", "SimulatorConfig"]

Outcome = Literal[
    "ok",
    "rate_limited",
    "overloaded",
    "server_error",
    "slow",
    "invalid_json",
    "truncated",
    "no_credit",
    "payment_required",
]


@dataclass(frozen=True)
class SimulatorConfig:
    """Latency is `latency_s` ± `jitter` × `latency_s` (uniform); rates are per request, 0–1.

    Batches: each ends `batch_processing_s` after creation, its requests completing at uniform
    times over that span (their counts shown as they go only with `batch_counts_advance`); a
    cancel ends it `batch_cancel_s` later; `batch_rate_errored` / `batch_rate_expired` per
    request; `batch_script` maps a custom_id to its outcome (consumed by the first batch using it).
    Rate limits: per `rate_window_s` (a minute unless a test shortens it); None = unlimited.
    """

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
    batch_processing_s: float = 0.0
    batch_cancel_s: float = 0.0
    batch_rate_errored: float = 0.0
    batch_rate_expired: float = 0.0
    batch_counts_advance: bool = False
    batch_script: Mapping[str, BatchOutcome] = field(default_factory=dict)
    requests_per_minute: int | None = None
    input_tokens_per_minute: int | None = None
    output_tokens_per_minute: int | None = None
    rate_window_s: float = 60.0

    def rates(self) -> list[tuple[Outcome, float]]:
        return [
            ("rate_limited", self.rate_429),
            ("overloaded", self.rate_529),
            ("server_error", self.rate_500),
            ("slow", self.rate_slow),
            ("invalid_json", self.rate_invalid_json),
            ("truncated", self.rate_truncated),
        ]

    def batch_settings(self) -> BatchSettings:
        return BatchSettings(
            processing_s=self.batch_processing_s,
            cancel_s=self.batch_cancel_s,
            rate_errored=self.batch_rate_errored,
            rate_expired=self.batch_rate_expired,
            counts_advance=self.batch_counts_advance,
        )

    def limited(self) -> bool:
        limits = (self.requests_per_minute, self.input_tokens_per_minute)
        return any(v is not None for v in (*limits, self.output_tokens_per_minute))


class FaultDraw:
    """Each realtime request's outcome and latency: the script first, then seeded draws."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._random = random.Random(config.seed)
        self._script: deque[Outcome] = deque(config.script)
        self._lock = threading.Lock()

    def push(self, *outcomes: Outcome) -> None:
        with self._lock:
            self._script.extend(outcomes)

    def outcome(self) -> Outcome:
        with self._lock:
            if self._script:
                return self._script.popleft()
            draw = self._random.random()
        for outcome, rate in self._config.rates():
            if draw < rate:
                return outcome
            draw -= rate
        return "ok"

    def latency(self, outcome: Outcome) -> float:
        mean, spread = self._config.latency_s, self._config.latency_s * self._config.jitter
        with self._lock:
            latency = max(0.0, self._random.uniform(mean - spread, mean + spread))
        return latency + (self._config.slow_s if outcome == "slow" else 0.0)
