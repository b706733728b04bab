"""`python -m app cache validate|purge`: report on the fact cache and repair it, with counts.

An entry whose facts do not decode is already a miss for the pipeline (it is extracted again and
replaced), so purging is tidying, never a prerequisite. Entries of another extractor version are
"stale": no pass reads them any more, but they cost nothing to keep either, except space.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import structlog

from app.errors import ConfigError
from app.ports import FactCacheEntry, FactCacheKey, Store

__all__ = ["add_cache_commands", "purge_fact_cache", "validate_fact_cache"]

log = structlog.get_logger(__name__)


def add_cache_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`cache validate` and `cache purge` under the CLI's subcommands."""
    cache = commands.add_parser(
        "cache",
        help="check or repair the fact cache (counts as JSON)",
        description="The fact cache holds each chunk's extracted facts, so a re-run pays only for "
        "new chunks. Entries of an older extractor version (text layout or prompt) are stale; "
        "entries of another provider or model are kept.",
    )
    actions = cache.add_subparsers(dest="cache_command", required=True, metavar="<action>")
    validate = actions.add_parser(
        "validate", help="count entries: valid, invalid (by reason), stale, by extractor version"
    )
    validate.add_argument("--user", metavar="UUID", help="only this user's entries")
    purge = actions.add_parser(
        "purge", help="delete invalid entries (and with --stale old versions'); report counts"
    )
    purge.add_argument("--user", metavar="UUID", help="only this user's entries")
    purge.add_argument(
        "--stale", action="store_true", help="also delete entries of older extractor versions"
    )
    purge.add_argument(
        "--all", action="store_true", help="delete every entry of the user (needs --user)"
    )


def _current_version() -> str:
    """The current layout and prompt: versions are `<this>/<provider>:<model>`."""
    # Imported when used: the prompt modules behind it take a third of a second to load, which
    # every other command would pay for at start.
    from app.processors.extraction.text import EXTRACTOR_VERSION

    return EXTRACTOR_VERSION


def _is_stale(version: str, current: str) -> bool:
    return version.split("/", 1)[0] != current


async def validate_fact_cache(store: Store, *, user_id: str | None) -> dict[str, Any]:
    current = _current_version()
    entries = valid = stale = 0
    reasons: Counter[str] = Counter()
    versions: dict[str, Counter[str]] = {}
    async for page in store.scan_fact_cache(user_id=user_id):
        for entry in page:
            entries += 1
            verdict = "invalid" if entry.problem else "valid"
            versions.setdefault(entry.key.extractor_version, Counter())[verdict] += 1
            if entry.problem:
                reasons[entry.problem] += 1
            else:
                valid += 1
            stale += _is_stale(entry.key.extractor_version, current)
    return {
        "user_id": user_id,
        "current_extractor_version": current,
        "entries": entries,
        "valid": valid,
        "invalid": entries - valid,
        "invalid_by_reason": dict(sorted(reasons.items())),
        "stale": stale,
        "by_extractor_version": {
            version: {"entries": sum(c.values()), "valid": c["valid"], "invalid": c["invalid"]}
            for version, c in sorted(versions.items())
        },
    }


def _reason_to_remove(
    entry: FactCacheEntry, *, current: str, stale: bool, everything: bool
) -> str | None:
    if entry.problem:
        return "invalid"
    if stale and _is_stale(entry.key.extractor_version, current):
        return "stale"
    return "all" if everything else None


async def purge_fact_cache(
    store: Store, *, user_id: str | None, stale: bool, everything: bool
) -> dict[str, Any]:
    """Delete page by page as the scan goes: memory stays one page, whatever the cache's size."""
    if everything and user_id is None:
        raise ConfigError("--all deletes every entry of one user: name the user with --user UUID")
    current = _current_version()
    scanned = removed = 0
    by_reason: Counter[str] = Counter()
    async for page in store.scan_fact_cache(user_id=user_id):
        scanned += len(page)
        doomed: list[FactCacheKey] = []
        for entry in page:
            reason = _reason_to_remove(entry, current=current, stale=stale, everything=everything)
            if reason is not None:
                doomed.append(entry.key)
                by_reason[reason] += 1
        if doomed:
            removed += await store.delete_fact_cache_entries(doomed)
    report = {
        "user_id": user_id,
        "current_extractor_version": current,
        "scanned": scanned,
        "removed": removed,
        "kept": scanned - removed,
        "removed_by_reason": {r: by_reason[r] for r in ("invalid", "stale", "all")},
    }
    log.info("fact_cache.purged", **report)
    return report
