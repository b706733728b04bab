"""What an operator does and sees, over the service's own HTTP API: queue a full pass, read a job
(`GET /jobs/{id}`: status, step, note, error, stats) and a user's full pass, ask `/ready`.

The fault tests (issue 9) judge the service by this view, not by its tables: "waiting for
Anthropic: …" must be what a person polling the API reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.process.conftest import API_KEY, FAST_JOBS, SIM_KEY, wait_until
from tests.support.service_process import ServiceProcess

__all__ = ["FAULT_CLOCKS", "Operator", "fault_settings"]

# The provider breaker probes on test clocks: a storm of seconds is waited out in seconds.
FAULT_CLOCKS: dict[str, float] = {
    "llm_probe_initial_seconds": 0.2,
    "llm_probe_max_seconds": 0.5,
    "provider_alert_after_seconds": 1.0,
}


def fault_settings(store: dict[str, Any], base_url: str, **extra: Any) -> dict[str, Any]:
    """A service on fast job clocks and fast probes, pointed at `store` and the simulator."""
    return {
        **FAST_JOBS,
        **FAULT_CLOCKS,
        **store,
        "rlm_api_key": API_KEY,
        "anthropic_api_key": SIM_KEY,
        "anthropic_base_url": base_url,
        **extra,
    }


class Operator:
    def __init__(self, service: ServiceProcess) -> None:
        self.service = service
        self._headers = {"Authorization": f"Bearer {API_KEY}"}

    def _get(self, path: str) -> dict[str, Any]:
        response = httpx.get(f"{self.service.base_url}{path}", headers=self._headers, timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def post(self, user_id: str, storage_path: str, *, force: bool = False) -> str:
        """Queue a full pass; the job's id (a new job, or the user's active one)."""
        response = httpx.post(
            f"{self.service.base_url}/process-full-v2",
            json={"user_id": user_id, "storage_path": storage_path, "force": force},
            headers=self._headers,
            timeout=10,
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/jobs/{job_id}")

    def full_pass(self, user_id: str) -> dict[str, Any]:
        return self._get(f"/users/{user_id}/full-pass")

    def ready(self) -> dict[str, Any]:
        return self._get("/ready")

    def wait_job(
        self,
        job_id: str,
        until: Callable[[dict[str, Any]], bool],
        *,
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        """The job as `GET /jobs/{id}` shows it, once `until(job)` holds."""

        def check() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if until(job) else None

        found: dict[str, Any] = wait_until(
            check,
            timeout=timeout,
            what=what,
            context=lambda: (_brief(self.job(job_id)), self.service.tail(4)),
        )
        return found

    def finished(self, job_id: str, *, timeout: float = 60) -> dict[str, Any]:
        return self.wait_job(
            job_id,
            lambda j: j["status"] in ("complete", "failed"),
            timeout=timeout,
            what=f"job {job_id} to end",
        )

    def watch(
        self, job_ids: list[str], *, seconds: float, every: float = 0.2
    ) -> list[dict[str, dict[str, Any]]]:
        """Poll the jobs for `seconds`: what an operator saw, sample by sample."""
        samples = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append({job_id: _brief(self.job(job_id)) for job_id in job_ids})
            time.sleep(every)
        return samples


def _brief(job: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "current_step", "progress", "note", "error", "attempts")
    return {k: job.get(k) for k in keys}
