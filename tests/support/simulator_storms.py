"""Time-windowed storms: one outcome applied to every request while the window is open.

A storm is armed with an outcome, a duration (`seconds`; None = an outage, until cleared), the
`retry_after` its 429s carry, and optionally `on_task`: it then starts at the first request of
that task (the request that triggers it is its first victim), else at once. At most one storm
exists at a time: starting another, or `clear()`, ends the current one. Every storm is kept as a
record for the ledger: when it was armed, started and ended (epoch seconds), what triggered it,
and the requests it hit by task.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = ["STORM_OUTCOMES", "Storm", "StormOutcome", "Storms"]

StormOutcome = Literal[
    "rate_limited",
    "overloaded",
    "server_error",
    "connection_reset",
    "connection_refused",
    "no_credit",
    "payment_required",
]
STORM_OUTCOMES: tuple[str, ...] = get_args(StormOutcome)


@dataclass
class Storm:
    outcome: StormOutcome
    seconds: float | None
    retry_after: float
    on_task: str | None
    armed_at: float
    started_at: float | None = None
    ended_at: float | None = None
    trigger_task: str | None = None
    hits: Counter[str] = field(default_factory=Counter)

    @property
    def ends_at(self) -> float | None:
        if self.started_at is None or self.seconds is None:
            return None
        return self.started_at + self.seconds

    def active(self, now: float) -> bool:
        ends_at = self.ends_at
        return (
            self.started_at is not None
            and self.ended_at is None
            and (ends_at is None or now < ends_at)
        )

    def record(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "seconds": self.seconds,
            "retry_after": self.retry_after,
            "on_task": self.on_task,
            "armed_at": self.armed_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at if self.ended_at is not None else self.ends_at,
            "trigger_task": self.trigger_task,
            "requests": sum(self.hits.values()),
            "by_task": dict(self.hits),
        }


class Storms:
    """The current storm and the past ones; safe to use from the server's and a test's thread."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._history: list[Storm] = []

    def start(
        self,
        outcome: StormOutcome,
        *,
        seconds: float | None,
        retry_after: float = 1.0,
        on_task: str | None = None,
    ) -> Storm:
        if outcome not in STORM_OUTCOMES:
            raise ValueError(f"unknown storm outcome {outcome!r}; one of {STORM_OUTCOMES}")
        now = self._clock()
        storm = Storm(outcome, seconds, retry_after, on_task, armed_at=now)
        if on_task is None:
            storm.started_at = now
        with self._lock:
            self._end_current(now)
            self._history.append(storm)
        return storm

    def clear(self) -> None:
        with self._lock:
            self._end_current(self._clock())

    def check(self, tasks: Collection[str], label: str) -> Storm | None:
        """The storm that hits this request, starting an armed one whose task is among `tasks`."""
        now = self._clock()
        with self._lock:
            storm = self._history[-1] if self._history else None
            if storm is None or storm.ended_at is not None:
                return None
            if storm.started_at is None and storm.on_task in tasks:
                storm.started_at, storm.trigger_task = now, storm.on_task
            if not storm.active(now):
                return None
            storm.hits[label] += 1
            return storm

    def refusing(self) -> Storm | None:
        """The active storm that refuses connections, if any: the listener must stay closed."""
        with self._lock:
            storm = self._history[-1] if self._history else None
        if storm is not None and storm.outcome == "connection_refused":
            return storm if storm.active(self._clock()) else None
        return None

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [storm.record() for storm in self._history]

    def reset(self) -> None:
        """Forget the storms that are over (the ledger's reset); an armed or active one stays."""
        now = self._clock()
        with self._lock:
            self._history = [
                s
                for s in self._history[-1:]
                if s.ended_at is None and (s.started_at is None or s.active(now))
            ]

    def _end_current(self, now: float) -> None:
        if self._history and self._history[-1].ended_at is None:
            current = self._history[-1]
            ends_at = current.ends_at
            current.ended_at = now if ends_at is None else min(now, ends_at)
