"""The emulator's HTTP front: a threading HTTP/1.1 server speaking Polly's rest-json.

Each request is routed by the botocore model, parsed, checked against injected faults
and the rate quotas, validated, and handed to ``Emulator``. SigV4 signatures are accepted
without being verified (any credentials). Admin endpoints, outside Polly's API:

- ``GET /_emulator/stats``: counters (requests per operation, throttles, injected faults,
  tasks by status, notifications sent/lost, objects written; ``over_quota.<bucket>`` and
  ``over_concurrency.<engine>``: the calls over a quota, throttled or, with the quotas
  off, let through).
- ``GET /_emulator/tasks``: every task with its text's sha256, RequestCharacters, status,
  reason, bucket and key.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, cast

from . import facts, protocol
from .core import Emulator, EmulatorOptions, TaskInfo
from .faults import UNKNOWN_ERROR_CODE, FaultOptions
from .protocol import PollyError, Response

log = logging.getLogger(__name__)

_HANDLERS = {
    "StartSpeechSynthesisTask": "start_speech_synthesis_task",
    "GetSpeechSynthesisTask": "get_speech_synthesis_task",
    "ListSpeechSynthesisTasks": "list_speech_synthesis_tasks",
    "DescribeVoices": "describe_voices",
    "PutLexicon": "put_lexicon",
    "GetLexicon": "get_lexicon",
    "ListLexicons": "list_lexicons",
    "DeleteLexicon": "delete_lexicon",
}


def handle(
    emu: Emulator, method: str, target: str, headers: dict[str, str], body: bytes
) -> Response:
    """One HTTP request in, one response out."""
    request_id = str(uuid.uuid4())
    url = urllib.parse.urlsplit(target)
    if url.path.startswith("/_emulator/"):
        return _admin(emu, method, url.path)
    found = protocol.route(method, url.path)
    try:
        if found is None:
            raise PollyError(
                "UnknownOperationException", f"No operation at {method} {url.path}", status=404
            )
        operation, labels = found
        emu.count(f"requests.{operation}")
        params = protocol.parse_request(operation, labels, url.query, headers, body)
        if emu.faults.applies(operation):
            if emu.faults.throttle():
                raise PollyError("ThrottlingException", facts.THROTTLING_MESSAGE)
            if emu.faults.error5xx():
                raise PollyError("ServiceFailureException", facts.SERVICE_FAILURE_MESSAGE)
            if emu.faults.unknown_error():
                raise PollyError(
                    UNKNOWN_ERROR_CODE,
                    "An error the emulator was asked to make up",
                    status=emu.options.faults.unknown_error_status,
                )
        engine = params.get("Engine") if isinstance(params.get("Engine"), str) else None
        over = emu.quotas.over(operation, engine)
        if over is not None:
            # Counted with the quotas off too: the calls that WOULD have been throttled.
            emu.count(f"over_quota.{over}")
            if emu.quotas.enabled:
                emu.count("throttled_quota")
                raise PollyError("ThrottlingException", facts.THROTTLING_MESSAGE)
        protocol.validate(operation, params)
        if operation == "SynthesizeSpeech":
            audio, ctype, chars = emu.synthesize_speech(params)
            return Response(
                200,
                {
                    "Content-Type": ctype,
                    "x-amzn-RequestCharacters": str(chars),
                    "x-amzn-RequestId": request_id,
                },
                audio,
            )
        method_name = _HANDLERS.get(operation)
        if method_name is None:
            raise PollyError(
                "ValidationException",
                f"The emulator does not implement {operation}",
                reason="unsupportedOperation",
            )
        result = getattr(emu, method_name)(params)
        out_headers, out_body = protocol.serialize_output(operation, result)
        out_headers["x-amzn-RequestId"] = request_id
        return Response(200, out_headers, out_body)
    except PollyError as e:
        emu.count(f"errors.{e.code}")
        return protocol.error_response(e, request_id)
    except Exception:
        log.exception("emulator error on %s %s", method, target)
        emu.count("errors.internal")
        return protocol.error_response(
            PollyError("ServiceFailureException", facts.SERVICE_FAILURE_MESSAGE), request_id
        )


def _admin(emu: Emulator, method: str, path: str) -> Response:
    if method == "GET" and path == "/_emulator/stats":
        doc: Any = emu.stats()
    elif method == "GET" and path == "/_emulator/tasks":
        doc = [t.as_dict() for t in emu.task_infos()]
    else:
        return Response(404, {"Content-Type": "application/json"}, b'{"message":"not found"}')
    return Response(200, {"Content-Type": "application/json"}, json.dumps(doc).encode())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        resp = handle(self.server.emulator, self.command, self.path, dict(self.headers), body)
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-answer (its own timeout, a fault it was sent) is
        # one line in the log, not a traceback on the emulator's terminal.
        log.info("request from %s failed: %r", client_address, sys.exc_info()[1])


class EmulatorServer:
    """A running emulator: ``url``, ``tasks``, ``stats``, ``shutdown()``; also a
    context manager."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, options: EmulatorOptions | None = None
    ) -> None:
        self.options = options or EmulatorOptions()
        self.emulator = Emulator(self.options)
        self._httpd = _HTTPServer((host, port), self.emulator)
        # an AF_INET(6) socket's name starts (host str, port int); typeshed allows bytes too
        self.host, self.port = cast("tuple[str, int]", self._httpd.server_address[:2])
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="polly-emulator", daemon=True
        )
        self._thread.start()

    @property
    def tasks(self) -> list[TaskInfo]:
        return self.emulator.task_infos()

    @property
    def lexicon_uploads(self) -> list[str]:
        """The name of each PutLexicon call, in order."""
        with self.emulator._lock:
            return list(self.emulator.lexicon_uploads)

    @property
    def stats(self) -> dict[str, Any]:
        return self.emulator.stats()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no task is scheduled or in progress; False on timeout."""
        deadline = time.monotonic() + timeout
        while any(t.status in ("scheduled", "inProgress") for t in self.tasks):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self.emulator.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


_FAULT_NAMES = {f for f in FaultOptions.__dataclass_fields__}


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    s3_endpoint: str | None = None,
    region: str = "us-east-1",
    **options: Any,
) -> EmulatorServer:
    """Start an emulator in a background thread and return it.

    ``options`` are EmulatorOptions fields (queue_delay, chars_per_second, workers,
    quota_scale, quotas_enabled, quota_overrides, voices_page_size, espeak_rate_wpm, audio,
    sns_endpoint, clock) and FaultOptions fields (throttle_rate, error5xx_rate,
    fail_rate, permanent_fail_rate, lost_notification_rate, unknown_error_rate,
    unknown_error_status, unknown_error_limit, fault_operations, slow_s3, seed).
    """
    faults = {k: options.pop(k) for k in list(options) if k in _FAULT_NAMES}
    base = options.pop("faults", FaultOptions())
    opts = EmulatorOptions(
        region=region, s3_endpoint=s3_endpoint, faults=replace(base, **faults), **options
    )
    return EmulatorServer(host, port, opts)
