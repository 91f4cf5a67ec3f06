"""Safe XML/XHTML parsing and the walk that turns an XHTML body into spoken blocks.

Parsing: every document is first parsed as XML with a parser that never resolves
entities, never touches the network, never loads a DTD and keeps libxml2's size limits
(``huge_tree=False``), so billion-laughs and XXE documents stay inert: an entity that
is not an HTML named character is simply dropped. A document that is not well-formed
is parsed again with lxml's recovering HTML parser, and the caller reports it. One
limit is lifted where it is hit: a paragraph over libxml2's 10 MB text-node cap is no
attack (members are capped by ``_safezip``, entities stay unresolved), so such a
document is parsed again with ``huge_tree`` rather than cut short at that paragraph.

Walking (``extract``): text comes out as ``Item`` events (a Block, whether it is a
footnote body, and its heading level) in document order, with ``Mark`` events where an
element carries one of the ids a table of contents points at. Nothing between tags is
lost: text directly inside ``body``/``div``/``section`` becomes a paragraph of its own,
and text before an image survives as a block before the image's alt text.
"""

from __future__ import annotations

import codecs
import html.entities
import re
from dataclasses import dataclass, field

from lxml import etree
from lxml import html as lxml_html

from ..model import Block, BlockKind, Phoneme

XHTML_NS = "http://www.w3.org/1999/xhtml"
OPS_NS = "http://www.idpf.org/2007/ops"
SSML_NS = "http://www.w3.org/2001/10/synthesis"  # EPUB 3 ssml:ph, ssml:alphabet
_PH, _ALPHABET = f"{{{SSML_NS}}}ph", f"{{{SSML_NS}}}alphabet"
# Where a word with its own pronunciation (ssml:ph) starts and ends in the text being
# gathered; private-use characters, taken out of the document's own text first.
_OPEN, _CLOSE = "\ue000", "\ue001"

# C0 and C1 control characters except tab/newline/carriage return, DEL, and the
# invisible characters that only disturb speech (soft hyphen, BOM, object replacement).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\ufeff\ufffc]")
_SPACE = re.compile(r"\s+")
# Brackets left empty once a note marker inside them is taken out: "text [] more".
# Applied after whitespace is collapsed, so that it stays linear on hostile input.
_EMPTY_BRACKETS = re.compile(r"\[ ?\]|\( ?\)")
# Alt text that says nothing about the picture.
_GENERIC_ALT = re.compile(
    r"^(cover( image)?|title ?page|image|img|illustration|picture|"
    r"photo|figure|logo|decoration|ornament|\W*)$",
    re.IGNORECASE,
)


def clean_text(text: str) -> str:
    """Control characters removed, whitespace runs collapsed to one space, trimmed."""
    return _SPACE.sub(" ", _CONTROL.sub("", text)).strip()


def xml_parser(*, huge: bool = False) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=huge,
        remove_comments=True,
        remove_pis=True,
    )


def _html_parser(encoding: str | None = None) -> lxml_html.HTMLParser:
    # huge_tree: without it the recovering parser silently ends the document at a text
    # node over 10 MB; deep nesting is bounded by libxml2 all the same (2048 levels) and
    # the walker's own depth guard.
    return lxml_html.HTMLParser(
        no_network=True, huge_tree=True, remove_comments=True, remove_pis=True, encoding=encoding
    )


_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_META_CHARSET = re.compile(rb"<meta[^>]+charset", re.IGNORECASE)


def _encoding(data: bytes) -> str | None:
    """What to tell the HTML parser: XHTML is UTF-8 unless it says otherwise, while an
    HTML parser left alone would guess Latin-1."""
    m = _XML_ENCODING.match(data[:200])
    if m:
        name = m.group(1).decode("ascii")
        try:
            codecs.lookup(name)
        except LookupError:
            return "utf-8"
        return name
    if data[:3] == b"\xef\xbb\xbf" or _META_CHARSET.search(data[:2048]):
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "utf-8"


