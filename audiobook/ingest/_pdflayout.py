"""Page layout for PDF text: from positioned text fragments to lines, reading order and blocks.

Everything here is pure: the PDF reader (``pdf.py``) turns each page into ``Frag`` values,
and these functions do the rest.

    Frag*  (text, x, y, size, bold; in content-stream order)
      └─ build_lines()      fragments on one baseline become a Line
          └─ order_page()   two-column pages: spanning lines above, left column, right column
              └─ furniture()   running heads/feet, page numbers, print slugs (removed)
                  └─ split_footnotes()   small print at the page foot (Chapter.footnotes)
                      └─ to_blocks()    headings and paragraphs: hyphens joined, lines joined
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..model import Block, BlockKind


@dataclass(frozen=True)
class Frag:
    """A run of text as the content stream shows it, at its start point (user space)."""

    text: str
    x: float
    y: float
    size: float
    bold: bool = False
    width: float = 0.0  # estimated advance of the whole run


@dataclass(frozen=True)
class Line:
    page: int
    x0: float
    x1: float  # estimated end
    y: float  # baseline
    size: float  # dominant font size
    bold: bool
    text: str
    # footnote markers (superscript digits) stripped from the text, kept to match notes
    marks: tuple[str, ...] = ()
    column: int = 0  # 0: the page's only column (or spanning both), 1: left, 2: right


# ---------------------------------------------------------------------------------------
# Text normalization

_LIGATURES = {
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\ufb05": "st",
    "\ufb06": "st",
    "\u0132": "IJ",
    "\u0133": "ij",
    "\u0152": "OE",
    "\u0153": "oe",
}
_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\t]")
# zero-width characters, and glyphs with no Unicode meaning (private use, replacement)
_INVISIBLE = re.compile(r"[\u200b-\u200d\u2060\ufeff\ufffd\ufffe\uffff\ue000-\uf8ff]")
_LEADERS = re.compile(r"(?:\s*[.·…_]\s*){4,}")  # dot leaders of a table of contents
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_HYPHENS = re.compile(r"[\u2010\u2011]")


def _compat(ch: str) -> str:
    """NFKC for the blocks where it only undoes presentation forms (safe for speech)."""
    cp = ord(ch)
    if 0xFB00 <= cp <= 0xFDFF or 0xFE70 <= cp <= 0xFEFF or 0xFF00 <= cp <= 0xFFEF:
        return unicodedata.normalize("NFKC", ch)
    return ch


def normalize_text(text: str, keep_soft_hyphens: bool = False) -> str:
    """Ligatures, presentation forms, odd spaces, invisible and control characters.

    Soft hyphens are dropped, unless kept for ``join_lines`` (one at a line end joins the
    word parts)."""
    for lig, plain in _LIGATURES.items():
        if lig in text:
            text = text.replace(lig, plain)
    text = _INVISIBLE.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _HYPHENS.sub("-", text)
    text = _CONTROL.sub("", text)
    if not keep_soft_hyphens:
        text = text.replace("\u00ad", "")
    if any(ord(c) >= 0xFB00 for c in text):
        text = "".join(_compat(c) for c in text)
    return unicodedata.normalize("NFC", text)


# Glyph codes: what a text extractor writes for a font without a Unicode map ("/g152",
# "/uni00E9" from glyph names, "(cid:12)" from CIDs). Runs of two or more names, or any
# CID form; never speakable.
_GLYPH_CODES = re.compile(
    r"(?:(?:/(?:g|G|cid|glyph)\d{1,6}|/uni[0-9A-Fa-f]{4,6})\s?){2,}|(?:\(cid:\d{1,6}\)\s?)+"
)


def strip_glyph_codes(lines: Sequence[Line]) -> tuple[list[Line], int, int]:
    """The lines without glyph codes (lines left empty dropped), the characters of
    glyph codes removed, and the characters of text that remain."""
    out: list[Line] = []
    removed = kept = 0
    for ln in lines:
        if "/" not in ln.text and "(cid:" not in ln.text:
            out.append(ln)
            kept += len(ln.text.strip())
            continue
        text = _GLYPH_CODES.sub(" ", ln.text)
        removed += len(ln.text) - len(text)
        text = re.sub(r"\s{2,}", " ", text)
        if text.replace("\u0000", "").strip():
            out.append(replace(ln, text=text))
            kept += len(text.strip())
    return out, removed, kept


# ---------------------------------------------------------------------------------------
# Lines


def build_lines(frags: Iterable[Frag], page: int) -> list[Line]:
    """Group fragments that follow each other on one baseline into lines.

    Superscripts and subscripts (raised or lowered by less than half the font size) stay
    on their line; a raised run of digits in a smaller font is remembered as a possible
    footnote mark and left out of the text.
    """
    lines: list[Line] = []
    cur: list[Frag] = []

    def flush() -> None:
        if cur:
            line = _make_line(cur, page)
            if line is not None:
                lines.append(line)
            cur.clear()

    last_end = -math.inf  # rightmost estimated end of the line being built
    for f in frags:
        if not f.text or not f.text.strip():
            if cur and f.text and f.text.strip(" ") == "" and " " in f.text:
                cur.append(f)
            continue
        if cur:
            base = cur[0]
            tol = 0.5 * max(base.size, f.size, 1.0)
            if (
                abs(f.y - base.y) > tol
                or (f.x < cur[0].x - 1.0 and f.x < last_end - 4 * f.size)  # back to the left
                or f.x > last_end + 3 * max(f.size, base.size)  # over a gutter: next column
            ):
                flush()
                last_end = -math.inf
        cur.append(f)
        last_end = max(last_end, f.x + f.width)
    flush()
    return lines


def _make_line(frags: list[Frag], page: int) -> Line | None:
    weights = Counter[float]()
    for f in frags:
        weights[round(f.size, 1)] += len(f.text.strip())
    size = weights.most_common(1)[0][0] if weights else frags[0].size
    base = min(frags, key=lambda f: abs(f.size - size) + (0 if f.text.strip() else 99))
    baseline = base.y
    parts: list[str] = []
    marks: list[str] = []
    prev: Frag | None = None
    bold_chars = total_chars = 0
    for f in frags:
        text = f.text.replace("\n", " ")
        raised = f.y - baseline > 0.2 * size and f.size < 0.85 * size
        if raised and re.fullmatch(r"\s*[0-9*†‡]{1,3}\s*", text):
            marks.append(text.strip())
            parts.append("\u0000")  # placeholder: restored unless a footnote claims it
            prev = f
            continue
        if prev is not None and parts and text and not text[0].isspace():
            gap = f.x - (prev.x + prev.width)
            if gap > 0.6 * size and not parts[-1].endswith(" "):
                parts.append(" ")
        parts.append(text)
        n = len(text.strip())
        total_chars += n
        if f.bold:
            bold_chars += n
        prev = f
    text = "".join(parts)
    if not text.replace("\u0000", "").strip():
        return None
    x0 = min(f.x for f in frags)
    x1 = max(f.x + f.width for f in frags)
    return Line(
        page=page,
        x0=x0,
        x1=x1,
        y=baseline,
        size=size,
        bold=total_chars > 0 and bold_chars >= 0.6 * total_chars,
        text=text,
        marks=tuple(marks),
    )


def line_text(line: Line, claimed: frozenset[str] = frozenset(), *, running: bool = False) -> str:
    """The text of a line with claimed footnote marks removed and the others restored.

    ``running`` (the text that is spoken): a raised mark right after punctuation or a
    word of three letters or more is a note reference wherever its note is, and is
    dropped; one after a digit or a short symbol (10², S², km²) is kept. So are
    reference numbers set on the baseline but glued to a sentence's end ('a music
    box.”3 As our'): see ``drop_note_refs``."""
    if "\u0000" not in line.text:
        return drop_note_refs(line.text) if running else line.text
    out: list[str] = []
    marks = iter(line.marks)
    pieces = re.split("(\u0000)", line.text)
    for n, piece in enumerate(pieces):
        if piece == "\u0000":
            mark = next(marks, "")
            after = "".join(pieces[n + 1 :]).replace("\u0000", "")
            if mark in claimed or (running and _is_ref_position("".join(out), after)):
                continue
            out.append(mark)
        else:
            out.append(piece)
    text = "".join(out)
    return drop_note_refs(text) if running else text


