"""The MCP server agents talk to: four tools and the latest local workspace as six resources.

One definition, two transports: `python -m app mcp` serves it over stdio (`serve_stdio`), and the
FastAPI app mounts it at `/mcp` over streamable HTTP (`app.mcp_server.http`). The caller hands in
the settings and the store (the CLI's own, or the service's), so both transports share them with
the rest of the process.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.mcpserver.resources import FunctionResource
from mcp.types import ToolAnnotations
from pydantic import Field

from app.config import Settings
from app.errors import NotFound
from app.mcp_server.latest import WORKSPACE_FILES
from app.mcp_server.tools import WORKSPACE_URI, SoulprintTools
from app.ports import Store

__all__ = ["build_mcp_server", "serve_stdio"]

_INSTRUCTIONS = (
    "soulprint-rlm turns a person's ChatGPT or Claude.ai data export into an OpenClaw agent "
    "workspace: SOUL.md, IDENTITY.md, USER.md, AGENTS.md, TOOLS.md and MEMORY.md. Call "
    "inspect_export first to see what an export holds and what a full pass would cost, then "
    "process_export to run it; the files it wrote stay readable as resources "
    "soulprint://workspace/latest/<FILE>. full_pass_status and retry_job look after the "
    "service's queued jobs."
)

ExportPath = Annotated[
    str,
    Field(
        description="Path of a .json, .json.gz or .zip export on the machine running this "
        "server; an absolute path is safest."
    ),
]


def build_mcp_server(
    *, settings: Settings, store: Store, exports_root: Path | None = None
) -> MCPServer:
    """`exports_root` confines the path tools to one folder (see `SoulprintTools`)."""
    tools = SoulprintTools(settings=settings, store=store, exports_root=exports_root)
    server = MCPServer("soulprint-rlm", instructions=_INSTRUCTIONS, version="0.1.0")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def inspect_export(path: ExportPath) -> dict[str, Any]:
        """Summarise a chat export (format, conversations, messages, chunks, the user's own
        signals) and estimate a full pass's LLM calls, tokens and cost. Makes no LLM call."""
        return await tools.inspect_export(path)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def process_export(path: ExportPath) -> dict[str, Any]:
        """Run a whole full pass over an export on this machine (the embedded local store;
        Anthropic when ANTHROPIC_API_KEY is set, the offline rule-based provider otherwise) and
        return the job summary and the six workspace files. It becomes the latest workspace
        (resources soulprint://workspace/latest/<FILE>). Minutes for a large export with a real
        model; run inspect_export first to see the estimated cost."""
        return await tools.process_export(path)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def full_pass_status(
        job_or_user_id: Annotated[str, Field(description="A job id or a user id (a UUID).")],
    ) -> dict[str, Any]:
        """A job's status (step, progress, error, attempts, tokens, cost), or a user's full-pass
        status with their latest job — the same JSON as `python -m app status`."""
        return await tools.full_pass_status(job_or_user_id)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=False))
    async def retry_job(
        job_id: Annotated[str, Field(description="The failed job's id (a UUID).")],
    ) -> dict[str, Any]:
        """Put a failed job back on the queue once its cause is fixed (the same operation as
        POST /jobs/{id}/retry); a running service or worker picks it up. Only a failed job can
        be retried."""
        return await tools.retry_job(job_id)

    for name in WORKSPACE_FILES:
        server.add_resource(
            FunctionResource.from_function(
                partial(_read_latest, tools, name),
                uri=WORKSPACE_URI.format(name=name),
                name=f"latest {name}",
                description=f"{name} from the latest local full pass (process_export) on this "
                "machine.",
                mime_type="text/markdown",
            )
        )
    return server


def _read_latest(tools: SoulprintTools, name: str) -> str:
    try:
        return tools.latest.read(name)
    except NotFound as exc:
        raise ResourceNotFoundError(exc.message) from exc


async def serve_stdio(*, settings: Settings, store: Store) -> None:
    """Serve over stdin/stdout until the client closes the stream. stdout carries only protocol
    messages: logs go to stderr, and while serving the SDK points fd 1 at stderr, so stray
    output from a library cannot corrupt the stream."""
    await build_mcp_server(settings=settings, store=store).run_stdio_async()
