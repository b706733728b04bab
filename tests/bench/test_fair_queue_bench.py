"""The fair-queue bench's arithmetic and its aging check, without the long runs."""

from __future__ import annotations

from typing import Any

from bench.fair_queue import _idle_between, _p95, summarise
from bench.queue_aging import aging_check


def test_p95_is_the_nearest_rank() -> None:
    assert _p95([float(n) for n in range(1, 21)]) == 19.0  # the 19th of 20
    assert _p95([5.0]) == 5.0


def test_the_aging_check_holds_on_the_local_store() -> None:
    cases = {case["case"]: case for case in aging_check()}
    assert all(case["ok"] for case in cases.values())
    assert cases["waited 61 min (past the 60 min cap)"]["order"][0] == "big"
    assert cases["waited 30 min (under the cap)"]["order"][-1] == "big"
    assert "big" not in cases["waited 61 min, small-import slot"]["order"]


def _small(started: str, completed: str, wait: float) -> dict[str, Any]:
    return {
        "started_at": f"2026-12-01T10:00:{started}+00:00",
        "completed_at": f"2026-12-01T10:00:{completed}+00:00",
        "wait_s": wait,
        "run_s": 1.0,
        "status": "complete",
        "claims": [{"small_slot": True}],
    }


def test_the_summary_counts_waits_idle_time_and_the_big_jobs_ratio() -> None:
    smalls = [_small("01", "02", 1.0), _small("04", "05", 3.0), _small("05", "06", 4.0)]
    run: dict[str, Any] = {"big": {"run_s": 110.0}, "smalls": smalls}
    run |= {"peak_rss_mb": 200.0, "peak_tree_rss_mb": 201.0}
    alone = {"big": {"run_s": 100.0}, "smalls": [], "peak_rss_mb": 170.0, "peak_tree_rss_mb": 170.0}
    summary = summarise({"alone": alone, "with_smalls": run})
    assert summary["wait_median_s"] == 3.0
    assert summary["wait_max_s"] == 4.0
    assert summary["big_ratio"] == 1.1
    assert summary["peak_rss_mb"] == 200.0
    assert summary["in_small_slot"] == 3
    assert _idle_between(smalls) == 2.0  # 02 → 04; 05 → 05 is none
