"""A token bucket: at most ``rate`` operations per second on average, ``burst`` at once.

Used to keep Polly calls inside the account's quotas (StartSpeechSynthesisTask: 10 tps
with a burst of 12 on standard/neural; GetSpeechSynthesisTask + ListSpeechSynthesisTasks
share 10 tps). The clock and the sleep function are injected, so tests run on a fake
clock without waiting (s3transfer's ``LeakyBucket(max_rate, time_utils=)``)::

    bucket = TokenBucket(rate=10.0, burst=12)
    bucket.acquire()          # blocks until a token is free; returns the seconds waited

It is thread-safe and first come, first served: a caller *reserves* its tokens under
the lock (the balance may go negative, which is a queue of reservations) and then sleeps
outside the lock until its reservation falls due. Callers never spin.

``drain()`` empties the bucket: call it when the service answers "throttled" anyway
(another process shares the account quota), so the next callers wait a full interval.

What the scheduler asks of a limiter is ``RateLimiter`` (a rate) and ``Slots`` (a
bound on calls in flight; ``threading.Semaphore`` is one). ``TokenBucket`` and a
semaphore serve the books of one process; a state store shared by many machines
offers the same two for the whole cluster (``pgstate``: one row per bucket).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class RateLimiter(Protocol):
    """At most so many operations per second, for every caller that shares it."""

    def acquire(self, n: int = 1) -> float:
        """Take ``n`` tokens, sleeping until they are due; returns the seconds waited."""
        ...

    def drain(self) -> None:
        """Empty the bucket: the service throttled a call anyway."""
        ...


class Slots(Protocol):
    """A bound on operations in flight (``threading.Semaphore``'s two calls)."""

    def acquire(self, blocking: bool = True) -> bool: ...

    def release(self) -> None: ...


def reservation_wait(tokens: float, rate: float) -> float:
    """Seconds until a reservation that left ``tokens`` in the bucket falls due."""
    return 0.0 if tokens >= 0 else -tokens / rate


class Reserving:
    """``acquire`` made of ``reserve``: the tokens are taken at once, then the caller
    sleeps (outside any lock) until they fall due. Shared by every bucket kind."""

    _sleep: Callable[[float], None]

    def reserve(self, n: int = 1) -> float:
        raise NotImplementedError

    def acquire(self, n: int = 1) -> float:
        """Take ``n`` tokens, sleeping until they are due. Returns the seconds waited."""
        wait = self.reserve(n)
        if wait > 0:
            self._sleep(wait)
        return wait


class TokenBucket(Reserving):
    """``rate`` tokens per second, at most ``burst`` held. Starts full."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._stamp = clock()

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def reserve(self, n: int = 1) -> float:
        """Take ``n`` tokens now and return how many seconds the caller must wait before
        using them (0.0 if they were free). Never blocks."""
        if n < 1 or n > self.burst:
            raise ValueError(f"can take 1..{self.burst} tokens at once, not {n}")
        with self._lock:
            self._refill(self._clock())
            self._tokens -= n
            return reservation_wait(self._tokens, self.rate)

    def try_acquire(self, n: int = 1) -> bool:
        """Take ``n`` tokens if they are free right now; never waits."""
        if n < 1 or n > self.burst:
            raise ValueError(f"can take 1..{self.burst} tokens at once, not {n}")
        with self._lock:
            self._refill(self._clock())
            if self._tokens >= n:
                self._tokens -= n
                return True
            return False

    def drain(self) -> None:
        """Empty the bucket (outstanding reservations keep their place)."""
        with self._lock:
            self._refill(self._clock())
            self._tokens = min(self._tokens, 0.0)

    @property
    def available(self) -> float:
        """Tokens free right now (negative: reservations are queued)."""
        with self._lock:
            self._refill(self._clock())
            return self._tokens
