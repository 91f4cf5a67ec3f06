"""A local Amazon Polly: a real HTTP server speaking Polly's rest-json protocol as the
botocore model defines it, with asynchronous synthesis tasks that write real audio
(espeak-ng) to an S3 server (moto's) and announce completion on SNS.

    server = serve(s3_endpoint="http://127.0.0.1:5000", quota_scale=10, fail_rate=0.05)
    boto3.client("polly", endpoint_url=server.url) ...
    server.tasks, server.stats
    server.shutdown()

Or from a shell: ``python -m audiobook.emulator --port 0 --s3-endpoint URL``.
"""

from __future__ import annotations

from .core import Emulator, EmulatorOptions, TaskInfo, output_key
from .faults import PERMANENT_REASONS, TRANSIENT_REASONS, FaultOptions, is_transient
from .server import EmulatorServer, serve


def main(argv: list[str] | None = None) -> int:
    """The ``polly-emulator`` command (``audiobook polly-emulator`` calls this)."""
    from .__main__ import main as _main

    return _main(argv)


__all__ = [
    "PERMANENT_REASONS",
    "TRANSIENT_REASONS",
    "Emulator",
    "EmulatorOptions",
    "EmulatorServer",
    "FaultOptions",
    "TaskInfo",
    "is_transient",
    "main",
    "output_key",
    "serve",
]
