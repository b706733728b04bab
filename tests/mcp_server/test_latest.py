"""Where the latest local workspace is kept, as two processes would see it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from app.errors import NotFound
from app.mcp_server.latest import WORKSPACE_FILES, LatestWorkspace, NoWorkspaceYet


def _files(tag: str) -> dict[str, str]:
    return {name: f"# {name} from {tag}\n" for name in WORKSPACE_FILES}


def test_the_newest_run_wins_and_earlier_runs_stay(tmp_path: Path) -> None:
    writer, reader = LatestWorkspace(tmp_path), LatestWorkspace(tmp_path)
    with pytest.raises(NoWorkspaceYet, match="call the process_export tool first"):
        reader.read("MEMORY.md")

    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    first_dir = writer.publish(first, _files("first"))
    assert reader.read("SOUL.md") == "# SOUL.md from first\n"
    writer.publish(second, _files("second"))
    assert reader.job_id() == second
    assert [reader.read(name) for name in WORKSPACE_FILES] == list(_files("second").values())
    assert (first_dir / "SOUL.md").read_text() == "# SOUL.md from first\n"
    assert sorted(p.name for p in (tmp_path / "workspaces").iterdir()) == sorted(
        [first, second, "latest.json"]
    )


def test_refuses_what_is_not_a_workspace(tmp_path: Path) -> None:
    latest = LatestWorkspace(tmp_path)
    with pytest.raises(ValueError, match=r"MEMORY\.md"):
        latest.publish(str(uuid.uuid4()), {"SOUL.md": "x"})
    with pytest.raises(ValueError, match="badly formed"):
        latest.publish("../escape", _files("x"))
    latest.publish(str(uuid.uuid4()), _files("x"))
    with pytest.raises(NotFound, match=r"no file 'secrets\.txt'"):
        latest.read("secrets.txt")
    # A pointer edited by hand never becomes a path outside the workspaces folder.
    (tmp_path / "workspaces" / "latest.json").write_text('{"job_id": "../../etc"}')
    with pytest.raises(ValueError, match="badly formed"):
        latest.read("SOUL.md")
