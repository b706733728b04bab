"""`python -m app events | retry | cancel | forget | stats steps` (issue 11): the operator's
commands, on whichever store the settings name. Readable lines on a terminal, `--json` for
scripts; the same operations as the API's."""

from __future__ import annotations

import argparse
import json
import socket
import sys
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from app.api.operator_schemas import (
    BulkRetryView,
    CancelView,
    ForgetView,
    JobEventsView,
    JobEventView,
)
from app.api.schemas import JobView
from app.config import Settings
from app.domain import STEPS
from app.errors import JobNotFound, ValidationFailed
from app.fleet import CancelOutcome, FailedJobQuery, JobEvent, parse_moment
from app.ports import Store
from app.step_stats import load_step_thresholds

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = frozenset({"events", "retry", "cancel", "forget", "stats"})


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def _actor() -> str:
    return f"operator:cli:{socket.gethostname()}"


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationFailed(f"{what} must be a UUID, not {value!r}", field=what) from None


def add_commands(commands: Any) -> None:
    """Add the operator's subcommands to `python -m app`'s parser."""
    events = commands.add_parser("events", help="a job's audit trail, oldest first")
    events.add_argument("job_id", help="the job's id")
    events.add_argument("--json", action="store_true", help="print the events as JSON")

    retry = commands.add_parser(
        "retry",
        help="put a failed job back on the queue, or (--failed) every failed job the filters pick",
        description="Retry one failed job (JOB_ID), or with --failed every failed job matching "
        "the filters: a user's latest failure only, never over an active or newer job.",
    )
    retry.add_argument("job_id", nargs="?", help="the failed job's id")
    retry.add_argument("--failed", action="store_true", help="retry failed jobs in bulk")
    retry.add_argument("--since", help="failed at or after: 30m, 2h, 1d or an ISO 8601 time")
    retry.add_argument("--until", help="failed before: a duration or an ISO 8601 time")
    retry.add_argument("--error-contains", help="a case-insensitive substring of the error")
    retry.add_argument("--step", choices=STEPS, help="the step the error names")
    retry.add_argument("--user", help="only this user's jobs (UUID)")
    retry.add_argument("--limit", type=int, help="queue at most this many")
    retry.add_argument("--dry-run", action="store_true", help="list what would be retried")
    retry.add_argument("--json", action="store_true", help="print the report as JSON")

    cancel = commands.add_parser(
        "cancel", help="withdraw a queued job, or stop a running one at its next step boundary"
    )
    cancel.add_argument("job_id", help="the job's id")
    cancel.add_argument("--json", action="store_true", help="print the result as JSON")

    forget = commands.add_parser(
        "forget",
        help="remove the service's data for a user (jobs, events, cached facts, temp files)",
    )
    forget.add_argument("user_id", help="the user's id")
    forget.add_argument("--cancel", action="store_true", help="cancel their active job first")
    forget.add_argument(
        "--chunks", action="store_true", help="also delete their conversation_chunks"
    )
    forget.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="with --cancel, seconds to wait for a running job to stop (default 120)",
    )
    forget.add_argument("--json", action="store_true", help="print the counts as JSON")

    stats = commands.add_parser("stats", help="what the service learned from history")
    stats.add_argument("what", choices=["steps"], help="steps: stuck-detection thresholds")
    stats.add_argument("--json", action="store_true", help="print the thresholds as JSON")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from app.main import build_store

    if args.command == "retry":
        filters = (args.since, args.until, args.error_contains, args.step, args.user, args.limit)
        if args.failed == bool(args.job_id) or (args.job_id and any(filters)):
            raise ValidationFailed(
                "give a JOB_ID, or --failed with filters (not both)", field="retry"
            )
    store = build_store(settings)
    try:
        if args.command == "events":
            return await _events(store, _uuid(args.job_id, "job_id"), as_json=args.json)
        if args.command == "retry":
            return await _retry(store, args)
        if args.command == "cancel":
            return await _cancel(store, _uuid(args.job_id, "job_id"), as_json=args.json)
        if args.command == "forget":
            return await _forget(store, args)
        return await _stats(store, settings, as_json=args.json)
    finally:
        await store.aclose()


def _event_line(event: JobEvent) -> str:
    at = event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
    details = " ".join(
        f"{k}={v if isinstance(v, int | float) else json.dumps(v)}" for k, v in event.detail.items()
    )
    step = event.step or "-"
    return f"{at}  #{event.attempt}  {event.kind:<16} {step:<22} {details}  [{event.worker_id}]"


