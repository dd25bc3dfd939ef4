"""A local HTTP file server for download tests, with the faults real servers have.

    from httpserver import serve_directory

    with serve_directory(tmp_path) as server:
        server.fail_after_bytes = 1000   # next response: close after 1000 body bytes
        download(server.url("data.zip"), ...)
        assert server.requests[1].range == "bytes=1000-"

Only 127.0.0.1 is used; tests never touch the network. Fault switches:

* `fail_after_bytes` + `failures`: the next `failures` responses send the
  full Content-Length header but close the connection after that many body
  bytes (an interrupted download);
* `ignore_range`: answer Range requests with the whole file and 200, as some
  servers and proxies do;
* `delay_s`: wait before answering (for timeouts);
* `status_override`: answer every request with this HTTP status and no body.

`requests` records every request (path, Range header) for assertions.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    range: str | None


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path):
        super().__init__(("127.0.0.1", 0), _FileHandler)
        self.directory = Path(directory).resolve()
        self.requests: list[RecordedRequest] = []
        self.fail_after_bytes: int | None = None
        self.failures = 1
        self.ignore_range = False
        self.delay_s = 0.0
        self.status_override: int | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (a timeout test) is expected; anything else is reported."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def _take_failure(self) -> int | None:
        """The byte count to stop after, for this response (consumes one failure)."""
        with self._lock:
            if self.fail_after_bytes is None or self.failures <= 0:
                return None
            self.failures -= 1
            return self.fail_after_bytes


class _FileHandler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        server = self.server
        range_header = self.headers.get("Range")
        server.requests.append(RecordedRequest(self.path, range_header))
        if server.delay_s:
            time.sleep(server.delay_s)
        if server.status_override is not None:
            self._send_empty(server.status_override)
            return
        path = (server.directory / self.path.lstrip("/").split("?")[0]).resolve()
        if not path.is_relative_to(server.directory) or not path.is_file():
            self._send_empty(404)
            return
        body = path.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not server.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "none" if server.ignore_range else "bytes")
        self.end_headers()
        stop_after = server._take_failure()
        if stop_after is None:
            self.wfile.write(payload)
            return
        self.wfile.write(payload[:stop_after])
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send_empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[FileServer]:
    """Serve the files of `directory` on 127.0.0.1 for the duration of the block."""
    server = FileServer(directory)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="test-http-server", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url(name: str = "file.bin") -> str:
    """A URL on 127.0.0.1 where nothing listens, so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"
