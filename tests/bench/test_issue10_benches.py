"""The issue-10 benches' arithmetic and plumbing, without their long runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.pricing import price_for
from bench.cost_model import DesignCost, ReplyFormat
from bench.estimate_truth import compare, ledger_totals
from bench.extraction_text import measure
from bench.llm_cost import _budget_table
from bench.planted import write_planted_export
from bench.quality import score_budget
from bench.rate_limits import TIERS, lower_bound_s, parse_tier
from bench.time_to_complete import summarise
from tests.bench.exports import chatgpt_conversation, write_json


def test_the_input_bound_leaves_the_first_minute_free() -> None:
    bounds = lower_bound_s(
        requests=100, input_tokens=3_050_000, limits=TIERS["1"], latency=2.5, concurrency=3
    )
    assert bounds["input_tokens"] == pytest.approx(60 * 60)  # (3.05 M − 50 K) / 50 K a minute
    assert bounds["requests"] == pytest.approx(60)  # (100 − 50) / 50 a minute
    assert bounds["latency"] == pytest.approx(100 * 2.5 / 3)
    assert lower_bound_s(
        requests=10, input_tokens=10**9, limits=TIERS["none"], latency=1, concurrency=10
    ) == {"latency": 1.0}


def test_a_tier_is_named_or_given_as_three_limits() -> None:
    assert parse_tier("2") is TIERS["2"]
    custom = parse_tier("100:200000:")
    assert (custom.rpm, custom.itpm, custom.otpm) == (100, 200_000, None)
    assert custom.simulator_args() == ["--rpm=100", "--itpm=200000"]


def _ledger(**batch: Any) -> dict[str, Any]:
    return {
        "requests": 14,
        "by_outcome": {"ok": 12, "throttled": 2},
        "by_task": {"extract_facts": 10, "write_memory": 1, "write_sections": 1},
        "input_tokens": 1_000_000,
        "output_tokens": 20_000,
        "excerpts": 120,
        "batch": {"input_tokens": 0, "output_tokens": 0, "by_task": {}, "requests": 0} | batch,
    }


def _tier1_run(ledger: dict[str, Any], *, job_s: float, extract_s: float) -> dict[str, Any]:
    """A time-to-complete run's record at tier 1, C=3, 2.5 s a call."""
    return {
        "limits": {"name": "tier 1", "rpm": 50, "itpm": 50_000, "otpm": 10_000},
        "latency_s": 2.5,
        "concurrency": 3,
        "wall_s": job_s + 10,
        "job_s": job_s,
        "steps_s": {"extract_facts": extract_s},
        "ledger": ledger,
    }


def test_a_run_is_summarised_against_its_bound() -> None:
    s = summarise(_tier1_run(_ledger(), job_s=1200.0, extract_s=1100.0))
    assert s["requests"] == 12
    assert s["throttled"] == 2
    assert s["pass_s"] == 1200.0
    assert s["bound_by"] == "input_tokens"
    assert s["bound_s"] == pytest.approx(1140.0)
    assert s["usd"] == pytest.approx(1.10)  # $1 / $5 per M


def test_a_batch_run_counts_its_batched_requests_and_has_no_bound_to_be_over() -> None:
    ledger = _ledger(input_tokens=1_000_000, output_tokens=0, by_task={"extract_facts": 10})
    ledger |= {"by_task": {"write_memory": 1, "write_sections": 1}, "input_tokens": 40_000}
    s = summarise(_tier1_run(ledger, job_s=120.0, extract_s=70.0))
    assert s["extract_requests"] == 10
    assert s["input_tokens"] == 1_040_000
    assert s["extract_over_bound"] is None
    assert s["usd"] == pytest.approx(0.04 + 0.10 + 0.50)


def test_the_ledger_prices_batch_requests_at_half() -> None:
    totals = ledger_totals(
        _ledger(input_tokens=1_000_000, output_tokens=0, by_task={"extract_facts": 5})
    )
    assert totals["calls"] == 17
    assert totals["extract_requests"] == 15
    assert totals["usd"] == pytest.approx(1.10 + 0.50)


def test_the_estimate_is_checked_figure_by_figure() -> None:
    estimate = {
        "estimated_llm_calls": 12,
        "extraction": {"requests": 10},
        "estimated_llm_input_tokens": 900_000,
        "estimated_llm_output_tokens": 10_000,
        "estimated_cost_usd_by_mode": {"realtime": 1.0, "batch": 0.5},
    }
    rows = compare(estimate, _ledger(), mode="realtime")
    assert rows["calls"]["within"]
    assert rows["calls"]["ratio"] == 1.0
    assert rows["input_tokens"]["ratio"] == pytest.approx(1.111, abs=1e-3)
    assert not rows["output_tokens"]["within"]  # 20,000 seen against 10,000 estimated


def _design(name: str, calls: int, input_tokens: int) -> DesignCost:
    reply = ReplyFormat(name="r", skeleton="", item=lambda fact: None)
    return DesignCost(name=name, reply=reply, max_tokens=0, calls=calls, input_tokens=input_tokens)


def test_budget_rows_line_up_with_their_designs() -> None:
    designs = [
        _design("ours 4000", 10, 400_000),
        _design("earlier", 100, 1_000_000),
        _design("ours 1", 100, 900_000),
        _design("ours 8000", 5, 350_000),
    ]
    price = price_for(Settings(_env_file=None))
    rows = {r["budget"]: r for r in _budget_table(designs, [4000, 1, 8000], price)}
    assert rows[1]["calls"] == 100
    assert rows[8000]["calls"] == 5
    assert rows[4000]["calls_vs_unpacked"] == pytest.approx(0.1)
    assert rows[4000]["realtime_vs_earlier"] == pytest.approx(0.4)


def test_extraction_text_shares_add_up(tmp_path: Path) -> None:
    export = write_json(
        tmp_path / "e.json",
        [
            chatgpt_conversation(
                "c1",
                [
                    ("user", "I want to plan a trip to Lisbon in spring with my sister."),
                    ("assistant", "Sure. Which city are you flying from?"),
                    ("user", "Leeds."),
                    ("assistant", "Great."),
                ],
            ),
            chatgpt_conversation("c2", [("assistant", "Only the assistant speaks here.")]),
        ],
    )
    result = measure(export)
    chars = result["chars"]
    assert result["chunks"] == 2
    assert result["chunks_without_user_words"] == 1
    assert 0 < chars["context"] < chars["sent"]
    assert chars["sent"] - chars["context"] > chars["user"]  # with the "User: " labels
    assert chars["user"] == len("I want to plan a trip to Lisbon in spring with my sister.Leeds.")


@pytest.mark.parametrize("budget", [1, 4_000])
async def test_the_quality_bench_scores_a_full_pass(tmp_path: Path, budget: int) -> None:
    export = tmp_path / "planted.json"
    manifest = write_planted_export(export, size_mb=0.3, seed=7)
    settings = Settings(_env_file=None, extraction_request_tokens=budget)
    result = await score_budget(export, manifest, settings=settings, provider="offline")
    assert result["budget"] == budget
    assert result["planted"] == 14
    assert result["recalled"] >= 7
    assert result["requests"] >= 1
    assert result["unsupported"] == 0
