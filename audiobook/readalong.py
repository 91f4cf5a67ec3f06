"""The read-along EPUB 3: the book's text with an id on every sentence, one audio file
per chapter, and a SMIL 3.0 media overlay per content document that says when each
sentence (or word) is spoken, so a reading system highlights the text in step with
the voice (EPUB 3 Media Overlays).

    doc = chapter_document(book, i, sentences, duration, words=False)   (pure)
    write_epub(book, docs, [(audio_path, duration), ...], dest)       (the caller renames)

The text comes from the book's model (the chapters and their blocks as read from the
EPUB, PDF, HTML or Markdown source), the timings from the engine's speech marks
(``timings.py``). Each spoken sentence is found in the chapter's text by its letters
and digits, in order, so templates, escaping and whitespace do not matter; a sentence
that cannot be found (a title spoken but not printed) lends its time to the one before.

What carries over from the source: title, authors, language, publisher, date,
description, cover, the chapters in reading order with their titles and levels (the
navigation document). Footnotes are an ``aside epub:type="footnote"`` and their
sentences a ``seq epub:type="footnote"`` in the overlay, so players may skip them.
"""

from __future__ import annotations

import html
import re
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .model import Block, Book
from .timings import Sentence

ACTIVE_CLASS = "read-along-active"
CSS = f"""body {{ font-family: serif; line-height: 1.5; margin: 0 5%; }}
.{ACTIVE_CLASS} {{ background-color: #fff2a8; color: #000; }}
aside {{ font-size: 0.9em; border-top: 1px solid #888; margin-top: 2em; }}
"""
# Core media types of EPUB 3 images (a cover of another type is left out).
_IMAGE_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/svg+xml": "svg"}
_IMAGE_EXT["image/webp"] = "webp"
_W3CDTF = re.compile(r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)?)?")
_KEY = re.compile(r"\w+")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def clock(seconds: float) -> str:
    """A SMIL full clock value, ``H:MM:SS.mmm``."""
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h}:{m:02d}:{s:02d}.{ms:03d}"


@dataclass(frozen=True)
class Segment:
    """One element of a chapter's text: a heading, a paragraph, a footnote..."""

    tag: str  # h1..h6, p, blockquote, pre, li
    text: str
    note: bool = False  # a footnote


@dataclass(frozen=True)
class Clip:
    """A piece of the overlay: the element ``ref`` (an id in the document) is spoken
    from ``begin`` to ``end`` seconds of the chapter's audio."""

    ref: str
    begin: float
    end: float
    note: bool = False


@dataclass(frozen=True)
class ChapterDocument:
    """A chapter's XHTML body (with its ids) and the clips of its overlay."""

    title: str
    level: int
    body: str
    clips: tuple[Clip, ...]


def segments(book: Book, index: int) -> list[Segment]:
    """The chapter's text as elements: its title as a heading (unless its first block
    is that heading), its blocks, its footnotes."""
    ch = book.chapters[index]
    level = min(max(ch.level, 1), 5)
    out: list[Segment] = []
    blocks = [b for b in ch.blocks if b.text.strip()]
    title = ch.title.strip() or f"Chapter {index + 1}"
    if not (blocks and blocks[0].kind == "heading" and _key(blocks[0].text) == _key(title)):
        out.append(Segment(f"h{level}", title))
    for b in blocks:
        out.append(_segment(b, level))
    out += [Segment("p", n.text, note=True) for n in ch.footnotes if n.text.strip()]
    if not out:
        out.append(Segment(f"h{level}", title))
    return out


def _segment(b: Block, level: int) -> Segment:
    tag = {"heading": f"h{min(level + 1, 6)}", "quote": "blockquote", "code": "pre"}
    return Segment(tag.get(b.kind, "p"), b.text)


def _key(text: str) -> str:
    return "".join(_KEY.findall(text.lower()))


def _locate(segs: Sequence[Segment], texts: Sequence[str]) -> list[tuple[int, int, int] | None]:
    """Where each spoken text starts and ends in ``segs``, found in order by its letters
    and digits: (segment, start, end) or None when it is not there."""
    hay: list[str] = []
    where: list[tuple[int, int]] = []
    for si, seg in enumerate(segs):
        for ci, ch in enumerate(seg.text):
            for low in ch.lower():
                if _KEY.match(low):
                    hay.append(low)
                    where.append((si, ci))
    flat = "".join(hay)
    out: list[tuple[int, int, int] | None] = []
    cursor = 0
    for text in texts:
        key = _key(text)
        if not key:
            out.append(None)
            continue
        probe = key[:40]
        at = flat.find(probe, cursor, cursor + 4000 + len(key))
        if at < 0:
            out.append(None)
            continue
        end = min(at + len(key), len(flat)) - 1
        (s0, c0), (s1, c1) = where[at], where[end]
        out.append((s0, c0, c1 + 1 if s1 == s0 else len(segs[s0].text)))
        cursor = at + len(probe)
    return out


