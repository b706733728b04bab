"""The Message Batches API: create, retrieve, list, cancel, delete and results, in the API's shapes.

A batch lives in the simulator (any client, in any process, may poll it) and is worked through by
a task on the simulator's loop. Each request gets a planned outcome when the batch is created: the
script's entry for its `custom_id` (consumed: a resubmission is planned afresh), else a draw
against `rate_errored` / `rate_expired`, else `succeeded`; and a completion time, uniform over
`processing_s` after creation. At that time a `succeeded` (or `truncated`) request is answered by
the responder the realtime endpoint uses, so the reply is what `/v1/messages` would have sent.
The batch ends `processing_s` after creation (or once every request is done, if later): requests
still processing then are `expired`. `processing_status` goes in_progress → (canceling) → ended;
a cancel ends the batch `cancel_s` later, what is unfinished then being `canceled`.

`request_counts` stays all `processing` until the batch ends, as the API reference documents;
with `counts_advance` the counts move as requests complete. Results are JSONL in completion order
(not request order), only once the batch has ended (`results_url` is null before). Params are
validated when processed, not at creation, as the API does: a bad one is an `errored` result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.support.simulator_ledger import Answer, Ledger
from tests.support.simulator_wire import ApiError, error_object, rfc3339

__all__ = ["BatchOutcome", "BatchQueue", "BatchSettings", "Responder"]

BatchOutcome = Literal["succeeded", "truncated", "errored", "invalid_request", "expired"]
# The realtime responder: params and "ok" | "truncated" → the answer; ApiError if params are bad.
Responder = Callable[[Any, str], Awaitable[Answer]]

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_STATES = ("processing", "succeeded", "errored", "canceled", "expired")
_MAX_REQUESTS = 100_000
_DAY_S = 86_400.0


@dataclass(frozen=True)
class BatchSettings:
    processing_s: float = 0.0
    cancel_s: float = 0.0
    rate_errored: float = 0.0
    rate_expired: float = 0.0
    counts_advance: bool = False


@dataclass
class _Request:
    custom_id: str
    params: Any
    plan: BatchOutcome
    due: float
    result: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        return "processing" if self.result is None else str(self.result["type"])


@dataclass
class _Batch:
    id: str
    created_at: float
    ends_at: float
    requests: list[_Request]
    done: list[_Request] = field(default_factory=list)  # completion order: the results' order
    cancel_initiated_at: float | None = None
    cancel_deadline: float | None = None
    ended_at: float | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class BatchQueue:
    def __init__(
        self,
        *,
        respond: Responder,
        ledger: Ledger,
        settings: BatchSettings,
        script: Mapping[str, BatchOutcome],
        seed: int | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._respond = respond
        self._ledger = ledger
        self._settings = settings
        self._script = dict(script)
        self._random = random.Random(seed)
        self._clock = clock
        self._batches: dict[str, _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def script(self, outcomes: Mapping[str, BatchOutcome]) -> None:
        self._script.update(outcomes)

    def create(self, body: Any) -> str:
        """Validate and enqueue a batch (on the server's loop); return its id."""
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not 0 < len(requests) <= _MAX_REQUESTS:
            raise ApiError(400, "invalid_request_error", "requests: 1 to 100,000 items required")
        seen: set[str] = set()
        now, window = self._clock(), self._settings.processing_s
        queued = []
        for item in requests:
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                raise ApiError(400, "invalid_request_error", f"custom_id invalid: {custom_id!r}")
            if custom_id in seen:
                raise ApiError(400, "invalid_request_error", f"custom_id repeated: {custom_id}")
            seen.add(custom_id)
            due = now + window * self._random.random()
            queued.append(_Request(custom_id, item.get("params"), self._plan(custom_id), due))
        batch = _Batch(f"msgbatch_sim_{uuid.uuid4().hex[:24]}", now, now + window, queued)
        self._batches[batch.id] = batch
        self._ledger.batch_created(len(queued))
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return batch.id

    def retrieve(self, batch_id: str, base_url: str) -> dict[str, Any]:
        batch = self._get(batch_id)
        ended = batch.ended_at is not None
        if ended or self._settings.counts_advance:
            counts = Counter(r.state for r in batch.requests)
        else:
            counts = Counter(processing=len(batch.requests))
        status = "ended" if ended else "canceling" if batch.cancel_initiated_at else "in_progress"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": {state: counts.get(state, 0) for state in _STATES},
            "created_at": rfc3339(batch.created_at),
            "expires_at": rfc3339(batch.created_at + _DAY_S),
            "ended_at": rfc3339(batch.ended_at) if batch.ended_at is not None else None,
            "cancel_initiated_at": _time_or_none(batch.cancel_initiated_at),
            "archived_at": None,
            "results_url": f"{base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def listing(self, query: Mapping[str, str], base_url: str) -> dict[str, Any]:
        """Newest first, paged by `limit` (1–1000, default 20), `after_id` or `before_id`."""
        ids = list(reversed(self._batches))
        limit = max(1, min(1000, int(query.get("limit", "20"))))
        if (before := query.get("before_id")) in ids:
            end = ids.index(before)
            page, more = ids[max(0, end - limit) : end], end > limit
        else:
            start = ids.index(after) + 1 if (after := query.get("after_id")) in ids else 0
            page, more = ids[start : start + limit], len(ids) > start + limit
        return {
            "data": [self.retrieve(i, base_url) for i in page],
            "has_more": more,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

    def cancel(self, batch_id: str) -> None:
        batch = self._get(batch_id)
        if batch.ended_at is not None:  # the API documents cancel "any time before processing ends"
            raise ApiError(400, "invalid_request_error", f"{batch_id} has already ended")
        if batch.cancel_initiated_at is None:
            batch.cancel_initiated_at = self._clock()
            batch.cancel_deadline = batch.cancel_initiated_at + self._settings.cancel_s
            batch.wake.set()

    def delete(self, batch_id: str) -> dict[str, Any]:
        if self._get(batch_id).ended_at is None:
            raise ApiError(400, "invalid_request_error", f"{batch_id} is in progress: cancel it")
        del self._batches[batch_id]
        return {"id": batch_id, "type": "message_batch_deleted"}

    def results(self, batch_id: str) -> bytes:
        batch = self._get(batch_id)
        if batch.ended_at is None:
            raise ApiError(400, "invalid_request_error", f"{batch_id} has not ended yet")
        lines = (json.dumps({"custom_id": r.custom_id, "result": r.result}) for r in batch.done)
        return "".join(line + "\n" for line in lines).encode()

    # --- processing -----------------------------------------------------------------------------

    def _plan(self, custom_id: str) -> BatchOutcome:
        if custom_id in self._script:
            return self._script.pop(custom_id)
        draw = self._random.random()
        if draw < self._settings.rate_errored:
            return "errored"
        if draw < self._settings.rate_errored + self._settings.rate_expired:
            return "expired"
        return "succeeded"

    async def _run(self, batch: _Batch) -> None:
        for request in sorted(batch.requests, key=lambda r: r.due):
            if request.plan == "expired":
                continue
            if not await self._wait_until(batch, request.due):
                break
            await self._process(request)
            batch.done.append(request)
            await asyncio.sleep(0)  # a big batch does not starve the realtime endpoint
        await self._wait_until(batch, batch.ends_at)
        rest = [r for r in batch.requests if r.result is None]
        self._random.shuffle(rest)
        for request in rest:
            request.result = {"type": "canceled" if batch.cancel_initiated_at else "expired"}
            self._ledger.batch_result(request.state, task=None, answer=None)
        batch.done.extend(rest)
        batch.ended_at = self._clock()

    async def _wait_until(self, batch: _Batch, when: float) -> bool:
        """Sleep until `when`; False if the batch's cancellation deadline comes first."""
        while True:
            now = self._clock()
            if batch.cancel_deadline is not None and now >= batch.cancel_deadline:
                return False
            if now >= when:
                return True
            target = when if batch.cancel_deadline is None else min(when, batch.cancel_deadline)
            batch.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch.wake.wait(), timeout=target - now)

    async def _process(self, request: _Request) -> None:
        answer = None
        if request.plan == "errored":
            error = error_object("api_error", "Internal server error")
        elif request.plan == "invalid_request":
            error = error_object("invalid_request_error", "Invalid request (scripted)")
        else:
            try:
                answer = await self._respond(
                    request.params, "truncated" if request.plan == "truncated" else "ok"
                )
                request.result = {"type": "succeeded", "message": answer.message}
                self._ledger.batch_result("succeeded", task=answer.task, answer=answer)
                return
            except ApiError as exc:
                error = error_object(exc.kind, exc.message)
        request.result = {"type": "errored", "error": error}
        self._ledger.batch_result("errored", task=None, answer=None)

    def _get(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, "not_found_error", f"message batch {batch_id} not found")
        return batch


def _time_or_none(epoch: float | None) -> str | None:
    return None if epoch is None else rfc3339(epoch)