async def _events(store: Store, job_id: str, *, as_json: bool) -> int:
    if await store.get_job(job_id) is None:
        raise JobNotFound(f"no job {job_id}")
    events = await store.list_job_events(job_id)
    if as_json:
        view = JobEventsView(job_id=job_id, events=[JobEventView.of(e) for e in events])
        _say(view.model_dump_json(indent=2))
    elif not events:
        _say(f"job {job_id} has no events yet")
    else:
        for event in events:
            _say(_event_line(event))
    return 0


async def _retry(store: Store, args: argparse.Namespace) -> int:
    from app.api.views import retry_failed_job
    from app.bulk_retry import bulk_retry

    if args.job_id:
        job = await retry_failed_job(store, _uuid(args.job_id, "job_id"), actor=_actor())
        _say(JobView.of(job).model_dump_json(indent=2))
        return 0
    now = datetime.now(UTC)
    query = FailedJobQuery(
        since=parse_moment(args.since, now=now, field_name="since") if args.since else None,
        until=parse_moment(args.until, now=now, field_name="until") if args.until else None,
        error_contains=args.error_contains or None,
        step=args.step,
        user_id=_uuid(args.user, "user") if args.user else None,
    )
    report = await bulk_retry(store, query, actor=_actor(), dry_run=args.dry_run, limit=args.limit)
    if args.json:
        _say(BulkRetryView.of(report).model_dump_json(indent=2))
        return 0
    verb = "would be queued" if report.dry_run else "queued"
    prefix = "dry run: " if report.dry_run else ""
    _say(
        f"{prefix}{report.matched} failed job(s) matched; {report.queued} {verb}, "
        f"{report.skipped} skipped"
    )
    for item in report.items:
        when = item.job.failed_at
        failed = when.strftime("%Y-%m-%d %H:%M") + "Z" if when else "?"
        reason = f"  ({item.reason})" if item.reason else ""
        _say(
            f"  {item.outcome:<11} {item.job.job_id}  failed {failed}  "
            f"{item.job.error_message}{reason}"
        )
    return 0


async def _cancel(store: Store, job_id: str, *, as_json: bool) -> int:
    from app.cancellation import request_cancel

    job, outcome = await request_cancel(store, job_id, actor=_actor())
    if as_json:
        _say(CancelView(outcome=outcome, job=JobView.of(job)).model_dump_json(indent=2))
    elif outcome is CancelOutcome.CANCEL_REQUESTED:
        _say(
            f"cancel requested: job {job.id} is running ({job.current_step or 'starting'}); "
            "its runner stops it at the next call or step boundary"
        )
    elif outcome is CancelOutcome.CANCELED:
        _say(f"canceled: job {job.id} was withdrawn; the profile says it was canceled")
    else:
        _say(f"job {job.id} was already canceled")
    return 0


async def _forget(store: Store, args: argparse.Namespace) -> int:
    from app.forgetting import forget_user_data

    report = await forget_user_data(
        store,
        _uuid(args.user_id, "user_id"),
        actor=_actor(),
        cancel=args.cancel,
        chunks=args.chunks,
        wait_seconds=args.wait,
    )
    if args.json:
        _say(ForgetView.of(report).model_dump_json(indent=2))
        return 0
    c = report.counts
    chunks = f"{c.chunks} chunks" if report.chunks_included else "chunks kept (no --chunks)"
    if report.canceled_job is not None:
        _say(f"canceled job {report.canceled_job.id} first")
    _say(
        f"removed for user {report.user_id}: {c.jobs} jobs, {c.events} events, "
        f"{c.fact_cache} cached facts, {chunks}, {report.temp_dirs} temp dirs; "
        "the profile row was kept (the product's)"
    )
    return 0


async def _stats(store: Store, settings: Settings, *, as_json: bool) -> int:
    thresholds = await load_step_thresholds(store, settings)
    rows = list(thresholds.steps.values())
    if as_json:
        limits = {"factor": thresholds.factor, "floor_seconds": thresholds.floor_seconds}
        _say(json.dumps({**limits, "steps": [asdict(t) for t in rows]}, indent=2))
        return 0
    _say(f"{'step':<23} {'unit':<6} {'samples':>7} {'p50/unit':>10} {'p99/unit':>10}  source")
    for t in rows:
        p50 = f"{t.p50_per_unit:.3f}s" if t.p50_per_unit is not None else "-"
        source = "learned" if t.learned else "default (too little history)"
        _say(f"{t.step:<23} {t.unit:<6} {t.samples:>7} {p50:>10} {t.p99_per_unit:>9.3f}s  {source}")
    _say(
        f"a running step is stuck past max({thresholds.floor_seconds:g} s, "
        f"{thresholds.factor:g} × p99/unit × units)"
    )
    return 0
