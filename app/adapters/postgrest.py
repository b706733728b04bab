"""HTTP plumbing for Supabase (PostgREST + Storage): auth headers, bounded retries, and the
translation of their error bodies into our `StoreError` tree at this edge.

Retried: timeouts, connection errors, 5xx, 429, and PostgREST's own connection codes PGRST000-003.
Never retried: any other 4xx, which repeating will not fix. Keys never reach a log line.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import structlog

from app.errors import ExportNotFound, StoreError, StoreUnavailable

__all__ = [
    "PostgrestError",
    "SupabaseHttp",
    "error_from_response",
    "is_transient",
    "is_uuid",
    "jsonable",
    "quoted",
    "quoted_list",
]

_log = structlog.get_logger(__name__)
_TRANSIENT_CODES = frozenset({"PGRST000", "PGRST001", "PGRST002", "PGRST003"})
_COLUMN_RE = re.compile(r"'([^']+)' column")
_USER_AGENT = "soulprint-rlm/0.1 (+httpx)"  # secret keys are refused with browser-like agents


class PostgrestError(StoreError):
    """A refused request; `vendor_code` is PostgREST's or PostgreSQL's code (e.g. `23505`)."""

    def __init__(self, message: str, *, table: str, vendor_code: str) -> None:
        super().__init__(message, table=table)
        self.vendor_code = vendor_code


def jsonable(value: Any) -> Any:
    """A value as PostgREST takes it in a JSON body: datetimes as ISO 8601 in UTC, decimals as
    text; anything else as it is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def is_uuid(value: str) -> bool:
    """Whether `value` can filter a uuid column: PostgREST refuses the whole request otherwise."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def quoted(value: str) -> str:
    """A filter value in double quotes, so commas, dots or parentheses in it cannot split an
    `in.(...)` list or an `or=(...)` tree."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quoted_list(values: Sequence[str]) -> str:
    """`in.(...)` with every value double-quoted."""
    return "(" + ",".join(quoted(value) for value in values) + ")"


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"message": response.text[:300]}
    return data if isinstance(data, dict) else {"message": str(data)[:300]}


def is_transient(response: httpx.Response) -> bool:
    if response.status_code >= 500 or response.status_code == 429:
        return True
    return str(_body(response).get("code", "")) in _TRANSIENT_CODES


def error_from_response(response: httpx.Response, *, table: str, action: str) -> StoreError:
    """A PostgREST `{code, message, details, hint}` or Storage error → a StoreError a person can
    act on, naming the table (or bucket) and what went wrong."""
    body = _body(response)
    code = str(body.get("code") or body.get("error") or "")
    message = str(body.get("message") or "")
    status = response.status_code
    if str(body.get("statusCode", "")) == "404" or (status == 404 and action == "download"):
        return ExportNotFound(
            f"no export at {table!r} in Supabase Storage: check storage_path (bucket/user/file)",
            table=table,
        )
    if code == "PGRST204":
        match = _COLUMN_RE.search(message)
        column = match.group(1) if match else "?"
        text = (
            f"{table} has no column {column!r} ({action} refused): apply the migrations in "
            "supabase/migrations and reload the schema cache"
        )
    elif code == "PGRST205":
        text = f"table {table} does not exist ({action}): apply supabase/migrations"
    elif code == "PGRST202":
        text = (
            f"database function {table} not found ({action}): apply the migrations, then "
            "NOTIFY pgrst, 'reload schema'"
        )
    elif code == "23505":
        text = f"{table}: {action} conflicts with an existing row ({message})"
    elif status in (401, 403):
        text = (
            f"Supabase refused the service key for {table} ({action}, HTTP {status}): "
            "check SUPABASE_SERVICE_KEY"
        )
    else:
        text = f"{table}: {action} failed (HTTP {status}, {code or 'no code'}): {message}"
    hint = body.get("hint")
    if hint and code not in ("PGRST204", "PGRST205"):
        text = f"{text} (hint: {hint})"
    return PostgrestError(text, table=table, vendor_code=code)


class SupabaseHttp:
    """One Supabase project over one long-lived `httpx.AsyncClient`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        service_key: str,
        max_retries: int,
        retry_base_delay: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "apikey": service_key,
            "Authorization": f"Bearer {service_key}",
            "User-Agent": _USER_AGENT,
        }
        self._max_retries = max_retries
        self._base_delay = retry_base_delay
        self._sleep = sleep

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped at 30 s."""
        return float(min(30.0, self._base_delay * 2**attempt) * random.uniform(0.5, 1.0))

    async def request(
        self,
        method: str,
        path: str,
        *,
        table: str,
        action: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries; return the 2xx response or raise our error."""
        async with self.stream(
            method, path, table=table, action=action, params=params, json=json, headers=headers
        ) as response:
            await response.aread()
            return response

    async def select(self, table: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """GET `/rest/v1/{table}` with `params` (filters, `select`, `order`, `limit`): the rows."""
        response = await self.request(
            "GET", f"/rest/v1/{table}", table=table, action="select", params=params
        )
        rows: list[dict[str, Any]] = response.json()
        return rows

    async def rpc(self, fn: str, args: Mapping[str, Any]) -> Any:
        """Call the SQL function `fn` with `args` (each value `jsonable`): its JSON result."""
        response = await self.request(
            "POST",
            f"/rest/v1/rpc/{fn}",
            table=fn,
            action="rpc",
            json={k: jsonable(v) for k, v in args.items()},
        )
        return response.json()

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        table: str,
        action: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Like `request`, but yields the open 2xx response so the body can be streamed."""
        url = f"{self.base_url}{path}"
        all_headers = {**self._headers, **(headers or {})}
        attempt = 0
        while True:
            request = self.client.build_request(
                method, url, params=params, json=json, headers=all_headers
            )
            try:
                response = await self.client.send(request, stream=True)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = type(exc).__name__
            else:
                if response.is_success:
                    break
                await response.aread()
                await response.aclose()
                if not is_transient(response):
                    raise error_from_response(response, table=table, action=action)
                problem = f"HTTP {response.status_code} {_body(response).get('code', '')}".strip()
            if attempt >= self._max_retries:
                raise StoreUnavailable(
                    f"Supabase did not answer {action} on {table} after {attempt + 1} attempts "
                    f"(last: {problem}); check that the Supabase project is up and in its limits",
                    table=table,
                )
            delay = self._delay(attempt)
            _log.warning(
                "supabase.retry",
                table=table,
                action=action,
                attempt=attempt + 1,
                problem=problem,
                delay_s=round(delay, 3),
            )
            await self._sleep(delay)
            attempt += 1
        # A failure while the caller reads the body is the caller's to handle: a half-read
        # response cannot be replayed from here.
        try:
            yield response
        finally:
            await response.aclose()
