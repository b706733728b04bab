"""Anthropic's per-minute limits as the benchmarks model them, and the bound they set on a pass.

Tier 1 is FACTS.md's (Haiku 4.5: 50 requests, 50,000 input and 10,000 output tokens a minute);
tier 2 the next tier as Anthropic's rate-limit table lists Haiku 4.5 — check an organisation's
own in the console. The simulator enforces them as token buckets (tests/support/
simulator_limits.py) that start full.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TIERS", "Limits", "lower_bound_s", "parse_tier"]


@dataclass(frozen=True)
class Limits:
    """Per-minute limits of one organisation for the model (None: unlimited)."""

    name: str
    rpm: int | None
    itpm: int | None
    otpm: int | None

    def simulator_args(self) -> list[str]:
        args = []
        for flag, value in (("--rpm", self.rpm), ("--itpm", self.itpm), ("--otpm", self.otpm)):
            if value is not None:
                args.append(f"{flag}={value}")
        return args


TIERS = {
    # FACTS.md: Haiku 4.5, tier 1.
    "1": Limits("tier 1", rpm=50, itpm=50_000, otpm=10_000),
    # The tier above, as Anthropic's rate-limit table lists Haiku 4.5 (verify in the console).
    "2": Limits("tier 2", rpm=1_000, itpm=450_000, otpm=90_000),
    "none": Limits("no limits", rpm=None, itpm=None, otpm=None),
}


def parse_tier(text: str) -> Limits:
    if text in TIERS:
        return TIERS[text]
    rpm, itpm, otpm = (int(v) if v else None for v in text.split(":"))
    return Limits(f"{rpm}/{itpm}/{otpm} a minute", rpm=rpm, itpm=itpm, otpm=otpm)


def lower_bound_s(
    *, requests: int, input_tokens: int, limits: Limits, latency: float, concurrency: int
) -> dict[str, float]:
    """Seconds the limits and the latency alone make a pass's LLM calls last, each on its own.

    A bucket starts full (one minute's worth), so N input tokens take (N − ITPM) / ITPM minutes
    at least; likewise requests."""
    bounds = {"latency": requests * latency / concurrency}
    if limits.itpm:
        bounds["input_tokens"] = max(0, input_tokens - limits.itpm) / limits.itpm * 60
    if limits.rpm:
        bounds["requests"] = max(0, requests - limits.rpm) / limits.rpm * 60
    return bounds
