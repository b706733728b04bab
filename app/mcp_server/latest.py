"""The latest local run's workspace, kept where every process on this machine finds it.

`LOCAL_DATA_DIR/workspaces/<job_id>/` holds one run's six files; `LOCAL_DATA_DIR/workspaces/
latest.json` names the newest run. The pointer is replaced atomically (written beside it, then
`os.replace`) only once that run's files are on disk, so a reader in another process — the stdio
server an agent launched, the service's `/mcp` — sees the previous run or this one, never half of
each. Older runs' folders stay (six small files each) as a record of what each run wrote.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from app.errors import NotFound
from app.workspace import FILE_LIMITS, write_workspace

__all__ = ["WORKSPACE_FILES", "LatestWorkspace", "NoWorkspaceYet"]

WORKSPACE_FILES: tuple[str, ...] = tuple(FILE_LIMITS)
_POINTER = "latest.json"


class NoWorkspaceYet(NotFound):
    code = "no_workspace_yet"


class LatestWorkspace:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "workspaces"

    def publish(self, job_id: str, files: Mapping[str, str]) -> Path:
        """Write a completed run's files under its job id, then make it the latest."""
        missing = set(WORKSPACE_FILES) - set(files)
        if missing:
            raise ValueError(f"a workspace needs all six files; missing {sorted(missing)}")
        directory = self.root / _job_folder(job_id)
        write_workspace(directory, dict(files))
        staged = self.root / f".{_POINTER}.{uuid.uuid4().hex}"
        staged.write_text(json.dumps({"job_id": job_id}), encoding="utf-8")
        os.replace(staged, self.root / _POINTER)
        return directory

    def job_id(self) -> str | None:
        """The latest run's job id, or None before the first run on this machine."""
        try:
            pointer = json.loads((self.root / _POINTER).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return _job_folder(str(pointer["job_id"]))

    def read(self, name: str) -> str:
        if name not in WORKSPACE_FILES:
            raise NotFound(f"a workspace has no file {name!r}; it has {', '.join(WORKSPACE_FILES)}")
        job_id = self.job_id()
        if job_id is None:
            raise NoWorkspaceYet(
                f"no local run has written a workspace under {self.root} yet: "
                "call the process_export tool first"
            )
        return (self.root / job_id / name).read_text(encoding="utf-8")


def _job_folder(job_id: str) -> str:
    """Job ids are UUIDs; anything else must never become part of a path."""
    return str(uuid.UUID(job_id))
