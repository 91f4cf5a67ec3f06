"""Small facts about audio files, read without loading the audio.

A WAV's length comes from its header (the number of sample frames), so computing where
each chapter starts costs one small read per piece, however long the book.
"""

from __future__ import annotations

import array
import io
import math
import os
import struct
import sys
import wave
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WavInfo:
    """A PCM WAV file: where its samples are and how many there are."""

    sample_rate: int
    channels: int
    sample_width: int  # bytes per sample (2 = s16le)
    frames: int  # samples per channel
    data_offset: int  # byte offset of the first sample in the file

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def read_wav_info(path: str | os.PathLike[str]) -> WavInfo | None:
    """The header of a plain PCM WAV file, or None when ``path`` is not one (another
    format, WAVE_FORMAT_EXTENSIBLE, a truncated header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            fmt: tuple[int, int, int, int] | None = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    body = f.read(size)
                    if len(body) < 16:
                        return None
                    tag, channels, rate, _brate, _align, bits = struct.unpack("<HHIIHH", body[:16])
                    fmt = (tag, channels, rate, bits)
                    if size % 2:
                        f.seek(1, io.SEEK_CUR)
                elif cid == b"data":
                    if fmt is None or fmt[0] != 1 or fmt[3] % 8 or not fmt[1] or not fmt[2]:
                        return None
                    offset = f.tell()
                    end = f.seek(0, io.SEEK_END)
                    if size in (0, 0xFFFFFFFF) or offset + size > end:
                        size = end - offset  # streamed or truncated: use what is there
                    width = fmt[3] // 8
                    return WavInfo(fmt[2], fmt[1], width, size // (width * fmt[1]), offset)
                else:
                    f.seek(size + (size % 2), io.SEEK_CUR)
    except OSError:
        return None


def tone_pcm(
    seconds: float, sample_rate: int = 22050, freq: float = 440.0, amplitude: float = 0.3
) -> bytes:
    """A sine tone as PCM s16le mono: deterministic audio for tests and fakes."""
    n = max(0, round(seconds * sample_rate))
    scale = amplitude * 32767
    step = 2 * math.pi * freq / sample_rate
    samples = array.array("h", (int(scale * math.sin(i * step)) for i in range(n)))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """PCM s16le wrapped in a WAV header."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (temp file, then replace)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
