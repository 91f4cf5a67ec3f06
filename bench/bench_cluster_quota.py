"""A library on a cluster: 10,000 books on 100 workers against one account's Polly
quotas, simulated (discrete events on a simulated clock), makespan against the ideal.

Every worker takes the next book, starts its pieces as the shared limiters let it,
learns of each task's end, fetches its audio, stitches the book, and takes the next.
The limiters are the pipeline's own (``scheduler.make_limiters``: the start bucket of
the engine kind, the Get/List bucket, the in-flight bound), built on the simulated
clock and shared by all 100 workers as the PostgreSQL store shares them (its bucket
answers as ``TokenBucket`` does, take after take: tests/test_cluster_quota.py). A
worker that finds every in-flight slot taken looks again every ``SLOT_RETRY`` as the
scheduler does; one that polls makes one ListSpeechSynthesisTasks call per round for
all its tasks (``batch_status``), through the shared Get/List bucket.

* ideal: what the quotas alone force: every task started within the start rate
  (tasks / tps) and the concurrency bound (task-seconds / concurrent tasks), whichever
  is longer. Stitching, fetching and learning of a task's end cost it nothing.
* polling: completion learned by polling, as without an SNS topic.
* notified: completion learned from SNS (``--sns-topic``): no status calls.

Task times follow the latency model of bench_polly (a queue wait, then billable
characters at a fixed rate); book sizes are lognormal (seeded).
"""

from __future__ import annotations

import heapq
import math
import random
import time
from dataclasses import dataclass, field

from .bench_polly import CHARS_PER_S, QUEUE_S

BOOKS = 10_000
WORKERS = 100
SEED = 17
KIND = "neural"  # 10 starts per second (burst 12), 18 tasks in flight
# Book sizes: billable characters, lognormal around a 350,000-character novel (about 6
# hours read aloud), from short novellas to long epics; chapters around 14,000 each.
BOOK_MEDIAN_CHARS, BOOK_SIGMA = 350_000, 0.6
CHAPTER_MEDIAN_CHARS = 14_000
MAX_TASK_CHARS = 98_000  # config.POLLY_TASK_LIMITS.max_billable
FETCH_S = 0.2  # one piece from S3 into the cache
NOTIFY_S = 0.5  # a task's end through SNS and SQS to the worker
# Stitching: "a 10-hour book costs about a minute of two cores" (a worker of two cores).
STITCH_S_PER_CHAR = 60.0 / 540_000


