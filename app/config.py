"""Settings: the only place that reads the environment.

Every value has a default that lets the service run on a fresh machine (local SQLite store, offline
LLM provider). `.env.example` lists each one; keep the two in step. An empty variable, in the
environment or in `.env`, means unset: `.env.example` copied as it is runs the defaults.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from app.config_errors import explain_invalid_settings
from app.errors import ConfigError

__all__ = ["DEFAULT_CONCURRENCY", "Settings", "get_settings"]

DEFAULT_CONCURRENCY = 3
_CONCURRENCY_RANGE = range(1, 51)
# Settings whose mere presence selects a backend or a behaviour: blank must mean unset.
_BLANK_IS_UNSET = (
    "supabase_url",
    "supabase_service_key",
    "anthropic_api_key",
    "anthropic_base_url",
    "rlm_api_key",
    "alert_webhook",
)

_log = structlog.get_logger(__name__)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", validate_default=True
    )

    # --- backends -------------------------------------------------------------------------
    supabase_url: str | None = None
    supabase_service_key: SecretStr | None = None
    store_backend: Literal["auto", "local", "supabase"] = "auto"
    local_data_dir: Path = Path("./data")
    supabase_timeout_seconds: float = 20.0
    supabase_max_retries: int = Field(default=3, ge=0, le=10)
    chunk_batch_size: int = Field(default=100, ge=1, le=100)

    anthropic_api_key: SecretStr | None = None
    anthropic_model: str = "claude-haiku-4-5-20251001"
    anthropic_base_url: str | None = None
    anthropic_max_retries: int = Field(default=4, ge=0, le=10)
    anthropic_timeout_seconds: float = 90.0
    # The organisation's input-tokens-per-minute limit (tier 1: 50,000). One request larger than
    # it is refused every time, so every request is sized to fit it (app/processors/request_fit.py):
    # v2's sample is cut to what fits; settings that make another request too large stop startup.
    # Raise it with the account's tier: at ~200,000 v2 gets DESIGN's full 600,000 characters.
    anthropic_input_tokens_per_minute: int = Field(default=50_000, ge=1_000)
    llm_backend: Literal["auto", "anthropic", "offline"] = "auto"
    # realtime: the Messages API, FACT_EXTRACTION_CONCURRENCY requests in flight. batch:
    # extraction and reduce through the Message Batches API — half price, no per-minute limits,
    # results within 24 h (docs/OPERATIONS.md: when to choose which).
    llm_mode: Literal["realtime", "batch"] = "realtime"
    # --- batch mode (LLM_MODE=batch) -----------------------------------------------------
    # Requests per Message Batch: a batch is submitted as soon as it holds this many, so what
    # waits in memory is bounded (~20 KB a request: 1,000 ≈ 20 MB). The API takes 100,000.
    batch_max_requests: int = Field(default=1_000, ge=1, le=100_000)
    # How often a batch in progress is polled (the job's note and pulse move with each poll).
    batch_poll_seconds: float = Field(default=30.0, gt=0)
    # Errored, expired or canceled requests are submitted again this many times, then their
    # chunks fail for that recorded reason.
    batch_max_resubmits: int = Field(default=2, ge=0, le=10)
    # Price overrides in USD per million tokens; unset means the built-in table for the model.
    llm_price_input_per_mtok: float | None = None
    llm_price_output_per_mtok: float | None = None
    llm_price_cache_write_per_mtok: float | None = None
    llm_price_cache_read_per_mtok: float | None = None

    # --- API ------------------------------------------------------------------------------
    rlm_api_key: SecretStr | None = None
    allow_unauthenticated: bool = False
    allowed_buckets: list[str] = Field(default_factory=lambda: ["imports", "user-imports"])
    max_request_bytes: int = 16_384

    # --- logging --------------------------------------------------------------------------
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    # --- pipeline -------------------------------------------------------------------------
    fact_extraction_concurrency: int = DEFAULT_CONCURRENCY
    chunk_target_tokens: int = Field(default=1_500, ge=200, le=20_000)
    chunk_overlap_tokens: int = Field(default=0, ge=0, le=2_000)
    max_message_chars: int = Field(default=6_000, ge=500)
    max_export_bytes: int = 4 * 1024**3
    max_zip_member_bytes: int = 3 * 1024**3
    max_zip_ratio: int = 200
    v2_sample_size: int = Field(default=200, ge=1, le=1_000)
    extraction_failure_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    # Excerpt tokens one extraction request carries: consecutive uncached chunks, across
    # conversations, share a request up to this (docs/EXTRACTION.md: the choice, in figures).
    extraction_request_tokens: int = Field(default=8_000, ge=1, le=100_000)
    fact_token_budget: int = Field(default=24_000, ge=1_000)
    # Distinct facts held while extracting (consolidation.FactBook): past it the lowest-priority
    # are dropped. 20,000 ≥ 2 × what reduce's pre-cut (4 × fact_token_budget tokens) can keep;
    # raise it with fact_token_budget. ~0.9 KB each.
    fact_group_limit: int = Field(default=20_000, ge=1_000)

    # --- jobs -----------------------------------------------------------------------------
    run_worker: bool = True
    max_concurrent_jobs: int = Field(default=1, ge=1, le=16)
    # Slots on top of those for small imports only (≤ 25 MB, app/queue_order.py): a small
    # import does not wait behind a big one running in the general slot. Three, so that a burst
    # of 20 small imports waits under 2 minutes at a real API's pace (docs/BENCHMARKS.md, "The
    # fair queue": p95 247 s with one, 77 s with three, for ~10 MB more peak RSS).
    small_job_slots: int = Field(default=3, ge=0, le=16)
    lease_seconds: int = Field(default=60, ge=1)
    heartbeat_seconds: float = Field(default=15, gt=0)
    poll_seconds: float = Field(default=2.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_backoff_seconds: float = Field(default=60, ge=0)
    # A job whose progress stands still this long (waiting for the provider excluded) fails
    # that attempt as stalled. Not a limit on a pass's length: a 1 GB pass runs for hours.
    job_stall_seconds: float = Field(default=30 * 60, gt=0)
    # The provider breaker's probes while it is open: first after this, doubling up to the max
    # (never sooner than the provider's retry-after).
    llm_probe_initial_seconds: float = Field(default=5.0, gt=0)
    llm_probe_max_seconds: float = Field(default=60.0, gt=0)
    # An outage is announced (one alert, a "waiting" event on each job held) once the breaker
    # has stayed open this long. Steady rate limiting at a low tier opens it for a few seconds
    # every half-minute; that is the limit doing its work, not an outage to page anyone about.
    provider_alert_after_seconds: float = Field(default=60.0, ge=0)
    shutdown_grace_seconds: float = Field(default=20, ge=0, le=290)
    alert_webhook: SecretStr | None = None

    @field_validator(*_BLANK_IS_UNSET, mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """A blank key or URL passed in code (`SecretStr("")`, `"  "`) must not select a backend."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not raw.strip():
            return None
        return value

    # --- stuck detection (issue 11): threshold = max(floor, factor × p99 per unit × units) --
    stuck_threshold_factor: float = Field(default=3.0, ge=1.0, le=100.0)
    stuck_floor_seconds: float = Field(default=600, ge=0)
    # Below this many completed samples of a step, built-in per-unit defaults stand in for p99.
    stuck_min_samples: int = Field(default=20, ge=1)

    # --- the ops page (issue 12) ----------------------------------------------------------
    # How long a sign-in at /ops lasts: a signed cookie; changing RLM_API_KEY ends them all.
    ops_session_hours: float = Field(default=12, gt=0, le=24 * 30)

    @field_validator("fact_extraction_concurrency", mode="before")
    @classmethod
    def _lenient_concurrency(cls, value: Any) -> int:
        """An out-of-range or non-integer value must not stop the service: warn and use 3."""
        if isinstance(value, int) and not isinstance(value, bool) and value in _CONCURRENCY_RANGE:
            return value
        if isinstance(value, str) and value.strip().isdigit():
            parsed = int(value.strip())
            if parsed in _CONCURRENCY_RANGE:
                return parsed
        _log.warning(
            "config.invalid_value",
            setting="FACT_EXTRACTION_CONCURRENCY",
            value=str(value)[:40],
            allowed="integer 1-50",
            using=DEFAULT_CONCURRENCY,
        )
        return DEFAULT_CONCURRENCY

    @property
    def uses_supabase(self) -> bool:
        if self.store_backend == "auto":
            return bool(self.supabase_url)
        return self.store_backend == "supabase"

    @property
    def uses_anthropic(self) -> bool:
        if self.llm_backend == "auto":
            return self.anthropic_api_key is not None
        return self.llm_backend == "anthropic"


@lru_cache
def get_settings() -> Settings:
    """The settings from the environment and `.env`; an invalid one is a `ConfigError` that says
    which variable, what it accepts and (unless it is a secret) what it was."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as exc:
        raise ConfigError(explain_invalid_settings(exc, Settings.model_fields)) from None