def _is_ref_position(before: str, after: str) -> bool:
    """Whether a raised number between ``before`` and ``after`` reads as a note
    reference: the end of a word or sentence, then a space, punctuation or the line's
    end (cos²(v) is mathematics)."""
    before = before.rstrip()
    if not before or (after and not after[0].isspace() and after[0] not in '.,;:!?)"”’»'):
        return False
    if before[-1] in '.;:!?"”»':  # not ’: a prime in mathematics (f’¹)
        return True
    word = re.search(r"[^\W\d_]+$", before)
    return word is not None and len(word.group(0)) >= 3


# A note number glued to the end of a sentence or a quotation: a letter, then closing
# punctuation (one or two marks), then one to three digits, then a capitalised word or
# the line's end. "1914.3" (a digit before) and "page 3" (a space) are not touched.
_GLUED_REF = re.compile(
    r"(?:(?<=[^\W\d_][.,;:!?][\"”’»)])|(?<=[^\W\d_][\"”’»])|(?<=[^\W\d_][.,;:!?]))"
    r"\d{1,3}(?=\s+[\"“‘(«]?[^\W\d_]*[A-ZÀ-ÖØ-Þ]|\s*$)"
)


_NUMBERING_WORDS = frozenset(
    [
        "fig",
        "figs",
        "no",
        "nos",
        "nr",
        "vol",
        "vols",
        "p",
        "pp",
        "ch",
        "chap",
        "sec",
        "sect",
        "eq",
        "eqs",
        "art",
        "tab",
        "s",
        "n",
        "op",
        "ed",
    ]
)


