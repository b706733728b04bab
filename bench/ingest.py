"""Ingest benchmark: read + parse + normalise + chunk + save chunks to SQLite (`LocalStore`),
against the bare ijson parse and `json.load` of the same file, each in a fresh subprocess.

`python -m bench.ingest --sizes 10,100 --formats json,zip --runs 3 [--out-dir bench/out]`

Peak RSS is the child's own high-water mark (VmHWM from /proc, ru_maxrss as a fallback), so each
figure is one case alone; CPU seconds are the child's, all threads (SQLite writes run in a
worker thread). Prints a Markdown table (medians over `--runs`) and writes JSON next to
the generated exports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import ijson

from bench.make_export import write_export

__all__ = ["main"]

_BUF = 1024 * 1024
MODES = ("ingest", "ijson", "json_load")


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _documents(path: Path) -> Iterator[IO[bytes]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = sorted(n for n in archive.namelist() if n.startswith("conversations"))
            for name in names:
                with archive.open(name) as member:
                    yield member
    else:
        with path.open("rb") as handle:
            yield handle


_USER = "00000000-0000-4000-8000-000000000001"


async def _ingest(path: Path) -> dict[str, Any]:
    """Read, parse, normalise, chunk and save, one conversation after another on one thread.

    The service parses in a worker thread while the event loop saves (ingest_flow.py). Measured
    that way on 2 vCPUs it was no faster (0.49 s wall against 0.45 s in sequence at 20 MB: SQLite
    hands the GIL back and forth with the busy parse thread), and on Render's half CPU nothing
    overlaps anyway. So this measures the work itself, in sequence."""
    from app.adapters.local_store import LocalStore
    from app.config import Settings
    from app.processors.reading.chunking import chunk_as_configured
    from app.processors.reading.export_reader import ExportReader
    from app.processors.reading.ingest_stats import IngestStats
    from app.processors.reading.v2_sample import V2Sampler

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    stats = IngestStats()
    sampler = V2Sampler(settings.v2_sample_size)
    with tempfile.TemporaryDirectory() as data_dir:
        store = LocalStore(Path(data_dir))
        batch: list[Any] = []
        for conversation in ExportReader(path, settings=settings):
            stats.add_conversation(conversation)
            sampler.offer(conversation)
            chunks = chunk_as_configured(conversation, user_id=_USER, settings=settings)
            stats.add_chunks(chunks)
            batch.extend(chunks)
            if len(batch) >= settings.chunk_batch_size:
                await store.upsert_chunks(user_id=_USER, job_id="bench", chunks=batch)
                batch = []
        await store.upsert_chunks(user_id=_USER, job_id="bench", chunks=batch)
        saved = await store.count_chunks(_USER)
        await store.aclose()
    return {**stats.as_dict(), "saved_chunks": saved, "v2_sample": len(sampler)}


def _worker(mode: str, path: Path) -> dict[str, Any]:
    # Import the service's modules before the clock starts: a one-off cost, not ingest.
    import app.adapters.local_store
    import app.processors.reading.export_reader  # noqa: F401

    started = time.perf_counter()
    cpu_started = time.process_time()
    if mode == "ingest":
        result = asyncio.run(_ingest(path))
    elif mode == "ijson":
        count = 0
        for document in _documents(path):
            for _ in ijson.items(document, "item", use_float=True, buf_size=_BUF):
                count += 1
        result = {"conversations": count}
    else:
        count = 0
        for document in _documents(path):
            count += len(json.load(document))
        result = {"conversations": count}
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "peak_rss_mb": _peak_rss_mb(),
        **result,
    }


def _run_case(mode: str, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--worker", mode, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description="Export ingestion benchmark")
    parser.add_argument("--worker", choices=MODES)
    parser.add_argument("path", nargs="?", type=Path)
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--formats", default="json,zip")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out-dir", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.path)))
        return
    rows = []
    for size in [float(s) for s in args.sizes.split(",")]:
        for fmt in args.formats.split(","):
            path = args.out_dir / f"export-{size:g}mb.{fmt}"
            if not path.exists():
                write_export(path, size_mb=size, fmt=fmt, split_mb=100 if fmt == "zip" else 0)
            json_mb = size  # the generator's size is the uncompressed JSON size
            modes = args.modes.split(",")
            # Interleaved (ingest, ijson, json.load, ingest, ...): on a shared machine the load
            # changes over minutes, and the ratio of ingest to the bare parse is the figure.
            results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
            for _ in range(args.runs):
                for mode in modes:
                    results[mode].append(_run_case(mode, path))
            rates: dict[str, float] = {}
            for mode, runs in results.items():
                secs = statistics.median(r["seconds"] for r in runs)
                rates[mode] = json_mb / secs
                row = {
                    "size_mb": size,
                    "format": fmt,
                    "file_mb": round(path.stat().st_size / 2**20, 1),
                    "mode": mode,
                    "runs": len(runs),
                    "seconds": round(secs, 2),
                    "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs), 2),
                    "json_mb_per_s": round(json_mb / secs, 1),
                    "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs), 1),
                    "detail": runs[0],
                }
                rows.append(row)
                print(
                    f"| {size:g} MB | {fmt} | {mode} | {row['seconds']} s | {row['cpu_seconds']} s "
                    f"| {row['json_mb_per_s']} MB/s | {row['peak_rss_mb']} MB | {len(runs)} |",
                    flush=True,
                )
            if "ingest" in rates and "ijson" in rates:
                print(f"  ingest / bare ijson rate: {rates['ingest'] / rates['ijson']:.0%}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"ingest-{int(time.time())}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
