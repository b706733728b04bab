"""Prometheus metrics (`GET /metrics`): what a job costs and where its time goes, process-wide.

Per-job figures live on the job row (`stats`); these are the fleet view. LLM calls are counted by
`MeteredLLM`, a decorator around whatever LLM the lifespan built, so no stage has to remember to.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.delegating_llm import DelegatingLLM
from app.domain import Job
from app.errors import LLMError
from app.ports import LLM, LLMReply, MessageBatches
from app.pricing import ModelPrice, call_cost_usd
from app.queue_order import size_class

__all__ = ["METRICS", "REGISTRY", "MeteredLLM", "Metrics"]

T = TypeVar("T")

REGISTRY = CollectorRegistry(auto_describe=True)


class Metrics:
    """The service's instruments, on their own registry (no default process collectors)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Gauge(
            "soulprint_jobs",
            "Jobs in the store by status (read at scrape time)",
            ["status"],
            registry=registry,
        )
        self.jobs_finished = Counter(
            "soulprint_jobs_finished_total",
            "Jobs this process finished, by outcome (complete, failed, retry, released)",
            ["outcome"],
            registry=registry,
        )
        self.jobs_in_flight = Gauge(
            "soulprint_jobs_in_flight", "Jobs this process is running", registry=registry
        )
        self.step_seconds = Histogram(
            "soulprint_step_duration_seconds",
            "Wall time of each pipeline step",
            ["step"],
            buckets=(0.05, 0.25, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200),
            registry=registry,
        )
        self.llm_calls = Counter(
            "soulprint_llm_calls_total",
            "LLM calls by task and outcome",
            ["task", "outcome"],
            registry=registry,
        )
        self.llm_tokens = Counter(
            "soulprint_llm_tokens_total",
            "LLM tokens by kind (input, output, cache_write, cache_read)",
            ["kind"],
            registry=registry,
        )
        self.llm_usd = Counter(
            "soulprint_llm_cost_usd_total", "LLM spend at the configured prices", registry=registry
        )
        self.llm_retries = Counter(
            "soulprint_llm_retries_total",
            "Retries the SDK made inside LLM calls",
            registry=registry,
        )
        self.llm_in_flight = Gauge(
            "soulprint_llm_calls_in_flight", "LLM calls awaiting a reply", registry=registry
        )
        self.llm_seconds = Histogram(
            "soulprint_llm_call_duration_seconds",
            "Wall time of LLM calls, retries included",
            ["task"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.llm_breaker_open = Gauge(
            "soulprint_llm_breaker_open",
            "1 while the provider circuit breaker is open (LLM calls wait, no job is claimed)",
            registry=registry,
        )
        self.llm_outages = Counter(
            "soulprint_llm_outages_total",
            "Times the provider breaker opened (one per outage, whatever the number of jobs)",
            registry=registry,
        )
        self.llm_waiting = Gauge(
            "soulprint_llm_calls_waiting",
            "LLM calls waiting for the provider breaker to close",
            registry=registry,
        )
        self.fact_cache_hits = Counter(
            "soulprint_fact_cache_hits_total",
            "Chunks answered from the fact cache instead of an LLM call",
            registry=registry,
        )

        # --- issue 11: the operator's view of the fleet ---------------------------------------
        self.job_events = Counter(
            "soulprint_job_events_total",
            "Job events recorded in the audit trail, by kind and outcome (written, failed)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.bulk_retries = Counter(
            "soulprint_bulk_retries_total",
            "Failed jobs a bulk retry handled, by outcome (queued, skipped)",
            ["outcome"],
            registry=registry,
        )
        self.cancels = Counter(
            "soulprint_cancels_total",
            "Cancels by outcome: canceled (withdrawn at once), cancel_requested, "
            "already_canceled, stopped (a runner stopped a job whose cancel was requested)",
            ["outcome"],
            registry=registry,
        )
        self.jobs_stuck = Counter(
            "soulprint_jobs_stuck_total",
            "Running jobs flagged as stuck: their step ran past its learned threshold",
            ["step"],
            registry=registry,
        )
        self.users_forgotten = Counter(
            "soulprint_users_forgotten_total",
            "Users whose data the service removed (forget)",
            registry=registry,
        )
        self.queue_wait = Histogram(
            "soulprint_queue_wait_seconds",
            "From due (run_after) to claimed, by size class (small: at most 25 MB, estimated)",
            ["size"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
            registry=registry,
        )

    def observe_queue_wait(self, job: Job, *, claimed_at: datetime | None = None) -> float:
        """Call once a job is claimed: how long it waited since it was due (its `run_after`: when
        it was requested, retried or released). Returns the seconds observed."""
        due = job.run_after or job.created_at
        seconds = max(0.0, ((claimed_at or datetime.now(UTC)) - due).total_seconds())
        size = size_class(job.export_bytes, job.message_count, job.conversation_count)
        self.queue_wait.labels(size=size).observe(seconds)
        return seconds

    def set_jobs(self, counts: Mapping[str, int]) -> None:
        for status, count in counts.items():
            self.jobs.labels(status=status).set(count)


METRICS = Metrics(REGISTRY)


class MeteredLLM(DelegatingLLM):
    """Implements `LLM` by delegating, counting every call on the way through."""

    def __init__(self, inner: LLM, *, price: ModelPrice, metrics: Metrics = METRICS) -> None:
        super().__init__(inner)
        self._price = price
        self._metrics = metrics

    def batches(self) -> MessageBatches | None:
        from app.batch_guard import MeteredBatches

        inner = self.inner.batches()
        if inner is None:
            return None
        return MeteredBatches(inner, price=self._price, metrics=self._metrics)

    async def _call(self, task: str, call: Callable[[], Awaitable[LLMReply[T]]]) -> LLMReply[T]:
        metrics = self._metrics
        metrics.llm_in_flight.inc()
        started = time.monotonic()
        try:
            reply = await call()
        except LLMError as exc:
            metrics.llm_calls.labels(task=task, outcome=exc.code).inc()
            raise
        finally:
            metrics.llm_in_flight.dec()
            metrics.llm_seconds.labels(task=task).observe(time.monotonic() - started)
        usage = reply.call.usage
        metrics.llm_calls.labels(task=task, outcome="ok").inc()
        metrics.llm_tokens.labels(kind="input").inc(usage.input_tokens)
        metrics.llm_tokens.labels(kind="output").inc(usage.output_tokens)
        metrics.llm_tokens.labels(kind="cache_write").inc(usage.cache_creation_input_tokens)
        metrics.llm_tokens.labels(kind="cache_read").inc(usage.cache_read_input_tokens)
        metrics.llm_usd.inc(call_cost_usd(reply.call, self._price))
        metrics.llm_retries.inc(reply.call.retries)
        return reply
