"""What the MCP tools do: the same operations as `python -m app inspect | process | status |
retry`, with every expected failure turned into a `ToolError` carrying the service's own message.

A `ToolError` reaches the agent as a tool result with `is_error` set and that message as its text;
anything else is a bug, which the SDK reports as "Error executing tool <name>" and logs (on stderr)
with its traceback — a traceback never reaches the agent.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from mcp.server.mcpserver.exceptions import ToolError

from app.api.schemas import JobView
from app.api.views import full_pass_view, retry_failed_job
from app.config import Settings
from app.domain import JobStatus
from app.errors import AppError
from app.mcp_server.latest import WORKSPACE_FILES, LatestWorkspace
from app.ports import Store

__all__ = ["WORKSPACE_URI", "SoulprintTools"]

log = structlog.get_logger(__name__)

WORKSPACE_URI = "soulprint://workspace/latest/{name}"


class SoulprintTools:
    """`exports_root`: when set (the HTTP mount), the path tools read only files under it — a
    holder of the shared secret must not be able to make the server read any file it can read.
    Over stdio the server runs as the person who started it, with their own reach."""

    def __init__(
        self, *, settings: Settings, store: Store, exports_root: Path | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.exports_root = exports_root
        self.latest = LatestWorkspace(settings.local_data_dir)
        # Local runs share one local user (so the fact cache pays off): one at a time, or the
        # second would be handed the first one's job while it is still running.
        self._one_local_run = asyncio.Lock()

    async def inspect_export(self, path: str) -> dict[str, Any]:
        from app.processors.inspect import inspect_export

        with _readable_errors("inspect_export"):
            export = self._export(path)
            # Reading a large export takes a while: keep the event loop (and the job runner that
            # may share it in the service) free.
            return await asyncio.to_thread(inspect_export, export, settings=self.settings)

    async def process_export(self, path: str) -> dict[str, Any]:
        from app.local_run import process_export

        with _readable_errors("process_export"):
            export = self._export(path)
            async with self._one_local_run:
                # Not a terminal, so the local run draws no progress line (stderr stays logs).
                result = await process_export(
                    export, settings=self.settings, out_dir=None, progress=io.StringIO()
                )
            job = result.job
            if job.status is not JobStatus.COMPLETE:
                raise ToolError(job.error_message or "the full pass did not complete")
            directory = self.latest.publish(job.id, result.files)
            return {
                "status": job.status.value,
                "job": JobView.of(job).model_dump(mode="json"),
                "workspace_dir": str(directory),
                "resources": [WORKSPACE_URI.format(name=name) for name in WORKSPACE_FILES],
                "files": result.files,
            }

    async def full_pass_status(self, job_or_user_id: str) -> dict[str, Any]:
        with _readable_errors("full_pass_status"):
            key = _uuid(job_or_user_id, "job_or_user_id")
            job = await self.store.get_job(key)
            if job is not None:
                return JobView.of(job).model_dump(mode="json")
            return (await full_pass_view(self.store, key)).model_dump(mode="json")

    async def retry_job(self, job_id: str) -> dict[str, Any]:
        with _readable_errors("retry_job"):
            job = await retry_failed_job(self.store, _uuid(job_id, "job_id"))
            return JobView.of(job).model_dump(mode="json")

    def _export(self, path: str) -> Path:
        if self.exports_root is None:
            return _existing_file(path)
        root = self.exports_root.resolve()
        target = (root / path).resolve()
        if Path(path).is_absolute() or not target.is_relative_to(root):
            raise ToolError(
                "over HTTP, exports are read only from the service's export folder "
                f"(LOCAL_DATA_DIR/storage): give a path inside it, not {path!r}"
            )
        if not target.is_file():
            # No server path in the message: the caller knows the folder by its name only.
            raise ToolError(f"no export at {path!r} in the service's export folder")
        return target


@contextmanager
def _readable_errors(tool: str) -> Iterator[None]:
    """Log the call as an event (never its arguments' contents) and translate our errors."""
    started = time.monotonic()
    outcome = "ok"
    try:
        yield
    except AppError as exc:
        outcome = exc.code
        raise ToolError(exc.message) from exc
    except ToolError:
        outcome = "refused"
        raise
    except Exception:
        outcome = "unexpected_error"
        raise
    finally:
        duration_ms = int((time.monotonic() - started) * 1000)
        log.info("mcp.tool_called", tool=tool, outcome=outcome, duration_ms=duration_ms)


def _existing_file(path: str) -> Path:
    export = Path(path).expanduser()
    if not export.exists():
        raise ToolError(
            f"no such file: {path} (paths are read on the machine running this server; "
            f"give an absolute path, a relative one starts from {Path.cwd()})"
        )
    if not export.is_file():
        raise ToolError(f"not a file: {path}")
    try:
        with export.open("rb"):
            pass
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return export


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ToolError(f"{what} must be a UUID, not {value!r}") from None