def drop_note_refs(text: str) -> str:
    """Note reference numbers glued to the end of a sentence or quotation, removed
    (not after an abbreviation that numbers things: "Fig.2", "No.5", "vol.3")."""
    if not any(c.isdigit() for c in text):
        return text

    def repl(m: re.Match[str]) -> str:
        word = re.search(r"([^\W\d_]+)\.$", text[: m.start()])
        if word and word.group(1).lower() in _NUMBERING_WORDS:
            return m.group(0)
        return ""

    return _GLUED_REF.sub(repl, text)


# ---------------------------------------------------------------------------------------
# Reading order on one page


def order_page(lines: Sequence[Line], page_width: float) -> list[Line]:
    """Lines in reading order. Single-column pages keep the content-stream order (which
    producers write in reading order far more often than not); two-column pages are read
    column by column, with lines spanning both columns above them first and below last."""
    if len(lines) < 8:
        return list(lines)
    mid = page_width / 2
    right = [ln for ln in lines if ln.x0 >= mid - 0.05 * page_width]
    left = [
        ln for ln in lines if ln.x1 <= mid + 0.08 * page_width and ln.x0 < mid - 0.05 * page_width
    ]
    if len(right) < 4 or len(left) < 4:
        return list(lines)
    # Columns share baselines; an indented block of a one-column page does not.
    left_ys = [ln.y for ln in left]
    paired = sum(1 for r in right if any(abs(r.y - y) < r.size * 1.2 for y in left_ys))
    if paired < 3 or paired < 0.3 * len(right):
        return list(lines)
    # columns of running text, not the cells of a table
    if (
        min(
            statistics.median(ln.x1 - ln.x0 for ln in left),
            statistics.median(ln.x1 - ln.x0 for ln in right),
        )
        < 0.25 * page_width
    ):
        return list(lines)
    starts = Counter(round(ln.x0) for ln in right)
    gutter = starts.most_common(1)[0][0] - 2.0
    rcol_lines = [ln for ln in right if ln.x0 >= gutter]
    col_top = max(ln.y for ln in rcol_lines) + 0.5 * rcol_lines[0].size
    col_bottom = min(ln.y for ln in rcol_lines) - 1.0
    above: list[Line] = []
    below: list[Line] = []
    lcol: list[Line] = []
    rcol: list[Line] = []
    for ln in lines:
        if ln.y > col_top:  # title block over both columns
            above.append(ln)
        elif ln.x0 >= gutter:
            rcol.append(ln)
        elif ln.x1 > gutter + 3 * ln.size and ln.y <= col_bottom:  # spans the page below
            below.append(ln)
        else:
            lcol.append(ln)
    key = _top_down
    return (
        sorted(above, key=key)
        + sorted((replace(ln, column=1) for ln in lcol), key=key)
        + sorted((replace(ln, column=2) for ln in rcol), key=key)
        + sorted(below, key=key)
    )


