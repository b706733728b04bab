"""Alerts: a Slack-style `{"text": ...}` POST when a job fails for good, when a pass completes
without new sections for a reason people must act on, and once per provider outage.

An alert names the user, the job, the step and the error; never conversation content. An alert that
cannot be sent is logged and dropped: it must never fail the job or the worker.
"""

from __future__ import annotations

import httpx
import structlog

from app.breaker import Outage
from app.domain import Job

__all__ = ["Alerter"]

log = structlog.get_logger(__name__)


class Alerter:
    def __init__(self, *, webhook_url: str | None, client: httpx.AsyncClient) -> None:
        self._url = webhook_url
        self._client = client

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    async def job_failed(self, job: Job, *, step: str | None, error: str) -> None:
        await self._send(
            f":rotating_light: soulprint full pass failed for good\n"
            f"user: {job.user_id}\njob: {job.id}\nstep: {step or 'unknown'}\n"
            f"attempts: {job.attempts}/{job.max_attempts}\nerror: {error}",
            kind="job_failed",
            job_id=job.id,
        )

    async def v2_skipped(self, job: Job, *, reason: str) -> None:
        """The pass completed with MEMORY, but the sections could not be regenerated for a
        reason people must act on (no credit, a rejected key)."""
        await self._send(
            f":warning: soulprint full pass completed without new sections\n"
            f"user: {job.user_id}\njob: {job.id}\nstep: v2_regeneration\nreason: {reason}",
            kind="v2_skipped",
            job_id=job.id,
        )

    async def job_stuck(self, job: Job, *, step: str, note: str) -> None:
        """Once per job and step: it still runs, but slower than history says it should."""
        await self._send(
            f":turtle: soulprint full pass looks stuck\nuser: {job.user_id}\njob: {job.id}\n"
            f"step: {step}\n{note}",
            kind="job_stuck",
            job_id=job.id,
        )

    async def provider_unavailable(self, outage: Outage) -> None:
        """Once per outage, however many jobs wait on it."""
        await self._send(
            f":hourglass: {outage.note()}\nLLM calls wait and no new job is claimed until it "
            "answers again; nothing fails meanwhile.",
            kind="provider_unavailable",
        )

    async def _send(self, text: str, *, kind: str, job_id: str | None = None) -> None:
        if not self._url:
            return
        try:
            response = await self._client.post(self._url, json={"text": text}, timeout=10.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning(
                "alert.send_failed", kind=kind, error_type=type(exc).__name__, job_id=job_id
            )
            return
        log.info("alert.sent", kind=kind, job_id=job_id)
