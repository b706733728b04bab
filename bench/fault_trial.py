"""Fault trial (issue 9): the provider rate-limited or down, the store refusing the chunk save, as
an operator lives it — real `python -m app serve` processes, the Messages-API simulator in its own
process driven over its control port, production clocks where they matter.

    python -m bench.fault_trial                                  # every scenario, about an hour
    python -m bench.fault_trial --only storm-v2-75 --scale 0.1   # a quick look

Scenarios: 429 storms (`retry-after: 30`) of 75, 150 and 300 s starting in extraction (a quarter
of the way in), at the first `write_memory` and at the first `write_sections` request; an outage
(529 to every request) of 15 minutes with 5 jobs queued; a burst of 409s (23505) on
`save_conversation_chunks`, within the client's conflict retries and beyond them (PostgREST
stand-in over PostgreSQL). Each runs on a fresh store with its own simulator. The service keeps
its defaults (SDK retries 4, probes from 5 s doubling to 60 s and never before `retry-after`,
lease 60 s, stall limit 30 min), except MAX_CONCURRENT_JOBS=2 in the outage: one job is running
when it starts, the other four are queued 30 s into it, and the free slot shows that nothing is
claimed while the provider is down.

Per scenario: what `GET /users/{id}/full-pass` and `GET /jobs/{id}` showed every few seconds (as
a timeline), final status, chunks extracted against the chunker's distinct units (target: all),
MEMORY's source (target: the model), jobs failed (target: 0), inputs the simulator answered more
than once (calls paid twice; the breaker's repeated "ping" probes excluded), `provider.unavailable`
log lines and alerts. A table on stdout, everything in bench/out/fault-trial-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import OUT_DIR, ensure_export, free_port, machine, simulator_process
from bench.fault_timeline import Watcher, render, timeline
from tests.process.backends import Backend, LocalBackend, PostgresBackend
from tests.support import pg
from tests.support.export_truth import ExportTruth, export_truth
from tests.support.postgrest_server import running_postgrest
from tests.support.service_process import ServiceProcess, service_env
from tests.support.webhook_receiver import WebhookReceiver, running_receiver

__all__ = ["SCENARIO_NAMES", "Scenario", "main", "scenarios"]

API_KEY = "fault-trial-secret"
SIM_KEY = "sk-sim-fault-trial"
SAVE = "save_conversation_chunks"
STORM_TASKS = {"extract": None, "memory": "write_memory", "v2": "write_sections"}


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "storm" | "outage" | "conflict"
    where: str | None = None  # a storm's start: extract | memory | v2
    seconds: float = 0.0  # a storm's or an outage's length
    retry_after: float = 30.0
    jobs: int = 1
    conflicts: int = 0  # 409s in a row on one save call


def scenarios(scale: float = 1.0) -> list[Scenario]:
    found = [
        Scenario(
            f"storm-{where}-{seconds}",
            "storm",
            where=where,
            seconds=seconds * scale,
            retry_after=30 * scale,
        )
        for where in STORM_TASKS
        for seconds in (75, 150, 300)
    ]
    found.append(Scenario("outage-15min-5jobs", "outage", seconds=900 * scale, jobs=5))
    found.append(Scenario("conflict-409x3", "conflict", conflicts=3))
    found.append(Scenario("conflict-409x8", "conflict", conflicts=8))
    return found


SCENARIO_NAMES = [s.name for s in scenarios()]


class _Run:
    """One scenario: its store, simulator, service, watcher and what they recorded."""

    def __init__(self, trial: _Trial, scenario: Scenario, backend: Backend) -> None:
        self.trial, self.scenario, self.backend = trial, scenario, backend
        self.root = trial.root / scenario.name
        self.users: dict[str, tuple[str, ExportTruth]] = {}  # job id → (user, truth)
        self.sim_url = ""
        self.control = ""
        self.service: ServiceProcess | None = None
        self.watcher: Watcher | None = None
        self.t0_epoch = 0.0

    # --- the simulator, over its control port ---------------------------------------------

    def storm(self, outcome: str, *, seconds: float | None, on_task: str | None = None) -> None:
        body = {
            "outcome": outcome,
            "seconds": seconds,
            "retry_after": self.scenario.retry_after,
            "on_task": on_task,
        }
        httpx.post(f"{self.control}/control/storm", json=body, timeout=10).raise_for_status()

    def ledger(self) -> dict[str, Any]:
        response = httpx.get(f"{self.control}/ledger", timeout=10)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    # --- the service ------------------------------------------------------------------------

    def start(self, hooks: WebhookReceiver, **extra: Any) -> ServiceProcess:
        settings = {
            **self.backend.settings(),
            "rlm_api_key": API_KEY,
            "anthropic_api_key": SIM_KEY,
            "anthropic_base_url": self.sim_url,
            "alert_webhook": hooks.url,
            **extra,
        }
        service = ServiceProcess(
            "serve",
            env=service_env(**settings),
            log_path=self.root / "serve.log",
            workdir=self.root / "cwd",
        )
        service.wait_healthy(timeout=60)
        self.service = service
        self.watcher = Watcher(service.base_url, api_key=API_KEY, every=self.trial.every).start()
        self.t0_epoch = time.time()
        return service

    def post(self, export: Path) -> str:
        assert self.service is not None
        assert self.watcher is not None
        user_id = str(uuid.uuid4())
        path = f"imports/{user_id}/export.json"
        self.backend.seed(user_id, path, export)
        response = httpx.post(
            f"{self.service.base_url}/process-full-v2",
            json={"user_id": user_id, "storage_path": path},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )
        response.raise_for_status()
        job_id: str = response.json()["job_id"]
        self.users[job_id] = (user_id, export_truth(export, user_id=user_id))
        self.watcher.watch(job_id, user_id)
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        assert self.service is not None
        response = httpx.get(
            f"{self.service.base_url}/jobs/{job_id}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.job(j)["status"] in ("complete", "failed") for j in self.users):
                return
            time.sleep(2)

    def wait_extraction(self, share: float) -> None:
        """Until `share` of the first job's units are extracted (in the fact cache: a packed
        request answers many units, so the simulator's call count is not the measure)."""
        user_id, truth = next(iter(self.users.values()))
        sql = "SELECT COUNT(*) FROM fact_extraction_cache WHERE user_id = ?"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.backend.rows(sql, user_id)[0][0] >= truth.units * share:
                return
            time.sleep(0.5)
        raise TimeoutError("extraction never got under way")

    # --- what it all came to ------------------------------------------------------------------

    def result(self, hooks: WebhookReceiver, started: float) -> dict[str, Any]:
        assert self.service is not None
        assert self.watcher is not None
        jobs = {job_id: self.job(job_id) for job_id in self.users}
        samples = self.watcher.stop()
        self.service.terminate()
        ledger = self.ledger()
        events = self.service.events()
        probes = ledger["by_task"].get("probe", 0)
        per_job = []
        for job_id, job in jobs.items():
            user_id, truth = self.users[job_id]
            counts = job["stats"].get("counts", {})
            cached = self.backend.rows(
                "SELECT COUNT(*) FROM fact_extraction_cache WHERE user_id = ?", user_id
            )[0][0]
            ids = [
                r[0]
                for r in self.backend.rows(
                    "SELECT id FROM conversation_chunks WHERE user_id = ?", user_id
                )
            ]
            per_job.append(
                {
                    "job_id": job_id,
                    "status": job["status"],
                    "attempts": job["attempts"],
                    "error": job["error"],
                    "note": job["note"],
                    "completed_at": job["completed_at"],
                    "units_expected": truth.units,
                    "units_extracted": int(cached),
                    "extraction": counts.get("extract_facts"),
                    "chunk_rows": len(ids),
                    "chunk_rows_exact": sorted(ids) == sorted(truth.chunk_ids),
                    "memory_source": counts.get("generate_memory", {}).get("source"),
                    "v2_skipped": counts.get("v2_regeneration", {}).get("skipped"),
                    "timeline": timeline(samples, job_id),
                }
            )
        opened = [e for e in events if e.get("event") == "provider.available"]
        return {
            "scenario": asdict(self.scenario),
            "seconds": round(time.monotonic() - started, 1),
            "jobs": per_job,
            "jobs_failed": sum(j["status"] == "failed" for j in per_job),
            "retries_scheduled": sum(e.get("event") == "job.retry_scheduled" for e in events),
            "paid_twice": ledger["answered_more_than_once"] - max(0, probes - 1),
            "ledger": {k: ledger[k] for k in ("requests", "by_outcome", "by_task")},
            "storms": [self._storm_window(s) for s in ledger["storms"]],
            "provider_unavailable_lines": sum(
                e.get("event") == "provider.unavailable" for e in events
            ),
            "breaker_open_s": round(sum(e.get("duration_ms", 0) for e in opened) / 1000, 1),
            "sdk_retries": sum(e.get("retries", 0) for e in events if e.get("event") == "llm.call"),
            "alerts": [b.get("text", "").split("\n")[0] for b in hooks.bodies],
            "watch_errors": self.watcher.errors,
        }

    def _storm_window(self, storm: dict[str, Any]) -> dict[str, Any]:
        def offset(epoch: float | None) -> float | None:
            return None if epoch is None else round(epoch - self.t0_epoch, 1)

        return {
            "outcome": storm["outcome"],
            "from_s": offset(storm["started_at"]),
            "to_s": offset(storm["ended_at"]),
            "requests": storm["requests"],
            "by_task": storm["by_task"],
        }