def _top_down(ln: Line) -> tuple[float, float]:
    return (-round(ln.y, 0), ln.x0)


# ---------------------------------------------------------------------------------------
# Page furniture: running heads and feet, page numbers

MAX_FUZZY_KEYS = 3000  # distinct edge lines compared pairwise for OCR-garbled repeats
_NUM = re.compile(
    r"^(?:page|seite|p\.)?\s*[-–—(\[]?\s*(\d{1,4}|[ivxlcdm]{1,8})\s*[-–—)\]]?$", re.IGNORECASE
)


_ROMAN_TOKEN = re.compile(
    r"(?<![^\W\d_])(?=[ivxlcdm])m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})"
    r"(?![^\W\d_])",
    re.IGNORECASE,
)


def _letters(text: str) -> str:
    """A line's letters, for comparing running heads: digits and roman numerals (page
    numbers, "Page iv") left out, case and spacing ignored."""
    text = _ROMAN_TOKEN.sub(" ", text)
    return re.sub(r"[^a-zäöüßàâçéèêëîïôûùüÿñæœ]+", "", text.lower())


# Print-production slugs: a layout file's name (often with a page number, date and
# time), proof stamps, a date-time stamp; never part of the text.
_SLUG = re.compile(
    r"\b[\w-]+\.(?:indd|indb|qxd|qxp|idml|fm|pmd|p65)\b"
    r"|\b(?:first|second|third|final|1st|2nd|3rd)?\s*pass(?:es)?\s+pages?\b"
    r"|^\s*(?:uncorrected|page|galley)\s+proofs?\b"
    r"|\b\d{1,2}/\d{1,2}/\d{2,4},?\s+\d{1,2}:\d{2}(?::\d{2})?\s*(?:[AP]\.?M\.?)?",
    re.IGNORECASE,
)


def is_slug(text: str) -> bool:
    """A print-production slug or proof stamp (``_SLUG``) in a short line."""
    return len(text) <= 160 and _SLUG.search(text) is not None


def _roman(s: str) -> int | None:
    vals = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100, "d": 500, "m": 1000}
    s = s.lower()
    if not s or any(c not in vals for c in s):
        return None
    total = 0
    for i, c in enumerate(s):
        v = vals[c]
        total += -v if i + 1 < len(s) and vals[s[i + 1]] > v else v
    return total


