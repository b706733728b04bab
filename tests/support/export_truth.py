"""What the real reader and chunker make of an export: the ground truth that process tests and
the crash trial check a store against (chunk ids, and how many extraction calls a clean run makes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config import Settings
from app.domain import UserSignal
from app.processors.extraction.text import build_extraction_text, signal_batches
from app.processors.reading.chunking import chunk_as_configured
from app.processors.reading.export_reader import ExportReader

__all__ = ["ExportTruth", "export_truth"]


@dataclass(frozen=True)
class ExportTruth:
    """What the real reader and chunker make of an export for one user: the ground truth."""

    path: Path
    chunk_ids: frozenset[str]
    units: int  # distinct extraction calls a clean run makes (chunk contents + signal batches)


def export_truth(path: Path, *, user_id: str) -> ExportTruth:
    settings = Settings(_env_file=None)
    ids: set[str] = set()
    hashes: set[str] = set()
    signals: list[UserSignal] = []
    for conversation in ExportReader(path, settings=settings):
        signals.extend(conversation.signals)
        for chunk in chunk_as_configured(conversation, user_id=user_id, settings=settings):
            ids.add(chunk.id)
            if build_extraction_text(chunk):
                hashes.add(chunk.content_hash)
    return ExportTruth(path, frozenset(ids), len(hashes) + len(signal_batches(signals)))
