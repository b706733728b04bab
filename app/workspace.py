"""An OpenClaw agent workspace from a full pass: SOUL.md, IDENTITY.md, USER.md, AGENTS.md, TOOLS.md
and MEMORY.md, laid out as OpenClaw's own templates lay them out (docs/reference/templates in
openclaw), within its injection limits: 20,000 characters per bootstrap file
(`agents.defaults.bootstrapMaxChars`) and 4,000 for USER.md.

Pure functions: sections and MEMORY in, file texts out. Nothing here reads conversations.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from app.sections import NO_DATA, SectionSet

__all__ = ["FILE_LIMITS", "render_workspace", "write_workspace"]

FILE_LIMITS: dict[str, int] = {
    "SOUL.md": 20_000,
    "IDENTITY.md": 20_000,
    "USER.md": 4_000,
    "AGENTS.md": 20_000,
    "TOOLS.md": 20_000,
    "MEMORY.md": 20_000,
}
_CUT_NOTE = "\n\n_(Shortened to fit OpenClaw's size limit for this file.)_\n"
_ORIGIN = "_Written by soulprint-rlm from your chat history. Edit freely: it is yours._"


def _known(value: str) -> str | None:
    return None if value.strip().lower() == NO_DATA else value.strip()


def _bullets(items: Sequence[str]) -> list[str]:
    return [f"- {item}" for item in items if item.strip()]


def _soul(sections: SectionSet) -> str:
    soul, agents = sections.soul, sections.agents
    truths = [
        ("Talk the way they talk.", _known(soul.communication_style)),
        ("Match their register.", _known(soul.formality_level)),
        ("Mind the mood.", _known(soul.emotional_patterns)),
        ("Humour, their way.", _known(soul.humor_style)),
    ]
    lines = ["# SOUL.md - Who You Are", "", "_You're not a chatbot. You're becoming someone._", ""]
    lines += ["## Core Truths", ""]
    lines += [f"**{lead}** {text}\n" for lead, text in truths if text]
    if soul.personality_traits:
        lines += ["**Who you are with them:** " + ", ".join(soul.personality_traits) + ".", ""]
    lines += ["## Boundaries", ""]
    boundaries = [b for b in [_known(soul.boundaries), *agents.do_not] if b]
    lines += _bullets(boundaries) or ["- Private things stay private."]
    lines += [
        "",
        "## Vibe",
        "",
        _known(soul.tone_preferences) or "Concise when needed, thorough when it matters.",
        "",
    ]
    lines += [
        "## Continuity",
        "",
        "Each session, you wake up fresh. These files _are_ your memory. Read them. Update them.",
        "",
        "---",
        "",
        _ORIGIN,
    ]
    return "\n".join(lines) + "\n"


def _identity(sections: SectionSet) -> str:
    identity = sections.identity
    fields = [
        ("Name", _known(identity.ai_name) or "_(choose one together)_"),
        ("Creature", _known(identity.archetype) or "personal AI assistant"),
        ("Vibe", _known(identity.vibe) or "calm and useful"),
        ("Emoji", _known(identity.emoji_style) or "none"),
        ("Greeting", _known(identity.signature_greeting)),
    ]
    lines = ["# IDENTITY.md - Who Am I?", ""]
    lines += [f"- **{label}:** {value}" for label, value in fields if value]
    return "\n".join([*lines, "", "---", "", _ORIGIN]) + "\n"


def _user(sections: SectionSet) -> str:
    user = sections.user
    fields = [
        ("Name", _known(user.name)),
        ("What to call them", _known(user.preferred_address) or _known(user.name)),
        ("Location", _known(user.location)),
        ("Occupation", _known(user.occupation)),
    ]
    lines = ["# USER.md - About Your Human", ""]
    lines += [f"- **{label}:** {value or '_(not yet known)_'}" for label, value in fields]
    lines += ["", "## Context", "", _known(user.life_context) or "_(Build this over time.)_", ""]
    if user.interests:
        lines += ["## Interests", "", *_bullets(user.interests), ""]
    if user.relationships:
        lines += ["## People", "", *_bullets(user.relationships), ""]
    return "\n".join([*lines, "---", "", _ORIGIN]) + "\n"


def _agents(sections: SectionSet) -> str:
    agents = sections.agents
    lines = ["# AGENTS.md - Your Workspace", "", "This folder is home. Treat it that way.", ""]
    lines += [
        "## Session Startup",
        "",
        "Read `SOUL.md`, `USER.md` and `MEMORY.md` (main session only) before you answer.",
        "",
    ]
    lines += ["## How to Answer", "", _known(agents.response_style) or "Lead with the answer.", ""]
    if agents.behavioral_rules:
        lines += ["## Rules", "", *_bullets(agents.behavioral_rules), ""]
    adapt = _known(agents.context_adaptation)
    if adapt:
        lines += ["## Reading the Room", "", adapt, ""]
    lines += [
        "## Memory",
        "",
        _known(agents.memory_directives)
        or "Use `MEMORY.md`; write down decisions and preferences as you learn them.",
        "",
    ]
    lines += [
        "## Red Lines",
        "",
        "- Don't exfiltrate private data. Ever.",
        *_bullets(agents.do_not),
    ]
    return "\n".join([*lines, "", "---", "", _ORIGIN]) + "\n"


def _tools(sections: SectionSet) -> str:
    tools = sections.tools
    lines = [
        "# TOOLS.md - Local Notes",
        "",
        "Skills define _how_ tools work. This file is for "
        "_your_ specifics: what this person reaches for and how they like results.",
        "",
    ]
    if tools.likely_usage:
        lines += ["## What They Use You For", "", *_bullets(tools.likely_usage), ""]
    if tools.capabilities_emphasis:
        lines += ["## Lean On", "", *_bullets(tools.capabilities_emphasis), ""]
    output = [
        ("Format", _known(tools.output_preferences)),
        ("Depth", _known(tools.depth_preference)),
    ]
    lines += ["## Output", "", *[f"- **{label}:** {value}" for label, value in output if value]]
    return "\n".join([*lines, "", "---", "", _ORIGIN]) + "\n"


def _memory(memory_md: str) -> str:
    body = memory_md.strip()
    return f"# MEMORY.md - Long-Term Memory\n\n{body}\n"


def _fit(text: str, limit: int) -> str:
    """Cut at a line boundary under the limit, saying so; OpenClaw would truncate silently."""
    if len(text) <= limit:
        return text
    room = limit - len(_CUT_NOTE)
    cut = text[:room].rsplit("\n", 1)[0]
    return cut + _CUT_NOTE


def render_workspace(sections: SectionSet, memory_md: str) -> dict[str, str]:
    files = {
        "SOUL.md": _soul(sections),
        "IDENTITY.md": _identity(sections),
        "USER.md": _user(sections),
        "AGENTS.md": _agents(sections),
        "TOOLS.md": _tools(sections),
        "MEMORY.md": _memory(memory_md),
    }
    return {name: _fit(text, FILE_LIMITS[name]) for name, text in files.items()}


def write_workspace(out_dir: Path, files: dict[str, str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
