"""The seam between the pipeline and a speech engine.

An engine turns one SSML chunk into one audio file. Every engine is asynchronous in
shape, even one that answers at once: ``submit`` starts the work and returns a
``TaskRef`` (whose ``task_id`` the state store records before anything else can fail),
``poll`` tells where it stands, ``fetch`` writes the finished audio to a path.

What an engine can do beyond that is declared, never probed for (fsspec's backends,
yt-dlp's downloaders): ``capabilities`` says whether its tasks live at a remote service,
outlive the process, can be asked about many at once, are announced by notifications,
come with speech marks, and how they are priced. The pipeline reads the declaration;
every optional method has a default here (``plan``, ``preflight``, ``poll_many``,
``fetch_marks``, ``recover``, ``pronounce``, ``use_voices``), so a new engine implements
``submit``/``poll``/``fetch`` and declares the rest.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self

from ..config import EngineLimits
from ..errors import ConfigError
from ..model import Book, Chunk

TaskStatus = Literal["scheduled", "inProgress", "completed", "failed"]


@dataclass(frozen=True)
class TaskRef:
    """A handle on submitted work. ``task_id`` is what the engine calls it."""

    task_id: str
    engine: str
    output_uri: str | None = None
    billed_chars: int = 0
    extra: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TaskState:
    status: TaskStatus
    reason: str = ""  # why a task failed, in the engine's words
    transient: bool = False  # a failure worth another task
    output_uri: str | None = None


@dataclass(frozen=True)
class AudioFormat:
    """What ``fetch`` writes: container/codec extension, sample rate, channels."""

    ext: str  # "wav", "mp3"
    sample_rate: int
    channels: int = 1


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do beyond submit/poll/fetch. The pipeline reads these fields.

    remote:       a network service: polled at a gentler pace, inside its status quota.
    keeps_tasks:  tasks outlive the process: a recorded task id can be polled after a
                  restart, and ``recover`` finds a task whose id was never recorded.
    batch_status: ``poll_many`` answers for many tasks in one status call.
    notified:     completions are pushed (notifications): a poll spends no status quota.
    marks:        ``fetch_marks`` writes speech marks beside each piece of audio (JSON
                  lines, ``timings.py``): sentence and word starts in the piece.
    marks_included: the marks come with every piece at no cost (the engine's own
                  timings): they are always cached, and captions are written only when
                  asked for. Without it, marks are paid for (Polly's speech-mark tasks),
                  asked for by the user, and captions follow them.
    marks_alone:  ``submit_marks`` buys the marks of a piece whose audio is cached,
                  without its audio (Polly's speech-mark task alone).
    price_kind:   the key of the engine's list price (``config.POLLY_PRICES_PER_MILLION``);
                  "" for an engine that costs nothing.
    """

    remote: bool = False
    keeps_tasks: bool = False
    batch_status: bool = False
    notified: bool = False
    marks: bool = False
    marks_included: bool = False
    marks_alone: bool = False
    price_kind: str = ""


def pronunciation_unhonoured(
    book: Book, engine: str, lexicons: bool = True, phonemes: bool = True
) -> list[str]:
    """What an engine that reads neither PLS lexicons nor ``<phoneme>`` leaves out
    (``lexicons``/``phonemes`` False: the ones it does read)."""
    notes = []
    if lexicons:
        notes += [
            f"pronunciation lexicon {lx.source} ({lx.lexemes} entries) is not applied by "
            f"the {engine} engine"
            for lx in book.lexicons
        ]
    words = sum(len(b.phonemes) for ch in book.chapters for b in ch.blocks)
    if words and phonemes:
        notes.append(
            f"{words} word(s) with their own pronunciation (ssml:ph) are read as written by "
            f"the {engine} engine"
        )
    return notes


