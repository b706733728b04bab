"""`python -m app <command>`: one entry point for people and for deploys.

Exit codes: 0 success, 1 the work failed (a job failed, the store is unreachable), 2 bad usage or
bad input (an unreadable export, an invalid setting), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import uuid
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import httpx
import structlog

from app import cli_operator
from app.cache_cli import add_cache_commands, purge_fact_cache, validate_fact_cache
from app.config import Settings, get_settings
from app.domain import JobStatus
from app.errors import AppError, BadExport, ConfigError, ValidationFailed
from app.logging import configure_logging

__all__ = ["DEMO_USER_ID", "main"]

log = structlog.get_logger(__name__)

DEMO_USER_ID = "00000000-0000-4000-8000-00000000d3d0"
DEMO_STORAGE_PATH = f"imports/{DEMO_USER_ID}/sample-export.json"
_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def _say(text: str) -> None:
    """The command's own output (results for people and scripts), on stdout."""
    sys.stdout.write(text + "\n")


def _error(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="soulprint-rlm: turn a ChatGPT or Claude.ai export into MEMORY and profile "
        "sections. Settings come from the environment (see .env.example).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    serve = commands.add_parser("serve", help="run the HTTP API (and the job runner)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")

    commands.add_parser("worker", help="run only the job runner (a worker process, no HTTP)")

    inspect = commands.add_parser(
        "inspect", help="summarise an export and estimate a full pass's cost, without any LLM call"
    )
    inspect.add_argument("export", type=Path, help="a .json, .json.gz or .zip export")

    process = commands.add_parser(
        "process",
        help="run a whole full pass on this machine and write an OpenClaw agent workspace",
        description="Runs the full pass locally (embedded store; Anthropic when ANTHROPIC_API_KEY "
        "is set, the offline rule-based provider otherwise) and writes SOUL.md, IDENTITY.md, "
        "USER.md, AGENTS.md, TOOLS.md and MEMORY.md. Progress is shown on a terminal.",
    )
    process.add_argument("export", type=Path, help="a .json, .json.gz or .zip export")
    process.add_argument(
        "--out",
        type=Path,
        default=Path("soulprint-workspace"),
        help="folder for the workspace files (default ./soulprint-workspace)",
    )
    process.add_argument(
        "--json", action="store_true", help="print the result (job and files) as JSON on stdout"
    )
    process.add_argument(
        "--verbose", action="store_true", help="show the pipeline's log events (on stderr)"
    )

    status = commands.add_parser("status", help="a job's or a user's full-pass status, as JSON")
    status.add_argument("id", help="a job id, or a user id (both UUIDs)")

    cli_operator.add_commands(commands)  # events, retry, cancel, forget, stats

    add_cache_commands(commands)

    commands.add_parser(
        "mcp",
        help="serve the MCP server (tools and the latest workspace) over stdio, for an agent",
        description="Speaks the Model Context Protocol on stdin/stdout (logs go to stderr). "
        "An MCP client starts it; see the README for Claude Desktop and OpenClaw.",
    )

    commands.add_parser(
        "demo",
        help="put the bundled sample export in the local store for a demo user and print the "
        "request that processes it",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Logs go to stderr, so stdout stays the command's own output (JSON for scripts); that holds
    # from the start, for warnings about the settings themselves too.
    configure_logging()
    try:
        settings = get_settings()
        configure_logging(log_format=settings.log_format, level=settings.log_level)
        if args.command == "serve":
            return _serve(settings, host=args.host, port=args.port)
        if args.command == "worker":
            return asyncio.run(_worker(settings))
        if args.command == "inspect":
            return _inspect(settings, args.export)
        if args.command == "demo":
            return asyncio.run(_demo(settings))
        if args.command == "process":
            if not args.export.is_file():
                _error(f"no such file: {args.export}")
                return 2
            if not args.verbose:  # the progress line is the display; events only when asked
                configure_logging(log_format=settings.log_format, level="WARNING")
            try:
                return asyncio.run(_process(settings, args.export, out=args.out, as_json=args.json))
            except KeyboardInterrupt:
                _error(
                    "interrupted; the job went back to the queue: run the same command again "
                    "to go on (chunks already extracted are not paid for twice)"
                )
                return _INTERRUPTED
        if args.command == "status":
            return asyncio.run(_status(settings, args.id))
        if args.command == "cache":
            return asyncio.run(_cache(settings, args))
        if args.command == "mcp":
            return asyncio.run(_mcp(settings))
        if args.command in cli_operator.COMMANDS:
            return asyncio.run(cli_operator.run(args, settings))
    except (ConfigError, BadExport, ValidationFailed) as exc:
        _error(exc.message)
        return 2
    except AppError as exc:
        _error(exc.message)
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return _INTERRUPTED
    return 2  # pragma: no cover - argparse rejects unknown commands first


def _serve(settings: Settings, *, host: str, port: int) -> int:
    import uvicorn

    from app.main import create_app

    app = create_app(settings)
    # One worker: the job runner lives in this process. Uvicorn's own shutdown wait stays below
    # the grace the runner gets, and both below Render's maxShutdownDelaySeconds.
    uvicorn.run(app, host=host, port=port, workers=1, log_config=None, timeout_graceful_shutdown=5)
    return 0


async def _worker(settings: Settings) -> int:
    from app.main import build_guarded_llm, build_runner, build_store, check_settings

    check_settings(settings, serving=False)
    store, llm = build_store(settings), build_guarded_llm(settings)
    async with httpx.AsyncClient(timeout=10.0) as http:
        runner = build_runner(settings, store=store, llm=llm, http=http)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        runner.start()
        await stop.wait()
        log.info("worker.stopping", reason="signal")
        await runner.stop()
    await llm.aclose()
    await store.aclose()
    return 0


def _inspect(settings: Settings, export: Path) -> int:
    from app.processors.inspect import inspect_export

    if not export.is_file():
        _error(f"no such file: {export}")
        return 2
    summary = inspect_export(export, settings=settings)
    _say(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


async def _process(settings: Settings, export: Path, *, out: Path, as_json: bool) -> int:
    from app.api.schemas import JobView
    from app.local_run import process_export

    result = await process_export(export, settings=settings, out_dir=out)
    job = result.job
    if as_json:
        _say(
            json.dumps(
                {
                    "status": job.status.value,
                    "job": JobView.of(job).model_dump(mode="json"),
                    "out_dir": str(result.out_dir) if result.out_dir else None,
                    "files": result.files,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    if job.status is not JobStatus.COMPLETE:
        _error(job.error_message or "the full pass did not complete")
        return 2 if (job.error_message or "").split(": ")[1:2] == ["BadExport"] else 1
    if not as_json:
        _say(
            f"complete: {_count(job.conversation_count, 'conversation')}, "
            f"{_count(job.chunk_count, 'chunk')}, {job.llm_provider} provider, "
            f"${job.cost_usd:.4f}"
        )
        _say(f"wrote {', '.join(result.files)} to {result.out_dir}")
    return 0


def _count(n: int | None, noun: str) -> str:
    return f"{n or 0} {noun}{'' if n == 1 else 's'}"


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ConfigError(f"{what} must be a UUID, not {value!r}") from None


async def _status(settings: Settings, ident: str) -> int:
    from app.api.schemas import JobView
    from app.api.views import full_pass_view
    from app.main import build_store

    key = _uuid(ident, "the id")
    store = build_store(settings)
    try:
        job = await store.get_job(key)
        if job is not None:
            _say(JobView.of(job).model_dump_json(indent=2))
        else:
            _say((await full_pass_view(store, key)).model_dump_json(indent=2))
    finally:
        await store.aclose()
    return 0


async def _cache(settings: Settings, args: argparse.Namespace) -> int:
    from app.main import build_store

    user_id = _uuid(args.user, "--user") if args.user else None
    store = build_store(settings)
    try:
        if args.cache_command == "validate":
            report = await validate_fact_cache(store, user_id=user_id)
        else:
            report = await purge_fact_cache(
                store, user_id=user_id, stale=args.stale, everything=args.all
            )
    finally:
        await store.aclose()
    _say(json.dumps(report, indent=2))
    return 0


async def _mcp(settings: Settings) -> int:
    """stdout is the protocol: nothing here may print; logs already go to stderr."""
    from app.main import build_store, check_settings
    from app.mcp_server.server import serve_stdio

    check_settings(settings, serving=False)
    store = build_store(settings)
    try:
        await serve_stdio(settings=settings, store=store)
    finally:
        await store.aclose()
    return 0


async def _demo(settings: Settings) -> int:
    from app.adapters.local_store import LocalStore

    if settings.uses_supabase:
        _error("demo seeds the local store; unset SUPABASE_URL")
        return 2
    store = LocalStore(settings.local_data_dir)
    try:
        await store.ensure_profile(DEMO_USER_ID)
        sample = resources.files("app.sample_data").joinpath("sample-export.json")
        with resources.as_file(sample) as source:
            target = store.put_export(DEMO_STORAGE_PATH, source)
    finally:
        await store.aclose()
    body = json.dumps({"user_id": DEMO_USER_ID, "storage_path": DEMO_STORAGE_PATH})
    _say(f"demo export placed at {target}")
    _say(f"demo user {DEMO_USER_ID} has a profile row; with the service running, process it:")
    _say(
        "  curl -s -X POST localhost:8000/process-full-v2 -H 'Content-Type: application/json'"
        f" -d '{body}'"
    )
    _say(f"  curl -s localhost:8000/users/{DEMO_USER_ID}/full-pass")
    return 0
