"""Delivery profiles, read back from the files by an independent meter.

The outputs are decoded by PyAV and measured with pyloudnorm (ITU-R BS.1770-4
integrated loudness) and numpy (RMS, sample peak, true peak by 4x oversampling, noise
floor, room tone); mutagen reads the MP3 headers. None of it is the code under test
(which measures with ffmpeg's ebur128 and volumedetect).

The novel is the corpus's Sherlock Holmes: its first three adventures, each cut to its
first 3,000 characters so that espeak-ng reads them in seconds.
"""

from __future__ import annotations

import dataclasses
import math
import wave
from pathlib import Path

import av
import mutagen.mp3
import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample_poly

from audiobook import ffmpeg, loudness
from audiobook.config import PROFILES
from audiobook.engines import espeak
from audiobook.errors import ConfigError
from audiobook.ingest import read_book
from audiobook.model import Book
from audiobook.options import ConvertOptions
from audiobook.pipeline import convert_book
from audiobook.stitch import ChapterAudio, stitch

NOVEL = ("epub", "gutenberg-1661-adventures-of-sherlock-holmes.epub")
CHARS_PER_CHAPTER = 3000


# --- the independent meter ---------------------------------------------------------------


def decode(path: Path) -> tuple[np.ndarray, int]:
    """Mono float samples in -1..1 and the rate, as PyAV decodes the file."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts = []
        for frame in c.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    return np.concatenate(parts).astype(np.float64), rate


def chapters_of(path: Path) -> list[tuple[float, float]]:
    with av.open(str(path)) as c:
        return [
            (float(ch["start"] * ch["time_base"]), float(ch["end"] * ch["time_base"]))
            for ch in c.chapters()
        ]


def db(x: float) -> float:
    return 20 * math.log10(x) if x > 0 else -math.inf


def lufs(x: np.ndarray, rate: int) -> float:
    return float(pyloudnorm.Meter(rate).integrated_loudness(x))


def rms_db(x: np.ndarray) -> float:
    return db(float(np.sqrt(np.mean(x**2))))


def peak_db(x: np.ndarray) -> float:
    return db(float(np.max(np.abs(x))))


def true_peak_db(x: np.ndarray) -> float:
    return db(float(np.max(np.abs(resample_poly(x, 4, 1)))))


def noise_floor_db(x: np.ndarray, rate: int) -> float:
    """ACX's noise floor: the RMS of the quietest half second."""
    n = rate // 2
    windows = [x[i : i + n] for i in range(0, len(x) - n, n // 2)]
    return min(rms_db(w) for w in windows)


def silence_at(x: np.ndarray, rate: int, *, end: bool = False) -> float:
    """Seconds before the first (or after the last) sample above -50 dBFS."""
    loud = np.flatnonzero(np.abs(x) > 10 ** (-50 / 20))
    if len(loud) == 0:
        return len(x) / rate
    return (len(x) - 1 - loud[-1]) / rate if end else loud[0] / rate


# --- the novel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def novel() -> Book:
    from tests.conftest import corpus_path

    book = read_book(corpus_path(*NOVEL))
    adventures = [c for c in book.chapters if c.title.startswith("ADVENTURE")][:3]
    cut = []
    for ch in adventures:
        blocks, size = [], 0
        for b in ch.blocks:
            blocks.append(b)
            size += len(b.text)
            if size >= CHARS_PER_CHAPTER:
                break
        cut.append(dataclasses.replace(ch, blocks=tuple(blocks), footnotes=()))
    return book.with_chapters(tuple(cut))


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")  # one cache: each profile reuses the pieces


def _convert(book: Book, out: Path, state: Path, **kw: object) -> list[Path]:
    result = convert_book(book, out, ConvertOptions(engine="espeak", **kw), state_dir=state)  # type: ignore[arg-type]
    return [Path(p) for p in result.outputs if Path(p).suffix != ".vtt"]


# --- profiles on the novel ----------------------------------------------------------------


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_default_m4b_has_one_loudness_chapter_by_chapter(novel, state, tmp_path):
    (out,) = _convert(novel, tmp_path / "novel.m4b", state)
    x, rate = decode(out)
    levels = [lufs(x[round(a * rate) : round(b * rate)], rate) for a, b in chapters_of(out)]
    assert len(levels) == 3
    target = PROFILES["default"].target
    for level in levels:
        assert abs(level - target) <= 1.0, levels
    assert max(levels) - min(levels) <= 1.0, levels


@pytest.mark.ffmpeg
@pytest.mark.corpus
@pytest.mark.parametrize("fmt", ["m4b", "mp3"])
def test_podcast_profile_is_minus_16_lufs_with_true_peak_under_minus_1(novel, state, tmp_path, fmt):
    (out,) = _convert(novel, tmp_path / f"novel.{fmt}", state, fmt=fmt, profile="podcast")
    x, rate = decode(out)
    for a, b in chapters_of(out):
        ch = x[round(a * rate) : round(b * rate)]
        assert abs(lufs(ch, rate) - -16.0) <= 1.0, (a, lufs(ch, rate))
        assert true_peak_db(ch) <= -1.0, (a, true_peak_db(ch))
    assert abs(lufs(x, rate) - -16.0) <= 1.0
    assert true_peak_db(x) <= -1.0


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_acx_profile_meets_acx_chapter_by_chapter(novel, state, tmp_path):
    files = _convert(novel, tmp_path / "novel", state, fmt="chapters", profile="acx")
    assert [f.suffix for f in files] == [".mp3"] * 3  # one file per chapter
    for f in files:
        info = mutagen.mp3.MP3(f).info
        assert info.sample_rate == 44100
        assert info.bitrate == 192000
        assert info.bitrate_mode != mutagen.mp3.BitrateMode.VBR
        assert info.length <= 120 * 60
        x, rate = decode(f)
        assert rate == 44100
        assert -23.0 <= rms_db(x) <= -18.0, (f.name, rms_db(x))
        assert peak_db(x) <= -3.0, (f.name, peak_db(x))
        assert noise_floor_db(x, rate) <= -60.0, (f.name, noise_floor_db(x, rate))
        assert 0.5 <= silence_at(x, rate) <= 1.0, (f.name, silence_at(x, rate))
        assert 1.0 <= silence_at(x, rate, end=True) <= 5.0, (f.name, silence_at(x, rate, end=True))


def test_acx_needs_the_chapters_format(novel, tmp_path):
    with pytest.raises(ConfigError, match="acx writes --format chapters"):
        convert_book(novel, tmp_path / "n.m4b", ConvertOptions(profile="acx"), state_dir=tmp_path)
    with pytest.raises(ConfigError, match="no such profile"):
        convert_book(novel, tmp_path / "n.m4b", ConvertOptions(profile="loud"), state_dir=tmp_path)


# --- two voices, one level ------------------------------------------------------------------


def _speech(path: Path, text: str, voice: str, gain_db: float = 0.0) -> Path:
    pcm, rate = espeak.synthesize(text, voice, ssml=False)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) * 10 ** (gain_db / 20)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())
    return path


