"""The one place ffmpeg runs.

Every call goes through ``run`` (or ``pipe`` when bytes go in and out): an argv list,
no shell, paths given as ``file:`` arguments (so a file called ``-y`` or ``http:x`` is
still a file), the command logged at debug level, and a non-zero exit turned into
``FFmpegError`` carrying ffmpeg's last stderr line. The inputs ffmpeg reads
(``ffmetadata`` chapter files, ``concat_spec`` lists) are built by pure functions.

The binary comes from the imageio-ffmpeg wheel, so nothing has to be installed by hand.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import IO

from .errors import ConfigError, FFmpegError

log = logging.getLogger(__name__)

# Arguments every invocation gets: quiet except for errors, never prompt, overwrite.
_COMMON = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]


@cache
def ffmpeg_exe() -> str:
    """Path to the ffmpeg binary shipped by imageio-ffmpeg (or $IMAGEIO_FFMPEG_EXE)."""
    import imageio_ffmpeg

    try:
        exe: str = imageio_ffmpeg.get_ffmpeg_exe()  # imageio_ffmpeg is untyped
    except RuntimeError as e:  # no binary for this platform
        raise FFmpegError(f"ffmpeg not found: {e}") from e
    return exe


def pcm_input(sample_rate: int) -> list[str]:
    """The input arguments for raw PCM s16le mono at ``sample_rate`` on stdin."""
    return ["-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0"]


def path_arg(path: str | os.PathLike[str]) -> str:
    """A path as an ffmpeg argument: ``file:`` stops ffmpeg from reading a leading
    ``-`` as an option or ``proto:`` as a protocol. ``-`` (stdin/stdout) is kept."""
    s = os.fspath(path)
    if s == "-" or s.startswith(("pipe:", "file:")):
        return s
    return "file:" + s


_CTX_PREFIX = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\]\s*")


def _last_line(lines: Iterable[str]) -> str:
    """ffmpeg's last stderr line, with the file it names when that sits one line up
    ("Error opening input file X." then "Error opening input files: reason")."""
    clean = [_CTX_PREFIX.sub("", line.strip()) for line in lines if line.strip()]
    if not clean:
        return ""
    last = clean[-1]
    if (
        len(clean) >= 2
        and clean[-2].startswith("Error opening")
        and last.startswith("Error opening")
    ):
        return f"{clean[-2].rstrip('.')}: {last.rpartition(': ')[2]}"
    return last


def run(
    argv: Sequence[str],
    *,
    progress: Callable[[float], None] | None = None,
    duration: float | None = None,
    stdin: Iterable[bytes] | None = None,
) -> None:
    """Run ffmpeg with ``argv`` (everything after the program name).

    With ``progress`` and ``duration`` (seconds of output expected), ffmpeg's
    ``-progress`` reports are turned into calls ``progress(fraction)`` with a fraction
    in 0..1, ending with 1.0 on success. With ``stdin``, its blocks are written to
    ffmpeg's standard input (``-i pipe:0``) from a thread, as ffmpeg takes them, so a
    stream of any length passes with flat memory; an exception raised by the iterable
    stops ffmpeg and is raised here. Raises FFmpegError(last stderr line).
    """
    cmd = [ffmpeg_exe(), *_COMMON]
    report = progress is not None and duration is not None and duration > 0
    if report:
        cmd += ["-progress", "pipe:1", "-nostats"]
    cmd += list(argv)
    _run(cmd, stdin=stdin, progress=progress if report else None, duration=duration)
    if report:
        assert progress is not None
        progress(1.0)


def _run(
    cmd: list[str],
    *,
    stdin: Iterable[bytes] | None = None,
    progress: Callable[[float], None] | None = None,
    duration: float | None = None,
    keep: int = 20,
) -> list[str]:
    """Run the whole command line ``cmd``: ``stdin`` fed from a thread, ``-progress``
    reports on stdout turned into ``progress(fraction)`` when ``progress`` is given;
    return the last ``keep`` lines of stderr. Raises FFmpegError(last stderr line)."""
    log.debug("ffmpeg: %s", shlex.join(cmd))
    tail: collections.deque[bytes] = collections.deque(maxlen=keep)
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if progress is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except OSError as e:
        raise FFmpegError(f"cannot start ffmpeg: {e}") from e
    threads = [threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)]
    feed_error: list[BaseException] = []
    if stdin is not None:
        threads.append(threading.Thread(target=_feed, args=(proc, stdin, feed_error), daemon=True))
    for t in threads:
        t.start()
    try:
        if progress is not None:
            assert proc.stdout is not None and duration is not None
            for raw in proc.stdout:
                key, _, value = raw.decode("ascii", "replace").strip().partition("=")
                if key == "out_time_us" and value.lstrip("-").isdigit():
                    progress(min(1.0, max(0.0, int(value) / 1e6 / duration)))
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        for t in threads:
            t.join()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if feed_error:
        raise feed_error[0]
    lines = [b.decode("utf-8", "replace") for b in tail]
    if rc != 0:
        raise FFmpegError(f"ffmpeg failed: {_last_line(lines) or f'exit status {rc}'}")
    return lines


def _drain(stream: IO[bytes] | None, tail: collections.deque[bytes]) -> None:
    if stream is not None:
        tail.extend(stream)


def _feed(
    proc: subprocess.Popen[bytes], blocks: Iterable[bytes], errors: list[BaseException]
) -> None:
    assert proc.stdin is not None
    try:
        for block in blocks:
            proc.stdin.write(block)
    except (BrokenPipeError, ConnectionResetError):
        pass  # ffmpeg stopped reading: its exit status tells why
    except BaseException as e:  # noqa: BLE001 - the producer failed: stop ffmpeg, report it
        errors.append(e)
        proc.kill()
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        close = getattr(blocks, "close", None)
        if close is not None:
            close()


def decode_pcm(
    path: str | os.PathLike[str], sample_rate: int, block_size: int = 1 << 16
) -> Generator[bytes, None, None]:
    """Decode any audio file ffmpeg reads into PCM s16le mono at ``sample_rate``,
    yielded block by block (the file is never held whole). Closing the iterator early
    stops ffmpeg."""
    cmd = [
        ffmpeg_exe(),
        *_COMMON,
        "-i",
        path_arg(path),
        "-vn",
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        str(sample_rate),
        "-f",
        "s16le",
        "pipe:1",
    ]
    log.debug("ffmpeg: %s", shlex.join(cmd))
    tail: collections.deque[bytes] = collections.deque(maxlen=20)
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as e:
        raise FFmpegError(f"cannot start ffmpeg: {e}") from e
    drain = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    drain.start()
    assert proc.stdout is not None
    finished = False
    try:
        while block := proc.stdout.read(block_size):
            yield block
        finished = True
    finally:
        if not finished:
            proc.kill()
        rc = proc.wait()
        drain.join()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    if rc != 0:
        lines = (b.decode("utf-8", "replace") for b in tail)
        raise FFmpegError(f"ffmpeg failed: {_last_line(lines) or f'exit status {rc}'}")


def pipe(argv: Sequence[str], data: bytes) -> bytes:
    """Run ffmpeg with ``data`` on stdin and return what it writes to stdout
    (for short clips only: everything is held in memory)."""
    cmd = [ffmpeg_exe(), *_COMMON, *argv]
    log.debug("ffmpeg: %s", shlex.join(cmd))
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, check=False)
    except OSError as e:
        raise FFmpegError(f"cannot start ffmpeg: {e}") from e
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").splitlines()
        raise FFmpegError(f"ffmpeg failed: {_last_line(err) or f'exit status {proc.returncode}'}")
    return proc.stdout


# --- pure builders ----------------------------------------------------------------------


def _escape_meta(value: str) -> str:
    """Escape a value for an FFMETADATA file: ``= ; # \\`` and newlines get a backslash."""
    out = []
    for ch in value:
        if ch in "=;#\\\n":
            out.append("\\")
        out.append(ch)
    return "".join(out).replace("\r", "")