def furniture(
    pages: Sequence[Sequence[Line]], labels: Sequence[str] | None = None
) -> set[tuple[int, int]]:
    """(page, index) of the lines that are running heads, running feet or page numbers.

    Any line that is a print-production slug or proof stamp is furniture. Candidates
    are the top-most and bottom-most lines of each page that stand apart from the text
    block. A candidate is furniture when it is a bare page number, when it carries a
    number that follows the page sequence (the page label, or a constant offset from the
    page index seen on several pages), or when its letters (digits and roman numerals
    left out) repeat, fuzzily for OCR misreads, at the same edge of three other pages:
    left and right running heads ("4 BOOK TITLE", "CHAPTER NAME 5") each repeat on
    alternate pages.
    """
    n = len(pages)
    gaps = [
        a.y - b.y
        for lines in pages
        for a, b in itertools.pairwise(lines)
        if a.page == b.page and 0 < a.y - b.y < 3 * a.size
    ]
    line_gap = statistics.median(gaps) if gaps else 14.0
    body_size = measure_style(ln for lines in pages for ln in lines).body_size
    cands: list[tuple[int, int, Line]] = []
    edge_of: dict[tuple[int, int], int] = {}  # 1: top edge, -1: bottom edge
    found: set[tuple[int, int]] = set()
    for p, lines in enumerate(pages):
        if not lines:
            continue
        # 0. print-production slugs and proof stamps, wherever they sit
        found.update((p, i) for i, ln in enumerate(lines) if is_slug(ln.text))
        order = sorted(range(len(lines)), key=lambda i: -lines[i].y)
        # the outermost line at each edge; the next one too on fuller pages (a running
        # head over a line of small print, a page number under a footer)
        depth = 2 if len(lines) >= 8 else 1
        picks: dict[int, int] = {}
        for i in order[:depth]:
            picks.setdefault(i, 1)
        for i in order[-depth:]:
            picks.setdefault(i, -1)
        for i, inward in picks.items():
            ln = lines[i]
            if _NUM.match(ln.text.strip()):  # 1. bare page numbers
                found.add((p, i))
                continue
            if len(ln.text) > 120 or len(lines) < 3 or ln.size > 1.15 * body_size:
                continue  # (large print at the top is a heading, not a running head)
            # a running head or foot stands apart from the text block: measure the gap to
            # the nearest line inwards that is not on its own baseline
            if inward > 0:
                ys = [o.y for o in lines if o.y < ln.y - 0.5 * ln.size]
                gap = ln.y - max(ys) if ys else math.inf
            else:
                ys = [o.y for o in lines if o.y > ln.y + 0.5 * ln.size]
                gap = min(ys) - ln.y if ys else math.inf
            if gap < 1.4 * line_gap:
                continue
            cands.append((p, i, ln))
            edge_of[(p, i)] = inward
    # 2. numbers following the page sequence
    offsets: Counter[int] = Counter()
    edges: dict[tuple[int, int], set[str]] = {}
    for p, i, ln in cands:
        tokens = ln.text.split()
        ends = (
            {t.strip(".,;:()[]-–—").lower() for t in (tokens[0], tokens[-1])} if tokens else set()
        )
        edges[(p, i)] = ends
        for t in ends:
            if t.isdigit() and len(t) <= 4:
                offsets[int(t) - p] += 1
    seq_offsets = {off for off, c in offsets.items() if c >= 2 and c >= 0.2 * n}
    for (p, i), ends in edges.items():
        label = labels[p].lower() if labels and p < len(labels) and labels[p] else None
        if (label is not None and label in ends) or any(
            t.isdigit() and len(t) <= 4 and int(t) - p in seq_offsets for t in ends
        ):
            found.add((p, i))
    # 3. repeated text (digits ignored, fuzzy) at the same edge and height of the page
    if n >= 3:
        spots: dict[str, list[tuple[int, float, int]]] = {}  # key -> (page, y, edge)
        for p, i, ln in cands:
            key = _letters(ln.text)
            if len(key) >= 3:
                spots.setdefault(key, []).append((p, ln.y, edge_of[(p, i)]))
        keys = sorted(spots, key=len)
        alike: dict[str, list[str]] = {k: [k] for k in keys}
        fuzzy = len(keys) <= MAX_FUZZY_KEYS  # beyond that, exact repeats only
        for a, ka in enumerate(keys if fuzzy else ()):
            for kb in keys[a + 1 :]:
                if len(kb) - len(ka) > 3:
                    break
                sm = difflib.SequenceMatcher(None, ka, kb)
                if (
                    sm.real_quick_ratio() >= 0.85
                    and sm.quick_ratio() >= 0.85
                    and sm.ratio() >= 0.85
                ):
                    alike[ka].append(kb)
                    alike[kb].append(ka)
        # a running head repeats on every other page of its chapter (odd/even heads
        # differ): three such pages are enough, however long the book
        need = 2 if n <= 8 else 3
        for p, i, ln in cands:
            key = _letters(ln.text)
            if key not in alike:
                continue
            edge = edge_of[(p, i)]
            seen = {
                q
                for k in alike[key]
                for q, y, e in spots[k]
                if e == edge and abs(y - ln.y) <= 1.5 * line_gap
            }
            if len(seen) >= need:
                found.add((p, i))
    return found


def is_toc_page(lines: Sequence[Line]) -> bool:
    """A printed table of contents: most lines end in a page number."""
    if len(lines) < 5:
        return False
    ending = sum(
        1 for ln in lines if re.search(r"(\s|\.)(\d{1,4}|[ivxlc]{1,6})$", line_text(ln).strip())
    )
    return ending >= 0.5 * len(lines)


# ---------------------------------------------------------------------------------------
# Footnotes

_NOTE_START = re.compile(r"^\s*(\d{1,3}|[*†‡§])\s*(?=[^\W\d_]|[\"„“(])")


