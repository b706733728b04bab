"""v2_regeneration: the five sections from the richest conversations and MEMORY (DESIGN §6).

The sample holds what fits one request under the organisation's per-minute input limit
(`ANTHROPIC_INPUT_TOKENS_PER_MINUTE`, request_fit.py) — at most DESIGN's 600,000 characters: a
request larger than the limit is refused every time, so at tier 1 the sample is smaller.
The reply is validated into `SectionSet`; invalid JSON or a missing section gets one retry
with a correction, then the step raises (the orchestrator treats that as non-fatal). `ai_name`
is never empty nor generic: a deterministic name replaces one that is.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

import structlog
from pydantic import ValidationError

from app.domain import SECTION_NAMES
from app.errors import LLMBadOutput
from app.ports import LLM, SectionsRequest
from app.processors.ledger import CostLedger
from app.processors.reading.text import estimate_tokens
from app.processors.request_fit import sections_sample_tokens
from app.sections import GENERIC_AI_NAMES, NO_DATA, SectionSet

__all__ = [
    "AI_NAMES",
    "HEADINGS",
    "RenderSample",
    "derive_ai_name",
    "regenerate_sections",
    "render_soulprint_text",
    "section_columns",
]

STEP = "v2_regeneration"
_log = structlog.get_logger(__name__)
# Room for the system prompt, the instructions and the reply, on top of the sample and MEMORY.
_RESERVED_TOKENS = 12_000

HEADINGS: tuple[tuple[str, str], ...] = (
    ("soul", "Communication Style & Personality"),
    ("identity", "Your AI Identity"),
    ("user", "About You"),
    ("agents", "How I Operate"),
    ("tools", "My Capabilities"),
)
AI_NAMES: tuple[str, ...] = (
    "Wren", "Juniper", "Atlas", "Sage", "Orion", "Lumen", "Kestrel", "Marlowe",
    "Indigo", "Quill", "Rowan", "Vesper", "Echo", "Halcyon", "Tamsin", "Cove",
)  # fmt: skip
_LABELS = {"ai_name": "AI Name", "do_not": "Do Not"}


def derive_ai_name(seed: str) -> str:
    """A fitting-enough, non-generic name chosen by a hash of `seed`: same input, same name."""
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()
    return AI_NAMES[int.from_bytes(digest[:4], "big") % len(AI_NAMES)]


def _is_generic(name: str) -> bool:
    plain = name.strip().strip("\"'.!").lower()
    return plain in GENERIC_AI_NAMES or plain == NO_DATA


def _validate(raw: Any) -> SectionSet:
    if not isinstance(raw, dict):
        raise ValueError("the reply was not a JSON object")
    missing = [name for name in SECTION_NAMES if not isinstance(raw.get(name), dict)]
    if missing:
        raise ValueError("missing sections: " + ", ".join(missing))
    return SectionSet.model_validate(raw)


class RenderSample(Protocol):
    """The richest `limit` conversations as prompt text, within `max_tokens` estimated tokens."""

    def __call__(self, *, limit: int, max_tokens: int) -> str: ...


async def regenerate_sections(
    *,
    render_sample: RenderSample,
    memory_md: str,
    llm: LLM,
    ledger: CostLedger,
    input_tokens_per_minute: int,
    sample_limit: int = 200,
    context_tokens: int = 200_000,
) -> SectionSet:
    """One call (two at most) → validated sections. Raises LLMBadOutput after a failed retry."""
    budget = sections_sample_tokens(
        memory_tokens=estimate_tokens(memory_md), input_tokens_per_minute=input_tokens_per_minute
    )
    sample = render_sample(limit=sample_limit, max_tokens=budget)
    if (len(sample) + len(memory_md)) // 4 + _RESERVED_TOKENS > context_tokens:
        half = max(1, sample_limit // 2)
        _log.info("v2.sample_reduced", conversations=half, chars_before=len(sample))
        sample = render_sample(limit=half, max_tokens=budget)
    correction: str | None = None
    problem = ""
    for attempt in (1, 2):
        request = SectionsRequest(conversations=sample, memory_md=memory_md, correction=correction)
        try:
            reply = await llm.write_sections(request)
        except LLMBadOutput as exc:
            problem = exc.message
        else:
            ledger.record(STEP, reply.call)
            try:
                sections = _validate(reply.value)
            except (ValueError, ValidationError) as exc:
                problem = str(exc).splitlines()[0]
            else:
                if _is_generic(sections.identity.ai_name):
                    sections.identity.ai_name = derive_ai_name(memory_md + sample[:2_000])
                return sections
        ledger.record_failure(STEP, "invalid_reply")
        _log.warning("v2.reply_rejected", attempt=attempt, problem=problem[:200])
        correction = (
            f"Your previous reply could not be used ({problem[:300]}). Reply with one JSON "
            "object holding all five sections (soul, identity, user, agents, tools) and every "
            f'field of each; use "{NO_DATA}" or [] where there is no evidence.'
        )
    raise LLMBadOutput(
        f"The model's sections were not valid twice ({problem[:200]}); "
        "the earlier sections were kept. Retry the job to try again."
    )


def _label(field: str) -> str:
    return _LABELS.get(field, field.replace("_", " ").title())


def render_soulprint_text(sections: SectionSet, memory_md: str) -> str:
    """The sections in DESIGN §6 order under their headings, then MEMORY under "Memory"."""
    lines: list[str] = []
    for name, heading in HEADINGS:
        lines += [f"## {heading}", ""]
        section: dict[str, Any] = getattr(sections, name).model_dump()
        for field, value in section.items():
            if isinstance(value, list):
                if not value:
                    lines.append(f"**{_label(field)}:** {NO_DATA}")
                    continue
                lines.append(f"**{_label(field)}:**")
                lines += [f"- {item}" for item in value]
            else:
                lines.append(f"**{_label(field)}:** {value}")
        lines.append("")
    lines += ["## Memory", ""]
    for line in memory_md.strip().splitlines():
        if line.startswith("# "):
            continue  # a title of its own: "Memory" already heads it
        lines.append("#" + line if line.startswith("##") else line)
    return "\n".join(lines).rstrip() + "\n"


def section_columns(sections: SectionSet) -> dict[str, str]:
    """`soul_md` … `tools_md`: each the JSON text of its section dict (DESIGN §3)."""
    return {
        f"{name}_md": json.dumps(getattr(sections, name).model_dump(), ensure_ascii=False)
        for name in SECTION_NAMES
    }
