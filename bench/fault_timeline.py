"""What an operator sees of full passes over time, for the fault trial (bench/fault_trial.py).

A `Watcher` polls `GET /users/{id}/full-pass` and `GET /jobs/{id}` every few seconds in a thread,
as a person refreshing a dashboard would, and keeps every sample; `timeline` tells one job's
samples as segments of what stayed the same (profile status, job status, step, note).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

__all__ = ["Sample", "Watcher", "render", "timeline"]


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the watcher started
    job_id: str
    profile: str | None  # user_profiles.full_pass_status
    status: str | None  # processing_jobs.status
    step: str | None
    note: str | None
    progress: int

    def key(self) -> tuple[str | None, ...]:
        return (self.profile, self.status, self.step, self.note)


class Watcher:
    """Polls the service for each job it is given; `stop()` returns every sample."""

    def __init__(self, base_url: str, *, api_key: str, every: float = 3.0) -> None:
        self._client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )
        self._every = every
        self._jobs: dict[str, str] = {}  # job id → user id
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-watcher", daemon=True)
        self.started = time.monotonic()
        self.errors = 0

    def watch(self, job_id: str, user_id: str) -> None:
        with self._lock:
            self._jobs[job_id] = user_id

    def start(self) -> Watcher:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop polling, after one last look at every job (how it ended)."""
        self._stop.set()
        self._thread.join(timeout=30)
        with self._lock:
            jobs = dict(self._jobs)
        last = [self._sample(job_id, user_id) for job_id, user_id in jobs.items()]
        self._client.close()
        with self._lock:
            return [*self._samples, *(s for s in last if s is not None)]

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                jobs = dict(self._jobs)
            for job_id, user_id in jobs.items():
                sample = self._sample(job_id, user_id)
                if sample is not None:
                    with self._lock:
                        self._samples.append(sample)
            self._stop.wait(self._every)

    def _sample(self, job_id: str, user_id: str) -> Sample | None:
        try:
            profile = self._client.get(f"/users/{user_id}/full-pass").json()
            job = self._client.get(f"/jobs/{job_id}").json()
        except (httpx.HTTPError, ValueError):
            self.errors += 1  # the service is restarting, or busy: a gap in the timeline
            return None
        return Sample(
            t=round(time.monotonic() - self.started, 1),
            job_id=job_id,
            profile=profile.get("full_pass_status"),
            status=job.get("status"),
            step=job.get("current_step"),
            note=job.get("note"),
            progress=int(job.get("progress") or 0),
        )


def timeline(samples: list[Sample], job_id: str) -> list[dict[str, Any]]:
    """One job's samples as segments: from, to, and what the operator read meanwhile."""
    segments: list[dict[str, Any]] = []
    for sample in (s for s in samples if s.job_id == job_id):
        if segments and tuple(segments[-1]["key"]) == sample.key():
            segments[-1]["to_s"] = sample.t
            segments[-1]["progress_to"] = sample.progress
            continue
        fields = asdict(sample)
        segments.append(
            {
                "from_s": sample.t,
                "to_s": sample.t,
                "key": list(sample.key()),
                "progress_from": sample.progress,
                "progress_to": sample.progress,
                **{k: fields[k] for k in ("profile", "status", "step", "note")},
            }
        )
    for segment in segments:
        del segment["key"]
    return segments


def render(segments: list[dict[str, Any]]) -> str:
    """`  0–12 s  processing | running extract_facts 35→61 % | waiting for Anthropic: …`."""
    lines = []
    for s in segments:
        progress = (
            f"{s['progress_from']} %"
            if s["progress_from"] == s["progress_to"]
            else f"{s['progress_from']}→{s['progress_to']} %"
        )
        span = f"{s['from_s']:>6.0f}–{s['to_s']:<6.0f}s"
        state = f"{s['profile']} | {s['status']} {s['step'] or '(no step)'} {progress}"
        lines.append(f"  {span} {state}" + (f" | {s['note']}" if s["note"] else ""))
    return "\n".join(lines)