def books(rng: random.Random) -> list[list[int]]:
    """Each book's tasks, as billable characters per task (chapters cut under the
    task limit)."""
    out = []
    for _ in range(BOOKS):
        chars = int(rng.lognormvariate(math.log(BOOK_MEDIAN_CHARS), BOOK_SIGMA))
        chapters = max(1, round(chars / CHAPTER_MEDIAN_CHARS * rng.uniform(0.6, 1.4)))
        weights = [rng.expovariate(1.0) + 0.2 for _ in range(chapters)]
        total = sum(weights)
        tasks = []
        for w in weights:
            ch = max(200, int(chars * w / total))
            n = math.ceil(ch / MAX_TASK_CHARS)
            tasks += [ch // n] * n
        out.append(tasks)
    return out


def task_seconds(chars: int) -> float:
    return QUEUE_S + chars / CHARS_PER_S


@dataclass
class Worker:
    wid: int
    pending: list[int] = field(default_factory=list)  # characters of tasks to start
    running: list[tuple[float, int]] = field(default_factory=list)  # (ends at, chars)
    left: int = 0  # the book's tasks not yet fetched
    chars: int = 0  # the book's characters (for its stitch)
    polling: bool = False
    blocked_since: float | None = None
    tick_due: bool = False


class Simulation:
    """The cluster on a simulated clock; ``notified``: completion from SNS."""

    def __init__(self, library: list[list[int]], notified: bool) -> None:
        from audiobook.engines.options import PollyOptions
        from audiobook.options import ConvertOptions
        from audiobook.scheduler import REMOTE_REPOLL, SLOT_RETRY, make_limiters

        self.now = 0.0
        self.notified = notified
        self.repoll, self.slot_retry = REMOTE_REPOLL, SLOT_RETRY
        opts = ConvertOptions(engine="polly", engine_options=PollyOptions(polly_engine=KIND))
        self.limiters = make_limiters(opts, clock=lambda: self.now, sleep=self._no_sleep)
        assert self.limiters.start and self.limiters.poll and self.limiters.inflight
        self.queue = list(reversed(library))
        self.workers = [Worker(i) for i in range(WORKERS)]
        self.events: list[tuple[float, int, str, int, int]] = []
        self.seq = 0
        self.blocked: set[int] = set()
        self.starts = 0
        self.polls = 0
        self.books_done = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.held = 0  # in-flight slots held (from before the start to after the fetch)
        self.held_area = 0.0  # slot-seconds held
        self.held_stamp = 0.0

    def hold(self, n: int) -> None:
        self.held_area += self.held * (self.now - self.held_stamp)
        self.held_stamp = self.now
        self.held += n

    @staticmethod
    def _no_sleep(seconds: float) -> None:
        """A bucket's ``acquire`` returns the wait it would sleep: the simulation
        schedules what follows that much later instead."""

    def at(self, t: float, kind: str, wid: int, arg: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, wid, arg))

    def run(self) -> float:
        for w in self.workers:
            self.next_book(w)
        handlers = {
            "started": self.started,
            "poll": self.poll,
            "polled": self.polled,
            "ended": self.ended,
            "fetched": self.fetched,
            "tick": self.tick,
            "stitched": self.stitched,
        }
        while self.events:
            t, _, kind, wid, arg = heapq.heappop(self.events)
            self.now = t
            handlers[kind](self.workers[wid], arg)
        return self.now

    # -- a worker's book -----------------------------------------------------------------

    def next_book(self, w: Worker) -> None:
        if not self.queue:
            return
        tasks = self.queue.pop()
        w.pending, w.left, w.chars = list(tasks), len(tasks), sum(tasks)
        self.start_due(w)

    def start_due(self, w: Worker) -> None:
        """As ``Scheduler._start_due``: a slot, then a start token (its wait is slept on
        an executor thread, so several reservations run at once)."""
        assert self.limiters.inflight is not None and self.limiters.start is not None
        while w.pending:
            if not self.limiters.inflight.acquire(blocking=False):
                if w.blocked_since is None:
                    w.blocked_since = self.now
                    self.blocked.add(w.wid)
                return
            self.hold(1)
            chars = w.pending.pop()
            wait = self.limiters.start.acquire()
            self.at(self.now + wait, "started", w.wid, chars)
        if w.blocked_since is not None:
            w.blocked_since = None
            self.blocked.discard(w.wid)

    def started(self, w: Worker, chars: int) -> None:
        self.starts += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        ends = self.now + task_seconds(chars)
        if self.notified:
            self.at(ends + NOTIFY_S, "ended", w.wid, chars)
            return
        w.running.append((ends, chars))
        if not w.polling:
            w.polling = True
            self.at(self.now, "poll", w.wid)

    def poll(self, w: Worker, _: int) -> None:
        assert self.limiters.poll is not None
        wait = self.limiters.poll.acquire()
        self.at(self.now + wait, "polled", w.wid)

    def polled(self, w: Worker, _: int) -> None:
        """One ListSpeechSynthesisTasks round: every task of the worker that has ended
        is seen, and fetched."""
        self.polls += 1
        done = [r for r in w.running if r[0] <= self.now]
        w.running = [r for r in w.running if r[0] > self.now]
        for _, chars in done:
            self.at(self.now + FETCH_S, "fetched", w.wid, chars)
        if w.running:
            self.at(self.now + self.repoll, "poll", w.wid)
        else:
            w.polling = False

    def ended(self, w: Worker, chars: int) -> None:
        self.at(self.now + FETCH_S, "fetched", w.wid, chars)

    def fetched(self, w: Worker, _: int) -> None:
        assert self.limiters.inflight is not None
        self.in_flight -= 1
        self.hold(-1)
        self.limiters.inflight.release()
        w.left -= 1
        self.start_due(w)  # its own fetch wakes it
        self.wake_blocked()
        if w.left == 0:
            self.at(self.now + w.chars * STITCH_S_PER_CHAR, "stitched", w.wid)

    def wake_blocked(self) -> None:
        """A slot came back: the blocked worker whose next look (every SLOT_RETRY since
        it was blocked) comes first takes it then."""
        if not self.blocked:
            return
        best, when = -1, math.inf
        for wid in self.blocked:
            w = self.workers[wid]
            if w.tick_due or w.blocked_since is None:
                continue
            phase = (self.now - w.blocked_since) % self.slot_retry
            t = self.now + (self.slot_retry - phase if phase else 0.0)
            if t < when:
                best, when = wid, t
        if best >= 0:
            self.workers[best].tick_due = True
            self.at(when, "tick", best)

    def tick(self, w: Worker, _: int) -> None:
        assert self.limiters.inflight is not None
        w.tick_due = False
        self.start_due(w)
        if self.blocked and self.limiters.inflight.acquire(blocking=False):
            self.limiters.inflight.release()  # a slot is still free: the next one looks
            self.wake_blocked()

    def stitched(self, w: Worker, _: int) -> None:
        self.books_done += 1
        self.next_book(w)