def _opening(text: str, start: int) -> int:
    """Back over an opening quote or bracket just before ``start``."""
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return start


def chapter_document(
    book: Book, index: int, sentences: Sequence[Sentence], duration: float, *, words: bool
) -> ChapterDocument:
    """The chapter's XHTML body and its overlay's clips, from its spoken sentences
    (times on the chapter's audio of ``duration`` seconds). A sentence's clip runs to
    the next placed sentence (the last one to the end of the audio); with ``words`` each
    word gets its own id and clip instead."""
    ch = book.chapters[index]
    n = index + 1
    segs = segments(book, index)
    placed = _locate(segs, [s.text for s in sentences])
    # spans[segment] = [(start, end, id, [(ws, we, wid)...])]
    spans: dict[int, list[tuple[int, int, str, list[tuple[int, int, str]]]]] = {}
    starts: list[tuple[float, str, bool]] = []  # (time, id, note)
    for k, (sent, pos) in enumerate(zip(sentences, placed)):
        if pos is None:
            continue
        si, c0, _c1 = pos
        sid = f"c{n}s{k + 1}"
        seg_spans = spans.setdefault(si, [])
        c0 = _opening(segs[si].text, c0)
        if seg_spans and seg_spans[-1][0] >= c0:  # not after the one before: skip it
            continue
        seg_spans.append((c0, len(segs[si].text), sid, []))
        if len(seg_spans) > 1:
            p0, _p1, pid, pw = seg_spans[-2]
            seg_spans[-2] = (p0, c0, pid, pw)
        if words and sent.words:
            sub = [Segment("p", segs[si].text[c0:])]
            wpos = _locate(sub, [w.text for w in sent.words])
            for j, (w, wp) in enumerate(zip(sent.words, wpos)):
                if wp is None:
                    continue
                wid = f"{sid}w{j + 1}"
                seg_spans[-1][3].append((c0 + wp[1], c0 + wp[2], wid))
                starts.append((w.start, wid, segs[si].note))
        else:
            starts.append((sent.start, sid, segs[si].note))
    # Words placed past their sentence's end (the next one began before) are dropped.
    for seg_spans in spans.values():
        for i, (a, b, sid, ws) in enumerate(seg_spans):
            seg_spans[i] = (a, b, sid, [w for w in ws if w[0] >= a and w[1] <= b])
    valid = {sid for sp in spans.values() for _a, _b, sid, ws in sp} | {
        wid for sp in spans.values() for *_x, ws in sp for _a, _b, wid in ws
    }
    starts = sorted((t, r, note) for t, r, note in starts if r in valid)
    heading_id = f"c{n}"
    clips: list[Clip] = []
    # In whole milliseconds, as written: a clip must end after it begins.
    end_ms = round(duration * 1000)
    for i, (t, ref, note) in enumerate(starts):
        nxt = round(starts[i + 1][0] * 1000) if i + 1 < len(starts) else end_ms
        begin, end = min(round(t * 1000), end_ms), min(nxt, end_ms)
        if end > begin:  # one with no time of its own leaves it to the one before
            clips.append(Clip(ref, begin / 1000, end / 1000, note))
    if not clips:
        clips = [Clip(heading_id, 0.0, duration)]
    else:
        last = clips[-1]
        clips[-1] = Clip(last.ref, last.begin, duration, last.note)
    body = _body(segs, spans, heading_id, ch.role)
    return ChapterDocument(ch.title.strip() or f"Chapter {n}", ch.level, body, tuple(clips))


def _render(text: str, spans: Sequence[tuple[int, int, str, list[tuple[int, int, str]]]]) -> str:
    out: list[str] = []
    pos = 0
    for a, b, sid, ws in spans:
        out.append(_esc(text[pos:a]))
        inner: list[str] = []
        p = a
        for wa, wb, wid in ws:
            inner.append(_esc(text[p:wa]))
            inner.append(f'<span id="{wid}">{_esc(text[wa:wb])}</span>')
            p = wb
        inner.append(_esc(text[p:b]))
        out.append(f'<span id="{sid}">{"".join(inner)}</span>')
        pos = b
    out.append(_esc(text[pos:]))
    return "".join(out)