def ffmetadata(
    title: str | None,
    tags: Mapping[str, str],
    chapters: Sequence[tuple[str, int, int]],
) -> str:
    """An FFMETADATA1 file: global tags, then one ``[CHAPTER]`` per (title, start_ms,
    end_ms), in milliseconds (``TIMEBASE=1/1000``)."""
    lines = [";FFMETADATA1"]
    all_tags = dict(tags)
    if title is not None:
        all_tags = {"title": title, **{k: v for k, v in tags.items() if k != "title"}}
    for key, value in all_tags.items():
        lines.append(f"{_escape_meta(key)}={_escape_meta(value)}")
    for ch_title, start, end in chapters:
        lines += [
            "",
            "[CHAPTER]",
            "TIMEBASE=1/1000",
            f"START={int(start)}",
            f"END={int(end)}",
            f"title={_escape_meta(ch_title)}",
        ]
    return "\n".join(lines) + "\n"


def _quote_concat(s: str) -> str:
    """Quote for an ffconcat file: single quotes, with ``'`` written as ``'\\''``."""
    return "'" + s.replace("'", "'\\''") + "'"


def concat_spec(
    paths: Iterable[str | os.PathLike[str]],
    durations: Iterable[float | None] | None = None,
) -> str:
    """An ffconcat list of ``paths`` (absolute, so the list may live anywhere), with an
    optional ``duration`` directive per file (seconds) that spares ffmpeg probing it."""
    out = ["ffconcat version 1.0\n"]
    durs = iter(durations) if durations is not None else None
    for p in paths:
        out.append(f"file {_quote_concat(path_arg(os.path.abspath(p)))}\n")
        if durs is not None:
            d = next(durs, None)
            if d is not None:
                out.append(f"duration {d:.6f}\n")
    return "".join(out)


