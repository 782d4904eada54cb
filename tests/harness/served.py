"""A page served on this machine's loopback (the host's dev server, for shared ports), and fetching one."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def serving(body: str, port: int = 0) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering every GET with `body`; yields its port, stopped after."""
    page = body.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def fetch(port: int, timeout: float = 10) -> str:
    """The page at http://127.0.0.1:PORT/, or what went wrong, in a word a test can assert on."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as answer:
            return answer.read().decode()
    except (urllib.error.URLError, ConnectionError, OSError) as exc:
        return f"failed: {exc}"
