"""The export's chunks again, read from the downloaded file: for batch mode's later passes.

Batch mode (docs/EXTRACTION.md) reads an export more than once: the first read parses, saves
and submits; a later read finds the chunks a batch must ask about again, and the last one feeds
the fact book in stream order from the cache. Each read is the import's own parse and chunking
(`ExportReader`, `chunk_as_configured`), so the chunks, their order and their content hashes are
the first read's. The parser runs in a worker thread and hands chunks over through a bounded
queue: memory stays flat, and abandoning the iteration stops the thread promptly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from app.config import Settings
from app.domain import Chunk, UserSignal
from app.processors.reading.chunking import chunk_as_configured
from app.processors.reading.export_reader import ExportReader

__all__ = ["ExportChunks"]

_QUEUE = 8  # conversations' chunk lists waiting
_PUT_POLL_SECONDS = 0.5


class ExportChunks:
    """Iterate `chunks()` for the export's chunks in import order; `signals` then holds the
    user's signals of that read (the realtime stage asks for them once the chunks are done)."""

    def __init__(
        self,
        path: Path,
        *,
        settings: Settings,
        user_id: str,
        pulse: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self.settings = settings
        self.user_id = user_id
        self.pulse = pulse
        self.signals: list[UserSignal] = []

    async def chunks(self) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[Chunk] | BaseException | None] = asyncio.Queue(maxsize=_QUEUE)
        stop = threading.Event()
        self.signals = []

        def put(item: list[Chunk] | BaseException | None) -> bool:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            while True:
                try:
                    future.result(timeout=_PUT_POLL_SECONDS)
                    return True
                except TimeoutError:
                    if stop.is_set():
                        future.cancel()
                        return False

        def read() -> None:
            try:
                for conversation in ExportReader(self.path, settings=self.settings):
                    if stop.is_set():
                        return
                    self.pulse()
                    self.signals.extend(conversation.signals)
                    chunks = chunk_as_configured(
                        conversation, user_id=self.user_id, settings=self.settings
                    )
                    if chunks and not put(chunks):
                        return
            except Exception as exc:
                put(exc)
                return
            put(None)

        worker = asyncio.create_task(asyncio.to_thread(read))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                for chunk in item:
                    yield chunk
        finally:
            stop.set()
            await asyncio.gather(worker, return_exceptions=True)
