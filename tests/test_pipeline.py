"""Orchestration of the synthesis stage with a scripted engine and a synchronous
executor: caching, resume, recover, retries, incremental runs. No ffmpeg, no network."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from pathlib import Path

import pytest

from audiobook.config import EngineLimits, PipelineConfig
from audiobook.engines.base import AudioFormat, Capabilities, Engine, TaskRef, TaskState
from audiobook.errors import RetriesExceeded, TaskFailed, Throttled, TransientEngineError
from audiobook.hooks import Hooks
from audiobook.model import Block, Book, Chapter
from audiobook.options import ConvertOptions
from audiobook.scheduler import Limiters
from audiobook.state import StateStore
from audiobook.synthesis import synthesize


class Crash(BaseException):
    """Stands for the process dying (SIGKILL) at a chosen moment."""


class ScriptedEngine(Engine):
    """A speech service whose tasks live on after the client dies (like Polly's).

    ``polls``: polls until a task completes. ``fail``: key-prefix -> list of
    (transient, reason) outcomes for successive tasks of that chunk. ``throttle``: how
    many start calls answer Throttled first. ``crash_after_start`` / ``crash_on_fetch``:
    raise Crash after the n-th start call returned at the service / on the n-th fetch.
    """

    name = "scripted"
    # Not remote (polls are cheap: no minimum interval between them); its tasks outlive
    # the client.
    capabilities = Capabilities(keeps_tasks=True)
    limits = EngineLimits(max_billable=120, max_total=400)
    audio_format = AudioFormat("wav", 16000)

    def __init__(self, *, polls: int = 1, throttle: int = 0, keeps_tasks: bool = True) -> None:
        self.polls = polls
        self.throttle = throttle
        self.tasks: dict[str, dict] = {}
        self.starts: list[str] = []  # content keys of every task created
        self.poll_calls = 0
        self.fail: dict[str, list[tuple[bool, str]]] = {}
        self.crash_after_start: int | None = None
        self.crash_on_fetch: int | None = None
        self.fetches = 0
        self.keeps_tasks = keeps_tasks

    def identity(self) -> str:
        return "scripted:v1"

    def submit(self, chunk, key):
        if self.throttle > 0:
            self.throttle -= 1
            raise Throttled("ThrottlingException: Rate exceeded")
        tid = f"task-{len(self.starts)}"
        outcome = (None, "")
        for prefix, outcomes in self.fail.items():
            if chunk.ssml.find(prefix) >= 0 and outcomes:
                outcome = outcomes.pop(0)
        self.tasks[tid] = {"key": key, "polls": 0, "created": time.time(), "fail": outcome}
        self.starts.append(key)
        if self.crash_after_start is not None and len(self.starts) >= self.crash_after_start:
            self.crash_after_start = None
            raise Crash("killed after the start call returned")
        return TaskRef(tid, self.name, output_uri=f"mem://{tid}", billed_chars=len(chunk.ssml))

    def poll(self, ref):
        self.poll_calls += 1
        t = self.tasks[ref.task_id]  # KeyError: the service never heard of it
        t["polls"] += 1
        if t["polls"] < self.polls:
            return TaskState("inProgress")
        transient, reason = t["fail"]
        if transient is not None:
            return TaskState("failed", reason=reason, transient=transient)
        return TaskState("completed", output_uri=ref.output_uri)

    def fetch(self, ref, dest: Path) -> None:
        self.fetches += 1
        if self.crash_on_fetch is not None and self.fetches >= self.crash_on_fetch:
            self.crash_on_fetch = None
            raise Crash("killed while fetching")
        dest.write_bytes(f"audio of {self.tasks[ref.task_id]['key']}".encode())

    def recover(self, key, since):
        if not self.keeps_tasks:
            return None
        for tid, t in self.tasks.items():
            if t["key"] == key and t["created"] >= since:
                return TaskRef(tid, self.name, output_uri=f"mem://{tid}")
        return None


def book(*chapters: tuple[str, str]) -> Book:
    return Book("Test", tuple(Chapter(t, 1, (Block("paragraph", text),)) for t, text in chapters))


def sentences(word: str, n: int) -> str:
    return " ".join(f"{word} number {i} walks along the quiet road." for i in range(n))


BOOK = book(
    ("One", sentences("Alpha", 8)), ("Two", sentences("Beta", 8)), ("Three", sentences("Gamma", 8))
)
OPTS = ConvertOptions(
    engine="scripted",
    synchronous=True,
    config=PipelineConfig(
        max_inflight=3, max_attempts=4, backoff_base=0.5, backoff_cap=4.0, poll_tps=0, tps=0
    ),
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.t

    def sleep(self, d: float) -> None:
        self.sleeps.append(d)
        self.t += d


def run(store, engine, b=BOOK, opts=OPTS, hooks=None, clock=None):
    clock = clock or FakeClock()
    return synthesize(
        b,
        opts,
        hooks,
        store=store,
        engine=engine,
        limiters=Limiters(),
        clock=clock.time,
        sleep=clock.sleep,
        rng=random.Random(7),
    )


@pytest.fixture
def store(tmp_path):
    with StateStore(tmp_path / "state") as s:
        yield s


def test_every_chunk_synthesized_once_and_cached(store):
    eng = ScriptedEngine(polls=3)
    syn = run(store, eng)
    assert len(syn.chunks) >= 6  # several pieces per chapter
    assert sorted(eng.starts) == sorted(set(syn.keys))
    assert syn.submitted == len(set(syn.keys)) and syn.cached == 0
    assert [len(p) for p in syn.pieces] == [
        sum(1 for c in syn.chunks if c.chapter_idx == i) for i in range(3)
    ]
    for k, p in zip(syn.keys, (p for ps in syn.pieces for p in ps)):
        assert p.read_bytes() == f"audio of {k}".encode()
        assert store.chunk(k).status == "done"
    # Second run: everything from the cache, nothing started.
    again = run(store, eng)
    assert len(eng.starts) == syn.submitted and again.submitted == 0
    assert again.cached == len(set(syn.keys))


def test_cache_is_shared_across_books(store):
    eng = ScriptedEngine()
    run(store, eng, book(("Shared", sentences("Delta", 4)), ("Own", sentences("Eps", 3))))
    n = len(eng.starts)
    syn = run(store, eng, book(("Shared", sentences("Delta", 4)), ("Other", "Different text.")))
    shared = [k for k, c in zip(syn.keys, syn.chunks) if c.chapter_idx == 0]
    assert not set(shared) & set(eng.starts[n:])  # the shared chapter was reused
    assert len(eng.starts) - n == sum(1 for c in syn.chunks if c.chapter_idx == 1)


def test_one_chapter_changed_resubmits_only_its_chunks(store):
    eng = ScriptedEngine()
    first = run(store, eng)
    changed = book(
        ("One", sentences("Alpha", 8)),
        ("Two", sentences("Beta", 8) + " New end."),
        ("Three", sentences("Gamma", 8)),
    )
    n = len(eng.starts)
    second = run(store, eng, changed)
    new_starts = eng.starts[n:]
    assert new_starts and all(
        c.chapter_idx == 1 for k, c in zip(second.keys, second.chunks) if k in new_starts
    )
    # Chapters 1 and 3 kept their keys exactly.
    for idx in (0, 2):
        assert [k for k, c in zip(first.keys, first.chunks) if c.chapter_idx == idx] == [
            k for k, c in zip(second.keys, second.chunks) if c.chapter_idx == idx
        ]
    assert len(new_starts) <= sum(1 for c in second.chunks if c.chapter_idx == 1)


def test_unchanged_book_makes_no_call(store):
    eng = ScriptedEngine()
    run(store, eng)
    starts, polls = len(eng.starts), eng.poll_calls
    run(store, eng)
    assert (len(eng.starts), eng.poll_calls) == (starts, polls)


def test_resume_polls_recorded_tasks_instead_of_starting_again(tmp_path):
    eng = ScriptedEngine(polls=2)
    eng.crash_on_fetch = 2
    with StateStore(tmp_path) as s, pytest.raises(Crash):
        run(s, eng)
    started = list(eng.starts)
    with StateStore(tmp_path) as s:
        submitted = [k for k in started if s.chunk(k).status == "submitted"]
        assert submitted  # tasks in flight when the process died
        syn = run(s, eng)
    assert syn.resumed == len(submitted)
    assert len(eng.starts) == len(set(syn.keys))  # nothing started twice
    assert len(set(eng.starts)) == len(eng.starts)


def test_recover_finds_a_task_started_but_never_recorded(tmp_path):
    eng = ScriptedEngine()
    eng.crash_after_start = 2
    with StateStore(tmp_path) as s, pytest.raises(Crash):
        run(s, eng)
    lost = eng.starts[1]
    with StateStore(tmp_path) as s:
        row = s.chunk(lost)
        assert row.status == "pending" and row.task_id is None and row.started_at
        syn = run(s, eng)
        assert s.chunk(lost).status == "done"
    assert eng.starts.count(lost) == 1  # recovered, not paid twice
    assert len(eng.starts) == len(set(eng.starts)) == len(set(syn.keys))
    assert syn.resumed >= 1


def test_engine_that_keeps_nothing_restarts_lost_tasks(tmp_path):
    eng = ScriptedEngine(keeps_tasks=False)
    eng.crash_after_start = 1
    with StateStore(tmp_path) as s, pytest.raises(Crash):
        run(s, eng)
    eng.tasks.clear()  # a local engine's tasks die with its process
    with StateStore(tmp_path) as s:
        syn = run(s, eng)
    assert syn.submitted == len(set(syn.keys))


def test_throttled_start_calls_back_off_with_jitter(store, caplog):
    eng = ScriptedEngine(throttle=3)
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="audiobook.scheduler"):
        syn = run(store, eng, book(("Solo", "One short piece.")), clock=clock)
    assert syn.submitted == len(set(syn.keys))
    assert "Retrying (1/3)" in caplog.text and "Retrying (3/3)" in caplog.text
    assert len(clock.sleeps) == 3 and all(0 <= s <= 4.0 for s in clock.sleeps)
    assert len(set(clock.sleeps)) == 3  # full jitter


def test_retries_exceeded(store):
    eng = ScriptedEngine(throttle=100)
    with pytest.raises(RetriesExceeded) as e:
        run(store, eng)
    assert e.value.attempts == 4 and isinstance(e.value.last, Throttled)


def test_transient_task_failure_is_retried(store):
    eng = ScriptedEngine()
    eng.fail["Beta number 0"] = [(True, "Service temporarily unavailable")]
    syn = run(store, eng)
    assert len(eng.starts) == len(set(syn.keys)) + 1  # one chunk needed a second task
    assert all(store.chunk(k).status == "done" for k in syn.keys)


def test_permanent_task_failure_stops_with_reason(store):
    eng = ScriptedEngine()
    eng.fail["Beta number 0"] = [(False, "Invalid SSML request")]
    with pytest.raises(TaskFailed) as e:
        run(store, eng)
    assert "Invalid SSML request" in str(e.value) and "'Two'" in str(e.value)
    assert eng.starts.count(eng.starts[-1]) == 1
    failed = [k for k in set(eng.starts) if store.chunk(k).status == "failed"]
    assert len(failed) == 1


def test_transient_poll_errors_are_retried(store):
    class Flaky(ScriptedEngine):
        errors = 2

        def poll(self, ref):
            if self.errors:
                self.errors -= 1
                raise TransientEngineError("HTTP 503")
            return super().poll(ref)

    eng = Flaky()
    syn = run(store, eng)
    assert len(eng.starts) == len(set(syn.keys))


def test_inflight_bound_is_respected(tmp_path):
    class Counting(ScriptedEngine):
        peak = 0

        def submit(self, chunk, key):
            ref = super().submit(chunk, key)
            live = sum(1 for t in self.tasks.values() if not t.get("fetched"))
            self.peak = max(self.peak, live)
            return ref

        def fetch(self, ref, dest):
            super().fetch(ref, dest)
            self.tasks[ref.task_id]["fetched"] = True

    eng = Counting(polls=4)
    opts = replace(OPTS, config=replace(OPTS.config, max_inflight=2))
    with StateStore(tmp_path) as s:
        syn = run(s, eng, opts=opts)
    assert len(syn.chunks) > 4 and eng.peak == 2


def test_hooks_report_progress(store):
    class Rec(Hooks):
        def __init__(self):
            self.events = []

        def on_queued(self, total_chunks, total_chars, cached_chunks):
            self.events.append(("queued", total_chunks, cached_chunks))

        def on_progress(self, done, total, done_chars, total_chars):
            self.events.append(("progress", done, total))

        def on_chapter_done(self, index, title):
            self.events.append(("chapter", index, title))

    hooks = Rec()
    syn = run(store, ScriptedEngine(), hooks=hooks)
    n = len(syn.chunks)
    assert hooks.events[0] == ("queued", n, 0)
    assert ("progress", n, n) in hooks.events
    assert sorted(e[1] for e in hooks.events if e[0] == "chapter") == [0, 1, 2]
    hooks2 = Rec()
    run(store, ScriptedEngine(), hooks=hooks2)
    assert hooks2.events[0] == ("queued", n, n)


def test_threaded_executor_gives_the_same_result(tmp_path):
    eng = ScriptedEngine(polls=2)
    opts = replace(OPTS, synchronous=False)
    with StateStore(tmp_path) as s:
        syn = synthesize(BOOK, opts, store=s, engine=eng, limiters=Limiters())
    assert sorted(eng.starts) == sorted(set(syn.keys))


@pytest.mark.ffmpeg
def test_convert_book_writes_captions_from_speech_marks(tmp_path):
    """Speech marks are fetched beside each cached piece and turned into one WebVTT
    file per chapter, with each piece's marks shifted by its start in the chapter."""
    import json as _json

    from audiobook.engines.fake import FakeEngine, tone_wav
    from audiobook.pipeline import convert_book

    class MarkingEngine(FakeEngine):
        capabilities = Capabilities(marks=True)

        def fetch_marks(self, ref, dest):
            chunk = self.tasks[ref.task_id].chunk
            line = {
                "time": 0,
                "type": "sentence",
                "start": 0,
                "end": 5,
                "value": f"piece {chunk.chapter_idx}.{chunk.seq}",
            }
            Path(dest).write_text(_json.dumps(line) + "\n")

    eng = MarkingEngine(
        lambda c: tone_wav(c, seconds_per_char=0.001),
        limits=EngineLimits(max_billable=120, max_total=400),
    )
    b = book(("One", sentences("Alpha", 4)), ("Two", "Short."))
    out = tmp_path / "b.m4b"
    result = convert_book(b, out, OPTS, state_dir=tmp_path / "s", engine=eng)
    vtts = sorted(tmp_path.glob("b.*.vtt"))
    assert [p.name for p in vtts] == ["b.01.vtt", "b.02.vtt"]
    assert set(vtts) <= set(result.outputs)
    first = vtts[0].read_text()
    assert first.startswith("WEBVTT") and "piece 0.0" in first and "piece 0.1" in first
    assert "00:00:00.000 -->" in first
    # The second piece's caption starts where the first piece's audio ends.
    starts = [ln.split(" -->")[0] for ln in first.splitlines() if "-->" in ln]
    assert len(starts) >= 2 and starts[1] > starts[0]


def test_engine_answering_for_many_tasks_is_asked_once_per_round(store):
    class Batched(ScriptedEngine):
        capabilities = Capabilities(keeps_tasks=True, batch_status=True)
        rounds = 0

        def poll_many(self, refs):
            self.rounds += 1
            return [self.poll(r) for r in refs]

    eng = Batched(polls=3)
    syn = run(store, eng)
    n = len(set(syn.keys))
    assert eng.poll_calls == 3 * n  # every task asked three times...
    assert eng.rounds < eng.poll_calls  # ...in fewer status calls


def test_more_resumed_tasks_than_inflight_slots(tmp_path):
    eng = ScriptedEngine(polls=2)
    eng.crash_on_fetch = 1
    wide = replace(OPTS, config=replace(OPTS.config, max_inflight=8))
    with StateStore(tmp_path) as s, pytest.raises(Crash):
        run(s, eng, opts=wide)
    narrow = replace(OPTS, config=replace(OPTS.config, max_inflight=1))
    with StateStore(tmp_path) as s:
        syn = run(s, eng, opts=narrow)
    assert syn.resumed > 1
    assert len(eng.starts) == len(set(eng.starts)) == len(set(syn.keys))


@pytest.mark.ffmpeg
def test_a_conversion_renders_once_and_chunks_once(tmp_path, monkeypatch):
    """One render and one chunking per chapter per conversion: for a Book in memory
    (whose chunk keys are also its identity) and for a document read from a file."""
    import audiobook.chunk as chunk_mod
    import audiobook.ssml as ssml_mod
    from audiobook.engines.fake import FakeEngine, tone_wav
    from audiobook.ingest import read_book
    from audiobook.pipeline import convert, convert_book

    calls = {"render": 0, "split": 0}
    render, split = ssml_mod.render_chapter, chunk_mod.split_ssml

    def counted_render(*a, **kw):
        calls["render"] += 1
        return render(*a, **kw)

    def counted_split(*a, **kw):
        calls["split"] += 1
        return split(*a, **kw)

    monkeypatch.setattr(ssml_mod, "render_chapter", counted_render)
    monkeypatch.setattr(chunk_mod, "split_ssml", counted_split)
    eng = FakeEngine(lambda c: tone_wav(c, seconds_per_char=0.0005))
    convert_book(BOOK, tmp_path / "b.m4b", OPTS, state_dir=tmp_path / "s", engine=eng)
    assert calls == {"render": len(BOOK.chapters), "split": len(BOOK.chapters)}

    calls.update(render=0, split=0)
    src = tmp_path / "book.md"
    src.write_text("# One\n\nFirst chapter.\n\n# Two\n\nSecond chapter.\n", encoding="utf-8")
    chapters = len(read_book(src).chapters)
    convert(src, tmp_path / "md.m4b", OPTS, state_dir=tmp_path / "s", engine=eng)
    assert chapters >= 1 and calls == {"render": chapters, "split": chapters}
