"""Every request we send must fit the organisation's per-minute input limit.

Anthropic refuses (429 `rate_limit_error`, "Please reduce the prompt length…") every time a request
whose input tokens exceed what the organisation may send in a minute — tier 1: 50,000 (FACTS.md).
Waiting does not help, so a request is sized to fit before it is sent:

- each request may use `usable_input_tokens(limit)`: 80 % of `ANTHROPIC_INPUT_TOKENS_PER_MINUTE`.
  Our estimate (UTF-8 bytes / 4) runs up to ~15 % under the tokenizer on English and more on code
  (docs/INGESTION.md), and the API adds a tool-use prompt of its own: the rest is that margin.
- v2's sample is what is left after the system prompt, the tool, MEMORY and the instructions
  (`sections_sample_tokens`), and at most DESIGN §6's 600,000 characters;
- the requests whose size a setting decides — extraction (`EXTRACTION_REQUEST_TOKENS`,
  `CHUNK_TARGET_TOKENS`) and MEMORY (`FACT_TOKEN_BUDGET`) — are checked at startup
  (`requests_over_limit`): a combination that makes one impossible stops the service with what to
  change, rather than being cut down silently to a configuration nobody chose.

Reduce requests (60 facts at most, `reduce.py`) and the probe are small whatever the settings.
"""

from __future__ import annotations

import json
from functools import cache

from app.config import Settings
from app.ports import SectionsRequest
from app.processors import prompts
from app.processors.reading.text import estimate_tokens

__all__ = [
    "USABLE_SHARE",
    "largest_extraction_tokens",
    "memory_request_tokens",
    "requests_over_limit",
    "sections_sample_tokens",
    "usable_input_tokens",
]

USABLE_SHARE = 0.8
# The correction a second v2 attempt carries is at most ~560 characters (sections.py).
_CORRECTION_ROOM = "x" * 600
# A user-signal batch holds ~20,000 characters (extraction/text.py): ~5,000 tokens in English.
_SIGNAL_BATCH_TOKENS = 5_000
# MEMORY's request lists each fact as "- (2024-05-02; own words) text": a few tokens more than
# reduce's `fact_tokens` counts, and the seven headings.
_MEMORY_FRAMING_TOKENS = 400


def usable_input_tokens(limit: int) -> int:
    """Estimated input tokens one request may carry under a per-minute limit of `limit`."""
    return int(limit * USABLE_SHARE)


def _tool_tokens(task: str) -> int:
    tool = prompts.tool_for(task)
    return estimate_tokens(json.dumps(tool.param())) if tool is not None else 0


@cache
def _sections_fixed_tokens() -> int:
    """What a write_sections request carries besides the sample and MEMORY."""
    framing = prompts.sections_message(
        SectionsRequest(conversations="", memory_md="", correction=_CORRECTION_ROOM)
    )
    return (
        estimate_tokens(prompts.SECTIONS_SYSTEM)
        + _tool_tokens("write_sections")
        + estimate_tokens(framing)
    )


def sections_sample_tokens(*, memory_tokens: int, input_tokens_per_minute: int) -> int:
    """Estimated tokens v2's sample may take so its request fits the limit (0: none fits)."""
    room = usable_input_tokens(input_tokens_per_minute) - _sections_fixed_tokens() - memory_tokens
    return max(0, room)


def largest_extraction_tokens(settings: Settings) -> int:
    """The largest extraction request the settings allow: a full request, or one unit that goes
    alone because it is larger than the budget (a chunk, or a batch of user signals)."""
    excerpts = max(
        settings.extraction_request_tokens,
        settings.chunk_target_tokens + settings.chunk_overlap_tokens,
        _SIGNAL_BATCH_TOKENS,
    )
    return estimate_tokens(prompts.EXTRACT_SYSTEM) + _tool_tokens("extract_facts") + excerpts


def memory_request_tokens(settings: Settings) -> int:
    """MEMORY's request at its largest: every fact hierarchical_reduce leaves (≤ the budget)."""
    return (
        estimate_tokens(prompts.MEMORY_SYSTEM) + settings.fact_token_budget + _MEMORY_FRAMING_TOKENS
    )


def requests_over_limit(settings: Settings) -> list[str]:
    """Each request the settings make too large for ANTHROPIC_INPUT_TOKENS_PER_MINUTE, in words
    saying what to change; empty when every one fits."""
    limit = settings.anthropic_input_tokens_per_minute
    usable = usable_input_tokens(limit)
    where = (
        f"ANTHROPIC_INPUT_TOKENS_PER_MINUTE={limit:,} lets one request carry ~{usable:,} "
        f"tokens ({USABLE_SHARE:.0%}, room for the estimate's error)"
    )
    problems: list[str] = []
    extraction = largest_extraction_tokens(settings)
    if extraction > usable:
        problems.append(
            f"extraction requests reach ~{extraction:,} input tokens and {where}: lower "
            "EXTRACTION_REQUEST_TOKENS (and CHUNK_TARGET_TOKENS) or raise the limit if the "
            "account's tier allows"
        )
    memory = memory_request_tokens(settings)
    if memory > usable:
        fits = max(0, settings.fact_token_budget - (memory - usable))
        problems.append(
            f"MEMORY's request reaches ~{memory:,} input tokens (FACT_TOKEN_BUDGET="
            f"{settings.fact_token_budget:,}) and {where}: lower FACT_TOKEN_BUDGET to at most "
            f"{fits:,} or raise the limit if the account's tier allows"
        )
    return problems
