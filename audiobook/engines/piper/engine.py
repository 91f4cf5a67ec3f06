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
import logging
import os
from collections.abc import Iterable
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from pathlib import Path

from ...config import EngineLimits
from ...errors import ConfigError, EngineError
from ...files import write_text_atomic
from ...model import Book, Chunk
from ..base import AudioFormat, Capabilities, TaskRef, pronunciation_unhonoured
from ..options import PiperOptions
from ..pool import PoolEngine
from . import worker
from .ssml import byte_offsets, plan_ssml
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


class PiperEngine(PoolEngine[tuple[int, str]]):
    """Piper, offline, on every core (``workers=0``: one process per core)."""

    name = "piper"
    worker_name = "Piper"
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
        self.threads = options.threads
        self._phonemes = _phoneme_symbols(self.voice)
        self._reported: set[str] = set()
        self._marks: dict[str, str] = {}
        initargs = (
            os.fspath(self.voice.model),
            os.fspath(self.voice.config),
            self.threads,
            options.speed,
        )
        super().__init__(options.workers, "audiobook-piper-", worker.init_worker, initargs)

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
        try:
            with self._lock:
                fut = self._submit(_ping)
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
        task_id, dest = self._start(worker.synthesize_chunk, segments)
        return TaskRef(task_id=task_id, engine=self.name, output_uri=dest)

    def fetch(self, ref: TaskRef, dest: Path) -> None:
        _, marks = self._result(ref)
        with self._lock:
            self._marks[ref.task_id] = marks  # a few bytes a sentence, kept for ``sentences``
        self._move_audio(ref, dest)

    def fetch_marks(self, ref: TaskRef, dest: Path) -> None:
        """The piece's sentence marks, JSON lines: Polly's fields (``time`` in ms,
        ``type``, ``start``/``end`` byte offsets in the SSML, ``value``) and the exact
        ``sample`` offset and length (``samples``) of the sentence's speech."""
        write_text_atomic(Path(dest), self.sentences(ref))

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

    def _closed(self) -> None:
        self._marks.clear()


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