class Engine(abc.ABC):
    name: str = "engine"
    limits: EngineLimits
    audio_format: AudioFormat
    # A plain local engine. Engines whose abilities depend on their options override
    # this with a property.
    capabilities: Capabilities = Capabilities()

    @abc.abstractmethod
    def submit(self, chunk: Chunk, key: str) -> TaskRef:
        """Start synthesizing ``chunk``; return at once with a reference.

        ``key`` is the chunk's content key (hash of SSML + engine identity + template +
        format). An engine that writes to shared storage names the output after it, so
        that ``recover`` can find a task whose start call returned but was never recorded.
        """

    @abc.abstractmethod
    def poll(self, ref: TaskRef) -> TaskState:
        """Where the task stands now."""

    @abc.abstractmethod
    def fetch(self, ref: TaskRef, dest: Path) -> None:
        """Write the finished audio of ``ref`` to ``dest`` (whole, or not at all)."""

    def plan(self, billable_chars: int, total_chars: int) -> None:
        """Hear the size of the whole job before it is chunked (an engine whose
        ``limits`` depend on the path it takes settles the path here). Default: nothing."""

    def pronounce(self, book: Book) -> list[str]:
        """Take the book's own pronunciation (its PLS lexicons; ``ssml:ph`` arrives in
        the SSML as ``<phoneme>``) before the book is planned, and say in one line each
        what this engine cannot honour. Changes ``identity`` where the audio follows.
        Default: neither is honoured."""
        return pronunciation_unhonoured(book, self.name)

    def use_voices(self, voices: Sequence[str]) -> None:
        """Hear the voices, beyond its own, that pieces of this book ask for
        (``Chunk.voice``); ConfigError on one line for one it cannot read with.
        Default: an engine with one voice."""
        if voices:
            raise ConfigError(f"the {self.name} engine reads with one voice, not {voices[0]!r}")

    def preflight(self, ssml: Iterable[str] = ()) -> None:
        """Every check that can fail before money is spent (ConfigError on one line;
        ``UnsupportedSsml`` for a piece of ``ssml``, the SSML about to be sent, that the
        engine refuses). Called once, before the first submit. Default: nothing."""

    def poll_many(self, refs: Sequence[TaskRef]) -> list[TaskState]:
        """Where each task stands, in order. Engines with ``capabilities.batch_status``
        answer in one status call; the default asks ``poll`` for each."""
        return [self.poll(r) for r in refs]

    def release(self, ref: TaskRef) -> None:
        """The audio (and marks) of ``ref`` is in the cache, recorded: the engine may
        free what it still holds for the task (Polly: its outputs in S3). Must not
        raise for a failure to free. Default: nothing to free."""

    def fetch_marks(self, ref: TaskRef, dest: Path) -> None:
        """Write the speech marks of ``ref`` to ``dest`` (JSON lines, times in ms from
        the start of the piece). Only for engines with ``capabilities.marks``."""
        raise NotImplementedError(f"the {self.name} engine writes no speech marks")

    def submit_marks(self, chunk: Chunk, key: str) -> TaskRef:
        """Start only the speech marks of ``chunk``, whose audio is cached already (an
        earlier run without marks): engines that declare ``marks_alone`` implement it,
        so that the audio is not paid for twice. ``poll`` and ``fetch_marks`` work on the reference as on
        ``submit``'s; ``fetch`` is never called on it."""
        raise NotImplementedError(f"the {self.name} engine makes no speech marks alone")

    def recover(self, key: str, since: float) -> TaskRef | None:
        """Find a task for ``key`` started at or after ``since`` (epoch seconds, our
        clock: the engine allows for the service's clock being off) that the
        caller never recorded (a crash right after the start call). None if there is none
        or the engine keeps nothing across processes (``capabilities.keeps_tasks``)."""
        return None

    def limit_start_calls(self, acquire: Callable[[], object]) -> bool:
        """Take the caller's limiter of start calls (the engine kind's start quota): True
        when the engine passes each call that starts a synthesis through ``acquire``
        (one submit may make two: the audio and its speech marks); False, the default:
        the caller takes one token per submit."""
        return False

    def limit_status_calls(self, acquire: Callable[[], object]) -> bool:
        """Take the caller's limiter of status calls (one quota shared by every book of
        the process): True when the engine passes each status call it makes (lookups,
        listings, re-polls) through ``acquire``, so that the caller leaves its polls
        to the engine; False, the default: the caller limits each poll itself."""
        return False

    def identity(self) -> str:
        """Everything about this engine that changes the audio (voice, engine kind,
        sample rate...), folded into each chunk's content hash."""
        return self.name

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
