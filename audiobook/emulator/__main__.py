"""``audiobook polly-emulator`` (also ``python -m audiobook.emulator``): run the emulator.

The command's options are click options in ``audiobook.cli`` like every other command's;
``run`` is what it calls. The first line on stdout is the URL the emulator listens on;
it serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

from ..errors import ConfigError
from .quotas import DEFAULT_QUOTAS
from .server import serve


def run(
    *,
    s3_endpoint: str,
    host: str = "127.0.0.1",
    port: int = 0,
    sns_endpoint: str | None = None,
    region: str = "us-east-1",
    queue_delay: float = 0.05,
    chars_per_second: float = 50_000.0,
    workers: int = 4,
    quota_scale: float = 1.0,
    quotas_enabled: bool = True,
    quotas: Mapping[str, tuple[float, int]] | None = None,
    voices_page_size: int | None = None,
    espeak_rate: int | None = None,
    audio: str = "speech",
    throttle_rate: float = 0.0,
    error5xx_rate: float = 0.0,
    fail_rate: float = 0.0,
    permanent_fail_rate: float = 0.0,
    lost_notification_rate: float = 0.0,
    slow_s3: float = 0.0,
    seed: int | None = None,
) -> int:
    """Serve until SIGINT or SIGTERM, printing the URL first; returns the exit code.
    ``quotas`` sets single rate quotas (name -> (rate, burst)); an unknown name is a
    ConfigError."""
    for name in quotas or {}:
        if name not in DEFAULT_QUOTAS:
            raise ConfigError(f"unknown quota {name!r} (names: {', '.join(DEFAULT_QUOTAS)})")
    server = serve(
        host=host,
        port=port,
        s3_endpoint=s3_endpoint,
        region=region,
        sns_endpoint=sns_endpoint,
        queue_delay=queue_delay,
        chars_per_second=chars_per_second,
        workers=workers,
        quota_scale=quota_scale,
        quotas_enabled=quotas_enabled,
        quota_overrides=dict(quotas or {}),
        voices_page_size=voices_page_size,
        espeak_rate_wpm=espeak_rate,
        audio=audio,
        throttle_rate=throttle_rate,
        error5xx_rate=error5xx_rate,
        fail_rate=fail_rate,
        permanent_fail_rate=permanent_fail_rate,
        lost_notification_rate=lost_notification_rate,
        slow_s3=slow_s3,
        seed=seed,
    )
    print(server.url, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.shutdown()
    # Tasks still in flight are abandoned, as a stopped service's are. Leave now: the
    # interpreter's exit would wait for the threads that run them (a task's synthesis
    # and upload take as long as they take; on a busy machine, minutes).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m audiobook.emulator ARGS``: ``audiobook polly-emulator ARGS``."""
    from ..cli import cli

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=["polly-emulator", *args], prog_name="audiobook")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (1 if e.code else 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
