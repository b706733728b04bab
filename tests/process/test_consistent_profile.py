"""v2 that cannot be used is never the pass's failure, and never leaves a profile that disagrees
with itself (issue 9, items 4 and 5's LLMFatal): real service processes, the simulator answering
v2 with unusable sections or refusing to bill, the profile read back from the store.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app.adapters.offline_llm import OfflineLLM
from app.ports import LLMReply, SectionsRequest
from app.processors.composing.sections import render_soulprint_text
from app.processors.pipeline import held_sections
from tests.process.backends import LocalBackend
from tests.process.conftest import Services, wait_until
from tests.process.operator import Operator, fault_settings
from tests.support.messages_simulator import Simulator, SimulatorConfig, running_simulator
from tests.support.webhook_receiver import WebhookReceiver

USER_ID = "8b3f4a5c-6d7e-4f8a-9b0c-1d2e3f4a5b6c"
COLUMNS = (
    "full_pass_status",
    "full_pass_error",
    "memory_md",
    "soul_md",
    "identity_md",
    "user_md",
    "agents_md",
    "tools_md",
    "soulprint_text",
)
SKIPPED = "v2 skipped, the earlier sections were kept: "


class _SectionsGoBad(OfflineLLM):
    """The offline model, whose sections become unusable (not the five objects) on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.unusable = asyncio.Event()

    async def write_sections(self, request: SectionsRequest) -> LLMReply[dict[str, Any]]:
        reply = await super().write_sections(request)
        if self.unusable.is_set():
            return LLMReply({"soul": "I would rather not"}, reply.call)
        return reply


def _profile(backend: LocalBackend) -> dict[str, Any]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM user_profiles WHERE user_id = ?"  # noqa: S608
    return dict(zip(COLUMNS, backend.rows(sql, USER_ID)[0], strict=True))


def test_a_reimport_whose_v2_is_unusable_keeps_one_consistent_profile(
    tmp_path: Path, services: Services, receiver: WebhookReceiver, exports: Any
) -> None:
    backend = LocalBackend(tmp_path / "data")
    backend.seed(USER_ID, f"imports/{USER_ID}/first.json", exports(0.15))
    backend.seed(USER_ID, f"imports/{USER_ID}/second.json", exports(0.3))
    llm = _SectionsGoBad()
    with running_simulator(SimulatorConfig(latency_s=0.05, seed=2), llm=llm) as sim:
        settings = fault_settings(backend.settings(), sim.base_url, alert_webhook=receiver.url)
        operator = Operator(services.start("serve", **settings))
        first = operator.finished(operator.post(USER_ID, f"imports/{USER_ID}/first.json"))
        assert first["status"] == "complete", first["error"]
        before = _profile(backend)
        llm.unusable.set()
        second = operator.finished(operator.post(USER_ID, f"imports/{USER_ID}/second.json"))
        sections_calls = sim.ledger()["by_task"]["write_sections"]

    assert second["status"] == "complete", second["error"]
    assert second["note"] == SKIPPED + "the model's sections were not usable twice"
    skipped = second["stats"]["counts"]["v2_regeneration"]["skipped"]
    assert skipped == "the model's sections were not usable twice"
    assert sections_calls == 1 + 2  # the first import's, then one ask and one correction
    after = _profile(backend)
    assert after["full_pass_status"] == "complete"
    assert after["full_pass_error"] is None
    assert after["memory_md"] != before["memory_md"]  # the new import's MEMORY
    for name in ("soul", "identity", "user", "agents", "tools"):
        assert after[f"{name}_md"] == before[f"{name}_md"]  # the sections the profile held
    # The text is the held sections with the new MEMORY: one import's MEMORY, not two.
    expected = render_soulprint_text(held_sections(after), after["memory_md"])
    assert after["soulprint_text"] == expected
    assert after["soulprint_text"] != before["soulprint_text"]
    assert receiver.bodies == []  # unusable replies are recorded, not alerted


@pytest.mark.parametrize("refusal", ["no_credit", "payment_required"])
def test_no_credit_in_v2_completes_with_memory_says_why_and_alerts(
    tmp_path: Path,
    services: Services,
    simulator: Simulator,
    receiver: WebhookReceiver,
    exports: Any,
    refusal: Any,
) -> None:
    backend = LocalBackend(tmp_path / "data")
    backend.seed(USER_ID, f"imports/{USER_ID}/export.json", exports(0.15))
    simulator.storm(refusal, on_task="write_sections")  # the credit runs out at v2
    settings = fault_settings(backend.settings(), simulator.base_url, alert_webhook=receiver.url)
    operator = Operator(services.start("serve", **settings))
    job = operator.finished(operator.post(USER_ID, f"imports/{USER_ID}/export.json"))

    assert job["status"] == "complete", job["error"]
    assert job["error"] is None
    reason = job["stats"]["counts"]["v2_regeneration"]["skipped"]
    assert reason.startswith("Anthropic refused the work (no credit): ")
    assert job["note"] == (SKIPPED + reason)[:500]
    assert job["stats"]["counts"]["generate_memory"]["source"] == "llm"
    profile = _profile(backend)
    assert profile["full_pass_status"] == "complete"
    assert profile["memory_md"]
    assert profile["soul_md"] is None  # no sections were ever made: none are invented
    expected = render_soulprint_text(held_sections(profile), profile["memory_md"])
    assert profile["soulprint_text"] == expected
    alerts = wait_until(lambda: receiver.bodies, timeout=10, what="the v2 alert")
    assert len(alerts) == 1
    text = alerts[0]["text"]
    assert text.startswith(":warning: soulprint full pass completed without new sections")
    for needed in (USER_ID, job["job_id"], "step: v2_regeneration", "no credit"):
        assert needed in text
    assert simulator.ledger()["by_task_outcome"]["write_sections"] == {refusal: 1}
