"""`python -m app mcp` as an agent runs it: a subprocess, spoken to over stdio by the SDK client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent

from app.config import Settings
from app.local_run import LOCAL_USER_ID
from app.processors.inspect import inspect_export
from bench.make_export import write_export
from tests.mcp_server.test_http import INITIALIZE

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "app" / "sample_data" / "sample-export.json"
WORKSPACE = ["SOUL.md", "IDENTITY.md", "USER.md", "AGENTS.md", "TOOLS.md", "MEMORY.md"]
NOBODY = "00000000-0000-4000-8000-000000000009"
TOOLS = ["full_pass_status", "inspect_export", "process_export", "retry_job"]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    # PYTHONPATH: this checkout's `app`, whatever the virtualenv's editable install points at.
    return {"PYTHONPATH": str(ROOT), "LOCAL_DATA_DIR": str(data_dir), "LOG_FORMAT": "json", **extra}


@asynccontextmanager
async def stdio_server(tmp_path: Path, **env: str) -> AsyncIterator[Client]:
    """A fresh `python -m app mcp` process (run from an empty folder: no .env) and a client."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "app", "mcp"],
        env=_env(tmp_path / "data", **env),
        cwd=tmp_path,
    )
    with (tmp_path / "server-stderr.log").open("a") as errlog:
        async with asyncio.timeout(60), Client(stdio_client(params, errlog=errlog)) as client:
            yield client


def _text(result: object) -> str:
    content = getattr(result, "content", [])
    assert content
    assert isinstance(content[0], TextContent)
    return content[0].text


async def test_inspect_process_then_read_the_workspace_from_another_process(
    tmp_path: Path,
) -> None:
    export = write_export(tmp_path / "generated.zip", size_mb=0.1, fmt="zip", seed=3)
    async with stdio_server(tmp_path) as client:
        assert sorted(tool.name for tool in (await client.list_tools()).tools) == TOOLS
        listed = sorted(str(r.uri) for r in (await client.list_resources()).resources)
        assert listed == sorted(f"soulprint://workspace/latest/{name}" for name in WORKSPACE)

        inspected = await client.call_tool("inspect_export", {"path": str(export)})
        assert not inspected.is_error, _text(inspected)
        # The same summary and estimate as `python -m app inspect`.
        expected = inspect_export(export, settings=Settings(_env_file=None))  # type: ignore[call-arg]
        assert inspected.structured_content == expected
        assert expected["container"] == "zip"
        assert expected["conversations"] > 0

        processed = await client.call_tool("process_export", {"path": str(SAMPLE)})
        assert not processed.is_error, _text(processed)
        result = processed.structured_content
        assert result is not None
        assert result["status"] == "complete"
        assert result["job"]["conversation_count"] == 6
        assert sorted(result["files"]) == sorted(WORKSPACE)
        assert "Lisbon" in result["files"]["MEMORY.md"]
        job_id = result["job"]["job_id"]

        status = await client.call_tool("full_pass_status", {"job_or_user_id": job_id})
        assert status.structured_content is not None
        assert status.structured_content["status"] == "complete"
        by_user = await client.call_tool("full_pass_status", {"job_or_user_id": LOCAL_USER_ID})
        assert by_user.structured_content is not None
        assert by_user.structured_content["full_pass_status"] == "complete"
        assert by_user.structured_content["job"]["job_id"] == job_id

        retried = await client.call_tool("retry_job", {"job_id": job_id})
        assert retried.is_error
        assert "only a failed job" in _text(retried)

    # A second server process (what another agent session starts) serves the same files.
    async with stdio_server(tmp_path) as client:
        for name in WORKSPACE:
            read = await client.read_resource(f"soulprint://workspace/latest/{name}")
            assert getattr(read.contents[0], "text", None) == result["files"][name]
            assert read.contents[0].mime_type == "text/markdown"


async def test_errors_are_the_services_messages_not_tracebacks(tmp_path: Path) -> None:
    not_json = tmp_path / "notes.json"
    not_json.write_text("this is not an export")
    no_conversations = tmp_path / "empty.json"
    no_conversations.write_text("[]")
    async with stdio_server(tmp_path) as client:
        with pytest.raises(MCPError, match="call the process_export tool first"):
            await client.read_resource("soulprint://workspace/latest/MEMORY.md")

        cases = [
            ("inspect_export", {"path": str(not_json)}, "JSON"),
            ("inspect_export", {"path": str(tmp_path / "missing.zip")}, "no such file"),
            ("inspect_export", {"path": str(tmp_path)}, "not a file"),
            ("process_export", {"path": str(no_conversations)}, "BadExport"),
            ("full_pass_status", {"job_or_user_id": "job-7"}, "must be a UUID"),
            ("full_pass_status", {"job_or_user_id": NOBODY}, "no profile and no full-pass"),
            ("retry_job", {"job_id": "00000000-0000-4000-8000-000000000001"}, "no job"),
        ]
        for tool, arguments, message in cases:
            result = await client.call_tool(tool, arguments)
            assert result.is_error, (tool, arguments)
            assert message in _text(result), (tool, _text(result))
            assert "Traceback" not in _text(result)

        # The failed local run left no workspace behind.
        with pytest.raises(MCPError, match="call the process_export tool first"):
            await client.read_resource("soulprint://workspace/latest/SOUL.md")


def test_stdout_carries_only_protocol_messages(tmp_path: Path) -> None:
    """Logs (even a settings warning written before logging is configured) go to stderr."""
    messages = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "process_export", "arguments": {"path": str(SAMPLE)}},
        },
    ]
    env = _env(tmp_path / "data", LOG_LEVEL="DEBUG", FACT_EXTRACTION_CONCURRENCY="999")
    with subprocess.Popen(
        [sys.executable, "-m", "app", "mcp"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            replies, rest, stderr = _converse(proc, messages, answers=2)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert rest == ""
    assert [reply["id"] for reply in replies] == [1, 2]
    assert replies[1]["result"]["isError"] is False
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "config.invalid_value" in events
    assert "step.completed" in events
    assert "mcp.tool_called" in events


def _converse(
    proc: subprocess.Popen[str], messages: list[dict[str, Any]], *, answers: int
) -> tuple[list[dict[str, Any]], str, str]:
    """Send `messages`, read `answers` replies (each stdout line must be JSON), then end the
    session by closing stdin; returns the replies, what else reached stdout, and stderr."""
    assert proc.stdin is not None
    assert proc.stdout is not None
    for message in messages:
        proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    replies = []
    while len(replies) < answers:
        line = proc.stdout.readline()
        assert line, "the server closed stdout early"
        replies.append(json.loads(line))
    rest, stderr = proc.communicate(timeout=30)
    return replies, rest, stderr
