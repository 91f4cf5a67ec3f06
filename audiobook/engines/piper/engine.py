"""The Piper engine: a neural voice on onnxruntime, offline, on every core.

    PiperEngine(PiperOptions(language="en"))  # the installed voice for the language
    ref = engine.submit(chunk, key)          # returns at once
    engine.poll(ref).status                  # "scheduled" | "inProgress" | "completed" | "failed"
    engine.fetch(ref, dest)                  # dest.wav, whole or not at all
    engine.sentences(ref)                    # the piece's sentence marks (exact sample offsets)

Each chunk's SSML is read here (``ssml.plan_ssml``): what Piper cannot honour is
reported once per engine, that is once per book, as a warning. The segments go to a
pool of worker processes (``worker.py``), one per core by default, each with its own
copy of the voice and ``threads`` onnxruntime threads. A piece is a WAV file like the
espeak-ng engine's (PCM s16le mono at the voice's rate: 22,050 Hz for medium voices),
so the stitcher takes it as it is; the worker also returns the piece's sentence marks,
which ``fetch_marks`` writes beside the piece when ``marks`` asks for them.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from pathlib import Path

from ... import interrupt
from ...config import EngineLimits
from ...errors import ConfigError, EngineError, TaskFailed, TransientEngineError, one_line
from ...files import write_text_atomic
from ...model import Book, Chunk
from ..base import (
    AudioFormat,
    Capabilities,
    Engine,
    TaskRef,
    TaskState,
    pronunciation_unhonoured,
)
from ..local import _move_into_place
from ..options import PiperOptions
from . import worker
from .ssml import Segment, byte_offsets, plan_ssml
from .voices import VoiceInfo, model_md5, read_voice, resolve_voice, voice_for_language

log = logging.getLogger(__name__)

# About four minutes of speech, half a minute of one core's work: small enough to keep
# both cores busy to the end of a book, large enough that a piece costs nothing extra.
PIPER_LIMITS = EngineLimits(max_billable=4_000, max_total=12_000)
MARK_TYPES = ("sentence",)


@cache
def _versions() -> str:
    out = []
    for dist in ("piper-tts", "onnxruntime"):
        try:
            out.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{dist} ?")
    return ", ".join(out)


def choose_voice(options: PiperOptions) -> VoiceInfo:
    """The voice of ``options``: the one it names, else the installed one for its
    language (ConfigError saying how to get one when there is none)."""
    if options.voice:
        found = resolve_voice(options.voice)
        if found is None:
            raise ConfigError(
                f"no Piper voice {options.voice!r} is installed (see `audiobook voices "
                f"--engine piper`; add one with `audiobook voices --download NAME`)"
            )
        return found
    found = voice_for_language(options.language)
    if found is None:
        raise ConfigError(
            f"no installed Piper voice speaks {options.language or 'en'!r}: add one with "
            "`audiobook voices --download NAME` or --voice path/to/voice.onnx"
        )
    return found


class PiperEngine(Engine):
    """Piper, offline, on every core (``workers=0``: one process per core)."""

    name = "piper"
    limits = PIPER_LIMITS

    def __init__(self, options: PiperOptions | None = None, voice: VoiceInfo | None = None) -> None:
        options = options or PiperOptions()
        if not 0.5 <= options.speed <= 2.0:
            raise ConfigError(f"Piper speed {options.speed} is out of range 0.5-2.0")
        if options.threads < 1:
            raise ConfigError(f"onnxruntime threads must be at least 1, not {options.threads}")
        bad = [m for m in options.marks if m not in MARK_TYPES]
        if bad:
            raise ConfigError(f"Piper writes sentence marks only, not {', '.join(bad)}")
        self.options = options
        self.voice = voice or choose_voice(options)
        self.audio_format = AudioFormat("wav", self.voice.sample_rate)
        self.workers = options.workers if options.workers > 0 else (os.cpu_count() or 1)
        self.threads = options.threads
        self._phonemes = _phoneme_symbols(self.voice)
        self._reported: set[str] = set()
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._tasks: dict[str, Future[tuple[int, str]]] = {}
        self._marks: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._dir = tempfile.mkdtemp(prefix="audiobook-piper-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        # Its sentence marks come with every piece for nothing, so they are always kept
        # (the read-along EPUB, --captions); asked for with --marks, they also give
        # WebVTT per chapter, as paid-for marks do.
        return Capabilities(marks=True, marks_included=not self.options.marks)

    # --- Engine -------------------------------------------------------------------------

    def identity(self) -> str:
        # Everything that changes the samples: the model (by content), the phonemizer
        # and runtime versions, the speed, the seed and the sentence gap.
        return (
            f"piper:{_versions()}:voice={self.voice.name}:md5={model_md5(self.voice.model)}:"
            f"speed={self.options.speed:g}:seed={worker.SEED}:gap={worker.SENTENCE_GAP_MS}ms"
        )

    def preflight(self, ssml: Iterable[str] = ()) -> None:
        # The voice loads in a worker: start the pool now so that a broken model is one
        # line before the first piece, not a failed task.
        with self._lock:
            pool = self._ensure_pool()
        try:
            with interrupt.blocked_signals():  # see submit
                fut = pool.submit(_ping)
            fut.result()
        except BrokenProcessPool as e:
            raise EngineError(
                f"Piper voice {self.voice.model} failed to load in a worker process"
            ) from e

    def pronounce(self, book: Book) -> list[str]:
        """Piper reads ``<phoneme>`` (the book's ssml:ph) where its voice knows the
        phonemes (``ssml.py`` reports the others); PLS lexicons it does not read."""
        return pronunciation_unhonoured(book, "piper", phonemes=False)

    def submit(self, chunk: Chunk, key: str) -> TaskRef:
        plan = plan_ssml(chunk.ssml, self._phonemes)
        self._report(plan.unsupported)
        segments = byte_offsets(chunk.ssml, plan.segments)
        task_id = f"piper-{next(self._ids)}"
        dest = os.path.join(self._dir, f"{task_id}.wav")
        with self._lock:
            try:
                fut = self._start(segments, dest)
            except BrokenProcessPool:
                self._drop_pool()  # a worker died: start a fresh pool once
                try:
                    fut = self._start(segments, dest)
                except BrokenProcessPool:
                    raise TransientEngineError("Piper worker processes keep dying") from None
            self._tasks[task_id] = fut
        return TaskRef(task_id=task_id, engine=self.name, output_uri=dest)

    def poll(self, ref: TaskRef) -> TaskState:
        fut = self._future(ref)
        if not fut.done():
            return TaskState("inProgress" if fut.running() else "scheduled")
        exc = fut.exception()
        if exc is None:
            return TaskState("completed", output_uri=ref.output_uri)
        transient = isinstance(exc, (BrokenProcessPool, TransientEngineError, OSError))
        return TaskState("failed", reason=one_line(exc), transient=transient)

    def fetch(self, ref: TaskRef, dest: Path) -> None:
        _, marks = self._result(ref)
        src = ref.output_uri or os.path.join(self._dir, f"{ref.task_id}.wav")
        dest = Path(dest)
        try:
            _move_into_place(Path(src), dest)
        except OSError as e:
            raise EngineError(f"{dest}: cannot write audio: {e.strerror or e}") from e
        with self._lock:
            self._tasks.pop(ref.task_id, None)
            self._marks[ref.task_id] = marks  # a few bytes a sentence, kept for ``sentences``

    def fetch_marks(self, ref: TaskRef, dest: Path) -> None:
        """The piece's sentence marks, JSON lines: Polly's fields (``time`` in ms,
        ``type``, ``start``/``end`` byte offsets in the SSML, ``value``) and the exact
        ``sample`` offset and length (``samples``) of the sentence's speech."""
        write_text_atomic(Path(dest), self.sentences(ref))

    def close(self) -> None:
        with self._lock:
            self._drop_pool()
            self._tasks.clear()
            self._marks.clear()
        self._finalizer()

    # --- extras -------------------------------------------------------------------------

    def sentences(self, ref: TaskRef) -> str:
        """The sentence marks of a finished piece (as ``fetch_marks`` writes them), also
        after its audio was fetched."""
        with self._lock:
            kept = self._marks.get(ref.task_id)
        return kept if kept is not None else self._result(ref)[1]

    # --- internals ------------------------------------------------------------------------

    def _report(self, unsupported: frozenset[str]) -> None:
        new = sorted(unsupported - self._reported)
        if new:
            self._reported.update(new)
            log.warning(
                "Piper cannot honour %s in this book's SSML; the text is spoken without it",
                ", ".join(new),
            )

    def _result(self, ref: TaskRef) -> tuple[int, str]:
        fut = self._future(ref)
        try:
            return fut.result()
        except BrokenProcessPool as e:
            raise TransientEngineError(f"Piper worker died: {one_line(e)}") from e
        except EngineError:
            raise
        except Exception as e:
            raise TaskFailed(f"Piper failed: {one_line(e)}", reason=one_line(e)) from e

    def _start(self, segments: tuple[Segment, ...], dest: str) -> Future[tuple[int, str]]:
        pool = self._ensure_pool()
        # A worker starts in pool.submit and inherits this thread's mask: a Ctrl-C during
        # its start-up (loading the voice takes a second) waits until the worker ignores
        # the signal, rather than end in a traceback from its imports. Blocked only now:
        # making the pool may start multiprocessing's resource tracker, which unblocks
        # both signals in this thread when it is up.
        with interrupt.blocked_signals():
            return pool.submit(worker.synthesize_chunk, segments, dest)

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the caller may run threads, and a forked copy of a
            # process with threads can deadlock.
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker.init_worker,
                initargs=(
                    os.fspath(self.voice.model),
                    os.fspath(self.voice.config),
                    self.threads,
                    self.options.speed,
                ),
            )
        return self._pool

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _future(self, ref: TaskRef) -> Future[tuple[int, str]]:
        with self._lock:
            fut = self._tasks.get(ref.task_id)
        if fut is None:
            raise TaskFailed(f"unknown Piper task {ref.task_id}", reason="unknown task")
        return fut


def _ping() -> bool:
    return True


def _phoneme_symbols(voice: VoiceInfo) -> frozenset[str] | None:
    """The phonemes a voice takes as raw input: its id map's symbols when it reads
    espeak-ng IPA; None for voices of another phoneme type."""
    import json

    try:
        data = json.loads(voice.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("phoneme_type", "espeak") != "espeak":
        return None
    return frozenset(str(k) for k in data.get("phoneme_id_map", {}))


def list_voices(language: str | None = None) -> list[dict[str, str]]:
    """Installed Piper voices, for ``audiobook voices --engine piper``: ``name`` is what
    ``--voice`` takes. With ``language`` (BCP 47), only the voices that speak it."""
    from .voices import installed_voices

    voices = installed_voices()
    if language:
        fam = language.strip().replace("_", "-").lower().split("-")[0]
        voices = [v for v in voices if v.family == fam]
    return [
        {
            "name": v.name,
            "language": v.language,
            "gender": "",
            "quality": v.quality,
            "source": v.source,
            "file": os.fspath(v.model),
        }
        for v in voices
    ]


__all__ = ["PIPER_LIMITS", "PiperEngine", "choose_voice", "list_voices", "read_voice"]
