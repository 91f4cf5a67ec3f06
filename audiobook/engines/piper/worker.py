"""The process side of the Piper engine: a worker loads the voice once, then writes each
chunk's WAV file (PCM s16le mono at the voice's rate) sentence by sentence, and returns
the chunk's sentence marks.

Deterministic: a Piper voice draws noise (``noise_scale``, ``noise_w``) from
onnxruntime's random generators, which are seeded when the session is made and advance
with every sentence. So each chunk is synthesized in a child forked from the worker's
warmed-up state (the seed fixed, one fixed sentence spoken): the same chunk gives the
same samples in any worker, in any run, whatever was synthesized before. With one
onnxruntime thread per worker the child uses the worker's session (onnxruntime then runs
no threads of its own, so forking is safe); with more, the child makes its own session,
seeded the same way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import wave
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ... import interrupt
from ..forked import run_forked
from ..pool import leave_with_parent
from .ssml import Pause, Say, Segment

if TYPE_CHECKING:
    from piper import PiperVoice

SEED = 1861  # onnxruntime's random seed, fixed: part of the engine's identity
SENTENCE_GAP_MS = 200  # silence after each sentence (Piper's classic sentence_silence)
_WARM_TEXT = "Ready."


@dataclasses.dataclass
class _Loaded:
    voice: PiperVoice  # with a one-thread session, made before any fork
    model: str
    threads: int
    length_scale: float  # the voice's own, times the engine's speed option


_loaded: _Loaded | None = None


def make_session(model: str, threads: int) -> Any:  # onnxruntime ships no types
    """An onnxruntime session for ``model`` on the CPU with ``threads`` threads, its
    random generators seeded with ``SEED``."""
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only: no warnings on the terminal
    onnxruntime.set_seed(SEED)
    return onnxruntime.InferenceSession(
        model, sess_options=opts, providers=["CPUExecutionProvider"]
    )


def load_voice(model: str, config: str, threads: int = 1) -> PiperVoice:
    """The voice at ``model`` (config at ``config``) on a seeded session."""
    from piper import PiperVoice
    from piper.config import PiperConfig

    with open(config, encoding="utf-8") as f:
        cfg = PiperConfig.from_dict(json.load(f))
    return PiperVoice(session=make_session(model, threads), config=cfg)


def warm_up(voice: PiperVoice) -> None:
    """Speak one fixed sentence: the phonemizer loaded, the session's memory laid out and
    its random generators advanced to the same state in every process."""
    for _ in voice.synthesize(_WARM_TEXT):
        pass


def init_worker(model: str, config: str, threads: int, speed: float) -> None:
    """Worker initializer: load the voice and warm it up (phonemizer and session), so
    that every worker forks its children from the same state."""
    global _loaded
    # Ctrl-C and SIGTERM are the parent's to handle (it stops the workers): a worker
    # ignores them and prints nothing. The children it forks inherit this.
    interrupt.ignore_signals()
    leave_with_parent()
    voice = load_voice(model, config, 1)
    warm_up(voice)
    _loaded = _Loaded(voice, model, threads, voice.config.length_scale / speed)


def write_chunk(
    voice: PiperVoice, segments: Sequence[Segment], dest: str, length_scale: float
) -> tuple[int, list[dict[str, object]]]:
    """Synthesize ``segments`` into a WAV file at ``dest``; return (samples, marks).

    Marks are Polly-style sentence marks (``time`` in ms from the start of the piece,
    ``start``/``end`` byte offsets in the SSML, ``value`` the sentence) with the exact
    ``sample`` offset and length (``samples``) of each sentence's speech."""
    from piper import SynthesisConfig

    rate = voice.config.sample_rate
    gap = round(SENTENCE_GAP_MS * rate / 1000)
    marks: list[dict[str, object]] = []
    pos = 0
    with wave.open(dest, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for seg in segments:
            if isinstance(seg, Pause):
                n = round(seg.ms * rate / 1000)
                w.writeframesraw(bytes(2 * n))
                pos += n
                continue
            assert isinstance(seg, Say)
            syn = SynthesisConfig(length_scale=length_scale / seg.rate)
            start = pos
            for audio in voice.synthesize(seg.text, syn):
                data = audio.audio_int16_bytes
                w.writeframesraw(data)
                pos += len(data) // 2
            if pos == start:
                continue  # nothing Piper could say
            marks.append(
                {
                    "time": round(start * 1000 / rate),
                    "type": "sentence",
                    "start": seg.start,
                    "end": seg.end,
                    "value": seg.value,
                    "sample": start,
                    "samples": pos - start,
                }
            )
            if seg.sentence_end:
                w.writeframesraw(bytes(2 * gap))
                pos += gap
    return pos, marks


def synthesize_chunk(segments: Sequence[Segment], dest: str) -> tuple[int, str]:
    """Worker task: ``segments`` into the WAV file ``dest`` (whole, or not at all), in a
    child forked from the warmed-up worker; return (samples, marks as JSON lines)."""
    if _loaded is None:
        raise RuntimeError("the Piper worker was not initialized")
    loaded = _loaded

    def work() -> str:
        voice = loaded.voice
        if loaded.threads > 1:
            session = make_session(loaded.model, loaded.threads)
            voice = dataclasses.replace(voice, session=session)
            warm_up(voice)  # the same state as the worker's own session
        tmp = dest + ".part"
        samples, marks = write_chunk(voice, segments, tmp, loaded.length_scale)
        os.replace(tmp, dest)
        return json.dumps({"samples": samples, "marks": marks}, ensure_ascii=False)

    out = run_forked(work)
    if out.ok:
        report = json.loads(out.text)
        lines = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in report["marks"])
        return int(report["samples"]), lines
    try:
        os.unlink(dest + ".part")
    except OSError:
        pass
    if out.kind == "error":
        raise RuntimeError(f"Piper synthesis failed: {out.error}: {out.text}")
    raise RuntimeError(f"Piper synthesis process died (wait status {out.status})")
