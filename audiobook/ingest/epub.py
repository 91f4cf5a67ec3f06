"""EPUB 2 and 3 ingestor: zip -> container -> OPF -> spine + TOC -> Book.

The package is read with zipfile + lxml, in memory and within limits (``_safezip``),
rather than through ebooklib's ``read_epub``: that reads every member whole, raises
KeyError on a manifest item missing from the zip, and has no zip-bomb limits. Each
content document is parsed safely (``_xhtml``); malformed XHTML is recovered with an
HTML parser and reported.

Chapters, in reading (spine) order:

- With a usable table of contents (EPUB3 nav preferred, else the EPUB2 NCX that the
  spine's ``toc`` attribute names): one chapter per TOC entry at every level, titled
  and levelled as the TOC says. An entry that points at an anchor starts its chapter at
  that anchor, so one file can hold many chapters; an entry with no text of its own
  still yields an (empty) chapter. Entries are placed in spine order; an entry whose
  target cannot be found follows its TOC predecessor. Text before the first entry's
  target (a cover page, a PG header) goes to the first chapter; spine documents that
  no entry points at go to the chapter before them. Nothing is dropped.
- A TOC is useless when it has no entries, none of them points into the spine, or all
  of them are Project Gutenberg licence sections. Then chapters come from h1/h2
  headings, else from "Chapter 3" / "第三回" paragraphs, else one per spine document;
  text before the first of them is a chapter titled with the book's title.
- Non-linear spine items (covers, pop-up notes, a second TOC) are read only when a TOC
  entry points at them; otherwise they are left out, with a warning if they hold text.
- Front and back matter (cover, title page, imprint, copyright, TOC, colophon, index,
  licence) get ``role`` "front"/"back" from epub:type, landmarks, the OPF guide or the
  title; ``IngestOptions.skip_matter`` drops those chapters, PG header/footer text and
  front-matter documents that no TOC entry points at.
"""

from __future__ import annotations

import os
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lxml import etree

from ..errors import CorruptDocument, EncryptedDocument, InputError, NoTextError
from ..model import Block, Book, Chapter, ChapterRole, Cover, Lexicon
from ._safezip import DEFAULT_LIMITS, SafeZip, UnsafeName, ZipLimitExceeded, ZipLimits
from ._xhtml import (
    Event,
    Item,
    Mark,
    clean_text,
    doc_types,
    epub_types,
    extract,
    localname,
    node_text,
    parse_xhtml,
    parse_xml,
)
from .base import IngestOptions, Ingestor

DC_NS = "http://purl.org/dc/elements/1.1/"
_MAX_WARNINGS = 50
# What a damaged zip raises while a member is read: a bad CRC, a truncated deflate
# stream, a seek past the end, an unknown compression method, a password-protected
# member.
_ZIP_DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)