class _Trial:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args
        self.every = args.every

    @contextmanager
    def _simulator(self, run: _Run) -> Iterator[None]:
        control = free_port()
        with simulator_process(
            latency=self.args.latency, jitter=0.5, seed=self.args.seed, control_port=control
        ) as url:
            run.sim_url, run.control = url, f"http://127.0.0.1:{control}"
            yield

    def run(self, scenario: Scenario) -> dict[str, Any]:
        started = time.monotonic()
        with ExitStack() as stack:
            hooks = stack.enter_context(running_receiver())
            if scenario.kind == "conflict":
                conninfo = stack.enter_context(pg.temporary_database("soulprint_fault"))
                pg.apply_migrations(conninfo)
                storage = self.root / scenario.name / "storage"
                storage.mkdir(parents=True)
                server = stack.enter_context(running_postgrest(conninfo, storage))
                backend: Backend = PostgresBackend(conninfo, server, storage)
            else:
                backend = LocalBackend(self.root / scenario.name / "data")
            run = _Run(self, scenario, backend)
            stack.enter_context(self._simulator(run))
            getattr(self, f"_{scenario.kind}")(run, hooks)
            return run.result(hooks, started)

    def _storm(self, run: _Run, hooks: WebhookReceiver) -> None:
        scenario = run.scenario
        on_task = STORM_TASKS[scenario.where or "extract"]
        if on_task is not None:  # armed: it starts at that task's first request
            run.storm("rate_limited", seconds=scenario.seconds, on_task=on_task)
        run.start(hooks)
        export = ensure_export(self.args.size_mb, seed=self.args.seed)
        run.post(export)
        if on_task is None:
            run.wait_extraction(0.25)
            run.storm("rate_limited", seconds=scenario.seconds)
        run.wait_all(timeout=scenario.seconds + 1800)

    def _outage(self, run: _Run, hooks: WebhookReceiver) -> None:
        scenario = run.scenario
        run.start(hooks, max_concurrent_jobs=2)
        # Distinct exports: the same text for two users would count as an input answered twice.
        exports = [ensure_export(self.args.outage_size_mb, seed=100 + n) for n in range(5)]
        run.post(exports[0])
        run.wait_extraction(0.25)
        run.storm("overloaded", seconds=scenario.seconds)
        time.sleep(30)  # the breaker is open: the others are queued meanwhile, a slot free
        for export in exports[1 : scenario.jobs]:
            run.post(export)
        run.wait_all(timeout=scenario.seconds + 3600)

    def _conflict(self, run: _Run, hooks: WebhookReceiver) -> None:
        assert isinstance(run.backend, PostgresBackend)
        # The second save call meets `conflicts` 409s in a row (the client retries three).
        run.backend.server.outage(tables=(SAVE,), status=409, after=1, count=run.scenario.conflicts)
        run.start(hooks)
        run.post(ensure_export(self.args.size_mb, seed=self.args.seed))
        run.wait_all(timeout=1800)


