"""Run the Messages-API simulator on its own, for benchmarks and manual runs; drive a running one.

    python -m bench.simulator --port 8765 --control-port 8766 --latency 2.5 --jitter 0.4 \\
        --rpm 50 --itpm 50000 --otpm 10000 --batch-processing 60
    python -m bench.simulator storm --url http://127.0.0.1:8766 rate_limited \\
        --seconds 150 --retry-after 30 --on-task extract_facts
    python -m bench.simulator storm --url http://127.0.0.1:8766 connection_refused   # an outage
    python -m bench.simulator clear --url http://127.0.0.1:8766
    python -m bench.simulator ledger --url http://127.0.0.1:8766

Point the service at it with `ANTHROPIC_BASE_URL=http://127.0.0.1:8765` and any non-empty
`ANTHROPIC_API_KEY`. Control and the ledger are on both ports; the control port stays open while
a `connection_refused` storm closes the main one. The ledger is printed as JSON on Ctrl-C or
SIGTERM. `--storm ...` arms a storm at start (e.g. on the first `write_memory` request).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

import httpx

from tests.support.messages_simulator import SimulatorConfig, running_simulator
from tests.support.simulator_gate import TASKS
from tests.support.simulator_storms import STORM_OUTCOMES

__all__ = ["main", "parse_args", "simulator_config"]

COMMANDS = ("storm", "clear", "ledger")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The serving options (no command) or a command's (`storm`, `clear`, `ledger`)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return _command_parser().parse_args(argv)
    parser = argparse.ArgumentParser(prog="python -m bench.simulator", description=__doc__)
    add = parser.add_argument
    add("--port", type=int, default=8765)
    add("--control-port", type=int, default=None, help="a second port refusals leave open")
    add("--latency", type=float, default=0.0, help="mean seconds per reply")
    add("--jitter", type=float, default=0.0, help="± fraction of the latency")
    add("--rate-429", type=float, default=0.0)
    add("--retry-after", type=float, default=1.0, help="seconds, on 429s")
    add("--rate-529", type=float, default=0.0)
    add("--rate-500", type=float, default=0.0)
    add("--rate-slow", type=float, default=0.0)
    add("--slow", type=float, default=30.0, help="extra seconds of a slow reply")
    add("--rate-invalid-json", type=float, default=0.0)
    add("--rate-truncated", type=float, default=0.0)
    add("--key", action="append", help="accepted API key (repeat); default any")
    add("--seed", type=int, default=0)
    add("--rpm", type=int, default=None, help="requests per minute (default unlimited)")
    add("--itpm", type=int, default=None, help="input tokens per minute")
    add("--otpm", type=int, default=None, help="output tokens per minute (max_tokens reserved)")
    add("--rate-window", type=float, default=60.0, help="seconds a 'minute' of limits lasts")
    add("--batch-processing", type=float, default=0.0, help="seconds until a batch ends")
    add("--batch-cancel", type=float, default=0.0, help="seconds from cancel to end")
    add("--batch-rate-errored", type=float, default=0.0)
    add("--batch-rate-expired", type=float, default=0.0)
    add("--batch-counts-advance", action="store_true", help="counts move before the end")
    add("--storm", choices=STORM_OUTCOMES, help="arm a storm at start")
    add("--storm-seconds", type=float, default=None, help="its length; default: until cleared")
    add("--storm-retry-after", type=float, default=1.0)
    add("--storm-on-task", choices=TASKS, help="start it at this task's first request")
    return parser.parse_args(argv)


def _command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator")
    commands = parser.add_subparsers(dest="command", required=True)
    storm = commands.add_parser("storm", help="start a storm (no --seconds: an outage)")
    storm.add_argument("outcome", choices=STORM_OUTCOMES)
    storm.add_argument("--seconds", type=float, default=None)
    storm.add_argument("--retry-after", type=float, default=1.0)
    storm.add_argument("--on-task", choices=TASKS, default=None)
    for name in ("clear", "ledger"):
        commands.add_parser(name)
    for sub in commands.choices.values():
        sub.add_argument("--url", required=True, help="the simulator's (control) URL")
    return parser


def simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        latency_s=args.latency,
        jitter=args.jitter,
        rate_429=args.rate_429,
        retry_after_s=args.retry_after,
        rate_529=args.rate_529,
        rate_500=args.rate_500,
        rate_slow=args.rate_slow,
        slow_s=args.slow,
        rate_invalid_json=args.rate_invalid_json,
        rate_truncated=args.rate_truncated,
        valid_keys=frozenset(args.key) if args.key else None,
        seed=args.seed,
        requests_per_minute=args.rpm,
        input_tokens_per_minute=args.itpm,
        output_tokens_per_minute=args.otpm,
        rate_window_s=args.rate_window,
        batch_processing_s=args.batch_processing,
        batch_cancel_s=args.batch_cancel,
        batch_rate_errored=args.batch_rate_errored,
        batch_rate_expired=args.batch_rate_expired,
        batch_counts_advance=args.batch_counts_advance,
    )


def command(args: argparse.Namespace) -> dict[str, Any]:
    """Run a command against a running simulator; its JSON answer."""
    url = args.url.rstrip("/")
    if args.command == "ledger":
        response = httpx.get(f"{url}/ledger", timeout=10)
    elif args.command == "clear":
        response = httpx.post(f"{url}/control/clear", timeout=10)
    else:
        body = {
            "outcome": args.outcome,
            "seconds": args.seconds,
            "retry_after": args.retry_after,
            "on_task": args.on_task,
        }
        response = httpx.post(f"{url}/control/storm", json=body, timeout=10)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if getattr(args, "command", None):
        json.dump(command(args), sys.stdout, indent=2)
        print()
        return
    config = simulator_config(args)
    with running_simulator(config, port=args.port, control_port=args.control_port) as sim:
        if args.storm:
            sim.storm(
                args.storm,
                seconds=args.storm_seconds,
                retry_after=args.storm_retry_after,
                on_task=args.storm_on_task,
            )
        print(f"Messages-API simulator at {sim.base_url} (control: {sim.control_url})", flush=True)
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.wait(0.5):
            pass
        json.dump(sim.ledger(), sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