def split_footnotes(lines: Sequence[Line], body_size: float) -> tuple[list[Line], list[Line]]:
    """Split off small print at the foot of a page (or of a column) that starts with a note
    mark."""
    notes: list[Line] = []
    for column in sorted({ln.column for ln in lines}):
        notes.extend(_column_notes([ln for ln in lines if ln.column == column], body_size))
    if not notes:
        return list(lines), []
    note_ids = {id(ln) for ln in notes}
    return [ln for ln in lines if id(ln) not in note_ids], notes


def _column_notes(lines: Sequence[Line], body_size: float) -> list[Line]:
    body = [ln for ln in lines if ln.size >= 0.9 * body_size]
    if not body:
        return []
    lowest_body = min(ln.y for ln in body)
    tail = [ln for ln in lines if ln.y < lowest_body and ln.size < 0.9 * body_size]
    if not tail:
        return []
    top_tail = max(tail, key=lambda ln: ln.y)
    if not _NOTE_START.match(line_text(top_tail)):
        return []
    return sorted(tail, key=_top_down)


def note_marks(notes: Sequence[Line]) -> frozenset[str]:
    marks = set()
    for ln in notes:
        m = _NOTE_START.match(line_text(ln))
        if m:
            marks.add(m.group(1))
    return frozenset(marks)


# ---------------------------------------------------------------------------------------
# Blocks

