"""`python -m bench.simulator` in its own process, driven as a benchmark drives it: over HTTP."""

from __future__ import annotations

import socket

import httpx
import pytest

from bench.common import simulator_process
from bench.simulator import command, parse_args, simulator_config

PING = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}
KEY = {"x-api-key": "sk-sim"}


def test_the_flags_make_the_config() -> None:
    args = parse_args(
        ["--rpm", "50", "--otpm", "10000", "--batch-processing", "60", "--batch-counts-advance"]
    )
    config = simulator_config(args)
    assert (config.requests_per_minute, config.input_tokens_per_minute) == (50, None)
    assert config.output_tokens_per_minute == 10_000
    assert (config.batch_processing_s, config.batch_counts_advance) == (60.0, True)
    with pytest.raises(SystemExit):
        parse_args(["storm", "--url", "http://x", "hail"])


def test_storms_and_the_ledger_over_http_while_the_main_port_refuses() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        control = f"http://127.0.0.1:{sock.getsockname()[1]}"
        extra = [f"--control-port={sock.getsockname()[1]}"]
    extra += ["--rpm=1", "--storm=overloaded", "--storm-on-task=write_memory"]
    with simulator_process(extra=extra) as url:
        first = httpx.post(f"{url}/v1/messages", json=PING, headers=KEY)
        assert first.status_code == 200
        assert first.headers["anthropic-ratelimit-requests-limit"] == "1"
        assert httpx.post(f"{url}/v1/messages", json=PING, headers=KEY).status_code == 429

        outage = command(parse_args(["storm", "--url", control, "connection_refused"]))
        assert (outage["outcome"], outage["seconds"]) == ("connection_refused", None)
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{url}/v1/messages", json=PING, headers=KEY)
        armed, refusing = command(parse_args(["ledger", "--url", control]))["storms"]
        assert (armed["on_task"], armed["started_at"]) == ("write_memory", None)
        assert armed["ended_at"] is not None, "replaced by the outage"
        assert refusing["ended_at"] is None

        command(parse_args(["clear", "--url", control]))
        again = httpx.post(f"{url}/v1/messages", json=PING, headers=KEY)
        assert again.status_code in (200, 429)
        assert command(parse_args(["ledger", "--url", url]))["by_outcome"]["ok"] >= 1