def parse_xml(data: bytes) -> etree._Element:
    """Parse XML safely. Raises ``etree.XMLSyntaxError`` (or ValueError) if malformed."""
    try:
        try:
            root = etree.fromstring(data, xml_parser())
        except etree.XMLSyntaxError as exc:
            if "XML_PARSE_HUGE" not in str(exc):  # libxml2's advice when a size cap is hit
                raise
            root = etree.fromstring(data, xml_parser(huge=True))
    except LookupError as exc:  # an unknown encoding name in the XML declaration
        raise ValueError(f"unknown encoding ({exc})") from exc
    if root is None:
        raise etree.XMLSyntaxError("empty document", None, 0, 0)
    return root


_DOCTYPE = re.compile(rb"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", re.DOTALL | re.IGNORECASE)


def parse_xhtml(data: bytes) -> tuple[etree._Element | None, str | None]:
    """(root, problem): problem is None for well-formed XHTML, else the XML error that
    forced the recovering HTML parse. root is None when nothing could be recovered."""
    try:
        return parse_xml(data), None
    except (etree.XMLSyntaxError, ValueError, LookupError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # The HTML parser would show an internal DTD subset as text: drop the doctype.
    data = _DOCTYPE.sub(b"", data[:65536], count=1) + data[65536:]
    try:
        root = lxml_html.document_fromstring(data, parser=_html_parser(_encoding(data)))
    except (etree.ParserError, etree.XMLSyntaxError, ValueError, LookupError):
        return None, problem
    return root, problem


def node_text(el: etree._Element, skip: frozenset[str] = frozenset({"rt", "rp"})) -> str:
    """The text inside ``el``, cleaned: HTML named entities mapped, any other entity
    reference dropped (never expanded), comments and ruby readings left out."""
    parts: list[str] = []

    def walk(node: etree._Element) -> None:
        if node.text:
            parts.append(node.text)
        for child in node:
            if isinstance(child, etree._Entity):  # its tag is the etree.Entity factory
                parts.append(html.entities.html5.get(f"{child.name};", ""))
            elif isinstance(child.tag, str) and localname(child) not in skip:
                walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(el)
    return clean_text("".join(parts))


def localname(el: etree._Element) -> str:
    """'p' for {xhtml}p, 'image' for svg:image (as the HTML parser names it)."""
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    if tag[:1] == "{":
        tag = tag.rpartition("}")[2]
    elif ":" in tag:
        tag = tag.rpartition(":")[2]
    return tag.lower()


def epub_types(el: etree._Element) -> frozenset[str]:
    """The words of epub:type (namespaced in XML, a plain 'epub:type' attr in HTML)."""
    raw = el.get(f"{{{OPS_NS}}}type") or el.get("epub:type") or ""
    role = el.get("role") or ""
    words = raw.split()
    # ARIA roles such as doc-footnote say the same thing as epub:type footnote.
    words += [r[4:] for r in role.split() if r.startswith("doc-")]
    return frozenset(words)


def element_id(el: etree._Element) -> str | None:
    return (
        el.get("id")
        or el.get("{http://www.w3.org/XML/1998/namespace}id")
        or (el.get("name") if localname(el) == "a" else None)
    )


@dataclass(frozen=True)
class Mark:
    """An element carrying an id that a TOC entry points at."""

    id: str
    types: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Item:
    block: Block
    note: bool = False  # a footnote/endnote body
    hlevel: int = 0  # 1..6 for h1..h6 headings


Event = Mark | Item

_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK = {
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "center",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hgroup",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
    "html",
    "default",
    "switch",
    *_HEADINGS,
}
_SKIP_TAGS = {
    "head",
    "script",
    "style",
    "title",
    "rt",
    "rp",
    "template",
    "noscript",
    "svg",
    "audio",
    "video",
    "iframe",
    "canvas",
    "input",
    "select",
    "textarea",
    "button",
    "object",
    "embed",
    "map",
    "meta",
    "link",
    "case",  # epub:switch: only epub:default is read
}
_SKIP_TYPES = {"pagebreak", "toc", "landmarks", "page-list", "noteref", "backlink", "loi", "lot"}
_NOTE_TYPES = {"footnote", "endnote", "rearnote", "note", "footnotes", "endnotes", "rearnotes"}
_SKIP_CLASSES = {"pagenum", "pageno", "page-number", "pagebreak"}
# Link text that is only a note number or symbol: 12, [12], (12), *, †, ‡, §.
_NOTE_MARK = re.compile(r"^[\[(]?\s*(?:\d{1,4}|[*†‡§¶#]{1,3}|[a-z])\s*[\])]?\.?$", re.IGNORECASE)
_DIGIT_MARK = re.compile(r"^[\[(]?\s*(?:\d{1,4}|[*†‡§¶#]{1,3})\s*[\])]?\.?$")
_MAX_DEPTH = 200
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _is_note_link(el: etree._Element, name: str) -> bool:
    """A footnote marker: a link (or superscript link) whose text is a number or symbol."""
    if name == "a" and (el.get("href") is not None):
        text = clean_text("".join(el.itertext()))
        if _DIGIT_MARK.match(text) or text in ("↩", "↑", "^"):
            return True
        if _NOTE_MARK.match(text) and (
            any(localname(c) == "sup" for c in el)
            or ((parent := el.getparent()) is not None and localname(parent) == "sup")
        ):
            return True
    if name == "sup":
        links = [c for c in el if localname(c) == "a" and c.get("href") is not None]
        if (
            links
            and not (el.text or "").strip()
            and all(_NOTE_MARK.match(clean_text("".join(a.itertext()))) for a in links)
        ):
            return True
    return False


@dataclass
class _Walk:
    targets: frozenset[str]
    events: list[Event] = field(default_factory=list)
    buf: list[str] = field(default_factory=list)
    kind: BlockKind = "paragraph"
    note: bool = False
    hlevel: int = 0
    captions: bool = True
    skip_matter: bool = False
    left_out: list[str] = field(default_factory=list)
    lang: str | None = None  # declared by the innermost block element that says
    alphabet: str = "ipa"  # ssml:alphabet in force (inherited)
    phs: list[tuple[str, str]] = field(default_factory=list)  # (ph, alphabet) per _OPEN
    in_ph: bool = False

    def flush(self) -> None:
        if not self.buf:
            return
        text = clean_text("".join(self.buf))
        if "[" in text or "(" in text:
            text = clean_text(_EMPTY_BRACKETS.sub("", text))
        self.buf = []
        phonemes: tuple[Phoneme, ...] = ()
        if self.phs:
            text, phonemes = _take_phonemes(text, self.phs)
            self.phs = []
        if text:
            kind: BlockKind = "note" if self.note and self.kind != "heading" else self.kind
            self.events.append(Item(Block(kind, text, self.lang, phonemes), self.note, self.hlevel))

    def text(self, s: str | None) -> None:
        if s:
            if _OPEN in s or _CLOSE in s:
                s = s.replace(_OPEN, "").replace(_CLOSE, "")
            self.buf.append(s)

    def visit(self, el: etree._Element, depth: int) -> None:
        if isinstance(el, etree._Entity):  # its tag is the etree.Entity factory
            ref = html.entities.html5.get(f"{el.name};")
            self.text(ref)  # unknown (possibly hostile) entities are dropped
            self.text(el.tail)
            return
        tag = el.tag
        if not isinstance(tag, str):  # comment, processing instruction
            self.text(el.tail)
            return
        name = localname(el)
        eid = element_id(el)
        types = epub_types(el)
        if eid is not None and eid in self.targets:
            self.flush()
            self.events.append(Mark(eid, types))
        if self._skipped(el, name, types):
            self.text(el.tail)
            return
        if self.skip_matter and (why := matter_kind(el, name)):
            self.flush()
            chars = len(clean_text(" ".join(el.itertext())))
            if chars:
                self.left_out.append(f"{why}: {chars:,} characters")
            self.text(el.tail)
            return
        if name == "img" or (name == "image" and el.get("alt") is not None):
            alt = clean_text(el.get("alt") or "") if self.captions else ""
            if alt and not _GENERIC_ALT.match(alt):
                self.flush()
                self.events.append(Item(Block("image_alt", alt), self.note))
            self.text(el.tail)
            return
        if name == "br":
            self.buf.append(" ")
            self.text(el.tail)
            return
        if name == "math":
            self.text(el.get("alttext"))
            self.text(el.tail)
            return
        if depth > _MAX_DEPTH:  # absurd nesting: keep the words, not the structure
            self.text(" ".join(el.itertext()))
            self.text(el.tail)
            return
        saved_alphabet = self.alphabet
        self.alphabet = el.get(_ALPHABET) or self.alphabet
        ph = (el.get(_PH) or "").strip()
        if ph and not self.in_ph and name not in _BLOCK:
            self.in_ph = True
            self.phs.append((ph, self.alphabet))
            self.buf.append(_OPEN)
            self.text(el.text)
            for child in el:
                self.visit(child, depth + 1)
            self.buf.append(_CLOSE)
            self.in_ph = False
            self.alphabet = saved_alphabet
            self.text(el.tail)
            return
        self._contents(el, name, types, depth)
        self.alphabet = saved_alphabet
        self.text(el.tail)

    def _contents(self, el: etree._Element, name: str, types: frozenset[str], depth: int) -> None:
        if name in _BLOCK:
            saved = (self.kind, self.note, self.hlevel, self.lang)
            self.flush()
            declared = el.get(_XML_LANG) or el.get("lang")
            if declared and declared.strip():
                self.lang = declared.strip()
            if name in _HEADINGS:
                self.kind, self.hlevel = "heading", _HEADINGS[name]
            elif name in ("li", "dt", "dd"):
                self.kind = "list_item" if self.kind != "heading" else self.kind
            elif name == "blockquote":
                self.kind = "quote"
            if name == "aside" or (types & _NOTE_TYPES):
                self.note = True
            self.text(el.text)
            for child in el:
                self.visit(child, depth + 1)
            self.flush()
            self.kind, self.note, self.hlevel, self.lang = saved
        else:
            if types & _NOTE_TYPES:  # an inline footnote body (span epub:type=footnote)
                saved_note = self.note
                self.flush()
                self.note = True
                self.text(el.text)
                for child in el:
                    self.visit(child, depth + 1)
                self.flush()
                self.note = saved_note
            else:
                self.text(el.text)
                for child in el:
                    self.visit(child, depth + 1)

    def _skipped(self, el: etree._Element, name: str, types: frozenset[str]) -> bool:
        if name in _SKIP_TAGS or el.get("hidden") is not None:
            return True
        if name == "figcaption" and not self.captions:
            return True
        if types & _SKIP_TYPES:
            return True
        cls = el.get("class")
        if cls and not _SKIP_CLASSES.isdisjoint(cls.split()):
            return True
        return _is_note_link(el, name)


_PG_BOILERPLATE_IDS = {
    "pg-header": "Project Gutenberg header",
    "pg-footer": "Project Gutenberg licence",
}
_CONTENTS_HEADING = re.compile(
    r"^(the )?(table of )?contents\.?$|^table des mati[eè]res$|^inhalt(sverzeichnis)?$"
    r"|^índice$|^目次$|^目錄$",
    re.IGNORECASE,
)
_LINK_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def matter_kind(el: etree._Element, name: str) -> str | None:
    """What kind of front or back matter ``el`` is, or None: Project Gutenberg's header
    and licence sections (``pg-header`` / ``pg-footer``, ``pg-boilerplate``), a contents
    heading, and a contents list (three or more links into the book carrying most of the
    element's text)."""
    eid = el.get("id") or ""
    if eid in _PG_BOILERPLATE_IDS:
        return _PG_BOILERPLATE_IDS[eid]
    cls = (el.get("class") or "").split()
    if "pg-boilerplate" in cls:
        return "Project Gutenberg boilerplate"
    if name in _HEADINGS and _CONTENTS_HEADING.match(clean_text(" ".join(el.itertext()))):
        return "contents heading"
    if name in ("table", "ul", "ol", "dl", "div", "p", "section", "nav"):
        links = [
            a
            for a in el.iter()
            if isinstance(a.tag, str)
            and localname(a) == "a"
            and (href := a.get("href")) is not None
            and not _LINK_SCHEME.match(href)
        ]
        if len(links) >= 3:
            text = clean_text(" ".join(el.itertext()))
            linked = sum(len(clean_text(" ".join(a.itertext()))) for a in links)
            if text and linked >= 0.6 * len(text.replace(" ", "")) and len(links) * 200 > len(text):
                return "contents list"
    return None


def _take_phonemes(text: str, phs: list[tuple[str, str]]) -> tuple[str, tuple[Phoneme, ...]]:
    """``text`` without its _OPEN/_CLOSE marks (whitespace collapsed again where a mark
    stood between two spaces), and a Phoneme for each marked, non-empty stretch.
    ``phs`` holds (ph, alphabet) for each _OPEN in order; a mark whose partner was
    lost (flushed apart) is dropped."""
    out: list[str] = []
    found: list[Phoneme] = []
    n = 0  # index into phs of the next _OPEN
    start: int | None = None
    size = 0
    for ch in text:
        if ch == _OPEN:
            start, n = size, n + 1
            continue
        if ch == _CLOSE:
            if start is not None and n <= len(phs):
                a, b = start, size
                while a < b and _out_char(out, a) == " ":
                    a += 1
                while b > a and _out_char(out, b - 1) == " ":
                    b -= 1
                if b > a:
                    ph, alphabet = phs[n - 1]
                    found.append(Phoneme(a, b, ph, alphabet))
            start = None
            continue
        if ch == " " and (size == 0 or out[-1] == " "):
            continue
        out.append(ch)
        size += 1
    while out and out[-1] == " ":
        out.pop()
    joined = "".join(out)
    return joined, tuple(p for p in found if p.end <= len(joined))


def _out_char(out: list[str], i: int) -> str:
    return out[i] if 0 <= i < len(out) else ""


def body_of(root: etree._Element) -> etree._Element:
    for el in root.iter():
        if localname(el) == "body":
            return el
    return root


def doc_types(root: etree._Element) -> frozenset[str]:
    """epub:type words of the body and of its direct children (sections)."""
    body = body_of(root)
    words = set(epub_types(body))
    for child in body:
        if isinstance(child.tag, str):
            words |= epub_types(child)
    return frozenset(words)


def extract(
    root: etree._Element,
    targets: frozenset[str] = frozenset(),
    captions: bool = True,
    left_out: list[str] | None = None,
) -> list[Event]:
    """The document's text as events in reading order (see module docstring).
    ``captions=False`` leaves out image alt text and figure captions. Given a
    ``left_out`` list, front and back matter inside the document (``matter_kind``) is
    left out and said there."""
    walk = _Walk(targets, captions=captions, skip_matter=left_out is not None)
    body = body_of(root)
    walk.alphabet = next(
        (a for a in (e.get(_ALPHABET) for e in body.iterancestors()) if a), walk.alphabet
    )
    walk.visit(body, 0)
    walk.flush()
    if left_out is not None:
        left_out.extend(walk.left_out)
    return walk.events
