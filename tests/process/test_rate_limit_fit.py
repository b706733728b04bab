"""One request larger than the organisation's per-minute input limit is refused every time:
through a real service process and the Messages-API simulator at tier 1's limits (50 requests,
50,000 input and 10,000 output tokens a minute — on a one-second "minute", so a pass takes
seconds):

- with ANTHROPIC_INPUT_TOKENS_PER_MINUTE at the account's limit (the default), v2's sample is cut
  to fit and the pass completes with new sections;
- told a higher tier than the account has, v2's request is larger than the minute: it is asked
  once, v2 is skipped with what to set, and the pass completes — no retries, no waiting breaker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.process.backends import LocalBackend
from tests.process.conftest import Services, wait_until
from tests.process.operator import Operator, fault_settings
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator
from tests.support.webhook_receiver import WebhookReceiver

USER_ID = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
STORAGE_PATH = f"imports/{USER_ID}/export.json"
SKIPPED = "v2 skipped, the earlier sections were kept: "
TIER_1 = {
    "requests_per_minute": 50,
    "input_tokens_per_minute": 50_000,
    "output_tokens_per_minute": 10_000,
    "rate_window_s": 1.0,
}


@pytest.fixture
def tier_1() -> Iterator[Simulator]:
    with running_simulator(SimulatorConfig(latency_s=0.02, seed=3, **TIER_1)) as sim:
        yield sim


def _sections(backend: LocalBackend) -> dict[str, Any]:
    sql = "SELECT soul_md, identity_md, memory_md FROM user_profiles WHERE user_id = ?"
    soul, identity, memory = backend.rows(sql, USER_ID)[0]
    return {"soul_md": soul, "identity_md": identity, "memory_md": memory}


def test_at_tier_1_v2_is_written_from_a_sample_cut_to_fit(
    tmp_path: Path, services: Services, tier_1: Simulator, exports: Any
) -> None:
    backend = LocalBackend(tmp_path / "data")
    backend.seed(USER_ID, STORAGE_PATH, exports(1.0))  # its full v2 sample: ~72K tokens
    settings = fault_settings(backend.settings(), tier_1.base_url)  # the default: 50,000
    operator = Operator(services.start("serve", **settings))
    job = operator.finished(operator.post(USER_ID, STORAGE_PATH), timeout=120)
    ledger = tier_1.ledger()

    assert job["status"] == "complete", job["error"]
    assert job["note"] is None
    v2 = job["stats"]["counts"]["v2_regeneration"]
    assert "skipped" not in v2
    assert v2["input_tokens_per_minute"] == 50_000
    assert v2["conversations"] > 0
    assert v2["left_out"] > 0, "the export's richest conversations do not all fit: cut"
    assert v2["sample_tokens"] <= v2["sample_token_budget"] < 40_000
    # What the simulator counted for the one write_sections request: under the minute.
    sent = job["stats"]["llm"]["steps"]["v2_regeneration"]
    assert sent["calls"] == 1
    assert 0.6 * 50_000 < sent["input_tokens"] <= 0.85 * 50_000
    # It may have waited for room in the minute ("throttled"), never for one that cannot come.
    assert ledger["by_task_outcome"]["write_sections"]["ok"] == 1
    assert "oversized" not in ledger["by_outcome"]
    profile = _sections(backend)
    assert all(profile.values()), "new sections, and MEMORY"


def test_told_a_higher_tier_than_the_account_has_v2_is_skipped_saying_what_to_set(
    tmp_path: Path,
    services: Services,
    tier_1: Simulator,
    receiver: WebhookReceiver,
    exports: Any,
) -> None:
    backend = LocalBackend(tmp_path / "data")
    backend.seed(USER_ID, STORAGE_PATH, exports(1.0))
    settings = fault_settings(
        backend.settings(),
        tier_1.base_url,
        anthropic_input_tokens_per_minute=450_000,  # tier 2's; the account is at tier 1
        anthropic_max_retries=4,
        alert_webhook=receiver.url,
    )
    service = services.start("serve", **settings)
    operator = Operator(service)
    job = operator.finished(operator.post(USER_ID, STORAGE_PATH), timeout=120)
    ledger = tier_1.ledger()

    assert job["status"] == "complete", job["error"]
    assert job["error"] is None
    v2 = job["stats"]["counts"]["v2_regeneration"]
    assert v2["left_out"] == 0  # at "450,000" the whole sample went: ~72K tokens
    reason = v2["skipped"]
    assert reason.startswith(
        "Anthropic refused the work (request too large for the rate limit): the request (~"
    )
    assert "larger than the organisation's limit of 50,000 input tokens a minute" in reason
    assert "set ANTHROPIC_INPUT_TOKENS_PER_MINUTE to 50,000" in reason
    assert job["note"] == (SKIPPED + reason)[:500]
    # Asked once: the SDK did not retry it, and the breaker did not wait for it.
    assert ledger["by_task_outcome"]["write_sections"] == {"oversized": 1}
    events = service.events()
    v2_started = next(
        i
        for i, e in enumerate(events)
        if e.get("event") == "step.started" and e.get("step") == "v2_regeneration"
    )
    assert not [e for e in events[v2_started:] if e.get("event") == "provider.unavailable"]
    [failed] = [e for e in events if e.get("event") == "llm.call_failed"]
    assert (failed["task"], failed["error"], failed["status"]) == (
        "write_sections",
        "LLMRequestTooLarge",
        429,
    )
    profile = _sections(backend)
    assert profile["memory_md"]
    assert profile["soul_md"] is None  # no sections were ever made: none are invented
    alerts = wait_until(lambda: receiver.bodies, timeout=10, what="the v2 alert")
    [alert] = alerts
    assert alert["text"].startswith(":warning: soulprint full pass completed without new sections")
    assert "ANTHROPIC_INPUT_TOKENS_PER_MINUTE" in alert["text"]
