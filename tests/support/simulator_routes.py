"""The simulator's routes beside `/v1/messages`: Message Batches, and control over HTTP.

Batch routes are keyed and storm-hit like any request (a batch creation containing a task's
request can trigger a storm armed on that task), never rate limited; `results_url` is built from
the URL the client used, so any client can follow it. Control routes (no key): `POST
/control/storm {"outcome", "seconds", "retry_after", "on_task"}` (seconds null or absent: an
outage), `POST /control/clear`, `GET /ledger`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.simulator_batches import BatchQueue
from tests.support.simulator_gate import Gate
from tests.support.simulator_wire import ApiError, read_json, request_id

__all__ = ["batch_routes", "control_routes"]


def batch_routes(queue: BatchQueue, gate: Gate, *, task_of: Callable[[Any], str]) -> list[Route]:
    """Routes for create, list, retrieve, delete, cancel and results; `task_of(params)` names
    the task of a request's params (or raises)."""

    async def guarded(
        request: Request,
        operation: Callable[[], dict[str, Any] | bytes],
        tasks: set[str] | None = None,
    ) -> Response:
        rid = request_id()
        try:
            gate.authenticate(request)
            hit = await gate.hit(request, tasks=tasks or set(), label="batches", request_id=rid)
            if hit is not None:
                return hit[1]
            value = operation()
        except ApiError as exc:
            return exc.response(rid)
        except ValueError as exc:  # a query parameter that is not a number
            return ApiError(400, "invalid_request_error", str(exc)).response(rid)
        if isinstance(value, bytes):
            return Response(value, media_type="application/binary", headers={"request-id": rid})
        return JSONResponse(value, headers={"request-id": rid})

    async def create(request: Request) -> Response:
        try:
            body = await read_json(request)
        except ApiError as exc:
            return exc.response(request_id())
        tasks = set()
        for item in body.get("requests", []) if isinstance(body, dict) else []:
            try:
                tasks.add(task_of(item["params"]))
            except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                continue
        return await guarded(
            request, lambda: queue.retrieve(queue.create(body), _base(request)), tasks
        )

    async def listing(request: Request) -> Response:
        return await guarded(request, lambda: queue.listing(request.query_params, _base(request)))

    async def retrieve(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        return await guarded(request, lambda: queue.retrieve(batch_id, _base(request)))

    async def delete(request: Request) -> Response:
        return await guarded(request, lambda: queue.delete(request.path_params["batch_id"]))

    async def cancel(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]

        def operation() -> dict[str, Any]:
            queue.cancel(batch_id)
            return queue.retrieve(batch_id, _base(request))

        return await guarded(request, operation)

    async def results(request: Request) -> Response:
        return await guarded(request, lambda: queue.results(request.path_params["batch_id"]))

    one = "/v1/messages/batches/{batch_id}"
    return [
        Route("/v1/messages/batches", create, methods=["POST"]),
        Route("/v1/messages/batches", listing, methods=["GET"]),
        Route(one, retrieve, methods=["GET"]),
        Route(one, delete, methods=["DELETE"]),
        Route(f"{one}/cancel", cancel, methods=["POST"]),
        Route(f"{one}/results", results, methods=["GET"]),
    ]


def control_routes(gate: Gate, *, ledger: Callable[[], dict[str, Any]]) -> list[Route]:
    async def get_ledger(request: Request) -> Response:
        return JSONResponse(ledger())

    async def storm(request: Request) -> Response:
        try:
            body = await read_json(request)
            seconds = body.get("seconds")
            record = gate.start_storm(
                body["outcome"],
                seconds=None if seconds is None else float(seconds),
                retry_after=float(body.get("retry_after", 1.0)),
                on_task=body.get("on_task"),
            )
        except (ApiError, KeyError, TypeError, ValueError, AttributeError) as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
        await gate.sync_listener()
        return JSONResponse(record)

    async def clear(request: Request) -> Response:
        gate.storms.clear()
        await gate.sync_listener()
        return JSONResponse({"storms": gate.storms.records()})

    return [
        Route("/ledger", get_ledger, methods=["GET"]),
        Route("/control/storm", storm, methods=["POST"]),
        Route("/control/clear", clear, methods=["POST"]),
    ]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
