"""Run the Messages-API simulator on its own, for benchmarks and manual runs.

    python -m bench.simulator --port 8765 --latency 1.0 --jitter 0.2 \\
        --rate-429 0.1 --retry-after 1 --rate-529 0.02

Point the service at it with `ANTHROPIC_BASE_URL=http://127.0.0.1:8765` and any non-empty
`ANTHROPIC_API_KEY`. The ledger is at `GET /ledger`; it is printed as JSON on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from tests.support.messages_simulator import SimulatorConfig, running_simulator

__all__ = ["main", "parse_config"]


def parse_config(argv: list[str] | None = None) -> tuple[SimulatorConfig, int]:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="mean seconds per reply")
    parser.add_argument("--jitter", type=float, default=0.0, help="± fraction of the latency")
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds, on 429s")
    parser.add_argument("--rate-529", type=float, default=0.0)
    parser.add_argument("--rate-500", type=float, default=0.0)
    parser.add_argument("--rate-slow", type=float, default=0.0)
    parser.add_argument("--slow", type=float, default=30.0, help="extra seconds of a slow reply")
    parser.add_argument("--rate-invalid-json", type=float, default=0.0)
    parser.add_argument("--rate-truncated", type=float, default=0.0)
    parser.add_argument("--key", action="append", help="accepted API key (repeat); default any")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = SimulatorConfig(
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
    )
    return config, args.port


def main(argv: list[str] | None = None) -> None:
    config, port = parse_config(argv)
    with running_simulator(config, port=port) as sim:
        print(f"Messages-API simulator at {sim.base_url} (ledger: {sim.base_url}/ledger)")
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.wait(0.5):
            pass
        json.dump(sim.ledger(), sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
