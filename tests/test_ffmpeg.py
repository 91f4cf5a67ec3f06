"""The ffmpeg seam: pure builders checked as golden strings, then real ffmpeg runs."""

from __future__ import annotations

import io
import math
import struct

import av
import pytest

from audiobook import ffmpeg
from audiobook.errors import ConfigError, FFmpegError


def test_ffmetadata_golden():
    text = ffmpeg.ffmetadata(
        "A = B; #1",
        {"artist": "Ann\\Bob", "genre": "Audiobook"},
        [("One\nTwo", 0, 1500), ("Three", 1500, 4000)],
    )
    assert text == (
        ";FFMETADATA1\n"
        "title=A \\= B\\; \\#1\n"
        "artist=Ann\\\\Bob\n"
        "genre=Audiobook\n"
        "\n"
        "[CHAPTER]\n"
        "TIMEBASE=1/1000\n"
        "START=0\n"
        "END=1500\n"
        "title=One\\\nTwo\n"
        "\n"
        "[CHAPTER]\n"
        "TIMEBASE=1/1000\n"
        "START=1500\n"
        "END=4000\n"
        "title=Three\n"
    )


def test_ffmetadata_without_title_or_chapters():
    assert ffmpeg.ffmetadata(None, {"album": "X"}, []) == ";FFMETADATA1\nalbum=X\n"


def test_concat_spec_golden(tmp_path):
    a = tmp_path / "it's.wav"
    b = tmp_path / "-y.wav"
    spec = ffmpeg.concat_spec([a, b], durations=[1.5, None])
    assert spec == (
        "ffconcat version 1.0\n"
        f"file 'file:{tmp_path}/it'\\''s.wav'\n"
        "duration 1.500000\n"
        f"file 'file:{tmp_path}/-y.wav'\n"
    )


def test_path_arg():
    assert ffmpeg.path_arg("-") == "-"
    assert ffmpeg.path_arg("pipe:1") == "pipe:1"
    assert ffmpeg.path_arg("http://x") == "file:http://x"
    assert ffmpeg.path_arg("-i.wav") == "file:-i.wav"


def _tone(seconds: float, rate: int = 22050) -> bytes:
    n = int(seconds * rate)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(i * 0.05)) for i in range(n)))


@pytest.mark.ffmpeg
@pytest.mark.parametrize(
    ("fmt", "rate", "codec"),
    [
        ("mp3", 22050, "mp3"),
        ("mp3", 24000, "mp3"),
        ("ogg_vorbis", 22050, "vorbis"),
        ("ogg_opus", 48000, "opus"),
    ],
)
def test_encode_pcm_decodes_back(fmt, rate, codec):
    data = ffmpeg.encode_pcm(_tone(1.0), 22050, fmt, rate)
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        assert stream.codec_context.name.startswith(codec)
        assert stream.rate == rate
        samples = sum(f.samples for f in c.decode(stream))
    assert abs(samples / rate - 1.0) < 0.1


@pytest.mark.ffmpeg
def test_encode_pcm_resamples_raw_pcm():
    out = ffmpeg.encode_pcm(_tone(1.0), 22050, "pcm", 16000)
    assert abs(len(out) / 2 - 16000) < 50
    same = _tone(0.1)
    assert ffmpeg.encode_pcm(same, 22050, "pcm", 22050) == same


def test_encode_pcm_rejects_bad_format():
    with pytest.raises(ConfigError):
        ffmpeg.encode_pcm(b"", 22050, "flac", 22050)
    with pytest.raises(ConfigError):
        ffmpeg.encode_pcm(b"", 22050, "ogg_opus", 22050)


@pytest.mark.ffmpeg
def test_run_raises_with_last_stderr_line(tmp_path):
    with pytest.raises(FFmpegError) as err:
        ffmpeg.run(["-i", ffmpeg.path_arg(tmp_path / "missing.wav"), "-f", "null", "-"])
    assert "missing.wav" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.ffmpeg
def test_run_reports_progress(tmp_path):
    seen: list[float] = []
    out = tmp_path / "x.wav"
    ffmpeg.run(
        ["-f", "lavfi", "-i", "sine=frequency=440:duration=2", ffmpeg.path_arg(out)],
        progress=seen.append,
        duration=2.0,
    )
    assert out.stat().st_size > 0
    assert seen and seen[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in seen)
    assert seen == sorted(seen)


@pytest.mark.ffmpeg
def test_run_feeds_stdin_and_reports_a_failing_producer(tmp_path):
    out = tmp_path / "x.wav"
    ffmpeg.run(
        ["-f", "s16le", "-ar", "8000", "-ac", "1", "-i", "pipe:0", ffmpeg.path_arg(out)],
        stdin=iter([_tone(0.5, 8000), _tone(0.5, 8000)]),
    )
    with av.open(str(out)) as c:
        assert abs(c.duration / 1e6 - 1.0) < 0.01

    class Broken(Exception):
        pass

    def producer():
        yield _tone(0.1, 8000)
        raise Broken("piece vanished")

    with pytest.raises(Broken):
        ffmpeg.run(
            [
                "-f",
                "s16le",
                "-ar",
                "8000",
                "-ac",
                "1",
                "-i",
                "pipe:0",
                ffmpeg.path_arg(tmp_path / "y.wav"),
            ],
            stdin=producer(),
        )


@pytest.mark.ffmpeg
def test_decode_pcm_streams_any_format(tmp_path):
    mp3 = tmp_path / "a.mp3"
    mp3.write_bytes(ffmpeg.encode_pcm(_tone(1.0), 22050, "mp3", 22050))
    blocks = list(ffmpeg.decode_pcm(mp3, 16000, block_size=4096))
    assert all(len(b) <= 4096 for b in blocks)
    assert abs(sum(map(len, blocks)) / 2 / 16000 - 1.0) < 0.1
    gen = ffmpeg.decode_pcm(mp3, 16000)
    next(gen)
    gen.close()  # stops ffmpeg early without error
    with pytest.raises(FFmpegError):
        list(ffmpeg.decode_pcm(tmp_path / "missing.mp3", 16000))
