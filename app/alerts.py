"""Dead-letter alerts: a Slack-style `{"text": ...}` POST when a job fails for good.

An alert names the user, the job, the step and the error; never conversation content. An alert that
cannot be sent is logged and dropped: it must never fail the job or the worker.
"""

from __future__ import annotations

import httpx
import structlog

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
        if not self._url:
            return
        text = (
            f":rotating_light: soulprint full pass failed for good\n"
            f"user: {job.user_id}\njob: {job.id}\nstep: {step or 'unknown'}\n"
            f"attempts: {job.attempts}/{job.max_attempts}\nerror: {error}"
        )
        try:
            response = await self._client.post(self._url, json={"text": text}, timeout=10.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("alert.send_failed", error_type=type(exc).__name__, job_id=job.id)
            return
        log.info("alert.sent", job_id=job.id)
