"""Headless Chromium for tests, driven over the Chrome DevTools Protocol.

Chromium comes from the distribution's packages (``.ci/run`` installs it where it is
missing); nothing is downloaded here. ``chromium_path()`` finds it (or
``$AUDIOBOOK_CHROMIUM``); ``require_chromium()`` skips a test without it, except under
CI=true, where its absence fails the test.

    with Browser(path) as browser:
        page = browser.open(url)          # waits for the load event
        page.evaluate("document.title")   # a value (promises awaited)
        page.errors                       # console errors, exceptions, failed loads
        page.screenshot(dest)             # a PNG of the whole page
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    env = os.environ.get("AUDIOBOOK_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, NAMES) if p), None)


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is missing under CI (.ci/run installs it)")
        pytest.skip(
            "no Chromium: install the distribution's package (apt-get install chromium) "
            "to run the feed page's browser test"
        )
    return path


class Page:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.errors: list[str] = []
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_for(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for seen in self.events:
            if seen["method"] == event:
                self.events.remove(seen)
                return seen
        while True:
            msg = self._receive(deadline)
            if msg.get("method") == event:
                return msg

    def _receive(self, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("Chromium did not answer in time")
        msg: dict[str, Any] = json.loads(self.ws.recv(timeout=left))
        method = msg.get("method")
        params = msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value")) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            self.errors.append("exception: " + json.dumps(params["exceptionDetails"])[:300])
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(
                f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
            )
        if method:
            self.events.append(msg)
        return msg

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        result = self.send(
            "Runtime.evaluate",
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"])[:500])
        return result["result"].get("value")

    def screenshot(self, dest: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        dest.write_bytes(base64.b64decode(data["data"]))


class Browser:
    def __init__(self, path: str, width: int = 1000, height: int = 800) -> None:
        self.profile = tempfile.mkdtemp(prefix="audiobook-chromium-")
        args = [
            path,
            "--headless=new",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses root without it (CI is root)
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.stack = contextlib.ExitStack()
        self.port = self._port()

    def _port(self) -> int:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode("utf-8", "replace")
            if not line and self.proc.poll() is not None:
                break
            seen.append(line)
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                return int(m.group(1))
        self.close()
        raise RuntimeError("Chromium did not start: " + "".join(seen)[-2000:])

    def open(self, url: str) -> Page:
        from websockets.sync.client import connect

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT"
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            target = json.loads(reply.read())
        ws = self.stack.enter_context(
            connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        )
        page = Page(ws)
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.send("Page.navigate", url=url)
        page.wait_for("Page.loadEventFired")
        return page

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a socket Chromium already dropped
            self.stack.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
