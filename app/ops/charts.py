"""The ops page's charts, computed here and drawn by the templates as plain SVG (no script, no
library): jobs that ended and what they cost, per hour over the last 24 h and per day over the
last 7 days, and a job's time per step.

Everything is in UTC, like the store's timestamps. A bucket is the hour (or day) it starts at;
the newest bucket is the current one, still filling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain import STEPS
from app.ops_port import HourTotals

__all__ = [
    "Bar",
    "BarChart",
    "Bucket",
    "HBar",
    "Segment",
    "by_day",
    "by_hour",
    "chart_since",
    "cost_chart",
    "jobs_chart",
    "step_chart",
]

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
WIDTH, HEIGHT, GAP = 240.0, 64.0, 1.0


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    complete: int = 0
    failed: int = 0
    canceled: int = 0
    cost_usd: float = 0.0


def _hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _day_of(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def chart_since(now: datetime) -> datetime:
    """The start of the oldest bucket any overview chart needs: 6 days before today's start."""
    return _day_of(now) - 6 * _DAY


def _fill(
    hours: Iterable[HourTotals], starts: Sequence[datetime], key: Callable[[datetime], datetime]
) -> list[Bucket]:
    sums = {start: [0, 0, 0, 0.0] for start in starts}
    for h in hours:
        slot = sums.get(key(h.hour))
        if slot is not None:
            slot[0] += h.complete
            slot[1] += h.failed
            slot[2] += h.canceled
            slot[3] += h.cost_usd
    return [
        Bucket(start, int(s[0]), int(s[1]), int(s[2]), round(float(s[3]), 6))
        for start, s in sums.items()
    ]


def by_hour(hours: Iterable[HourTotals], *, now: datetime) -> list[Bucket]:
    """24 buckets, oldest first, the last one the current hour."""
    last = _hour_of(now)
    return _fill(hours, [last - i * _HOUR for i in range(23, -1, -1)], _hour_of)


def by_day(hours: Iterable[HourTotals], *, now: datetime) -> list[Bucket]:
    """7 buckets (UTC days), oldest first, the last one today."""
    last = _day_of(now)
    return _fill(hours, [last - i * _DAY for i in range(6, -1, -1)], _day_of)


@dataclass(frozen=True, slots=True)
class Segment:
    css: str
    y: float
    height: float


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    title: str  # the bar's figures in words, shown on hover and read by screen readers
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    total: str  # the period's total in words, beside the title
    peak: str  # the value of a full-height bar
    first: str  # labels under the first and the last bar
    last: str
    bars: tuple[Bar, ...]
    legend: tuple[tuple[str, str], ...] = ()  # (css class, label)
    width: float = WIDTH
    height: float = HEIGHT


def _bars(
    stacks: Sequence[Sequence[tuple[str, float]]], titles: Sequence[str]
) -> tuple[tuple[Bar, ...], float]:
    peak = max((sum(v for _, v in stack) for stack in stacks), default=0.0)
    scale = HEIGHT / peak if peak > 0 else 0.0
    width = WIDTH / max(1, len(stacks))
    bars = []
    for i, (stack, title) in enumerate(zip(stacks, titles, strict=True)):
        top, segments = HEIGHT, []
        for css, value in stack:
            if value > 0:
                height = value * scale
                top -= height
                segments.append(Segment(css, round(top, 2), round(height, 2)))
        bars.append(Bar(round(i * width, 2), round(width - GAP, 2), title, tuple(segments)))
    return tuple(bars), peak


def _label(start: datetime, hourly: bool) -> str:
    return f"{start:%H}:00" if hourly else f"{start:%a %d}"


def jobs_chart(buckets: Sequence[Bucket], *, title: str, hourly: bool) -> BarChart:
    """Complete and failed jobs per bucket, stacked."""
    titles = [
        f"{_label(b.start, hourly)} UTC: {b.complete} complete, {b.failed} failed"
        + (f", {b.canceled} canceled" if b.canceled else "")
        for b in buckets
    ]
    stacks = [[("complete", float(b.complete)), ("failed", float(b.failed))] for b in buckets]
    bars, peak = _bars(stacks, titles)
    complete, failed = sum(b.complete for b in buckets), sum(b.failed for b in buckets)
    return BarChart(
        title=title,
        total=f"{complete} complete, {failed} failed",
        peak=f"{peak:g} job" + ("" if peak == 1 else "s"),
        first=_label(buckets[0].start, hourly) if buckets else "",
        last=_label(buckets[-1].start, hourly) if buckets else "",
        bars=bars,
        legend=(("complete", "complete"), ("failed", "failed")),
    )


def cost_chart(buckets: Sequence[Bucket], *, title: str, hourly: bool) -> BarChart:
    """LLM spend (the ended jobs' cost_usd) per bucket."""
    titles = [f"{_label(b.start, hourly)} UTC: ${b.cost_usd:.4f}" for b in buckets]
    bars, peak = _bars([[("spend", b.cost_usd)] for b in buckets], titles)
    return BarChart(
        title=title,
        total=f"${sum(b.cost_usd for b in buckets):.2f}",
        peak=f"${peak:.4f}",
        first=_label(buckets[0].start, hourly) if buckets else "",
        last=_label(buckets[-1].start, hourly) if buckets else "",
        bars=bars,
    )


@dataclass(frozen=True, slots=True)
class HBar:
    step: str
    ms: int
    width: float  # of the longest step's bar, in percent


def step_chart(durations_ms: Mapping[str, object]) -> list[HBar]:
    """A job's time per step (its stats.durations_ms), in pipeline order; unknown names after."""
    known = {k: int(v) for k, v in durations_ms.items() if isinstance(v, int | float) and v >= 0}
    ordered = [s for s in STEPS if s in known] + sorted(set(known) - set(STEPS))
    longest = max(known.values(), default=0)
    return [
        HBar(step, known[step], round(100 * known[step] / longest, 1) if longest else 0.0)
        for step in ordered
    ]
