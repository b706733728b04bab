"""LocalStore specifics beyond the shared contract: thread safety and its storage folder."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.adapters.local_store import LocalStore
from app.domain import Fact, FactCategory
from app.errors import ExportNotFound

USER = "7d0f1d2e-3c4b-4a59-8e6f-1a2b3c4d5e6f"


async def test_many_concurrent_writes_never_misuse_the_connection(tmp_path: Path) -> None:
    """Cursors must not outlive the store's lock: freed on another thread mid-write, SQLite
    answers 'bad parameter or other API misuse' (seen with 50 extraction calls in flight)."""
    store = LocalStore(tmp_path)
    fact = Fact(category=FactCategory.ABOUT_ME, text="The user lives in Lisbon.")

    async def writes(start: int) -> None:
        for i in range(start, start + 100):
            await store.put_cached_facts(
                user_id=USER, extractor_version="v", entries={f"hash-{i}": [fact] * 20}
            )
            await store.ensure_profile(f"00000000-0000-4000-8000-{i:012d}")

    await asyncio.gather(*(writes(n * 100) for n in range(30)))
    cached = await store.get_cached_facts(
        user_id=USER, extractor_version="v", content_hashes=[f"hash-{i}" for i in range(3000)]
    )
    await store.aclose()
    assert len(cached) == 3000


def test_export_paths_stay_inside_storage(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    outside = tmp_path / "secret.json"
    outside.write_text("[]")
    for path in ("imports/u/../../secret.json", "../secret.json", "imports/../../secret.json"):
        with pytest.raises(ExportNotFound):
            store.export_path(path)
    linked = store.put_export("imports/u/export.json", outside, link=True)
    assert linked.is_symlink()
    assert store.export_path("imports/u/export.json").read_text() == "[]"
    asyncio.run(store.aclose())