_BULLET = re.compile(r"^[•◦▪▫●○■□‣⁃∙·►▶✓✔–—-]\s+(?=\S)")
_ENUM = re.compile(r"^(\(?[1-9]\d?[.)]|\(?[a-z][.)]|\([ivx]{1,5}\))\s+(?=\S)")
_TERMINAL = re.compile(r"[.!?:;…][\"'”’»)\]]*$")
_CAPTION = re.compile(
    r"^(figure|fig\.|table|abbildung|abb\.|tabelle|plate|chart)\s*\d", re.IGNORECASE
)
_NUMBERED = re.compile(
    r"^(chapter|kapitel|part|teil|section|appendix|anhang)\s+\w+|^\d+(\.\d+)*\.?\s+\S",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Style:
    body_size: float
    line_gap: float  # typical distance between baselines of body text
    body_bold: bool = False


def measure_style(lines: Iterable[Line]) -> Style:
    sizes: Counter[float] = Counter()
    bold: Counter[bool] = Counter()
    gaps: list[float] = []
    prev: Line | None = None
    for ln in lines:
        n = len(ln.text)
        sizes[round(ln.size, 1)] += n
        bold[ln.bold] += n
        if (
            prev is not None
            and prev.page == ln.page
            and 0 < prev.y - ln.y < 3 * ln.size
            and abs(prev.size - ln.size) < 0.5
        ):
            gaps.append(prev.y - ln.y)
        prev = ln
    body = sizes.most_common(1)[0][0] if sizes else 10.0
    gap = statistics.median(gaps) if gaps else body * 1.2
    return Style(
        body_size=body, line_gap=gap, body_bold=bold.most_common(1)[0][0] if bold else False
    )


def heading_level(line: Line, style: Style) -> int | None:
    """1 or 2 for a line that looks like a heading, None for body text."""
    text = line.text.strip()
    if len(text) > 120 or sum(c.isalpha() for c in text) < 2 or _CAPTION.match(text):
        return None
    if line.size >= style.body_size * 1.35:
        return 1
    if line.size >= style.body_size * 1.12:
        return 2
    if line.size >= style.body_size * 1.06 and _NUMBERED.match(text):
        return 2
    bold_heading = line.bold and not style.body_bold and line.size >= style.body_size * 0.95
    if bold_heading and _NUMBERED.match(text) and not _TERMINAL.search(text):
        return 2
    return None


def join_lines(texts: Iterable[str]) -> str:
    """Join the lines of one paragraph: words hyphenated at line ends are rejoined."""
    out = ""
    for raw in texts:
        t = " ".join(raw.split())
        if not t:
            continue
        if not out:
            out = t
        elif out.endswith("\u00ad") or re.search(r"[^\W\d_]-$", out) and t[0].islower():
            out = out[:-1] + t
        elif out.endswith(("-", "/")) and not out.endswith(" -"):
            out += t
        else:
            out += " " + t
    out = out.replace("\u00ad", "")
    if _LEADERS.search(out):
        out = " ".join(_LEADERS.sub(" ", out).split())
    return out


def to_blocks(
    lines: Sequence[Line], style: Style, claimed: frozenset[str] = frozenset()
) -> list[Block]:
    """Headings and paragraphs from lines in reading order (possibly over many pages).

    A paragraph ends at a larger vertical gap, an indented first line, a change of font
    size, or a short last line that ends a sentence. A paragraph that has not ended its
    sentence carries on over page and column breaks, and over figure captions, which are
    put after it.
    """
    blocks: list[Block] = []
    para: list[str] = []
    kind: list[BlockKind] = ["paragraph"]  # of the block being built
    deferred: list[Block] = []  # captions met while a sentence was open
    heading: list[str] = []
    heading_at = [0]  # level of the heading being built
    prev: Line | None = None

    def close_para() -> None:
        if para:
            blocks.append(Block(kind[0], join_lines(para)))
            para.clear()
        kind[0] = "paragraph"
        blocks.extend(deferred)
        deferred.clear()

    def close_heading() -> None:
        if heading:
            blocks.append(Block("heading", join_lines(heading)))
            heading.clear()

    for ln in lines:
        text = line_text(ln, claimed, running=True).strip()
        if not text:
            continue
        level = heading_level(ln, style)
        if level is not None:
            if (
                heading
                and level == heading_at[0]
                and prev is not None
                and prev.page == ln.page
                and 0 < prev.y - ln.y < 2.2 * ln.size
            ):
                heading.append(text)
            else:
                close_heading()
                close_para()
                heading.append(text)
                heading_at[0] = level
            prev = ln
            continue
        close_heading()
        if _CAPTION.match(text) or ln.size < 0.8 * style.body_size:
            caption = Block("paragraph", text)
            if para and not _TERMINAL.search(para[-1]):
                if deferred and prev is not None and (_CAPTION.match(text) is None):
                    deferred[-1] = Block("paragraph", join_lines([deferred[-1].text, text]))
                else:
                    deferred.append(caption)
            else:
                close_para()
                blocks.append(caption)
            prev = ln
            continue
        bullet = _BULLET.match(text)
        if bullet or (_ENUM.match(text) and (not para or re.search(r"[.!?:;]$", para[-1]))):
            # a list item: bullets are not read, enumeration labels are
            close_para()
            kind[0] = "list_item"
            para.append(text[bullet.end() :] if bullet else text)
            prev = ln
            continue
        if para and prev is not None:
            if deferred and not _TERMINAL.search(para[-1]) and text[:1].islower():
                pass  # a caption came between two halves of a sentence
            elif _new_paragraph(prev, ln, para[-1], style) or (
                kind[0] == "list_item" and _TERMINAL.search(para[-1])
            ):
                close_para()  # (a finished list item ends at its sentence)
        if deferred and not para:
            blocks.extend(deferred)
            deferred.clear()
        para.append(text)
        prev = ln
    close_heading()
    close_para()
    return [b for b in blocks if b.text.strip()]


def _new_paragraph(prev: Line, ln: Line, prev_text: str, style: Style) -> bool:
    open_sentence = not _TERMINAL.search(prev_text)
    if ln.page == prev.page and abs(ln.y - prev.y) < 0.3 * ln.size and ln.x0 > prev.x0:
        return False  # the rest of the same visual line, split at a wide gap
    if ln.page != prev.page or ln.y > prev.y + 0.5 * ln.size:
        # a page or column break: the paragraph goes on while its sentence does
        return not open_sentence
    if abs(ln.size - prev.size) > 1.0:
        return True
    gap = prev.y - ln.y
    if gap > 1.6 * style.line_gap:
        return not (open_sentence and gap < 2.5 * style.line_gap)
    if open_sentence:
        return False
    return ln.x0 - prev.x0 > 0.6 * ln.size  # an indented first line


def strip_repeated_title(blocks: list[Block], title: str) -> list[Block]:
    """Drop the heading that only repeats the chapter title (the title is spoken)."""
    key = _letters(title)
    for i, b in enumerate(blocks[:6]):
        if b.kind == "heading" and _letters(b.text) == key:
            return blocks[:i] + blocks[i + 1 :]
    return blocks


def with_text(line: Line, text: str) -> Line:
    return replace(line, text=text)