def _body(
    segs: Sequence[Segment],
    spans: dict[int, list[tuple[int, int, str, list[tuple[int, int, str]]]]],
    heading_id: str,
    role: str,
) -> str:
    kind = {"front": "frontmatter", "back": "backmatter"}.get(role, "bodymatter chapter")
    parts = [f'<section epub:type="{kind}" id="{heading_id}">']
    in_notes = False
    for i, seg in enumerate(segs):
        if seg.note and not in_notes:
            parts.append(f'<aside epub:type="footnote" id="{heading_id}-notes">')
            in_notes = True
        text = _render(seg.text, spans.get(i, []))
        if seg.tag == "blockquote":
            parts.append(f"<blockquote><p>{text}</p></blockquote>")
        else:
            parts.append(f"<{seg.tag}>{text}</{seg.tag}>")
    if in_notes:
        parts.append("</aside>")
    parts.append("</section>")
    return "\n".join(parts)


# --- the package ----------------------------------------------------------------------


def _lang(book: Book) -> str:
    tag = (book.language or "").strip().replace("_", "-")
    return tag if re.fullmatch(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*", tag) else "und"


def _xhtml(book: Book, doc: ChapterDocument) -> str:
    lang = _lang(book)
    dir_attr = f' dir="{book.direction}"' if book.direction else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"'
        f' lang="{lang}" xml:lang="{lang}"{dir_attr}>\n<head>\n<meta charset="utf-8"/>\n'
        f"<title>{_esc(doc.title)}</title>\n"
        '<link rel="stylesheet" type="text/css" href="style.css"/>\n</head>\n<body>\n'
        f"{doc.body}\n</body>\n</html>\n"
    )


def _smil(doc: ChapterDocument, page: str, audio: str) -> str:
    def par(k: int, c: Clip) -> str:
        return (
            f'<par id="p{k}"><text src="{page}#{c.ref}"/>'
            f'<audio src="{audio}" clipBegin="{c.begin:.3f}s" clipEnd="{c.end:.3f}s"/></par>'
        )

    lines: list[str] = []
    in_notes = False
    for k, c in enumerate(doc.clips, 1):
        if c.note and not in_notes:
            lines.append(f'<seq id="notes{k}" epub:type="footnote" epub:textref="{page}">')
            in_notes = True
        elif not c.note and in_notes:
            lines.append("</seq>")
            in_notes = False
        lines.append(par(k, c))
    if in_notes:
        lines.append("</seq>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<smil xmlns="http://www.w3.org/ns/SMIL" xmlns:epub="http://www.idpf.org/2007/ops"'
        ' version="3.0">\n<body>\n'
        f'<seq id="seq1" epub:textref="{page}">\n'
        + "\n".join(lines)
        + "\n</seq>\n</body>\n</smil>\n"
    )


def _nav(book: Book, docs: Sequence[ChapterDocument], pages: Sequence[str]) -> str:
    lang = _lang(book)
    out = ["<ol>"]
    depth = 1
    first = True
    for doc, page in zip(docs, pages):
        level = max(1, min(doc.level, depth + 1))
        if first:
            level = 1
        if not first:
            if level > depth:
                out.append("<ol>")
            else:
                out.append("</li>")
                for _ in range(depth - level):
                    out.append("</ol></li>")
        depth = level
        first = False
        out.append(f'<li><a href="{page}">{_esc(doc.title)}</a>')
    out.append("</li>")
    for _ in range(depth - 1):
        out.append("</ol></li>")
    out.append("</ol>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"'
        f' lang="{lang}" xml:lang="{lang}">\n<head>\n<meta charset="utf-8"/>\n'
        f"<title>{_esc(book.title or 'Contents')}</title>\n</head>\n<body>\n"
        '<nav epub:type="toc" id="toc"><h1>Contents</h1>\n' + "\n".join(out) + "\n</nav>\n"
        "</body>\n</html>\n"
    )


