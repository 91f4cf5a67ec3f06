"""One Polly quota for a cluster: the token buckets and the in-flight bound kept in the
PostgreSQL store (a real server, ``tests/servers.py``), shared by every worker on it.

The buckets answer as the single-machine ``TokenBucket`` does (the same waits on the
same clock), the slots bound all workers together and come back from a dead one, and
four worker processes converting books against the Polly emulator with its quotas set
low stay within them together: the emulator, its throttling off, counts the start calls
that would have been throttled. Without the shared store (each worker its own SQLite
store and limiters, as on one machine) the same four go over.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from audiobook.config import PipelineConfig
from audiobook.engines.options import PollyOptions
from audiobook.options import ConvertOptions
from audiobook.ratelimit import TokenBucket
from audiobook.scheduler import make_limiters
from audiobook.state import LeaseOwner, open_state
from tests.test_polly_aws import make_epub

pgstate = pytest.importorskip("audiobook.pgstate")


def test_a_shared_bucket_answers_as_the_local_one(pg_url, tmp_path):
    """Two workers (two connections) on one bucket wait what one ``TokenBucket`` would
    make them wait, take after take, on the same injected clock; drain empties it for
    both."""
    now = [100.0]
    local = TokenBucket(4.0, 3, clock=lambda: now[0])
    with open_state(tmp_path, url=pg_url) as a_store, open_state(tmp_path, url=pg_url) as b_store:
        a = a_store.rate_limiter("start:standard", 4.0, 3, clock=lambda: now[0])
        b = b_store.rate_limiter("start:standard", 4.0, 3, clock=lambda: now[0])
        assert isinstance(a, pgstate.SharedBucket)
        steps = [0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 1.5, 0.0, 0.2, 0.0, 3.0, 0.0]
        shared, alone = [], []
        for i, dt in enumerate(steps):
            now[0] += dt
            shared.append(round((a if i % 2 else b).reserve(), 9))
            alone.append(round(local.reserve(), 9))
        assert shared == alone
        assert shared[:4] == [0.0, 0.0, 0.0, 0.25]  # the burst, then a queue at 4/s
        now[0] += 10
        a.drain()
        local.drain()
        assert b.available == local.available == 0.0
        assert b.reserve() == local.reserve() == 0.25


def test_shared_slots_bound_every_worker_and_a_dead_ones_expire(pg_url, tmp_path):
    now = [1000.0]
    with open_state(tmp_path, url=pg_url) as a_store, open_state(tmp_path, url=pg_url) as b_store:
        a_store.clock = b_store.clock = lambda: now[0]
        a = a_store.slots("inflight:standard", 3, threading.Semaphore(2))
        b = b_store.slots("inflight:standard", 3, threading.Semaphore(5))
        assert a.acquire(blocking=False) and a.acquire(blocking=False)
        assert not a.acquire(blocking=False)  # its own bound
        assert b.acquire(blocking=False)
        assert not b.acquire(blocking=False)  # the cluster's bound
        a.release()
        assert b.acquire(blocking=False)
        # a's process dies holding one: its hold lasts until it expires...
        now[0] += 30
        b.release()
        b.release()
        with LeaseOwner(b_store) as owner:
            b_store.renew_leases(owner)  # b's holds are renewed with its leases
        assert b.acquire(blocking=False) and b.acquire(blocking=False)
        assert not b.acquire(blocking=False)
        now[0] += 31  # a's hold has expired, b's were renewed 31 s ago
        assert b.acquire(blocking=False)
        assert not b.acquire(blocking=False)


def test_the_quota_is_the_clusters_when_the_state_is_postgresql(pg_url, tmp_path):
    opts = ConvertOptions(engine="polly", engine_options=PollyOptions(polly_engine="neural"))
    with open_state(tmp_path, url=pg_url) as store:
        shared = make_limiters(opts, store)
        assert isinstance(shared.start, pgstate.SharedBucket)
        assert (shared.start.name, shared.start.rate, shared.start.burst) == (
            "start:neural",
            10.0,
            12,
        )
        assert isinstance(shared.poll, pgstate.SharedBucket) and shared.poll.name == "getlist"
        assert isinstance(shared.inflight, pgstate.SharedSlots)
        assert (shared.inflight.name, shared.inflight.limit) == ("inflight:neural", 18)
    with open_state(tmp_path / "one") as store:  # SQLite: this process's own, as before
        alone = make_limiters(opts, store)
        assert isinstance(alone.start, TokenBucket) and isinstance(alone.poll, TokenBucket)
        assert isinstance(alone.inflight, threading.Semaphore)


# --- four workers against the emulator's quotas ---------------------------------------------

WORKERS = 4
BOOKS_PER_WORKER = 1
CHAPTERS = 5
# The account as the emulator keeps it: 10 starts per second with a burst of 4, three
# tasks open at once. The workers' limiters ask for a burst of 2: the 2 tokens between
# them absorb the jitter of calls that leave on time and arrive a little apart.
QUOTA_RATE, QUOTA_BURST, QUOTA_CONCURRENCY = 10.0, 4, 3
CONFIG = PipelineConfig(tps=QUOTA_RATE, burst=2, concurrency=QUOTA_CONCURRENCY)


def _worker(
    env: dict[str, str], url: str | None, state_dir: str, books: list[str], go: Any
) -> None:
    """One worker process: its books converted one after the other with Polly."""
    from audiobook.pipeline import convert

    os.environ.update(env)
    opts = ConvertOptions(
        engine="polly",
        voice="Joanna",
        engine_options=PollyOptions(
            bucket=env["BUCKET"], polly_engine="standard", mode="async", voice="Joanna"
        ),
        config=CONFIG,
    )
    with open_state(state_dir, url=url) as store:
        go.wait(timeout=120)  # every worker ready: they start at once
        for book in books:
            convert(book, Path(book).with_suffix(".m4b"), opts, store=store)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-store", "one-store-each"])
def test_four_workers_stay_within_the_accounts_quota_together(
    shared, pg_url, aws_env, make_polly_emulator, s3_bucket, tmp_path
):
    emu = make_polly_emulator(
        quota_scale=1,
        quotas_enabled=False,  # nothing throttled: over-quota calls are only counted
        quota_overrides={"start:standard": (QUOTA_RATE, QUOTA_BURST)},
        concurrency_overrides={"standard": QUOTA_CONCURRENCY},
        audio="silence",
        chars_per_second=200.0,  # a task stays open about a quarter of a second
        workers=16,
    )
    env = {**aws_env, "AWS_ENDPOINT_URL_POLLY": emu.url, "BUCKET": s3_bucket}
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Barrier(WORKERS)
    procs = []
    for w in range(WORKERS):
        books = []
        for n in range(BOOKS_PER_WORKER):
            (tmp_path / f"w{w}").mkdir(exist_ok=True)
            chapters = [
                (f"Part {c}", f"<p>Worker {w} reads part {c} of book {n} aloud.</p>")
                for c in range(CHAPTERS)
            ]
            books.append(str(make_epub(tmp_path / f"w{w}" / f"book{n}.epub", chapters)))
        state_dir = str(tmp_path / f"w{w}" / "state")
        procs.append(
            ctx.Process(
                target=_worker, args=(env, pg_url if shared else None, state_dir, books, go)
            )
        )
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WORKERS
    stats = emu.stats
    tasks = WORKERS * BOOKS_PER_WORKER * CHAPTERS
    assert stats["tasks_created"] == tasks
    over_start = stats.get("over_quota.start:standard", 0)
    over_open = stats.get("over_concurrency.standard", 0)
    print(f"shared={shared}: over-quota starts {over_start}, over-concurrency {over_open}")
    if shared:
        assert over_start == 0, stats
        assert over_open == 0, stats
        assert stats["peak_open_tasks.standard"] <= QUOTA_CONCURRENCY
    else:  # the test has teeth: uncoordinated workers go over the same quotas
        assert over_start > 0, stats
        assert over_open > 0, stats


def test_a_batch_on_four_dask_workers_stays_within_the_accounts_quota(
    pg_url, aws_env, make_polly_emulator, s3_bucket, tmp_path, monkeypatch
):
    """The same quota with the books of one batch on a LocalCluster of four process
    workers (``batch --cluster local:4``), the state in PostgreSQL: together they stay
    within the account's start rate and open tasks."""
    pytest.importorskip("distributed", reason="Dask distributed (the cluster extra) is missing")
    from audiobook.batch import Shared, batch

    emu = make_polly_emulator(
        quota_scale=1,
        quotas_enabled=False,
        quota_overrides={"start:standard": (QUOTA_RATE, QUOTA_BURST)},
        concurrency_overrides={"standard": QUOTA_CONCURRENCY},
        audio="silence",
        chars_per_second=200.0,
        workers=16,
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", emu.url)  # the workers inherit it
    src = tmp_path / "books"
    src.mkdir()
    for n in range(WORKERS):
        chapters = [
            (f"Part {c}", f"<p>Book {n} of the cluster reads part {c} aloud.</p>")
            for c in range(CHAPTERS)
        ]
        make_epub(src / f"book{n}.epub", chapters)
    opts = ConvertOptions(
        engine="polly",
        voice="Joanna",
        engine_options=PollyOptions(
            bucket=s3_bucket, polly_engine="standard", mode="async", voice="Joanna"
        ),
        config=CONFIG,
    )
    items = batch(
        src,
        tmp_path / "out",
        opts,
        cluster=f"local:{WORKERS}",
        shared=Shared(pg_url, None, str(tmp_path / "worker")),
    )
    assert [i.error for i in items] == [None] * WORKERS
    stats = emu.stats
    assert stats["tasks_created"] == WORKERS * CHAPTERS
    assert stats.get("over_quota.start:standard", 0) == 0, stats
    assert stats.get("over_concurrency.standard", 0) == 0, stats
    assert stats["peak_open_tasks.standard"] <= QUOTA_CONCURRENCY
