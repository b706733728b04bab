"""What stands between a request and the simulator's responder: the key, storms, rate limits.

Storms that act below HTTP need the server: `connection_reset` aborts the request's connection
with a RST; `connection_refused` closes the main listening port while the storm is active (a timer
opens it again when the window ends; `clear()` at once) and resets the open connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tests.support.serving import Served
from tests.support.simulator_config import SimulatorConfig
from tests.support.simulator_limits import Admission, RateLimiter
from tests.support.simulator_storms import STORM_OUTCOMES, Storm, Storms
from tests.support.simulator_wire import FAULTS, ApiError

__all__ = ["TASKS", "Gate"]

TASKS = ("extract_facts", "reduce_facts", "write_memory", "write_sections", "probe")
_UNITS = {"requests": "requests", "input-tokens": "input tokens", "output-tokens": "output tokens"}


class Gate:
    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.storms = Storms(clock=clock)
        self.served: Served | None = None
        self._valid_keys = config.valid_keys
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._limiter = None
        if config.limited():
            self._limiter = RateLimiter(
                requests=config.requests_per_minute,
                input_tokens=config.input_tokens_per_minute,
                output_tokens=config.output_tokens_per_minute,
                window_s=config.rate_window_s,
                clock=clock,
            )

    def authenticate(self, request: Request) -> None:
        key = request.headers.get("x-api-key") or _bearer(request.headers.get("authorization"))
        if not key or (self._valid_keys is not None and key not in self._valid_keys):
            raise ApiError(401, "authentication_error", "invalid x-api-key")

    # --- storms -----------------------------------------------------------------------------------

    def start_storm(
        self, outcome: Any, *, seconds: float | None, retry_after: float, on_task: Any
    ) -> dict[str, Any]:
        if outcome not in STORM_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(STORM_OUTCOMES)}")
        if on_task is not None and on_task not in TASKS:
            raise ValueError(f"on_task must be one of {', '.join(TASKS)}")
        storm = self.storms.start(
            outcome, seconds=seconds, retry_after=retry_after, on_task=on_task
        )
        return storm.record()

    async def hit(
        self, request: Request, *, tasks: Collection[str], label: str, request_id: str
    ) -> tuple[Storm, Response] | None:
        """The storm hitting this request and the response it gets, or None."""
        storm = self.storms.check(tasks, label)
        if storm is None:
            return None
        if storm.outcome in ("connection_reset", "connection_refused"):
            await self.sync_listener()
            if self.served is not None:
                self.served.reset(request.scope.get("client"))
            await asyncio.sleep(0)  # let the server see the connection gone before it writes
            return storm, Response(status_code=503)  # never delivered
        status, kind, message = FAULTS[storm.outcome]
        retry = {"retry-after": f"{storm.retry_after:g}"} if storm.outcome == "rate_limited" else {}
        return storm, ApiError(status, kind, message, headers=retry).response(request_id)

    async def sync_listener(self) -> None:
        """Keep the main port closed exactly while a `connection_refused` storm is active."""
        served = self.served
        if served is None:
            return
        storm = self.storms.refusing()
        if storm is not None and served.listening:
            served.refuse()
            if storm.ends_at is not None:
                delay = max(0.0, storm.ends_at - self._clock()) + 0.01
                loop = asyncio.get_running_loop()
                loop.call_later(delay, lambda: self._spawn(self.sync_listener()))
        elif storm is None and not served.listening:
            await served.accept()

    def on_loop(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` on the server's loop (from another thread), if it is served yet."""
        if self.served is None or self.served.loop is None:
            coro.close()  # nothing listens: nothing to open or close
        else:
            self.served.call(coro)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- per-minute limits --------------------------------------------------------------------

    def admit(self, *, input_tokens: int, max_tokens: int) -> Admission:
        if self._limiter is None:
            return Admission()
        return self._limiter.admit(input_tokens=input_tokens, max_tokens=max_tokens)

    def throttled(self, admission: Admission) -> ApiError:
        """The API's 429 for a refusal: the same words whether waiting helps or not."""
        unit = _UNITS.get(admission.refused_by or "", "requests")
        return ApiError(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization (simulated) of "
            f"{admission.limit:,} {unit} per minute. For details, refer to: "
            "https://docs.claude.com/en/api/rate-limits. You can see the response headers for "
            "current usage. Please reduce the prompt length or the maximum tokens requested, or "
            "try again later.",
            headers={"retry-after": str(admission.retry_after)},
        )

    def settle(self, admission: Admission, output_tokens: int) -> None:
        if self._limiter is not None:
            self._limiter.settle(admission, output_tokens)

    def limit_headers(self) -> dict[str, str]:
        return self._limiter.headers() if self._limiter is not None else {}


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None
