"""Polly's per-operation rate quotas as token buckets [D limits.html].

Each bucket holds ``burst`` tokens and refills at ``rate`` per second; a request that
finds it empty is answered ThrottlingException (HTTP 400, which botocore's legacy retry
mode retries). ``scale`` multiplies every rate and burst (``10`` for fast tests).
With the quotas off (``enabled=False``) the buckets still count: the server counts a
call that would have been throttled as ``over_quota.<bucket>``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from ..config import POLLY_GET_LIST_TPS, POLLY_START_TPS, POLLY_SYNC_TPS

# bucket name -> (tokens per second, burst)
DEFAULT_QUOTAS: dict[str, tuple[float, int]] = {
    **{f"start:{e}": v for e, v in POLLY_START_TPS.items()},
    **{f"sync:{e}": v for e, v in POLLY_SYNC_TPS.items()},
    "getlist": (POLLY_GET_LIST_TPS, int(POLLY_GET_LIST_TPS)),  # burst UNVERIFIED
    "describe": (80.0, 100),
    "lexicon": (2.0, 4),
}


def bucket_for(operation: str, engine: str | None) -> str | None:
    """The quota an operation draws on (engine-specific for synthesis)."""
    eng = engine if engine in POLLY_START_TPS else "standard"
    if operation == "StartSpeechSynthesisTask":
        return f"start:{eng}"
    if operation == "SynthesizeSpeech":
        return f"sync:{eng}"
    if operation in ("GetSpeechSynthesisTask", "ListSpeechSynthesisTasks"):
        return "getlist"
    if operation == "DescribeVoices":
        return "describe"
    if operation in ("PutLexicon", "GetLexicon", "ListLexicons", "DeleteLexicon"):
        return "lexicon"
    return None


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.tokens = float(self.burst)
        self.stamp = clock()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class Quotas:
    """All buckets of one emulator. ``enabled=False`` lets everything through."""

    def __init__(
        self,
        scale: float = 1.0,
        overrides: Mapping[str, tuple[float, int]] | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        table = {**DEFAULT_QUOTAS, **(overrides or {})}
        self.limits = {k: (r * scale, max(1, math.ceil(b * scale))) for k, (r, b) in table.items()}
        self.buckets = {k: TokenBucket(r, b, clock) for k, (r, b) in self.limits.items()}

    def allow(self, operation: str, engine: str | None) -> bool:
        return not self.enabled or self.over(operation, engine) is None

    def over(self, operation: str, engine: str | None) -> str | None:
        """The quota this call goes over (None: within, its token taken). Kept with the
        quotas off too, so that the calls that WOULD have been throttled are known."""
        name = bucket_for(operation, engine)
        return None if name is None or self.buckets[name].take() else name
