"""The OpenClaw workspace: the templates' layout, every file within OpenClaw's injection limits."""

from __future__ import annotations

from pathlib import Path

from app.sections import SectionSet
from app.workspace import FILE_LIMITS, render_workspace, write_workspace

MEMORY = "## About Me\n\n- The user lives in Lisbon.\n\n## People\n\n- Nothing recorded yet.\n"


def _sections(**user: object) -> SectionSet:
    return SectionSet.model_validate(
        {
            "soul": {"communication_style": "Short and direct", "boundaries": "No medical advice"},
            "identity": {"ai_name": "Marlowe", "vibe": "Calm"},
            "user": {"name": "Maya", "location": "Lisbon", **user},
            "agents": {"behavioral_rules": ["Answer first."], "do_not": ["Use emoji"]},
            "tools": {"likely_usage": ["planting plans"], "depth_preference": "Brief"},
        }
    )


def test_files_follow_openclaw_templates() -> None:
    files = render_workspace(_sections(), MEMORY)
    assert set(files) == set(FILE_LIMITS)
    assert files["SOUL.md"].startswith("# SOUL.md - Who You Are\n")
    for heading in ("## Core Truths", "## Boundaries", "## Vibe", "## Continuity"):
        assert heading in files["SOUL.md"]
    assert "- No medical advice" in files["SOUL.md"]
    assert files["IDENTITY.md"].startswith("# IDENTITY.md - Who Am I?\n")
    assert "- **Name:** Marlowe" in files["IDENTITY.md"]
    assert files["USER.md"].startswith("# USER.md - About Your Human\n")
    assert "- **Name:** Maya" in files["USER.md"]
    assert "- **What to call them:** Maya" in files["USER.md"]
    assert "## Context" in files["USER.md"]
    assert files["AGENTS.md"].startswith("# AGENTS.md - Your Workspace\n")
    assert "- Answer first." in files["AGENTS.md"]
    assert files["TOOLS.md"].startswith("# TOOLS.md - Local Notes\n")
    assert "- **Depth:** Brief" in files["TOOLS.md"]
    assert files["MEMORY.md"].startswith("# MEMORY.md - Long-Term Memory\n\n## About Me")


def test_unknown_fields_are_not_printed_as_not_enough_data() -> None:
    files = render_workspace(SectionSet(), "## About Me\n\n- Nothing recorded yet.\n")
    for name, text in files.items():
        assert "not enough data" not in text, name
    assert "- **Name:** _(not yet known)_" in files["USER.md"]


def test_every_file_fits_its_limit_and_says_when_it_was_cut(tmp_path: Path) -> None:
    many = [f"interest number {i} with a fairly long description attached" for i in range(300)]
    files = render_workspace(_sections(interests=many), "- fact\n" * 5_000)
    for name, text in files.items():
        assert len(text) <= FILE_LIMITS[name], name
    assert len(files["USER.md"]) <= 4_000
    assert "Shortened to fit" in files["USER.md"]
    assert "Shortened to fit" in files["MEMORY.md"]
    written = write_workspace(tmp_path / "ws", files)
    assert sorted(p.name for p in written) == sorted(FILE_LIMITS)
    assert (tmp_path / "ws" / "USER.md").read_text(encoding="utf-8") == files["USER.md"]