# --- encoding short clips (the Polly emulator's output formats) --------------------------

_PCM_FORMATS: dict[str, list[str]] = {
    "mp3": [
        "-c:a",
        "libmp3lame",
        "-b:a",
        "48k",
        "-write_xing",
        "0",
        "-id3v2_version",
        "0",
        "-write_id3v1",
        "0",
        "-f",
        "mp3",
    ],
    "ogg_vorbis": ["-c:a", "libvorbis", "-q:a", "3", "-f", "ogg"],
    "ogg_opus": ["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
    "pcm": ["-c:a", "pcm_s16le", "-f", "s16le"],
}
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def encode_pcm(pcm: bytes, sample_rate: int, fmt: str, dest_sample_rate: int) -> bytes:
    """Encode PCM s16le mono at ``sample_rate`` into ``fmt`` (mp3, ogg_vorbis, ogg_opus,
    pcm = raw s16le mono) at ``dest_sample_rate``; returns the encoded bytes."""
    if fmt not in _PCM_FORMATS:
        choices = ", ".join(_PCM_FORMATS)
        raise ConfigError(f"unknown audio format {fmt!r} (expected one of {choices})")
    if dest_sample_rate <= 0 or sample_rate <= 0:
        raise ConfigError(f"bad sample rate {dest_sample_rate}")
    if fmt == "ogg_opus" and dest_sample_rate not in _OPUS_RATES:
        raise ConfigError(f"Opus cannot encode at {dest_sample_rate} Hz")
    if fmt == "pcm" and dest_sample_rate == sample_rate:
        return bytes(pcm)
    argv = [
        *pcm_input(sample_rate),
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-ar",
        str(dest_sample_rate),
        "-ac",
        "1",
        *_PCM_FORMATS[fmt],
        "pipe:1",
    ]
    return pipe(argv, pcm)


# --- measuring loudness -------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """What ffmpeg measured of a stream: integrated loudness (LUFS, EBU R 128), RMS and
    sample peak (dBFS) of the whole stream. Silence measures as -inf."""

    integrated: float
    rms: float
    peak: float


_LEVEL_LINES = {
    "integrated": re.compile(r"^\s*I:\s*(-?[\d.]+|-?inf|nan)\s*LUFS", re.IGNORECASE),
    "rms": re.compile(r"mean_volume:\s*(-?[\d.]+|-?inf|nan)\s*dB", re.IGNORECASE),
    "peak": re.compile(r"max_volume:\s*(-?[\d.]+|-?inf|nan)\s*dB", re.IGNORECASE),
}


def parse_levels(lines: Iterable[str]) -> Level:
    """The summary lines of the ``ebur128`` and ``volumedetect`` filters as a ``Level``;
    the last value of each wins (the summary follows any running log)."""
    found: dict[str, float] = {}
    for line in lines:
        for key, pattern in _LEVEL_LINES.items():
            m = pattern.search(line)
            if m:
                value = float(m.group(1))
                found[key] = -math.inf if math.isnan(value) else value
    missing = [k for k in _LEVEL_LINES if k not in found]
    if missing:
        raise FFmpegError(f"ffmpeg measured no {', '.join(missing)} level")
    return Level(found["integrated"], found["rms"], found["peak"])


def measure(stdin: Iterable[bytes], sample_rate: int, filters: str = "") -> Level:
    """Loudness, RMS and peak of PCM s16le mono at ``sample_rate`` streamed from
    ``stdin`` (flat memory), after the filter chain ``filters`` (e.g. the gain and
    limiter a chapter will be encoded with). One ffmpeg, no output written."""
    # volumedetect: RMS (mean_volume) and sample peak (max_volume) from a histogram,
    # a third of what astats costs.
    chain = (filters + "," if filters else "") + "ebur128=framelog=quiet,volumedetect"
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "info",
        *pcm_input(sample_rate),
        "-af",
        chain,
        "-f",
        "null",
        "-",
    ]
    return parse_levels(_run(cmd, stdin=stdin, keep=400))
