"""``python -m audiobook.emulator --port 0 --s3-endpoint URL``: run the Polly emulator.

The first line on stdout is the URL it listens on; it serves until killed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .quotas import DEFAULT_QUOTAS
from .server import serve


def _quota(text: str) -> tuple[str, tuple[float, int]]:
    name, _, value = text.partition("=")
    rate, _, burst = value.partition(":")
    if name not in DEFAULT_QUOTAS:
        raise argparse.ArgumentTypeError(f"unknown quota {name!r}")
    try:
        return name, (float(rate), int(burst or max(1, round(float(rate)))))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad quota {text!r} (want NAME=RATE:BURST)") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="polly-emulator",
        description="A local Amazon Polly (rest-json) for tests and accountless runs.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--s3-endpoint", required=True, help="S3 (and SNS) endpoint URL, e.g. moto")
    p.add_argument("--sns-endpoint", help="SNS endpoint URL (default: the S3 endpoint)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--queue-delay", type=float, default=0.05, help="seconds scheduled")
    p.add_argument("--chars-per-second", type=float, default=50_000.0)
    p.add_argument("--workers", type=int, default=4, help="tasks synthesized at once")
    p.add_argument(
        "--quota-scale",
        type=float,
        default=1.0,
        help="multiply every rate quota (e.g. 10 for fast tests)",
    )
    p.add_argument("--no-quotas", action="store_true", help="turn rate quotas off")
    p.add_argument(
        "--quota",
        action="append",
        default=[],
        type=_quota,
        metavar="NAME=RATE:BURST",
        help="set one quota exactly, e.g. start:standard=10:12 (names: "
        + ", ".join(DEFAULT_QUOTAS)
        + ")",
    )
    p.add_argument("--voices-page-size", type=int)
    p.add_argument("--espeak-rate", type=int, help="espeak-ng words per minute")
    p.add_argument(
        "--audio",
        choices=("speech", "silence"),
        default="speech",
        help="silence: cheap silent audio, for benchmarks of orchestration",
    )
    f = p.add_argument_group("faults")
    f.add_argument("--throttle-rate", type=float, default=0.0)
    f.add_argument("--error5xx-rate", type=float, default=0.0)
    f.add_argument("--fail-rate", type=float, default=0.0, help="tasks failed, transient")
    f.add_argument("--permanent-fail-rate", type=float, default=0.0)
    f.add_argument("--lost-notification-rate", type=float, default=0.0)
    f.add_argument("--slow-s3", type=float, default=0.0, help="seconds before each S3 write")
    f.add_argument("--seed", type=int)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    server = serve(
        host=args.host,
        port=args.port,
        s3_endpoint=args.s3_endpoint,
        region=args.region,
        sns_endpoint=args.sns_endpoint,
        queue_delay=args.queue_delay,
        chars_per_second=args.chars_per_second,
        workers=args.workers,
        quota_scale=args.quota_scale,
        quotas_enabled=not args.no_quotas,
        quota_overrides=dict(args.quota),
        voices_page_size=args.voices_page_size,
        espeak_rate_wpm=args.espeak_rate,
        audio=args.audio,
        throttle_rate=args.throttle_rate,
        error5xx_rate=args.error5xx_rate,
        fail_rate=args.fail_rate,
        permanent_fail_rate=args.permanent_fail_rate,
        lost_notification_rate=args.lost_notification_rate,
        slow_s3=args.slow_s3,
        seed=args.seed,
    )
    print(server.url, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
