"""Faults the emulator can inject, drawn from one seeded RNG, and counted.

Task failure reasons come in two kinds (the wording of real reasons is UNVERIFIED): a
client should start a new task for a reason in ``TRANSIENT_REASONS`` and give up on one
in ``PERMANENT_REASONS``. ``is_transient(reason)`` is the emulator's own classification.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass

TRANSIENT_REASONS = (
    "Internal service error",
    "Service temporarily unavailable, please retry",
)
PERMANENT_REASONS = (
    "Error occurred while trying to synthesize the text: unsupported character",
    "Access denied writing the output to Amazon S3",
)


# Answered by ``unknown_error_rate``: modeled by no service, known to no client.
UNKNOWN_ERROR_CODE = "EmulatedUnmodeledError"


def is_transient(reason: str) -> bool:
    return reason in TRANSIENT_REASONS or reason.startswith(TRANSIENT_REASONS)


@dataclass(frozen=True)
class FaultOptions:
    """Fractions in 0..1 and a delay, all off by default.

    throttle_rate:          API requests answered ThrottlingException (over the quotas).
    error5xx_rate:          API requests answered ServiceFailureException (500), before
                            any effect (a failed Start creates no task).
    fail_rate:              tasks ending ``failed`` with a transient reason.
    fail_limit:             at most this many of those (None: no limit).
    permanent_fail_rate:    tasks ending ``failed`` with a permanent reason.
    lost_notification_rate: completion messages never published to SNS.
    unknown_error_rate:     API requests answered with ``UNKNOWN_ERROR_CODE``, an error
                            code in no client's table (what a proxy in front of the
                            service, or an error newer than the client, looks like),
                            with HTTP status ``unknown_error_status`` (429, 500, 503...),
                            before any effect.
    unknown_error_limit:    at most this many of those (None: no limit); with rate 1.0,
                            exactly the first N requests, whatever their order.
    fault_operations:       the operations the request faults above (throttle, 5xx,
                            unknown errors) hit; empty: every operation.
    slow_s3:                seconds to wait before writing each output object.
    slow_start_answer:      seconds StartSpeechSynthesisTask waits, the task created,
                            before it answers (an answer a killed client never reads).
    seed:                   RNG seed (None: unseeded).
    """

    throttle_rate: float = 0.0
    error5xx_rate: float = 0.0
    fail_rate: float = 0.0
    fail_limit: int | None = None
    permanent_fail_rate: float = 0.0
    lost_notification_rate: float = 0.0
    unknown_error_rate: float = 0.0
    unknown_error_status: int = 500
    unknown_error_limit: int | None = None
    fault_operations: tuple[str, ...] = ()
    slow_s3: float = 0.0
    slow_start_answer: float = 0.0
    seed: int | None = None


class FaultInjector:
    def __init__(self, options: FaultOptions) -> None:
        self.options = options
        self._rng = random.Random(options.seed)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def _roll(self, p: float) -> bool:
        if p <= 0:
            return False
        with self._lock:
            return self._rng.random() < p

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def throttle(self) -> bool:
        hit = self._roll(self.options.throttle_rate)
        if hit:
            self.count("throttled_injected")
        return hit

    def error5xx(self) -> bool:
        hit = self._roll(self.options.error5xx_rate)
        if hit:
            self.count("errors_5xx_injected")
        return hit

    def applies(self, operation: str) -> bool:
        """Whether the request faults may hit ``operation``."""
        ops = self.options.fault_operations
        return not ops or operation in ops

    def unknown_error(self) -> bool:
        p, limit = self.options.unknown_error_rate, self.options.unknown_error_limit
        if p <= 0:
            return False
        with self._lock:  # one step, so that concurrent requests never pass the limit
            if limit is not None and self.counts["unknown_errors_injected"] >= limit:
                return False
            if self._rng.random() >= p:
                return False
            self.counts["unknown_errors_injected"] += 1
            return True

    def task_failure(self) -> str | None:
        """A failure reason for a task about to run, or None."""
        limit = self.options.fail_limit
        with self._lock:
            spent = limit is not None and self.counts["tasks_failed_transient_injected"] >= limit
        if not spent and self._roll(self.options.fail_rate):
            self.count("tasks_failed_transient_injected")
            with self._lock:
                return self._rng.choice(TRANSIENT_REASONS)
        if self._roll(self.options.permanent_fail_rate):
            self.count("tasks_failed_permanent_injected")
            with self._lock:
                return self._rng.choice(PERMANENT_REASONS)
        return None

    def lose_notification(self) -> bool:
        hit = self._roll(self.options.lost_notification_rate)
        if hit:
            self.count("notifications_lost_injected")
        return hit

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)
