"""A loopback HTTP proxy that answers chosen requests with an error, for fault tests.

It forwards every request (any method) to ``upstream`` unless a fault is
queued: ``fail(status, body, times)`` makes the next ``times`` requests get
``status`` and ``body`` (``times=-1``: every request until ``clear()``);
``lose_answer(status, body, after)`` lets one request reach ``upstream`` and
answers it with ``status`` and ``body`` instead (the server acted, its answer
was lost). Every request is counted in ``requests``.
"""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request

__all__ = ["FaultProxy"]

UPSTREAM_TIMEOUT = 30.0
"""Seconds to wait for the real server's answer (a local test server answers in ms)."""


class FaultProxy:
    def __init__(self, upstream: str, content_type: str = "application/json") -> None:
        proxy = self
        self.upstream = upstream.rstrip("/")
        self.requests = 0
        self._content_type = content_type
        self._faults: list[tuple[int, bytes]] = []
        self._forever: tuple[int, bytes] | None = None
        self._lost: tuple[int, int, bytes] | None = None  # (request number, status, body)
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length) if length else None
                if body is not None and len(body) < length:
                    self.close_connection = True  # the client left mid-body: forward nothing
                    return
                with proxy._lock:
                    proxy.requests += 1
                    fault = proxy._forever or (proxy._faults.pop(0) if proxy._faults else None)
                    lost = proxy._lost if proxy._lost and proxy._lost[0] == proxy.requests else None
                if fault is not None:
                    self._answer(fault[0], fault[1], {"Content-Type": proxy._content_type})
                    return
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                    method=self.command,
                )
                try:
                    with urllib.request.urlopen(request, timeout=UPSTREAM_TIMEOUT) as answer:
                        status, data, headers = answer.status, answer.read(), answer.headers
                except urllib.error.HTTPError as err:
                    status, data, headers = err.code, err.read(), err.headers
                    err.close()
                if lost is not None:
                    self._answer(lost[1], lost[2], {"Content-Type": proxy._content_type})
                    return
                keep = {n: headers[n] for n in ("Content-Type", "x-amzn-RequestId") if headers[n]}
                self._answer(status, data, keep)

            def _answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail(self, status: int, body: bytes, times: int = 1) -> None:
        with self._lock:
            if times < 0:
                self._forever = (status, body)
            else:
                self._faults.extend([(status, body)] * times)

    def lose_answer(self, status: int, body: bytes, after: int = 0) -> None:
        """Forward the request ``after`` requests from now, then answer it with
        ``status`` and ``body``: the server acted on it, the client hears a failure."""
        with self._lock:
            self._lost = (self.requests + after + 1, status, body)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._forever = None
            self._lost = None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
