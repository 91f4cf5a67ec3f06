"""A real web server for tests, on 127.0.0.1 with port 0: pages, feeds and exports as
the tests set them, with the faults the web has (redirects, wrong charsets, 404, 500,
slow answers, oversized bodies, odd content types), ETag / Last-Modified validators,
and counters of what it answered.

    web.page("/a.html", "<html>...", content_type="text/html; charset=utf-8")
    web.redirect("/old", "/a.html", status=301)
    web.page("/slow", "...", delay=5)          # sleeps before answering
    web.url("/a.html")                         # http://127.0.0.1:PORT/a.html
    web.counts["/a.html"]                      # {200: 1, 304: 2}
    web.not_modified, web.downloads            # 304s and 200s with a body, all paths

Every page gets an ETag (its content's hash) and a Last-Modified; a request whose
If-None-Match (or else If-Modified-Since) matches is answered 304 with no body.
``web.serve_folder(path)`` serves the files of a folder too (with Range support, for
audio in a browser).

Fixture: ``web`` (function scope), shut down after the test.
"""

from __future__ import annotations

import email.utils
import hashlib
import mimetypes
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

LAST_MODIFIED = email.utils.formatdate(1_767_225_600, usegmt=True)  # 2026-01-01


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up early (timeouts, size caps) is what the tests want


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    validators: bool = True
    sized: bool = True  # False: no Content-Length, the body ends when the connection closes


class WebServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.folder: Path | None = None
        self.counts: dict[str, Counter[int]] = defaultdict(Counter)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    # --- what the tests set -------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def page(
        self,
        path: str,
        body: str | bytes,
        *,
        content_type: str = "text/html; charset=utf-8",
        status: int = 200,
        delay: float = 0.0,
        encoding: str = "utf-8",
        validators: bool = True,
        sized: bool = True,
        headers: dict[str, str] | None = None,
    ) -> str:
        data = body.encode(encoding) if isinstance(body, str) else body
        self.routes[path.split("?", 1)[0]] = Route(
            status,
            data,
            {"Content-Type": content_type, **(headers or {})},
            delay,
            validators,
            sized,
        )
        return self.url(path)

    def redirect(self, path: str, target: str, status: int = 302) -> str:
        self.routes[path] = Route(status, b"", {"Location": target}, validators=False)
        return self.url(path)

    def serve_folder(self, folder: Path) -> None:
        self.folder = folder

    @property
    def not_modified(self) -> int:
        return sum(c[304] for c in self.counts.values())

    @property
    def downloads(self) -> int:
        return sum(c[200] + c[206] for c in self.counts.values())

    def reset_counts(self) -> None:
        self.counts.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- answering ----------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        route = self.routes.get(path)
        if route is None and self.folder is not None:
            route = self._file_route(path)
        if route is None:
            route = Route(404, b"not found", {"Content-Type": "text/plain"}, validators=False)
        if route.delay:
            time.sleep(route.delay)
        headers = dict(route.headers)
        status, body = route.status, route.body
        if route.validators and status == 200:
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers["ETag"] = etag
            headers["Last-Modified"] = LAST_MODIFIED
            inm = h.headers.get("If-None-Match")
            ims = h.headers.get("If-Modified-Since")
            if (inm is not None and inm == etag) or (inm is None and ims == LAST_MODIFIED):
                status, body = 304, b""
        if status == 200 and h.headers.get("Range", "").startswith("bytes="):
            status, body, headers = _ranged(h.headers["Range"], body, headers)
        with self.lock:
            self.counts[path][status] += 1
        try:
            h.send_response(status)
            for name, value in headers.items():
                h.send_header(name, value)
            if status != 304 and route.sized:
                h.send_header("Content-Length", str(len(body)))
            elif status != 304:
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            if status != 304:
                h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _file_route(self, path: str) -> Route | None:
        from urllib.parse import unquote

        assert self.folder is not None
        rel = unquote(path).lstrip("/") or "index.html"
        target = (self.folder / rel).resolve()
        if not target.is_file() or self.folder.resolve() not in target.parents:
            return None
        media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        media = {".m4b": "audio/mp4", ".vtt": "text/vtt", ".json": "application/json"}.get(
            target.suffix, media
        )
        if media.startswith("text/"):
            media += "; charset=utf-8"
        return Route(200, target.read_bytes(), {"Content-Type": media, "Accept-Ranges": "bytes"})


def _ranged(value: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    first, _, last = value[len("bytes=") :].split(",")[0].partition("-")
    size = len(body)
    if first:
        start, end = int(first), int(last) if last else size - 1
    else:
        start, end = max(0, size - int(last)), size - 1
    end = min(end, size - 1)
    if start >= size:
        return 416, b"", {**headers, "Content-Range": f"bytes */{size}"}
    return 206, body[start : end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}


@pytest.fixture
def web() -> Iterator[WebServer]:
    server = WebServer()
    try:
        yield server
    finally:
        server.close()
