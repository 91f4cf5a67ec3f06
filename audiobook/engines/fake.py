"""A function-driven engine for tests (httpx's MockTransport, for speech).

    engine = FakeEngine()                        # a tone as long as the text, as WAV
    engine = FakeEngine(lambda chunk: b"...")    # any bytes you like
    def handler(chunk):
        if chunk.seq == 3:
            raise TaskFailed("bad SSML", reason="InvalidSsml")
        return tone_wav(chunk)
    engine = FakeEngine(handler, polls_until_done=2)

    engine = FakeEngine(marks=tone_marks)        # with speech marks that fit the tone

The handler runs when a chunk is submitted. What it returns is what ``fetch`` writes.
An exception it raises is raised by ``submit`` when it is ``Throttled`` (a refused start
call, as a real service does), and otherwise reported by ``poll`` as a failed task
(``transient`` when the error is retryable) and raised again by ``fetch``.
Everything is deterministic: no threads, no clocks, no randomness.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..audio import tone_pcm, wav_bytes, write_atomic
from ..config import EngineLimits
from ..errors import RETRYABLE, TaskFailed, Throttled
from ..model import Chunk
from .base import AudioFormat, Capabilities, Engine, TaskRef, TaskState

Handler = Callable[[Chunk], bytes]

FAKE_SAMPLE_RATE = 22050
_TAG = re.compile(r"<[^>]*>")


def spoken_text(ssml: str) -> str:
    """The text of an SSML chunk without its tags (entities left as they are)."""
    return _TAG.sub("", ssml)


def tone_wav(
    chunk: Chunk, *, seconds_per_char: float = 0.002, sample_rate: int = FAKE_SAMPLE_RATE
) -> bytes:
    """A WAV tone whose length is proportional to the chunk's text (at least 10 ms),
    with a pitch taken from its hash, so that different chunks sound different."""
    seconds = max(0.01, len(spoken_text(chunk.ssml)) * seconds_per_char)
    freq = 220 + int(chunk.sha256[:4], 16) % 660
    return wav_bytes(tone_pcm(seconds, sample_rate, freq), sample_rate)


@dataclass
class _Task:
    chunk: Chunk
    audio: bytes | None
    error: BaseException | None
    polls_left: int


_TEXT = re.compile(r"[^<]+")
_SENTENCE = re.compile(r"\S[^.!?]*(?:[.!?]+\S*|$)")
_WORD = re.compile(r"\w[\w'\u2019-]*")


def tone_marks(chunk: Chunk, *, seconds_per_char: float = 0.002) -> str:
    """Speech marks (``timings.py``) that agree with ``tone_wav``: each sentence and
    word of the text between tags starts at its character count times
    ``seconds_per_char``. For ``FakeEngine(marks=tone_marks)``."""
    lines: list[str] = []
    spoken = 0
    ssml = chunk.ssml
    for m in _TEXT.finditer(ssml):
        text = m.group()
        for s in _SENTENCE.finditer(text):
            at = m.start() + s.start()
            b0 = len(ssml[:at].encode("utf-8"))
            t = round((spoken + s.start()) * seconds_per_char * 1000)
            value = s.group()
            mark = {"time": t, "type": "sentence", "start": b0}
            mark |= {"end": b0 + len(value.encode("utf-8")), "value": value}
            lines.append(json.dumps(mark))
            for w in _WORD.finditer(value):
                w0 = b0 + len(value[: w.start()].encode("utf-8"))
                wt = round((spoken + s.start() + w.start()) * seconds_per_char * 1000)
                word = {"time": wt, "type": "word", "start": w0}
                word |= {"end": w0 + len(w.group().encode("utf-8")), "value": w.group()}
                lines.append(json.dumps(word))
        spoken += len(text)
    return "".join(line + "\n" for line in lines)


FAKE_LIMITS = EngineLimits(max_billable=3_000, max_total=6_000)
FAKE_FORMAT = AudioFormat("wav", FAKE_SAMPLE_RATE)


class FakeEngine(Engine):
    name = "fake"

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        limits: EngineLimits = FAKE_LIMITS,
        audio_format: AudioFormat = FAKE_FORMAT,
        polls_until_done: int = 0,
        identity: str = "fake",
        marks: Callable[[Chunk], str] | None = None,
    ) -> None:
        self.handler: Handler = handler or tone_wav
        self.marks = marks
        self.limits = limits
        self.audio_format = audio_format
        self.polls_until_done = polls_until_done
        self._identity = identity
        self.tasks: dict[str, _Task] = {}
        self.submitted: list[Chunk] = []  # every chunk submitted, in order
        self.fetched: list[str] = []  # task ids fetched, in order
        self.closed = False

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        """With ``marks`` (e.g. ``tone_marks``): timings with every piece, for nothing."""
        return Capabilities(marks=self.marks is not None, marks_included=self.marks is not None)

    def identity(self) -> str:
        return self._identity

    def fetch_marks(self, ref: TaskRef, dest: Path) -> None:
        if self.marks is None:
            super().fetch_marks(ref, dest)
            return
        write_atomic(Path(os.fspath(dest)), self.marks(self._task(ref).chunk).encode("utf-8"))

    def submit(self, chunk: Chunk, key: str) -> TaskRef:
        self.submitted.append(chunk)
        audio: bytes | None = None
        error: BaseException | None = None
        try:
            audio = self.handler(chunk)
        except Throttled:
            raise
        except Exception as e:  # noqa: BLE001 - reported by poll, as a failed task
            error = e
        task_id = f"fake-{len(self.submitted)}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
        self.tasks[task_id] = _Task(chunk, audio, error, self.polls_until_done)
        return TaskRef(task_id=task_id, engine=self.name, billed_chars=len(spoken_text(chunk.ssml)))

    def poll(self, ref: TaskRef) -> TaskState:
        task = self._task(ref)
        if task.polls_left > 0:
            task.polls_left -= 1
            return TaskState("inProgress")
        if task.error is not None:
            return TaskState(
                "failed",
                reason=str(task.error) or type(task.error).__name__,
                transient=isinstance(task.error, RETRYABLE),
            )
        return TaskState("completed")

    def fetch(self, ref: TaskRef, dest: Path) -> None:
        task = self._task(ref)
        if task.error is not None:
            raise task.error
        assert task.audio is not None
        write_atomic(Path(os.fspath(dest)), task.audio)
        self.fetched.append(ref.task_id)

    def close(self) -> None:
        self.closed = True

    def _task(self, ref: TaskRef) -> _Task:
        try:
            return self.tasks[ref.task_id]
        except KeyError:
            raise TaskFailed(f"unknown fake task {ref.task_id}", reason="unknown task") from None
