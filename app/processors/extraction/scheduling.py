"""The moving parts of extract_facts: the chunk feed, the adaptive in-flight limit, failure kinds.

Kept apart from extraction.py so the stage reads as policy and this as mechanism.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import structlog

from app.domain import Chunk
from app.errors import LLMBadOutput, LLMError, LLMRefused, LLMUnavailable

__all__ = ["AdaptiveLimit", "ChunkFeed", "Outcome", "failure_kind"]

_log = structlog.get_logger(__name__)

Outcome = Literal["ok", "unavailable", "failed", "fatal", "cancelled"]


def failure_kind(exc: LLMError) -> str:
    """The words a failure is counted under (they appear in the step's error message)."""
    if isinstance(exc, LLMUnavailable):
        return exc.reason
    if isinstance(exc, LLMBadOutput):
        return "bad output"
    if isinstance(exc, LLMRefused):
        return "refused"
    return "rejected"


class AdaptiveLimit:
    """At most `current` calls in flight; `current` halves on rate limiting and creeps back.

    A rate-limited call halves the limit only if it started after the last decrease (same
    `epoch`): one burst of 429s from a full window of calls counts as one signal, not twenty.
    After `current` successes in a row the limit grows by one, up to the configured `limit`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.current = self.limit
        self.in_flight = 0
        self.max_in_flight = 0
        self.epoch = 0
        self._streak = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self) -> None:
        while self.in_flight >= self.current:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def release(self, *, outcome: Outcome, epoch: int | None = None) -> None:
        self.in_flight -= 1
        if outcome == "unavailable" and (epoch is None or epoch == self.epoch):
            previous, self.current = self.current, max(1, self.current // 2)
            self.epoch += 1
            self._streak = 0
            if self.current != previous:
                _log.warning("extract.backoff", concurrency=self.current, was=previous)
        elif outcome == "ok" and self.current < self.limit:
            self._streak += 1
            if self._streak >= self.current:
                self.current += 1
                self._streak = 0
                _log.info("extract.concurrency_raised", concurrency=self.current)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None = None


class ChunkFeed:
    """Reads the chunk stream in a task, so the stage can take whatever has arrived as a batch.

    The stream is consumed as it is produced (ingestion may still be running); at most
    `batch_size` chunks wait here, so a slow consumer holds the producer back. An error raised
    by the stream is re-raised by `next_batch`.
    """

    def __init__(self, source: AsyncIterator[Chunk], *, batch_size: int) -> None:
        self._batch_size = max(1, batch_size)
        self._queue: asyncio.Queue[Chunk | _End] = asyncio.Queue(maxsize=self._batch_size)
        self._finished = False
        self._task = asyncio.create_task(self._read(source))

    async def _read(self, source: AsyncIterator[Chunk]) -> None:
        try:
            async for chunk in source:
                await self._queue.put(chunk)
            end = _End()
        except Exception as exc:
            end = _End(exc)
        await self._queue.put(end)  # not reached when cancelled: stop() wakes the consumer

    async def next_batch(self, *, wait_s: float | None = None) -> list[Chunk] | None:
        """The chunks available now (waiting for the first one); [] when the stream is done;
        None when nothing arrived within `wait_s` seconds (the stream is still open)."""
        if self._finished:
            return []
        batch: list[Chunk] = []
        try:
            item = await asyncio.wait_for(self._queue.get(), wait_s)
        except TimeoutError:
            return None
        while True:
            if isinstance(item, _End):
                self._finished = True
                if item.error is not None:
                    raise item.error
                break
            batch.append(item)
            if len(batch) >= self._batch_size:
                break
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        return batch

    def stop(self) -> None:
        """Stop reading the stream (after a fatal error): `next_batch` then ends the stream."""
        self._finished = True
        self._task.cancel()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_End())

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
