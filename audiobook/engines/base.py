"""The seam between the pipeline and a speech engine.

An engine turns one SSML chunk into one audio file. Every engine is asynchronous in
shape, even one that answers at once: ``submit`` starts the work and returns a
``TaskRef`` (whose ``task_id`` the state store records before anything else can fail),
``poll`` tells where it stands, ``fetch`` writes the finished audio to a path.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import EngineLimits
from ..model import Chunk

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


class Engine(abc.ABC):
    name: str = "engine"
    limits: EngineLimits
    audio_format: AudioFormat

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

    def recover(self, key: str, since: float) -> TaskRef | None:
        """Find a task for ``key`` started at or after ``since`` (epoch seconds) that the
        caller never recorded (a crash right after the start call). None if there is none
        or the engine keeps nothing across processes."""
        return None

    def identity(self) -> str:
        """Everything about this engine that changes the audio (voice, engine kind,
        sample rate...), folded into each chunk's content hash."""
        return self.name

    def close(self) -> None:
        pass

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
