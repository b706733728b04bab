"""A whole full pass with LLM_MODE=batch, driven through the API as production runs it: the offline
provider's in-process batches, and the real Anthropic SDK's `messages.batches` against the
Messages-API simulator — with errored requests and a reply that leaves an excerpt out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.adapters.local_store import LocalStore
from app.adapters.offline_llm import OfflineLLM
from app.main import create_app
from app.ports import ExtractionRequest, ExtractionResult, LLMReply
from tests.conftest import USER_ID, make_settings, serve
from tests.support.messages_simulator import SimulatorConfig, running_simulator
from tests.test_full_pass import SAMPLE, STORAGE_PATH, _assert_portrait, _start, _until_done


class _LeavesOneOut(OfflineLLM):
    """The offline answers, except that the first reply about the Lisbon excerpt skips it."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0

    async def extract_facts(self, request: ExtractionRequest) -> LLMReply[ExtractionResult]:
        reply = await super().extract_facts(request)
        facts = list(reply.value.facts)
        for i, excerpt in enumerate(request.excerpts):
            if not self.skipped and len(facts) > 1 and "Lisbon" in excerpt.text:
                self.skipped += 1
                facts[i] = None
        return LLMReply(ExtractionResult(tuple(facts), reply.value.unknown), reply.call)


async def _run(tmp_path: Path, name: str, **settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    values = make_settings(tmp_path / name, run_worker=True, batch_poll_seconds=0.05, **settings)
    store = LocalStore(values.local_data_dir)
    await store.ensure_profile(USER_ID)
    store.put_export(STORAGE_PATH, SAMPLE)
    async with serve(create_app(values, store=store)) as client:
        job = await _until_done(client, (await _start(client))["job_id"])
    profile = await store.get_profile(USER_ID)
    await store.aclose()
    assert profile is not None
    return job, profile


async def test_offline_batch_mode_completes_on_the_embedded_defaults(tmp_path: Path) -> None:
    job, profile = await _run(tmp_path, "offline", llm_mode="batch")
    assert job["status"] == "complete", job["error"]
    _assert_portrait(profile)
    counts = job["stats"]["counts"]["extract_facts"]
    assert (counts["mode"], counts["batch"]["batches"], counts["failed"]) == ("batch", 1, 0)
    assert job["stats"]["llm"]["mode"] == "batch"


async def test_batch_pass_through_the_real_sdk_costs_half_and_gives_realtimes_memory(
    tmp_path: Path,
) -> None:
    # The first batch's second request errors and its third expires; asked again, they succeed.
    script = {"x000001": "errored", "x000002": "expired"}
    config = SimulatorConfig(batch_processing_s=0.2, batch_script=script)
    llm = _LeavesOneOut()
    with running_simulator(config, llm=llm) as simulator:
        keys = {"anthropic_api_key": "sk-ant-test", "anthropic_base_url": simulator.base_url}
        # A few excerpts a request: [3, 3, 1] for the sample.
        batch, profile = await _run(
            tmp_path, "batch", llm_mode="batch", extraction_request_tokens=350, **keys
        )
        ledger = simulator.ledger()
        llm.skipped = 1  # the realtime run gets complete replies
        realtime, realtime_profile = await _run(
            tmp_path, "realtime", extraction_request_tokens=350, **keys
        )

    assert batch["status"] == "complete", batch["error"]
    _assert_portrait(profile)
    assert profile["memory_md"] == realtime_profile["memory_md"], "same export, same MEMORY"
    assert set(ledger["by_task"]) == {"write_memory", "write_sections"}, "only these realtime"
    # 3 requests, then 3: the left-out excerpt alone, the four others packed anew in two.
    assert ledger["batch"]["by_result"] == {"succeeded": 4, "errored": 1, "expired": 1}
    assert ledger["batch"]["batches"] == 2, "asked again together, in a later batch"

    counts = batch["stats"]["counts"]["extract_facts"]
    assert batch["attempts"] == 1
    assert counts["batch"]["asked_alone"] == 1
    assert counts["batch"]["resubmitted"] == 1 + 3 + 1, "the left-out one, and the two requests'"
    assert (counts["failed"], counts["extracted"]) == (0, counts["chunks"])
    assert counts["calls"] == ledger["batch"]["by_result"]["succeeded"]

    steps = batch["stats"]["llm"]["steps"]
    rt_steps = realtime["stats"]["llm"]["steps"]
    extract, rt_extract = steps["extract_facts"], rt_steps["extract_facts"]
    list_price = (extract["input_tokens"] * 1.0 + extract["output_tokens"] * 5.0) / 1e6
    assert abs(extract["usd"] - list_price / 2) < 1e-6, "batch calls at half price"
    assert extract["usd"] < rt_extract["usd"]
    assert batch["stats"]["llm"]["mode"] == "batch"
