"""Stitching pieces into M4B / MP3 / per-chapter files, read back by mutagen and PyAV."""

from __future__ import annotations

import array
import importlib
import itertools
import os
from pathlib import Path

import av
import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4

from audiobook import ffmpeg
from audiobook.audio import tone_pcm, wav_bytes
from audiobook.errors import ConfigError, FFmpegError, InputError
from audiobook.model import Book, Chapter, Cover
from audiobook.outputs import MANIFEST
from audiobook.stitch import ChapterAudio, StitchResult, chapter_filename, stitch

# The module, not the function the package re-exports under the same name.
stitch_mod = importlib.import_module("audiobook.stitch")
RATE = 22050


def _png(tmp_path: Path) -> bytes:
    path = tmp_path / "cover.png"
    ffmpeg.run(
        [
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=32x32",
            "-frames:v",
            "1",
            "-f",
            "image2",
            ffmpeg.path_arg(path),
        ]
    )
    return path.read_bytes()


def _book(chapters, cover: Cover | None = None) -> Book:
    return Book(
        title="The Test Book",
        chapters=tuple(Chapter(c.title) for c in chapters),
        authors=("Ann Author", "Bob Writer"),
        language="en-US",
        date="1867",
        cover=cover,
    )


def _pieces(
    tmp_path: Path,
    lengths: list[list[float]],
    titles: list[str] | None = None,
    rate: int = RATE,
    pause: float = 0.0,
) -> list[ChapterAudio]:
    """Tone pieces of the given lengths (seconds), the last ``pause`` of each silent,
    as speech pieces end in a pause."""
    chapters = []
    for i, lens in enumerate(lengths):
        paths = []
        for j, seconds in enumerate(lens):
            p = tmp_path / f"c{i}-{j}.wav"
            tone = tone_pcm(seconds - pause, rate, 200 + 60 * i + 20 * j)
            silence = bytes(2 * (round(seconds * rate) - len(tone) // 2))
            p.write_bytes(wav_bytes(tone + silence, rate))
            paths.append(p)
        title = titles[i] if titles else f"Chapter {i + 1}"
        chapters.append(ChapterAudio(title, tuple(paths)))
    return chapters


def _expected_starts(lengths: list[list[float]], rate: int = RATE) -> list[float]:
    starts, pos = [], 0
    for lens in lengths:
        starts.append(pos / rate)
        pos += sum(round(s * rate) for s in lens)
    return starts


def _check_times(result: StitchResult, lengths: list[list[float]]) -> None:
    starts = [c[1] for c in result.chapters]
    assert starts == pytest.approx(_expected_starts(lengths), abs=1e-9)
    ends = [c[2] for c in result.chapters]
    assert ends[:-1] == starts[1:]
    assert result.duration == pytest.approx(sum(map(sum, lengths)), abs=1e-3)


def _pyav_chapters(path: Path) -> list[tuple[str, float, float]]:
    with av.open(str(path)) as c:
        return [
            (
                ch["metadata"].get("title", ""),
                float(ch["start"] * ch["time_base"]),
                float(ch["end"] * ch["time_base"]),
            )
            for ch in c.chapters()
        ]


def _decoded(path: Path) -> array.array:
    """Decoded mono samples as floats (no numpy)."""
    out = array.array("f")
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        for frame in c.decode(stream):
            assert frame.format.name == "fltp"
            out.frombytes(bytes(frame.planes[0])[: frame.samples * 4])
    return out


LENGTHS = [[1.3, 0.77], [2.01, 0.5], [0.33, 1.1]]
TITLES = ["Prologue: it's = #1", 'Chapter/One? "Yes"', "Épilogue 終わり"]


@pytest.mark.ffmpeg
def test_m4b_chapters_tags_cover_and_duration(tmp_path):
    chapters = _pieces(tmp_path, LENGTHS, TITLES)
    book = _book(chapters, Cover(_png(tmp_path), "image/png"))
    seen: list[float] = []
    out = tmp_path / "book.m4b"
    result = stitch(book, chapters, out, "m4b", on_progress=seen.append)
    assert result.outputs == (out,)
    _check_times(result, LENGTHS)
    assert seen[-1] == 1.0 and seen == sorted(seen) and all(0 <= f <= 1 for f in seen)

    mp4 = MP4(out)
    marks = list(mp4.chapters)
    assert [m.title for m in marks] == TITLES
    assert [m.start for m in marks] == pytest.approx(_expected_starts(LENGTHS), abs=0.002)
    tags = mp4.tags
    assert tags["\xa9nam"] == ["The Test Book"] and tags["\xa9alb"] == ["The Test Book"]
    assert tags["\xa9ART"] == ["Ann Author, Bob Writer"]
    assert tags["aART"] == ["Ann Author, Bob Writer"]
    assert tags["\xa9gen"] == ["Audiobook"] and tags["\xa9day"] == ["1867"]
    assert tags["covr"][0] == book.cover.data  # type: ignore[union-attr]

    with av.open(str(out)) as c:
        assert abs(c.duration / 1e6 - sum(map(sum, LENGTHS))) < 0.5
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].language == "eng"
    read = _pyav_chapters(out)
    assert [r[0] for r in read] == TITLES
    assert all(a[2] <= b[1] + 1e-6 and a[1] < b[1] for a, b in itertools.pairwise(read))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.ffmpeg
def test_m4b_parallel_parts_join_exactly(tmp_path, monkeypatch):
    """Cut into parts encoded at once, the book has the length, chapter marks and audio
    of a single encode: no priming gap or drift at the joins."""
    monkeypatch.setattr(stitch_mod, "MIN_PART_SECONDS", 1.0)
    lengths = [[0.41 + 0.013 * i, 0.6] for i in range(40)]
    chapters = _pieces(tmp_path, lengths, pause=0.3)
    book = _book(chapters)
    total = round(sum(map(sum, lengths)) * RATE)
    assert len(stitch_mod._plan_parts(total, RATE, 3)) - 1 == 3
    one = stitch(book, chapters, tmp_path / "one.m4b", workers=1)
    three = stitch(book, chapters, tmp_path / "three.m4b", workers=3)
    assert one.chapters == three.chapters
    _check_times(three, lengths)
    assert [m.start for m in MP4(tmp_path / "one.m4b").chapters] == [
        m.start for m in MP4(tmp_path / "three.m4b").chapters
    ]
    a, b = _decoded(tmp_path / "one.m4b"), _decoded(tmp_path / "three.m4b")
    assert len(a) == len(b)
    assert abs(len(b) / RATE - sum(map(sum, lengths))) < 0.05  # not 2 x 2048 samples more
    # The cuts fall in pauses, where the two encodes agree (to coding noise).
    ideal = stitch_mod._plan_parts(total, RATE, 3)
    timeline = stitch_mod._timeline(chapters, 1)
    cuts = stitch_mod._refine_cuts(timeline, ideal)
    assert cuts != ideal and len(cuts) == 4 and all(c % 1024 == 0 for c in cuts[1:-1])
    for cut in cuts[1:-1]:
        assert max(abs(a[i]) for i in range(cut - 4096, cut + 2048)) < 0.01
    assert max(abs(x - y) for x, y in zip(a, b)) < 0.1


def test_quietest_cut_prefers_a_pause_near_the_ideal():
    loud, quiet = 20000, 0
    peaks = [loud] * 10 + [quiet] * 8 + [loud] * 10 + [quiet] * 8 + [loud] * 10
    # Two pauses; the one nearer the ideal frame (first_frame + 30) wins.
    cut = stitch_mod.quietest_cut(peaks, 100, 130)
    assert 100 + 28 + stitch_mod.QUIET_BEFORE <= cut <= 100 + 36 - stitch_mod.QUIET_AFTER
    assert stitch_mod.quietest_cut([loud] * 20, 0, 7) == 7  # no pause: the ideal
    assert stitch_mod.frame_peaks(bytes(4096) + b"\x10\x00" * 1024) == [0, 0, 16]


def test_plan_parts_cuts_on_frames():
    assert stitch_mod._plan_parts(1000, RATE, 4) == [0, 1000]  # too short to split
    total = 10 * 60 * RATE + 123
    cuts = stitch_mod._plan_parts(total, RATE, 2)
    assert cuts[0] == 0 and cuts[-1] == total and len(cuts) == 3
    assert cuts[1] % 1024 == 0 and abs(cuts[1] - total / 2) <= 512


@pytest.mark.ffmpeg
def test_mp3_with_id3_chapter_frames_and_cover(tmp_path):
    chapters = _pieces(tmp_path, LENGTHS, TITLES)
    book = _book(chapters, Cover(_png(tmp_path), "image/png"))
    out = tmp_path / "book.mp3"
    result = stitch(book, chapters, out, "mp3")
    _check_times(result, LENGTHS)
    id3 = ID3(out)
    chaps = sorted(id3.getall("CHAP"), key=lambda f: f.start_time)
    assert [str(f.sub_frames["TIT2"]) for f in chaps] == TITLES
    expected_ms = [round(s * 1000) for s in _expected_starts(LENGTHS)]
    assert [f.start_time for f in chaps] == expected_ms
    assert [f.end_time for f in chaps[:-1]] == [f.start_time for f in chaps[1:]]
    toc = id3.getall("CTOC")
    assert toc and list(toc[0].child_element_ids) == [f.element_id for f in chaps]
    assert str(id3["TIT2"]) == "The Test Book" and str(id3["TALB"]) == "The Test Book"
    assert str(id3["TPE1"]) == "Ann Author, Bob Writer" and str(id3["TCON"]) == "Audiobook"
    apic = id3.getall("APIC")
    assert book.cover is not None
    assert apic and apic[0].data == book.cover.data and apic[0].type == 3  # front cover
    assert abs(MP3(out).info.length - sum(map(sum, LENGTHS))) < 0.5
    with av.open(str(out)) as c:
        assert abs(c.duration / 1e6 - sum(map(sum, LENGTHS))) < 0.5


@pytest.mark.ffmpeg
def test_chapters_format_writes_numbered_tagged_files(tmp_path):
    chapters = _pieces(tmp_path, LENGTHS, TITLES)
    book = _book(chapters, Cover(_png(tmp_path), "image/png"))
    result = stitch(book, chapters, tmp_path / "book.m4b", "chapters", workers=2)
    folder = tmp_path / "book"
    assert [p.name for p in result.outputs] == [
        "001 - Prologue it's = #1.m4b",
        "002 - Chapter One Yes.m4b",
        "003 - Épilogue 終わり.m4b",
    ]
    assert sorted(p for p in folder.iterdir() if p.name != MANIFEST) == list(result.outputs)
    _check_times(result, LENGTHS)
    for i, (path, lens) in enumerate(zip(result.outputs, LENGTHS)):
        tags = MP4(path).tags
        assert tags["trkn"] == [(i + 1, 3)]
        assert tags["\xa9nam"] == [TITLES[i]]
        assert tags["\xa9alb"] == ["The Test Book"]
        assert tags["\xa9ART"] == ["Ann Author, Bob Writer"]
        assert "covr" in tags
        with av.open(str(path)) as c:
            assert abs(c.duration / 1e6 - sum(lens)) < 0.05
    # Again, over the existing folder: our files replaced (the third one, no longer
    # written, removed); a file we did not write is left alone (issue 19, item 1).
    (folder / "stray.txt").write_text("old")
    stitch(book, chapters[:2], folder, "chapters")
    assert sorted(p.name for p in folder.iterdir() if p.name != MANIFEST) == [
        *(p.name for p in result.outputs[:2]),
        "stray.txt",
    ]
    assert (folder / "stray.txt").read_text() == "old"


def test_chapter_filename_is_safe_and_sorted():
    assert chapter_filename(1, 3, "A/B: c?") == "001 - A B c.m4b"
    assert chapter_filename(12, 1500, "x") == "0012 - x.m4b"
    assert chapter_filename(2, 3, "  ...  ") == "002.m4b"
    assert chapter_filename(3, 3, "..\\..\\etc\\passwd") == "003 - etc passwd.m4b"
    long = chapter_filename(4, 9, "é" * 300)
    assert len(long.encode()) < 200
    assert "\n" not in chapter_filename(5, 9, "two\nlines\x00")


@pytest.mark.ffmpeg
def test_failure_leaves_previous_output_and_no_temp_files(tmp_path):
    chapters = _pieces(tmp_path, LENGTHS)
    out = tmp_path / "book.m4b"
    out.write_bytes(b"previous book")
    before = set(tmp_path.iterdir())
    bad = _book(chapters, Cover(b"\xff\xd8\xff this is no jpeg", "image/jpeg"))
    with pytest.raises(FFmpegError) as err:
        stitch(bad, chapters, out, "m4b")
    assert "\n" not in str(err.value)
    assert out.read_bytes() == b"previous book"
    assert set(tmp_path.iterdir()) == before


@pytest.mark.ffmpeg
def test_empty_chapter_gets_a_silent_mark_and_mp3_pieces_are_decoded(tmp_path):
    mp3_pieces = []
    for i, seconds in enumerate((1.0, 0.6)):
        p = tmp_path / f"p{i}.mp3"
        p.write_bytes(ffmpeg.encode_pcm(tone_pcm(seconds, 24000), 24000, "mp3", 24000))
        mp3_pieces.append(p)
    silent = tmp_path / "silent.wav"
    silent.write_bytes(wav_bytes(b"", 24000))  # a piece with no samples at all
    chapters = [
        ChapterAudio("One", (mp3_pieces[0],)),
        ChapterAudio("Empty", ()),
        ChapterAudio("Two", (mp3_pieces[1],)),
        ChapterAudio("Nothing", (silent,)),
    ]
    result = stitch(_book(chapters), chapters, tmp_path / "b.m4b")
    starts = [c[1] for c in result.chapters]
    assert starts[0] == 0 and starts[1] < starts[2] < starts[3] < result.duration
    assert starts[2] - starts[1] == pytest.approx(stitch_mod.EMPTY_CHAPTER_SECONDS)
    assert result.duration - starts[3] == pytest.approx(stitch_mod.EMPTY_CHAPTER_SECONDS)
    marks = MP4(tmp_path / "b.m4b").chapters
    assert [m.title for m in marks] == ["One", "Empty", "Two", "Nothing"]
    # mp3 frames round each piece up a little
    assert abs(result.duration - 1.6 - 2 * stitch_mod.EMPTY_CHAPTER_SECONDS) < 0.15


def test_bad_requests_are_one_line_errors(tmp_path):
    chapters = [ChapterAudio("x", (tmp_path / "missing.wav",))]
    book = _book(chapters)
    with pytest.raises(InputError) as err:
        stitch(book, chapters, tmp_path / "o.m4b")
    assert "missing.wav" in str(err.value)
    with pytest.raises(ConfigError):
        stitch(book, chapters, tmp_path / "o.ogg", "ogg")
    with pytest.raises(ConfigError):
        stitch(book, chapters, tmp_path / "nowhere" / "o.m4b")
    with pytest.raises(ConfigError):
        stitch(book, [], tmp_path / "o.m4b")
    assert not os.listdir(tmp_path)
