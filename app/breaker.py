"""The provider circuit breaker: one per process, shared by every job it runs.

The SDK retries a rate limit or an overload a few times (`ANTHROPIC_MAX_RETRIES`). When a call
still fails with `LLMUnavailable`, the provider is not answering: the breaker opens. While it is
open no LLM call starts (each waits, however long, its job's lease renewed by the heartbeat), the
runner claims no new job, and one probe at a time asks the provider whether it is back — first
after `probe_initial_s`, then doubling up to `probe_max_s`, never sooner than the provider's own
`retry-after`. The first probe that is answered closes the breaker and every waiting call goes
on: the call that failed is made again, so no chunk is lost and no attempt is counted.

A reply that is unusable is not the provider being unavailable: only `LLMUnavailable` (429, 529,
5xx, timeouts, no connection) opens the breaker. An opening is told to listeners once, and its
end once, whatever the number of jobs and calls; the runner notes it on each job at once and
alerts only when it lasts (PROVIDER_ALERT_AFTER_SECONDS: steady rate limiting is no outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import structlog

from app.delegating_llm import DelegatingLLM
from app.errors import LLMUnavailable
from app.metrics import METRICS
from app.ports import LLM, LLMReply, MessageBatches

__all__ = ["BreakerState", "GuardedLLM", "Outage", "ProviderBreaker"]

T = TypeVar("T")
log = structlog.get_logger(__name__)

BreakerState = Literal["closed", "open"]


@dataclass(frozen=True, slots=True)
class Outage:
    """What the breaker knows about the provider being down, for notes, alerts and /ready."""

    provider: str
    reason: str  # words: "rate limited", "overloaded", "cannot connect"…
    since: datetime
    probes: int = 0

    def note(self) -> str:
        """The job's note while it waits: "waiting for Anthropic: rate limited since 10:02 UTC"."""
        name = "Anthropic" if self.provider == "anthropic" else self.provider
        return f"waiting for {name}: {self.reason} since {self.since:%H:%M} UTC"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": "open",
            "provider": self.provider,
            "reason": self.reason,
            "since": self.since.isoformat(),
            "probes": self.probes,
        }


Listener = Callable[[Outage | None], Coroutine[Any, Any, None]]


class ProviderBreaker:
    def __init__(
        self,
        *,
        provider: str,
        probe: Callable[[], Awaitable[None]],
        probe_initial_s: float = 5.0,
        probe_max_s: float = 60.0,
    ) -> None:
        self.provider = provider
        self._probe = probe
        self._initial = max(0.01, probe_initial_s)
        self._max = max(self._initial, probe_max_s)
        self._closed = asyncio.Event()
        self._closed.set()
        self._outage: Outage | None = None
        self._opened_at = 0.0
        self._retry_after = 0.0
        self._prober: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self.outages = 0

    # --- state ----------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        return "closed" if self._outage is None else "open"

    @property
    def outage(self) -> Outage | None:
        return self._outage

    def to_json(self) -> dict[str, Any]:
        return {"state": "closed"} if self._outage is None else self._outage.to_json()

    def subscribe(self, listener: Listener) -> None:
        """`listener(outage)` when the breaker opens, `listener(None)` when it closes."""
        self._listeners.append(listener)

    async def wait_closed(self) -> None:
        if self._closed.is_set():
            return
        METRICS.llm_waiting.inc()
        try:
            await self._closed.wait()
        finally:
            METRICS.llm_waiting.dec()

    async def guard(self, call: Callable[[], Awaitable[T]]) -> T:
        """Make `call` once the breaker is closed; if it fails because the provider is
        unavailable, open the breaker and make it again once it closes."""
        while True:
            await self.wait_closed()
            try:
                return await call()
            except LLMUnavailable as exc:
                self.record_failure(exc)

    # --- transitions ----------------------------------------------------------------------

    def record_failure(self, error: LLMUnavailable) -> None:
        """A call failed because the provider did not answer: open (once), or note the hint."""
        self._retry_after = max(self._retry_after, error.retry_after or 0.0)
        if self._outage is not None:
            return
        self.outages += 1
        self._outage = Outage(self.provider, error.reason, datetime.now(UTC))
        self._opened_at = time.monotonic()
        self._closed.clear()
        METRICS.llm_breaker_open.set(1)
        METRICS.llm_outages.inc()
        log.warning(
            "provider.unavailable",
            provider=self.provider,
            reason=error.reason,
            retry_after=error.retry_after,
        )
        self._prober = asyncio.create_task(self._probe_until_back(), name="provider-probe")
        self._notify(self._outage)

    def _close(self) -> None:
        outage, self._outage = self._outage, None
        self._retry_after = 0.0
        self._closed.set()
        METRICS.llm_breaker_open.set(0)
        if outage is not None:
            log.info(
                "provider.available",
                provider=self.provider,
                reason=outage.reason,
                probes=outage.probes,
                duration_ms=round((time.monotonic() - self._opened_at) * 1000),
            )
            self._notify(None)

    async def _probe_until_back(self) -> None:
        delay = self._initial
        while self._outage is not None:
            await asyncio.sleep(max(delay, self._retry_after))
            self._retry_after = 0.0
            delay = min(self._max, delay * 2)
            self._outage = Outage(
                self.provider, self._outage.reason, self._outage.since, self._outage.probes + 1
            )
            try:
                await self._probe()
            except LLMUnavailable as exc:
                self._retry_after = exc.retry_after or 0.0
                log.info("provider.probe_failed", reason=exc.reason, next_s=delay)
                continue
            except Exception as exc:
                # Answered, if not kindly (a rejected key, say): the provider is reachable.
                # The next real call meets that error and its job fails for it.
                log.info("provider.probe_answered", error_type=type(exc).__name__)
            self._close()

    def _notify(self, outage: Outage | None) -> None:
        for listener in self._listeners:
            task = asyncio.get_running_loop().create_task(listener(outage))
            task.add_done_callback(_log_listener_failure)

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober


def _log_listener_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("provider.listener_failed", error_type=type(error).__name__)


class GuardedLLM(DelegatingLLM):
    """Implements `LLM`: every call waits while the breaker is open, and a call that fails
    because the provider is unavailable opens it and is made again once it closes.

    Not a second retry layer over the SDK's: the SDK retries within seconds; this waits for the
    provider to come back, however long that takes, instead of failing the work.
    """

    def __init__(self, inner: LLM, breaker: ProviderBreaker) -> None:
        super().__init__(inner)
        self.breaker = breaker

    async def _call(self, task: str, call: Callable[[], Awaitable[LLMReply[T]]]) -> LLMReply[T]:
        return await self.breaker.guard(call)

    def batches(self) -> MessageBatches | None:
        """The provider's Message Batches API behind the same breaker (app/batch_guard.py)."""
        from app.batch_guard import GuardedBatches

        inner = self.inner.batches()
        return None if inner is None else GuardedBatches(inner, self.breaker)

    async def aclose(self) -> None:
        """Stop probing and close the provider's client."""
        await self.breaker.aclose()
        await self.inner.aclose()
