"""A local HTTP endpoint that records the alert webhook's POSTs (Slack-style `{"text": ...}`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["WebhookReceiver", "running_receiver"]


class WebhookReceiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: list[Any] = []
        self.url = ""

    def record(self, body: Any) -> None:
        with self._lock:
            self._bodies.append(body)

    @property
    def bodies(self) -> list[Any]:
        with self._lock:
            return list(self._bodies)


@contextmanager
def running_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                receiver.record(json.loads(raw))
            except ValueError:
                receiver.record({"unparsable": raw.decode(errors="replace")})
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/alert"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
