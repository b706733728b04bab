"""Per-minute rate limits as Anthropic enforces them: token buckets that refill continuously.

Three buckets, each holding at most its per-minute limit and refilling at limit / minute:
requests, input tokens and output tokens (None = unlimited, no bucket, no headers). A request is
admitted when every bucket holds what it needs — 1 request, its input tokens, and its `max_tokens`
reserved as output. Otherwise it is refused, taking nothing, with `retry-after` = whole seconds
until every bucket short of budget has refilled enough, naming the bucket that waits longest. A
need larger than a bucket's whole limit is refused every time (`oversized`), as the API refuses a
request larger than the organisation's per-minute limit ("Please reduce the prompt length or the
maximum tokens requested"); its `retry-after` is the time until that bucket is full, which is no
help. When the reply is known `settle` corrects the reservation to the output actually produced.
`headers()` renders `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,
reset}` (reset: RFC 3339 time at which the bucket is full again). `window_s` (default 60) lets a
test run "per-minute" limits on a shorter clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.simulator_wire import rfc3339

__all__ = ["Admission", "RateLimiter"]


@dataclass
class _Bucket:
    capacity: float
    level: float
    rate: float  # per second
    updated: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, need: float) -> float:
        return max(0.0, (min(need, self.capacity) - self.level) / self.rate)


@dataclass(frozen=True)
class Admission:
    """What an admitted request took; `retry_after` > 0 means it was refused and took nothing,
    `refused_by` naming the bucket ("requests", "input-tokens", "output-tokens") and `limit` its
    per-minute limit; `oversized` when the request needs more than that whole limit."""

    reserved_output: int = 0
    retry_after: int = 0
    refused_by: str | None = None
    limit: int = 0
    oversized: bool = False


class RateLimiter:
    def __init__(
        self,
        *,
        requests: int | None,
        input_tokens: int | None,
        output_tokens: int | None,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        now = clock()
        self._buckets = {
            name: _Bucket(float(limit), float(limit), limit / window_s, now)
            for name, limit in (
                ("requests", requests),
                ("input-tokens", input_tokens),
                ("output-tokens", output_tokens),
            )
            if limit is not None
        }

    def admit(self, *, input_tokens: int, max_tokens: int) -> Admission:
        needs = {"requests": 1, "input-tokens": input_tokens, "output-tokens": max_tokens}
        now = self._clock()
        for bucket in self._buckets.values():
            bucket.refill(now)
        for name, bucket in self._buckets.items():
            if needs[name] > bucket.capacity:
                return self._refusal(name, bucket.wait_for(bucket.capacity), oversized=True)
        waits = {name: b.wait_for(needs[name]) for name, b in self._buckets.items()}
        name, wait = max(waits.items(), key=lambda item: item[1], default=("", 0.0))
        if wait > 0:
            return self._refusal(name, wait)
        for name, bucket in self._buckets.items():
            bucket.level -= needs[name]
        return Admission(reserved_output=max_tokens)

    def _refusal(self, name: str, wait: float, *, oversized: bool = False) -> Admission:
        return Admission(
            retry_after=max(1, math.ceil(wait)),
            refused_by=name,
            limit=int(self._buckets[name].capacity),
            oversized=oversized,
        )

    def settle(self, admission: Admission, output_tokens: int) -> None:
        """Correct the reservation to the output produced (0 on an error: all given back)."""
        bucket = self._buckets.get("output-tokens")
        if bucket is not None and admission.retry_after == 0:
            bucket.refill(self._clock())
            correction = admission.reserved_output - output_tokens
            bucket.level = min(bucket.capacity, bucket.level + correction)

    def headers(self) -> dict[str, str]:
        now = self._clock()
        out: dict[str, str] = {}
        for name, bucket in self._buckets.items():
            bucket.refill(now)
            prefix = f"anthropic-ratelimit-{name}"
            out[f"{prefix}-limit"] = str(int(bucket.capacity))
            out[f"{prefix}-remaining"] = str(max(0, math.floor(bucket.level)))
            out[f"{prefix}-reset"] = rfc3339(now + (bucket.capacity - bucket.level) / bucket.rate)
        return out