_LICENCE = re.compile(
    r"project gutenberg|full licen[cs]e|^\*+\s*(start|end)\b|gutenberg-tm", re.IGNORECASE
)
_FRONT_TITLES = re.compile(
    r"^(the )?(cover|couverture|title ?page|half ?title|page de titre|imprint|copyright"
    r"( page)?|(table of )?contents|brief contents|table des mati[eè]res|表紙|目次)$",
    re.IGNORECASE,
)
_BACK_TITLES = re.compile(r"^(colophon|uncopyright|index|licen[cs]e)$", re.IGNORECASE)
_FRONT_TYPES = {
    "cover",
    "titlepage",
    "halftitlepage",
    "halftitle",
    "imprint",
    "copyright-page",
    "toc",
    "loi",
    "lot",
    "seriespage",
    "errata",
}
_BACK_TYPES = {"colophon", "index", "index-group"}
_GUIDE_TYPES: dict[str, ChapterRole] = {
    "cover": "front",
    "title-page": "front",
    "copyright-page": "front",
    "toc": "front",
    "colophon": "back",
    "index": "back",
}
_PG_START = re.compile(r"^\*{3}\s*START OF (THIS|THE) PROJECT GUTENBERG", re.IGNORECASE)
_PG_END = re.compile(r"^\*{3}\s*END OF (THIS|THE) PROJECT GUTENBERG", re.IGNORECASE)
_PG_START_IN = re.compile(
    r"\*{3}\s*START OF (THIS|THE) PROJECT GUTENBERG[^*]*(\*{3})?", re.IGNORECASE
)
_PG_END_IN = re.compile(
    r"(End of (the )?Project Gutenberg\S* (EBook|etext)[^*]*)?"
    r"\*{3}\s*END OF (THIS|THE) PROJECT GUTENBERG",
    re.IGNORECASE,
)
_PG_PRODUCED = re.compile(r"^(e-?text |ebook )?(produced|prepared|transcribed) by\b", re.IGNORECASE)
_PG_END_OF = re.compile(r"^end of (the |this )?project gutenberg", re.IGNORECASE)
_CHAPTER_PARA = re.compile(
    r"^(第[一二三四五六七八九十百千零〇○两\d]+[回章節节卷部篇]"
    r"|(chapter|chapitre|cap[ií]tulo|capitolo|kapitel|book|livre|part)\s+"
    r"([ivxlcdm]+|\d+|[a-z]+)\b)",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------- package


@dataclass(frozen=True)
class _Item:
    id: str
    path: str  # zip member name, resolved against the OPF folder
    media_type: str
    properties: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Entry:
    """One TOC entry (nav <li> or NCX navPoint)."""

    title: str
    level: int
    path: str | None
    frag: str | None


@dataclass
class _Package:
    opf_path: str
    manifest: dict[str, _Item]
    spine: list[tuple[_Item, bool]]  # (item, linear)
    titles: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    language: str | None = None
    publisher: str | None = None
    date: str | None = None
    description: str | None = None
    direction: str | None = None
    toc_id: str | None = None
    cover_id: str | None = None
    guide: list[tuple[str, str, str | None]] = field(default_factory=list)


def resolve_href(base: str, href: str) -> tuple[str | None, str | None]:
    """(zip path, fragment) of an href found in the document at zip path ``base``.
    External links give (None, None)."""
    parts = urlsplit(href.strip())
    if parts.scheme or parts.netloc:
        return None, None
    frag = unquote(parts.fragment) or None
    if not parts.path:
        return base, frag
    path = posixpath.normpath(posixpath.join(posixpath.dirname(base), unquote(parts.path)))
    return path, frag


def _text(el: etree._Element) -> str:
    return node_text(el)


def _find_opf(z: SafeZip, path: Path, warnings: list[str]) -> str:
    if z.exists("META-INF/container.xml"):
        try:
            root = parse_xml(z.read("META-INF/container.xml"))
            for el in root.iter():
                if localname(el) == "rootfile":
                    full = el.get("full-path") or ""
                    media = el.get("media-type") or "application/oebps-package+xml"
                    if full and media == "application/oebps-package+xml":
                        if z.exists(full):
                            return full
                        warnings.append(f"container.xml names a missing package {full!r}")
        except (etree.XMLSyntaxError, ValueError, KeyError) as exc:
            warnings.append(f"META-INF/container.xml is damaged ({_first_line(exc)})")
    candidates = sorted(n for n in z.names if n.lower().endswith(".opf"))
    if not candidates:
        raise CorruptDocument(path, "not an EPUB (no OPF package document)")
    if z.exists("META-INF/container.xml"):
        warnings.append(f"used package document {candidates[0]!r} found by its name")
    return candidates[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _parse_opf(data: bytes, opf_path: str) -> _Package:
    root = parse_xml(data)
    pkg = _Package(opf_path=opf_path, manifest={}, spine=[])
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        name = localname(el)
        ns = etree.QName(el).namespace if el.tag.startswith("{") else None
        if ns == DC_NS or el.tag.startswith("dc:"):
            value = _text(el)
            if not value:
                continue
            if name == "title":
                pkg.titles.append(value)
            elif name == "creator":
                pkg.authors.append(value)
            elif name == "language" and pkg.language is None:
                pkg.language = value
            elif name == "publisher" and pkg.publisher is None:
                pkg.publisher = value
            elif name == "date" and pkg.date is None:
                pkg.date = value
            elif name == "description" and pkg.description is None:
                pkg.description = _strip_markup(value)
        elif name == "meta" and el.get("name") == "cover" and el.get("content"):
            pkg.cover_id = el.get("content")
        elif name == "item":
            iid, href = el.get("id"), el.get("href")
            if iid and href and iid not in pkg.manifest:
                ipath, _ = resolve_href(opf_path, href)
                if ipath is not None:
                    pkg.manifest[iid] = _Item(
                        iid,
                        ipath,
                        (el.get("media-type") or "").lower(),
                        frozenset((el.get("properties") or "").split()),
                    )
        elif name == "spine":
            pkg.toc_id = el.get("toc")
            ppd = (el.get("page-progression-direction") or "").lower()
            pkg.direction = ppd if ppd in ("ltr", "rtl") else None
        elif name == "itemref":
            item = pkg.manifest.get(el.get("idref") or "")
            if item is not None:
                pkg.spine.append((item, (el.get("linear") or "yes").lower() != "no"))
        elif name == "reference" and el.get("href"):
            rpath, rfrag = resolve_href(opf_path, el.get("href") or "")
            if rpath:
                pkg.guide.append(((el.get("type") or "").lower(), rpath, rfrag))
    return pkg


def _strip_markup(value: str) -> str:
    if "<" in value and ">" in value:
        return clean_text(re.sub(r"<[^>]*>", " ", value))
    return value


# ------------------------------------------------------------------------------- TOC


def _nav_entries(root: etree._Element, base: str) -> tuple[list[_Entry], dict[str, set[str]]]:
    """TOC entries (every <li> of the toc nav, at every depth) and landmark types by
    target ("path" or "path#frag")."""
    navs = [el for el in root.iter() if localname(el) == "nav"]
    toc = next((n for n in navs if "toc" in epub_types(n)), navs[0] if navs else None)
    landmarks: dict[str, set[str]] = {}
    for nav in navs:
        if "landmarks" in epub_types(nav):
            for a in nav.iter():
                if localname(a) == "a" and a.get("href"):
                    lpath, lfrag = resolve_href(base, a.get("href") or "")
                    if lpath:
                        key = lpath + (f"#{lfrag}" if lfrag else "")
                        landmarks.setdefault(key, set()).update(epub_types(a))
    entries: list[_Entry] = []
    if toc is None:
        return entries, landmarks

    def walk(el: etree._Element, level: int) -> None:
        for child in el:
            if localname(child) == "li":
                label = next((c for c in child if localname(c) in ("a", "span")), None)
                if label is None:
                    title = clean_text(child.text or "")
                    href = None
                else:
                    title = node_text(label)
                    href = label.get("href") if localname(label) == "a" else None
                path, frag = resolve_href(base, href) if href else (None, None)
                entries.append(_Entry(title, level, path, frag))
                walk(child, level + 1)
            elif isinstance(child.tag, str):
                walk(child, level)

    walk(toc, 1)
    return entries, landmarks


def _ncx_entries(root: etree._Element, base: str) -> list[_Entry]:
    entries: list[_Entry] = []

    def walk(el: etree._Element, level: int) -> None:
        for child in el:
            if localname(child) == "navpoint":
                title, src = "", None
                for sub in child:
                    sname = localname(sub)
                    if sname == "navlabel" and not title:
                        title = _text(sub)
                    elif sname == "content" and src is None:
                        src = sub.get("src")
                path, frag = resolve_href(base, src) if src else (None, None)
                entries.append(_Entry(title, level, path, frag))
                walk(child, level + 1)
            elif isinstance(child.tag, str) and localname(child) != "navlabel":
                walk(child, level)

    for el in root.iter():
        if localname(el) == "navmap":
            walk(el, 1)
            break
    return entries


def _inherit_targets(entries: list[_Entry]) -> list[_Entry]:
    """A heading entry with no link of its own points where its first child points."""
    out = list(entries)
    for i, e in enumerate(out):
        if e.path is None:
            for f in out[i + 1 :]:
                if f.level <= e.level:
                    break
                if f.path is not None:
                    out[i] = replace(e, path=f.path, frag=f.frag)
                    break
    return out


def _is_licence(title: str) -> bool:
    return (
        bool(_LICENCE.search(title))
        or bool(re.match(r"^section \d+\.", title, re.IGNORECASE))
        and "gutenberg" in title.lower()
    )


# -------------------------------------------------------------------------- assembly


@dataclass
class _Acc:
    """A chapter being filled."""

    title: str
    level: int
    source: str
    role: ChapterRole = "body"
    blocks: list[Block] = field(default_factory=list)
    notes: list[Block] = field(default_factory=list)
    entry: int | None = None

    def add(self, item: Item) -> None:
        (self.notes if item.note else self.blocks).append(item.block)


@dataclass
class _Doc:
    path: str
    events: list[Event]
    types: frozenset[str]


def _role_from_types(types: Iterable[str]) -> ChapterRole | None:
    t = set(types)
    if t & _BACK_TYPES:
        return "front" if "frontmatter" in t else "back"
    if t & _FRONT_TYPES:
        return "back" if "backmatter" in t else "front"
    return None


def _role_from_title(title: str) -> ChapterRole | None:
    if _is_licence(title) or _BACK_TITLES.match(title):
        return "back"
    if _FRONT_TITLES.match(title):
        return "front"
    return None


class EpubIngestor(Ingestor):
    name = "epub"
    extensions = (".epub",)

    def __init__(self, limits: ZipLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits

    def read(self, path: Path, options: IngestOptions) -> Book:
        path = Path(path)
        try:
            z = SafeZip(path, self.limits)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
            raise CorruptDocument(path, "not an EPUB (not a zip file)") from exc
        except (NotImplementedError, RuntimeError) as exc:
            raise CorruptDocument(path, f"not an EPUB (unsupported zip: {exc})") from exc
        except ZipLimitExceeded as exc:
            raise CorruptDocument(path, f"refused: {exc}") from exc
        except OSError as exc:
            raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
        try:
            with z:
                return _Reader(path, z, options).book()
        except ZipLimitExceeded as exc:
            raise CorruptDocument(path, f"refused, looks like a zip bomb: {exc}") from exc
        except _ZIP_DAMAGE as exc:
            raise CorruptDocument(path, f"damaged zip ({_first_line(exc)})") from exc


def read_epub(path: str | os.PathLike[str], options: IngestOptions | None = None) -> Book:
    """Read an EPUB into a Book. Raises InputError subclasses on bad input."""
    return EpubIngestor().read(Path(path), options or IngestOptions())


class _Reader:
    def __init__(self, path: Path, z: SafeZip, options: IngestOptions) -> None:
        self.path = path
        self.z = z
        self.options = options
        self.warnings: list[str] = []
        self.left_out: list[str] = []
        self._lower = {n.lower(): n for n in z.names}

    # ------------------------------------------------------------------ helpers

    def warn(self, message: str) -> None:
        if message in self.warnings:
            return
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == _MAX_WARNINGS:
            self.warnings.append("more problems were found and not listed")

    def member(self, name: str) -> str | None:
        """The zip member for a resolved path (exact, else case-insensitive)."""
        if self.z.exists(name):
            return name
        return self._lower.get(name.lower())

    def read_member(self, name: str) -> bytes | None:
        real = self.member(name)
        if real is None:
            return None
        try:
            return self.z.read(real)
        except UnsafeName:
            return None
        except ZipLimitExceeded:
            raise
        except _ZIP_DAMAGE as exc:
            self.warn(f"{name}: damaged in the zip ({_first_line(exc)}); left out")
            return None

    def load(self, name: str, targets: frozenset[str] = frozenset()) -> _Doc | None:
        data = self.read_member(name)
        if data is None:
            if self.member(name) is None:
                self.warn(f"missing resource: {name}")
            return None
        root, problem = parse_xhtml(data)
        if problem is not None:
            if root is None:
                self.warn(f"{name}: unreadable XHTML ({problem}); left out")
                return None
            self.warn(f"{name}: malformed XHTML ({problem}); recovered what could be read")
        assert root is not None
        left_out: list[str] | None = [] if self.options.skip_matter else None
        events = extract(root, targets, self.options.captions, left_out)
        self.left_out += [f"{name}: {what}" for what in left_out or ()]
        return _Doc(name, events, doc_types(root))

    # --------------------------------------------------------------------- book

    def book(self) -> Book:
        for bad in self.z.unsafe_names[:5]:
            self.warn(f"ignored zip member with an unsafe name: {bad!r}")
        opf_path = _find_opf(self.z, self.path, self.warnings)
        try:
            opf = self.z.read(opf_path)
            pkg = _parse_opf(opf, opf_path)
        except (etree.XMLSyntaxError, ValueError) as exc:
            raise CorruptDocument(
                self.path, f"damaged package document {opf_path} ({_first_line(exc)})"
            ) from exc
        if not pkg.spine:
            raise CorruptDocument(self.path, "not an EPUB (the package has no reading order)")
        self._check_encryption(pkg)
        lexicons: list[Lexicon] = []
        for item in pkg.manifest.values():
            if self.member(item.path) is None:
                self.warn(f"missing resource: {item.path}")
            elif item.media_type == "application/pls+xml":
                lexicon = self._lexicon(item.path)
                if lexicon is not None:
                    lexicons.append(lexicon)

        entries, landmarks = self._toc(pkg)
        guide_roles: dict[str, ChapterRole] = {}
        for gtype, gpath, gfrag in pkg.guide:
            if gtype in _GUIDE_TYPES:
                guide_roles[gpath + (f"#{gfrag}" if gfrag else "")] = _GUIDE_TYPES[gtype]
        spine_paths = {item.path for item, _ in pkg.spine}
        usable = [e for e in entries if e.path in spine_paths]
        title = pkg.titles[0] if pkg.titles else self.path.stem
        if usable and not all(_is_licence(e.title) for e in entries):
            accs = self._toc_chapters(pkg, entries, landmarks, guide_roles)
        else:
            if entries and not usable:
                self.warn(
                    "the table of contents points at nothing in the reading order; "
                    "chapters come from the text"
                )
            elif entries:
                self.warn(
                    "the table of contents lists only licence sections; chapters come from the text"
                )
            accs = self._fallback_chapters(pkg, title)
        chapters = self._finish(accs)

        return Book(
            title=title,
            chapters=tuple(chapters),
            authors=tuple(pkg.authors),
            language=pkg.language,
            cover=self._cover(pkg),
            source=str(self.path),
            publisher=pkg.publisher,
            date=pkg.date,
            description=pkg.description,
            direction=pkg.direction,  # type: ignore[arg-type]
            warnings=tuple(self.warnings),
            left_out=tuple(self.left_out),
            lexicons=tuple(lexicons),
        )

    def _lexicon(self, path: str) -> Lexicon | None:
        """A PLS lexicon of the manifest (EPUB 3 pronunciation), or None (with a
        warning) when it cannot be read."""
        data = self.read_member(path)
        if data is None:
            return None
        try:
            root = parse_xml(data)
            content = data.decode("utf-8")
        except (etree.XMLSyntaxError, ValueError) as exc:
            self.warn(f"pronunciation lexicon {path} is not valid PLS ({_first_line(exc)})")
            return None
        if etree.QName(root).localname != "lexicon":
            self.warn(f"pronunciation lexicon {path} is not a PLS lexicon")
            return None
        lexemes = sum(1 for el in root.iter(etree.Element) if etree.QName(el).localname == "lexeme")
        return Lexicon(
            source=path,
            content=content,
            language=root.get("{http://www.w3.org/XML/1998/namespace}lang") or "",
            alphabet=root.get("alphabet") or "",
            lexemes=lexemes,
        )

    def _check_encryption(self, pkg: _Package) -> None:
        data = self.read_member("META-INF/encryption.xml")
        if not data:
            return
        try:
            root = parse_xml(data)
        except (etree.XMLSyntaxError, ValueError):
            return
        encrypted: set[str] = set()
        for enc in root.iter():
            if localname(enc) != "encrypteddata":
                continue
            algos = {
                m.get("Algorithm", "") for m in enc.iter() if localname(m) == "encryptionmethod"
            }
            if algos and all("embedding" in a or "pdf/enc#RC" in a for a in algos):
                continue  # font obfuscation, not DRM
            for ref in enc.iter():
                if localname(ref) == "cipherreference" and ref.get("URI"):
                    encrypted.add(posixpath.normpath(unquote(ref.get("URI") or "")))
        if any(item.path in encrypted for item, _ in pkg.spine):
            raise EncryptedDocument(self.path, "DRM-protected EPUB (its text is encrypted)")

    def _toc(self, pkg: _Package) -> tuple[list[_Entry], dict[str, set[str]]]:
        entries: list[_Entry] = []
        landmarks: dict[str, set[str]] = {}
        nav = next((i for i in pkg.manifest.values() if "nav" in i.properties), None)
        if nav is not None:
            data = self.read_member(nav.path)
            if data is not None:
                root, problem = parse_xhtml(data)
                if problem:
                    self.warn(f"{nav.path}: malformed navigation document ({problem})")
                if root is not None:
                    entries, landmarks = _nav_entries(root, nav.path)
        if not entries:
            ncx = pkg.manifest.get(pkg.toc_id or "")
            if ncx is None:
                ncx = next(
                    (
                        i
                        for i in pkg.manifest.values()
                        if i.media_type == "application/x-dtbncx+xml"
                    ),
                    None,
                )
            if ncx is not None:
                data = self.read_member(ncx.path)
                if data is not None:
                    try:
                        entries = _ncx_entries(parse_xml(data), ncx.path)
                    except (etree.XMLSyntaxError, ValueError) as exc:
                        self.warn(f"{ncx.path}: damaged NCX ({_first_line(exc)}); ignored")
        # Some books' TOCs spell file names in another case than the manifest.
        known = {i.path for i in pkg.manifest.values()}
        folded = {p.lower(): p for p in known}
        entries = [
            e
            if e.path is None or e.path in known
            else replace(e, path=folded.get(e.path.lower(), e.path))
            for e in entries
        ]
        return _inherit_targets(entries), landmarks

    # ---------------------------------------------------------------- TOC mode

    def _toc_chapters(
        self,
        pkg: _Package,
        entries: list[_Entry],
        landmarks: dict[str, set[str]],
        guide_roles: dict[str, ChapterRole],
    ) -> list[_Acc]:
        targeted = {e.path for e in entries if e.path}
        frags: dict[str, set[str]] = {}
        for e in entries:
            if e.path and e.frag:
                frags.setdefault(e.path, set()).add(e.frag)

        docs: list[_Doc] = []
        seen: set[str] = set()
        for item, linear in pkg.spine:
            if item.path in seen:
                continue
            seen.add(item.path)
            if not linear and item.path not in targeted:
                if "nav" not in item.properties:
                    self._note_left_out(item.path)
                continue
            if not _is_content(item):
                continue
            doc = self.load(item.path, frozenset(frags.get(item.path, ())))
            if doc is not None:
                docs.append(doc)

        loaded = {d.path for d in docs}
        marks_in: dict[str, set[str]] = {
            d.path: {ev.id for ev in d.events if isinstance(ev, Mark)} for d in docs
        }
        at_start: dict[str, list[int]] = {}
        at_mark: dict[tuple[str, str], list[int]] = {}
        unplaced: list[int] = []
        for i, e in enumerate(entries):
            if e.path is None or e.path not in loaded:
                unplaced.append(i)
                if e.path is not None and self.member(e.path) is None:
                    self.warn(f"TOC entry {e.title!r} points at a missing document {e.path}")
                elif e.path is not None:
                    self.warn(f"TOC entry {e.title!r} points outside the reading order ({e.path})")
            elif e.frag and e.frag in marks_in[e.path]:
                at_mark.setdefault((e.path, e.frag), []).append(i)
            else:
                if e.frag:
                    self.warn(
                        f"TOC entry {e.title!r} points at a missing anchor "
                        f"#{e.frag} in {e.path}; it starts at the top of the file"
                    )
                at_start.setdefault(e.path, []).append(i)

        chapters: list[_Acc] = []
        leading: list[Item] = []
        current: _Acc | None = None
        skip_doc = False

        def open_entry(i: int, types: frozenset[str], key: str) -> _Acc:
            e = entries[i]
            role = (
                _role_from_types(landmarks.get(key, ()))
                or guide_roles.get(key)
                or _role_from_types(types)
                or _role_from_title(e.title)
                or "body"
            )
            acc = _Acc(e.title, e.level, key, role, entry=i)
            chapters.append(acc)
            return acc

        for doc in docs:
            starts = at_start.get(doc.path, [])
            for i in starts:
                current = open_entry(i, doc.types, doc.path)
            # A document no entry starts at belongs to the chapter before it; under
            # skip_matter a front/back-matter document of that kind is left out.
            skip_doc = (
                not starts and self.options.skip_matter and _role_from_types(doc.types) is not None
            )
            if skip_doc:
                chars = sum(len(e.block.text) for e in doc.events if isinstance(e, Item))
                if chars:
                    self.left_out.append(
                        f"{doc.path}: {_role_from_types(doc.types)} matter "
                        f"({', '.join(sorted(doc.types))}), {chars:,} characters"
                    )
            for ev in doc.events:
                if isinstance(ev, Mark):
                    for i in at_mark.pop((doc.path, ev.id), []):
                        current = open_entry(i, ev.types, f"{doc.path}#{ev.id}")
                        skip_doc = False
                elif skip_doc:
                    continue
                elif current is None:
                    leading.append(ev)
                else:
                    current.add(ev)

        # Entries whose target was not found follow the nearest entry before them in
        # the TOC that was placed, in TOC order (linear, whatever the TOC's size).
        placed = {c.entry for c in chapters}
        after: dict[int | None, list[_Acc]] = {}
        pending = set(unplaced)
        last: int | None = None
        for i, e in enumerate(entries):
            if i in placed:
                last = i
            elif i in pending:
                after.setdefault(last, []).append(
                    _Acc(
                        e.title, e.level, e.path or "", _role_from_title(e.title) or "body", entry=i
                    )
                )
        result = list(after.get(None, []))
        for c in chapters:
            result.append(c)
            result.extend(after.get(c.entry, []))
        if leading and result:
            # Text before the first placed entry (or, if no entry could be placed, all
            # of it) opens the first placed chapter, else the first chapter.
            first = chapters[0] if chapters else result[0]
            first.blocks[:0] = [it.block for it in leading if not it.note]
            first.notes[:0] = [it.block for it in leading if it.note]
        return result

    def _note_left_out(self, name: str) -> None:
        doc = self.load(name)
        if doc is None:
            return
        chars = sum(
            len(ev.block.text)
            for ev in doc.events
            if isinstance(ev, Item) and ev.block.kind != "image_alt"
        )
        if chars:
            self.warn(
                f"left out non-linear spine item {name} ({chars} characters) that "
                f"no TOC entry points at"
            )

    # ----------------------------------------------------------- fallback mode

    def _fallback_chapters(self, pkg: _Package, title: str) -> list[_Acc]:
        docs: list[_Doc] = []
        seen: set[str] = set()
        for item, linear in pkg.spine:
            if item.path in seen:
                continue
            seen.add(item.path)
            if not linear:
                if "nav" not in item.properties:
                    self._note_left_out(item.path)
                continue
            if not _is_content(item):
                continue
            doc = self.load(item.path)
            if doc is not None:
                docs.append(doc)

        items = [(d, ev) for d in docs for ev in d.events if isinstance(ev, Item)]
        levels = sorted({ev.hlevel for _, ev in items if ev.hlevel and not ev.note})
        split: dict[int, int] = {}
        count = 0
        for lvl in levels:
            if lvl > 3:
                break
            split[lvl] = len(split) + 1
            count += sum(1 for _, ev in items if ev.hlevel == lvl and not ev.note)
            if count >= 2:
                break
        if count < 2:
            split = {}
        patterned = (
            not split
            and sum(
                1
                for _, ev in items
                if ev.block.kind == "paragraph"
                and len(ev.block.text) <= 60
                and _CHAPTER_PARA.match(ev.block.text)
            )
            >= 2
        )

        chapters: list[_Acc] = []
        leading = _Acc(title, 1, docs[0].path if docs else "", "body")
        current = leading
        in_licence = False
        last_doc: str | None = None
        for doc, ev in items:
            text = ev.block.text
            new_doc = doc.path != last_doc
            last_doc = doc.path
            if _PG_START.match(text) and current is leading:
                leading.role = "front"
            if not in_licence and not ev.note and _PG_END.match(text):
                in_licence = True
                current = _Acc("Project Gutenberg licence", 1, doc.path, "back")
                chapters.append(current)
            elif in_licence:
                pass
            elif split and ev.hlevel in split and not ev.note:
                current = _Acc(text, split[ev.hlevel], doc.path, _role_from_title(text) or "body")
                chapters.append(current)
            elif (
                patterned
                and ev.block.kind == "paragraph"
                and len(text) <= 60
                and _CHAPTER_PARA.match(text)
            ):
                current = _Acc(text, 1, doc.path)
                chapters.append(current)
                ev = Item(Block("heading", text), ev.note, 1)
            elif not split and not patterned and new_doc:
                head = next(
                    (e.block.text for e in doc.events if isinstance(e, Item) and e.hlevel), None
                )
                current = _Acc(head or f"Part {len(chapters) + 1}", 1, doc.path)
                chapters.append(current)
            current.add(ev)
        if leading.blocks or leading.notes:
            chapters.insert(0, leading)
        return chapters

    # ------------------------------------------------------------------ finish

    def _finish(self, accs: list[_Acc]) -> list[Chapter]:
        opts = self.options
        if opts.skip_matter:
            self.left_out += _trim_gutenberg(accs)
        chapters: list[Chapter] = []
        for n, acc in enumerate(accs, 1):
            if opts.skip_matter and acc.role != "body":
                chars = sum(len(b.text) for b in (*acc.blocks, *acc.notes))
                if chars:
                    self.left_out.append(
                        f"{acc.title or f'chapter {n}'}: {acc.role} matter, {chars:,} characters"
                    )
                continue
            title = (
                acc.title
                or next((b.text for b in acc.blocks if b.kind == "heading"), "")
                or f"Chapter {n}"
            )
            notes = () if opts.footnotes == "drop" else tuple(acc.notes)
            chapters.append(
                Chapter(
                    title=title,
                    level=max(1, acc.level),
                    blocks=tuple(acc.blocks),
                    footnotes=notes,
                    role=acc.role,
                    source=acc.source,
                )
            )
        if not any(c.blocks or c.footnotes for c in chapters):
            raise NoTextError(self.path, "no text to speak (images only?)")
        return chapters

    def _cover(self, pkg: _Package) -> Cover | None:
        item = next((i for i in pkg.manifest.values() if "cover-image" in i.properties), None)
        if item is None and pkg.cover_id:
            item = pkg.manifest.get(pkg.cover_id)
        if item is None or not item.media_type.startswith("image/"):
            return None
        data = self.read_member(item.path)
        if not data:
            return None
        if data[:3] == b"\xff\xd8\xff":
            return Cover(data, "image/jpeg")
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return Cover(data, "image/png")
        return None  # SVG, GIF, WebP: not usable as M4B cover art


def _is_content(item: _Item) -> bool:
    mt = item.media_type
    return (
        mt in ("application/xhtml+xml", "text/html", "application/xml", "text/xml", "")
        or mt.endswith("+xml")
        and "svg" not in mt
        and "ncx" not in mt
    )


def _trim_gutenberg(accs: list[_Acc]) -> list[str]:
    """Drop Project Gutenberg's header (up to its START line) and footer (from its END
    line): they are licence text, not the book. The lines may sit inside a block (a
    <pre> header), which is then cut at the line. Returns what was left out."""
    flat = [(a, i) for a in accs for i in range(len(a.blocks))]
    start = next(
        (k for k, (a, i) in enumerate(flat[:400]) if _PG_START_IN.search(a.blocks[i].text)), None
    )
    end = next((k for k, (a, i) in enumerate(flat) if _PG_END_IN.search(a.blocks[i].text)), None)
    if start is None and end is None:
        return []
    # The producers' credit just after START and the "End of Project Gutenberg's ..."
    # line just before END are the header's and the footer's too.
    credit = end_of = None
    if start is not None and start + 1 < len(flat) and start + 1 != end:
        a, i = flat[start + 1]
        if _PG_PRODUCED.match(a.blocks[i].text):
            credit = start + 1
    if end is not None and end > 0 and end - 1 != start:
        a, i = flat[end - 1]
        if _PG_END_OF.match(a.blocks[i].text):
            end_of = end - 1
    kept: dict[int, list[Block]] = {id(a): [] for a in accs}
    header = licence = 0
    for k, (a, i) in enumerate(flat):
        block = a.blocks[i]
        text = block.text
        if start is not None and k < start or k == credit:
            header += len(text)
            continue
        if k == end_of:
            licence += len(text)
            continue
        if end is not None and k > end:
            licence += len(text)
            continue
        if k == end:
            m = _PG_END_IN.search(text)
            assert m is not None
            text = text[: m.start()].strip()
        if k == start:
            m = _PG_START_IN.search(text)
            assert m is not None
            text = text[m.end() :].strip()
            if _PG_PRODUCED.match(text) and len(text) < 300:
                text = ""
        if k in (start, end):
            if k == start:
                header += len(block.text) - len(text)
            else:
                licence += len(block.text) - len(text)
        if text:
            kept[id(a)].append(block if text == block.text else Block(block.kind, text, block.lang))
    for a in accs:
        a.blocks = kept[id(a)]
    said = []
    if header:
        said.append(f"Project Gutenberg header: {header:,} characters, up to its START line")
    if licence:
        said.append(f"Project Gutenberg licence: {licence:,} characters, from its END line")
    return said
