"""Rows read back as domain values: a job row whose stats do not read must not stop its reader."""

from __future__ import annotations

from typing import Any

import pytest

from app.adapters.rows import job_from_row

ROW = {
    "id": "0f8a3c1e-1111-4222-8333-444455556666",
    "user_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "status": "queued",
    "storage_path": "imports/9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d/x.json",
}


@pytest.mark.parametrize("stats", ["{not json", "[1, 2]", '"text"', [1, 2], "7", None, ""])
def test_stats_that_do_not_read_as_an_object_read_as_none(stats: Any) -> None:
    assert job_from_row({**ROW, "stats": stats}).stats == {}


@pytest.mark.parametrize(
    "stats", ['{"checkpoints": {"chunks": "committed"}}', {"checkpoints": {"chunks": "committed"}}]
)
def test_stats_that_read_are_kept(stats: Any) -> None:
    assert job_from_row({**ROW, "stats": stats}).stats == {"checkpoints": {"chunks": "committed"}}
