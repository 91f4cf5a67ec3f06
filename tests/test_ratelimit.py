"""TokenBucket on a fake clock: deterministic, no real waiting."""

from __future__ import annotations

import threading

import pytest

from audiobook.ratelimit import TokenBucket


class FakeClock:
    """A clock that moves only when someone sleeps (or the test advances it)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, s: float) -> None:
        with self.lock:
            self.sleeps.append(s)

    def advance(self, s: float) -> None:
        with self.lock:
            self.t += s


def test_burst_is_free_then_rate_applies():
    clock = FakeClock()
    b = TokenBucket(rate=10.0, burst=12, clock=clock, sleep=clock.sleep)
    waits = [b.acquire() for _ in range(12)]
    assert waits == [0.0] * 12
    # The 13th waits one interval, the 14th two (reservations queue up).
    assert b.acquire() == pytest.approx(0.1)
    assert b.acquire() == pytest.approx(0.2)
    assert clock.sleeps == [pytest.approx(0.1), pytest.approx(0.2)]


def test_refill_is_capped_at_burst():
    clock = FakeClock()
    b = TokenBucket(rate=2.0, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        b.acquire()
    clock.advance(100.0)  # a long idle time refills to burst, not to 200 tokens
    assert b.available == pytest.approx(3.0)
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_long_run_rate_is_respected():
    """Grant times of 1,000 acquisitions never exceed burst + rate * window."""
    clock = FakeClock(0.0)
    rate, burst = 10.0, 12
    b = TokenBucket(rate=rate, burst=burst, clock=clock, sleep=clock.advance)
    grants = []
    for _ in range(1000):
        b.acquire()
        grants.append(clock())
    for i in range(len(grants)):
        for j in range(i, min(i + 60, len(grants))):
            window = grants[j] - grants[i]
            assert j - i + 1 <= burst + rate * window + 1e-9
    # And it is not slower than needed: 1000 tokens take (1000 - burst) / rate seconds.
    assert grants[-1] == pytest.approx((1000 - burst) / rate)


def test_threads_share_one_bucket_fairly():
    """Many threads reserving at the same instant get distinct, evenly spaced slots."""
    clock = FakeClock(0.0)
    b = TokenBucket(rate=5.0, burst=1, clock=clock, sleep=lambda s: None)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            w = b.reserve()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([i / 5.0 for i in range(200)])


def test_drain_makes_the_next_caller_wait():
    clock = FakeClock()
    b = TokenBucket(rate=4.0, burst=4, clock=clock, sleep=clock.sleep)
    b.drain()
    assert b.acquire() == pytest.approx(0.25)


def test_bad_arguments():
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0)
    b = TokenBucket(rate=1, burst=2)
    with pytest.raises(ValueError):
        b.acquire(3)