@pytest.mark.ffmpeg
def test_pieces_of_two_voices_and_levels_do_not_jump(tmp_path):
    """A book mixed from cached pieces of two voices, one of them 12 dB quieter and
    MP3 (as another engine makes them), comes out at one loudness."""
    text = (
        "The lamp was lit, and the room grew warm. She read the letter twice, then "
        "folded it and laid it on the table beside the cold tea. "
    ) * 6
    loud = _speech(tmp_path / "loud.wav", text, "en-us")
    quiet_wav = _speech(tmp_path / "quiet.wav", text, "en-gb+f3", gain_db=-12.0)
    quiet = tmp_path / "quiet.mp3"
    ffmpeg.run(["-i", ffmpeg.path_arg(quiet_wav), "-c:a", "libmp3lame", ffmpeg.path_arg(quiet)])
    chapters = [
        ChapterAudio("One", (loud,)),
        ChapterAudio("Two", (quiet,)),
        ChapterAudio("Three", (loud, quiet)),
    ]
    book = Book(title="Mixed", chapters=())
    out = tmp_path / "mixed.m4b"
    raw = stitch(book, chapters, tmp_path / "raw.m4b")
    stitch(book, chapters, out, profile=PROFILES["default"])
    x, rate = decode(tmp_path / "raw.m4b")
    before = [lufs(x[round(a * rate) : round(b * rate)], rate) for _t, a, b in raw.chapters]
    assert before[0] - before[1] > 10  # the pieces really differ
    x, rate = decode(out)
    after = [lufs(x[round(a * rate) : round(b * rate)], rate) for a, b in chapters_of(out)]
    assert max(after) - min(after) <= 1.0, after
    assert all(abs(a - PROFILES["default"].target) <= 1.0 for a in after), after


@pytest.mark.ffmpeg
def test_normalising_keeps_every_sample_in_place(tmp_path):
    """Gain and limiter add no delay: the normalised book is as long as the raw one
    and its chapter marks sit on the same samples."""
    text = "One two three four five six seven eight nine ten. " * 8
    a = _speech(tmp_path / "a.wav", text, "en-us")
    b = _speech(tmp_path / "b.wav", text, "en-us", gain_db=-9.0)
    chapters = [ChapterAudio("A", (a,)), ChapterAudio("B", (b, a))]
    book = Book(title="Same", chapters=())
    raw = stitch(book, chapters, tmp_path / "raw.mp3", "mp3")
    norm = stitch(book, chapters, tmp_path / "norm.mp3", "mp3", profile=PROFILES["podcast"])
    assert norm.chapters == raw.chapters
    assert norm.duration == raw.duration
    xr, _rate = decode(tmp_path / "raw.mp3")
    xn, _ = decode(tmp_path / "norm.mp3")
    assert len(xr) == len(xn)