def _opf(
    book: Book,
    docs: Sequence[ChapterDocument],
    durations: Sequence[float],
    audio_type: str,
    audio_ext: str,
    cover: str | None,
    modified: datetime,
) -> str:
    uid = uuid.uuid5(uuid.NAMESPACE_URL, f"audiobook:{book.source}:{book.title}")
    meta = [
        f'<dc:identifier id="uid">urn:uuid:{uid}</dc:identifier>',
        f"<dc:title>{_esc(book.title or 'Untitled')}</dc:title>",
        f"<dc:language>{_lang(book)}</dc:language>",
    ]
    meta += [f"<dc:creator>{_esc(a)}</dc:creator>" for a in book.authors if a.strip()]
    if book.publisher:
        meta.append(f"<dc:publisher>{_esc(book.publisher)}</dc:publisher>")
    if book.date and _W3CDTF.fullmatch(book.date.strip()):
        meta.append(f"<dc:date>{_esc(book.date.strip())}</dc:date>")
    if book.description:
        meta.append(f"<dc:description>{_esc(book.description)}</dc:description>")
    meta.append(f'<meta property="dcterms:modified">{modified:%Y-%m-%dT%H:%M:%SZ}</meta>')
    # Each overlay's duration is its audio file's; the total is their sum, in ms.
    ms = [round(d * 1000) for d in durations]
    for i, m in enumerate(ms, 1):
        meta.append(f'<meta property="media:duration" refines="#mo{i}">{clock(m / 1000)}</meta>')
    meta.append(f'<meta property="media:duration">{clock(sum(ms) / 1000)}</meta>')
    meta.append(f'<meta property="media:active-class">{ACTIVE_CLASS}</meta>')
    items = [
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>',
        '<item id="css" href="style.css" media-type="text/css"/>',
    ]
    if cover is not None and book.cover is not None:
        items.append(
            f'<item id="cover" href="{cover}" media-type="{book.cover.media_type}"'
            ' properties="cover-image"/>'
        )
    spine = []
    for i in range(1, len(docs) + 1):
        items.append(
            f'<item id="c{i}" href="c{i:03d}.xhtml" media-type="application/xhtml+xml"'
            f' media-overlay="mo{i}"/>'
        )
        items.append(f'<item id="mo{i}" href="c{i:03d}.smil" media-type="application/smil+xml"/>')
        items.append(
            f'<item id="a{i}" href="audio/c{i:03d}.{audio_ext}" media-type="{audio_type}"/>'
        )
        spine.append(f'<itemref idref="c{i}"/>')
    ppd = ' page-progression-direction="rtl"' if book.direction == "rtl" else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="uid"'
        f' xml:lang="{_lang(book)}">\n'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        + "\n".join(meta)
        + "\n</metadata>\n<manifest>\n"
        + "\n".join(items)
        + f"\n</manifest>\n<spine{ppd}>\n"
        + "\n".join(spine)
        + "\n</spine>\n</package>\n"
    )


CONTAINER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">\n'
    '<rootfiles><rootfile full-path="OEBPS/package.opf"'
    ' media-type="application/oebps-package+xml"/></rootfiles>\n</container>\n'
)


def write_epub(
    book: Book,
    docs: Sequence[ChapterDocument],
    audio: Sequence[tuple[Path, float]],
    dest: Path,
    *,
    modified: datetime | None = None,
) -> None:
    """Write the read-along EPUB to ``dest`` (the caller renames it into place):
    ``audio`` is each chapter's audio file and its duration in seconds (the overlay's
    duration)."""
    ext = audio[0][0].suffix.lstrip(".") if audio else "m4a"
    audio_type = "audio/mpeg" if ext == "mp3" else "audio/mp4"
    cover = None
    if book.cover is not None and book.cover.media_type in _IMAGE_EXT:
        cover = f"cover.{_IMAGE_EXT[book.cover.media_type]}"
    when = modified or datetime.now(UTC)
    pages = [f"c{i:03d}.xhtml" for i in range(1, len(docs) + 1)]
    with zipfile.ZipFile(dest, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", zipfile.ZIP_STORED)

        def put(name: str, data: str | bytes, method: int = zipfile.ZIP_DEFLATED) -> None:
            z.writestr(name, data, compress_type=method)

        put("META-INF/container.xml", CONTAINER)
        put(
            "OEBPS/package.opf",
            _opf(book, docs, [d for _p, d in audio], audio_type, ext, cover, when),
        )
        put("OEBPS/nav.xhtml", _nav(book, docs, pages))
        put("OEBPS/style.css", CSS)
        if cover is not None and book.cover is not None:
            put(f"OEBPS/{cover}", book.cover.data)
        for i, (doc, page, (path, _d)) in enumerate(zip(docs, pages, audio), 1):
            put(f"OEBPS/{page}", _xhtml(book, doc))
            put(f"OEBPS/c{i:03d}.smil", _smil(doc, page, f"audio/c{i:03d}.{ext}"))
            z.write(path, f"OEBPS/audio/c{i:03d}.{ext}", compress_type=zipfile.ZIP_STORED)