def _row(result: dict[str, Any]) -> str:
    jobs = result["jobs"]
    final = "/".join(sorted({j["status"] for j in jobs}))
    extracted = sum(j["units_extracted"] for j in jobs)
    expected = sum(j["units_expected"] for j in jobs)
    exact = all(j["chunk_rows_exact"] for j in jobs)
    sources = "/".join(sorted({str(j["memory_source"]) for j in jobs}))
    v2 = "skipped" if any(j["v2_skipped"] for j in jobs) else "ok"
    return (
        f"{result['scenario']['name']:<20} {final:<9} {extracted:>5}/{expected:<5} "
        f"{'yes' if exact else 'NO':<5} {sources:<8} {v2:<7} {result['jobs_failed']:>6} "
        f"{result['retries_scheduled']:>7} {result['paid_twice']:>5} "
        f"{result['provider_unavailable_lines']:>4}/{len(result['alerts']):<3} "
        f"{result['breaker_open_s']:>7} {result['seconds']:>7}"
    )


HEADER = (
    f"{'scenario':<20} {'final':<9} {'extracted':>11} {'rows':<5} {'MEMORY':<8} {'v2':<7} "
    f"{'failed':>6} {'retries':>7} {'twice':>5} {'log/alerts':>8} {'open s':>7} {'took s':>7}"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_trial", description=__doc__)
    parser.add_argument("--only", nargs="*", choices=SCENARIO_NAMES, help="these scenarios")
    parser.add_argument("--size-mb", type=float, default=2.0, help="the export of one pass")
    parser.add_argument("--outage-size-mb", type=float, default=1.0, help="each outage job's")
    parser.add_argument("--latency", type=float, default=1.0, help="simulator s per call ± 50 %")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies storm lengths")
    parser.add_argument("--every", type=float, default=3.0, help="operator poll interval, s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    chosen = [s for s in scenarios(args.scale) if not args.only or s.name in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="fault-trial-") as tmp:
        trial = _Trial(Path(tmp), args)
        for scenario in chosen:
            print(f"--- {scenario.name} ...", flush=True)
            result = trial.run(scenario)
            results.append(result)
            for storm in result["storms"]:
                print(f"  storm {storm['outcome']}: {storm['from_s']}–{storm['to_s']} s")
            for job in result["jobs"]:
                print(render(job["timeline"]), flush=True)
            print(HEADER + "\n" + _row(result), flush=True)
    summary = {
        "command": "python -m bench.fault_trial "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "settings": vars(args) | {"out": str(args.out)},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"fault-trial-{int(time.time())}.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    print("\n" + HEADER)
    for result in results:
        print(_row(result))
    print(f"\nwritten to {out}")
    missed = [
        r
        for r in results
        if r["jobs_failed"] or any(j["units_extracted"] < j["units_expected"] for j in r["jobs"])
    ]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