def test_an_acx_chapter_over_two_hours_is_refused(tmp_path):
    long = tmp_path / "long.wav"
    with wave.open(str(long), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
    with open(long, "r+b") as f:  # 121 minutes of (sparse) silence after the header
        f.truncate(f.seek(0, 2) + 121 * 60 * 8000 * 2)
    short = _speech(tmp_path / "s.wav", "Hello.", "en")
    book = Book(title="Long", chapters=())
    out = tmp_path / "acx"
    with pytest.raises(ConfigError, match=r"chapter 2 \(Two\) is 121 minutes long"):
        stitch(
            book,
            [ChapterAudio("One", (short,)), ChapterAudio("Two", (long,))],
            out,
            "chapters",
            profile=PROFILES["acx"],
        )
    assert not out.exists()


# --- the decisions, pure --------------------------------------------------------------------


def test_gain_brings_the_measured_level_to_the_target():
    podcast, acx = PROFILES["podcast"], PROFILES["acx"]
    level = ffmpeg.Level(integrated=-21.0, rms=-23.0, peak=-6.0)
    assert loudness.first_gain(level, podcast) == pytest.approx(5.0)
    assert loudness.first_gain(level, acx) == pytest.approx(2.5)
    assert loudness.limiting(level, 5.0, podcast) == pytest.approx(2.0)
    silent = ffmpeg.Level(integrated=-70.0, rms=-math.inf, peak=-math.inf)
    assert loudness.first_gain(silent, podcast) == 0.0
    assert loudness.limiting(silent, 5.0, podcast) == 0.0


def test_volume_expression_changes_gain_at_each_chapter():
    assert loudness.volume_expression([0.0], [3.0]) == "volume=3.00dB"
    assert loudness.volume_expression([0.0, 5.0, 9.0], [3.0, 3.0, 3.0]) == "volume=3.00dB"
    expr = loudness.volume_expression([0.0, 10.0, 25.5], [0.0, 6.0, -6.0])
    assert expr == (
        "volume=eval=frame:volume='if(lt(t\\,10.000000)\\,1.000000\\,"
        "if(lt(t\\,25.500000)\\,1.995262\\,0.501187))'"
    )


def test_levels_are_parsed_from_ffmpegs_summary():
    lines = [
        "[Parsed_ebur128_0 @ 0x1] Summary:",
        "  Integrated loudness:",
        "    I:         -21.0 LUFS",
        "    Threshold: -31.1 LUFS",
        "[Parsed_volumedetect_1 @ 0x2] n_samples: 0",
        "[Parsed_volumedetect_1 @ 0x2] mean_volume: -inf dB",
        "[Parsed_volumedetect_1 @ 0x2] max_volume: -1.8 dB",
    ]
    assert ffmpeg.parse_levels(lines) == ffmpeg.Level(-21.0, -math.inf, -1.8)
    with pytest.raises(Exception, match="measured no"):
        ffmpeg.parse_levels(lines[:3])


def test_captions_follow_the_room_tone_before_each_chapter(tmp_path):
    from audiobook.captions import write_captions

    piece = _speech(tmp_path / "p.wav", "Hello there. Good day.", "en")
    marks = tmp_path / "p.marks"
    marks.write_text('{"time":0,"type":"sentence","start":7,"end":19,"value":"Hello there."}\n')
    out = tmp_path / "book"
    out.mkdir()
    files = [out / "001 - One.mp3"]
    (plain,) = write_captions([[piece]], [[marks]], files, out, "chapters")
    first = plain.read_text()
    (acx,) = write_captions([[piece]], [[marks]], files, out, "chapters", 0.75)
    assert "00:00:00.000 -->" in first
    assert "00:00:00.750 -->" in acx.read_text()


@pytest.mark.ffmpeg
def test_cli_acx_profile_writes_mp3_chapters_without_format(tmp_path):
    from click.testing import CliRunner

    from audiobook.cli import cli

    books = tmp_path / "books"
    books.mkdir()
    (books / "tale.md").write_text(
        "# One\n\nThe fox ran far away.\n\n# Two\n\nThe hare slept all day.\n", encoding="utf-8"
    )
    state = str(tmp_path / "state")
    r = CliRunner().invoke(
        cli,
        [
            "batch",
            str(books),
            "-o",
            str(tmp_path / "out"),
            "--profile",
            "acx",
            "--state-dir",
            state,
        ],
    )
    assert r.exit_code == 0, r.output
    folder = tmp_path / "out" / "tale"
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert files and all(name.endswith(".mp3") for name in files), files
    r = CliRunner().invoke(
        cli,
        [
            "convert",
            str(books / "tale.md"),
            "--profile",
            "acx",
            "--format",
            "m4b",
            "--state-dir",
            state,
        ],
    )
    assert r.exit_code == 2
    assert "--profile acx writes --format chapters, not m4b" in r.output