def run() -> dict:
    from audiobook.config import POLLY_CONCURRENCY, POLLY_START_TPS

    library = books(random.Random(SEED))
    tasks = [c for b in library for c in b]
    rate, _ = POLLY_START_TPS[KIND]
    concurrency = POLLY_CONCURRENCY[KIND]
    by_rate = len(tasks) / rate
    by_concurrency = sum(task_seconds(c) for c in tasks) / concurrency
    ideal = max(by_rate, by_concurrency)
    figures: dict[str, object] = {
        "books": BOOKS,
        "workers": WORKERS,
        "engine kind": KIND,
        "tasks": len(tasks),
        "billable characters": sum(tasks),
        "ideal: start-rate bound, hours": by_rate / 3600,
        "ideal: concurrency bound, hours": by_concurrency / 3600,
        "ideal (quota-bound), hours": ideal / 3600,
        "mean task seconds": sum(task_seconds(c) for c in tasks) / len(tasks),
    }
    ratios = {}
    for name, notified in (("polling", False), ("notified", True)):
        t0 = time.perf_counter()
        sim = Simulation(library, notified)
        makespan = sim.run()
        assert sim.books_done == BOOKS and sim.starts == len(tasks)
        assert sim.peak_in_flight <= concurrency
        figures[f"{name}: makespan, hours"] = makespan / 3600
        figures[f"{name}: start calls per second"] = sim.starts / makespan
        figures[f"{name}: status calls per second"] = sim.polls / makespan
        figures[f"{name}: peak tasks in flight"] = sim.peak_in_flight
        figures[f"{name}: mean seconds a slot is held per task"] = sim.held_area / len(tasks)
        figures[f"{name}: simulation seconds"] = time.perf_counter() - t0
        ratios[f"{name}: makespan / ideal"] = makespan / ideal
    return {
        "name": "cluster_quota",
        "figures": figures,
        "ratios": ratios,
        "notes": (
            f"simulated: {BOOKS} books (lognormal, median {BOOK_MEDIAN_CHARS:,} billable "
            f"characters, seed {SEED}) on {WORKERS} workers sharing one {KIND} quota "
            f"through the pipeline's own limiters on a simulated clock; tasks take "
            f"{QUEUE_S:g} s + characters / {CHARS_PER_S:,.0f} per second (bench_polly's "
            f"latency model, UNVERIFIED for real Polly)"
        ),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
