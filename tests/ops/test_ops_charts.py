"""The charts' data: jobs that ended and their cost, bucketed per UTC hour and day, drawn as
stacked bars whose heights are the figures; a job's time per step in pipeline order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.ops.charts import HEIGHT, by_day, by_hour, chart_since, cost_chart, jobs_chart, step_chart
from app.ops_port import HourTotals

NOW = datetime(2026, 12, 10, 14, 37, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _h(hours_ago: int, **figures: float) -> HourTotals:
    start = NOW.replace(minute=0, second=0, microsecond=0) - hours_ago * HOUR
    return HourTotals(hour=start, **figures)  # type: ignore[arg-type]


def test_the_query_reaches_back_to_the_start_of_the_oldest_day() -> None:
    assert chart_since(NOW) == datetime(2026, 12, 4, tzinfo=UTC)
    assert chart_since(NOW) <= NOW - 23 * HOUR  # the hourly chart fits inside it


def test_hours_are_24_buckets_ending_with_the_current_one() -> None:
    hours = [_h(0, complete=2, cost_usd=0.5), _h(23, failed=1), _h(24, complete=9, cost_usd=9)]
    buckets = by_hour(hours, now=NOW)
    assert len(buckets) == 24
    assert buckets[-1].start == datetime(2026, 12, 10, 14, tzinfo=UTC)
    assert buckets[0].start == datetime(2026, 12, 9, 15, tzinfo=UTC)
    assert (buckets[-1].complete, buckets[-1].cost_usd) == (2, 0.5)
    assert buckets[0].failed == 1
    assert sum(b.complete for b in buckets) == 2  # 24 hours ago is outside


def test_days_add_up_their_hours_in_utc() -> None:
    hours = [
        _h(0, complete=1, cost_usd=0.25),
        _h(14, complete=2, failed=1, cost_usd=0.5),  # today, 00:00 UTC
        _h(15, failed=3, canceled=1, cost_usd=1.0),  # yesterday, 23:00 UTC
        _h(14 + 24 * 6, complete=5),  # six days ago: the oldest bucket
        _h(15 + 24 * 6, complete=7),  # seven days ago: outside
    ]
    days = by_day(hours, now=NOW)
    assert [d.start.day for d in days] == [4, 5, 6, 7, 8, 9, 10]
    assert (days[-1].complete, days[-1].failed, days[-1].cost_usd) == (3, 1, 0.75)
    assert (days[-2].failed, days[-2].canceled, days[-2].cost_usd) == (3, 1, 1.0)
    assert days[0].complete == 5
    assert sum(d.complete for d in days) == 8


def test_bars_are_as_tall_as_their_figures_and_stack_failed_on_complete() -> None:
    buckets = by_hour([_h(0, complete=3, failed=1), _h(1, complete=1), _h(2, failed=2)], now=NOW)
    chart = jobs_chart(buckets, title="Jobs", hourly=True)
    assert chart.total == "4 complete, 3 failed"
    assert chart.peak == "4 jobs"
    assert jobs_chart(by_hour([_h(0, failed=1)], now=NOW), title="", hourly=True).peak == "1 job"
    tallest = chart.bars[-1]
    assert [s.css for s in tallest.segments] == ["complete", "failed"]
    assert [s.height for s in tallest.segments] == [HEIGHT * 3 / 4, HEIGHT / 4]
    assert tallest.segments[1].y == 0  # the stack reaches the top
    assert tallest.segments[0].y == HEIGHT / 4
    assert chart.bars[-2].segments[0].height == HEIGHT / 4
    assert chart.bars[-3].segments[0].css == "failed"
    assert all(not bar.segments for bar in chart.bars[:-3])
    assert tallest.title == "14:00 UTC: 3 complete, 1 failed"
    assert (chart.first, chart.last) == ("15:00", "14:00")
    edges = [(b.x + b.width, c.x) for b, c in zip(chart.bars, chart.bars[1:], strict=False)]
    assert all(right < next_left for right, next_left in edges)  # bars never overlap


def test_spend_bars_and_an_empty_period() -> None:
    days = by_day([_h(0, cost_usd=0.3), _h(30, cost_usd=0.1)], now=NOW)
    chart = cost_chart(days, title="Spend", hourly=False)
    assert chart.total == "$0.40"
    assert chart.bars[-1].segments[0].height == HEIGHT
    assert round(chart.bars[-2].segments[0].height, 2) == round(HEIGHT / 3, 2)
    assert chart.bars[-1].title == "Thu 10 UTC: $0.3000"
    empty = jobs_chart(by_hour([], now=NOW), title="Jobs", hourly=True)
    assert empty.total == "0 complete, 0 failed"
    assert all(not bar.segments for bar in empty.bars)


def test_step_times_in_pipeline_order_scaled_to_the_longest() -> None:
    bars = step_chart(
        {"extract_facts": 8000, "download_conversations": 2000, "later_step": 1000, "bad": "x"}
    )
    assert [(b.step, b.ms, b.width) for b in bars] == [
        ("download_conversations", 2000, 25.0),
        ("extract_facts", 8000, 100.0),
        ("later_step", 1000, 12.5),
    ]
    assert step_chart({}) == []
