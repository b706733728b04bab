"""One error tree. Every expected failure is an `AppError` with a status code and a message a
person can act on; vendor exceptions are translated into these at the adapter edge."""

from __future__ import annotations

__all__ = [
    "AppError",
    "AttemptsExhausted",
    "AuthError",
    "BadExport",
    "ConfigError",
    "ExportNotFound",
    "JobConflict",
    "JobNotFound",
    "JobStalled",
    "LLMBadOutput",
    "LLMBatchNotFound",
    "LLMError",
    "LLMFatal",
    "LLMRefused",
    "LLMRequestTooLarge",
    "LLMUnavailable",
    "NotFound",
    "PipelineError",
    "ProfileNotFound",
    "StoreError",
    "StoreUnavailable",
    "ValidationFailed",
]


class AppError(Exception):
    """Root of our errors. `message` is shown to people: say what was wrong and what to do."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(AppError):
    code = "config_error"


class AuthError(AppError):
    status_code = 401
    code = "unauthorized"


class ValidationFailed(AppError):
    status_code = 422
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


# --- store -------------------------------------------------------------------------------


class StoreError(AppError):
    """A write or read the store refused (a 4xx from PostgREST, a constraint): not retried."""

    status_code = 502
    code = "store_error"

    def __init__(self, message: str, *, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class StoreUnavailable(StoreError):
    """The store could not be reached after bounded retries (timeouts, 5xx, 429)."""

    status_code = 503
    code = "store_unavailable"


class ProfileNotFound(StoreError):
    """No `user_profiles` row for the user: a write would otherwise vanish silently."""

    status_code = 404
    code = "profile_not_found"


class JobConflict(StoreError):
    """The job's state does not allow the request (e.g. retrying a job that has not failed)."""

    status_code = 409
    code = "job_conflict"


class ExportNotFound(StoreError):
    status_code = 404
    code = "export_not_found"


# --- pipeline ----------------------------------------------------------------------------


class PipelineError(AppError):
    """A step failed in a way that retrying the same input will not fix."""

    code = "pipeline_error"


class BadExport(PipelineError):
    """The export cannot be read: not JSON, not a chat export, too large, corrupt."""

    status_code = 422
    code = "bad_export"


class JobStalled(PipelineError):
    """The job made no progress for JOB_STALL_SECONDS (time waiting for the provider excluded).

    Only this attempt fails: a hung connection or a wedged worker may not recur, so the job is
    retried like any other transient failure.
    """

    code = "job_stalled"


class AttemptsExhausted(PipelineError):
    """Every attempt was cut short (the worker died mid-run); one more would fare no better."""

    code = "attempts_exhausted"


# --- LLM ---------------------------------------------------------------------------------


class LLMError(AppError):
    status_code = 502
    code = "llm_error"


class LLMUnavailable(LLMError):
    """Rate limits, overload, timeouts, 5xx or no connection that outlasted the SDK's retries.

    `reason` says which in words people read ("rate limited", "overloaded", "server error",
    "timed out", "cannot connect"); the provider breaker waits these out instead of failing.
    `retry_after` is the provider's own hint in seconds, when it gave one.
    """

    status_code = 503
    code = "llm_unavailable"

    def __init__(
        self, message: str, *, reason: str = "unavailable", retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class LLMFatal(LLMError):
    """An error that will not go away by retrying: rejected key, no credit, unknown model.

    `reason` in words: "rejected key", "no credit", "model not allowed", "unknown model",
    "not configured".
    """

    code = "llm_fatal"

    def __init__(self, message: str, *, reason: str = "rejected request") -> None:
        super().__init__(message)
        self.reason = reason


class LLMRequestTooLarge(LLMFatal):
    """One request larger than the organisation's per-minute limit: Anthropic answers 429 every
    time, so it is not waited out (the breaker) but fails for that request — for v2, v2 is
    skipped. The message says the request's size, the limit and what to set."""

    code = "llm_request_too_large"

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="request too large for the rate limit")


class LLMBadOutput(LLMError):
    """The reply was not the JSON we asked for, or was cut off at max_tokens."""

    code = "llm_bad_output"


class LLMRefused(LLMError):
    """The model declined (stop_reason=refusal); retrying the same input is pointless."""

    code = "llm_refused"


class LLMBatchNotFound(LLMError):
    """The provider has no such Message Batch (deleted, past its 29 days, or made by a process
    whose in-memory batches are gone): its requests are submitted again."""

    code = "llm_batch_not_found"
