"""Saved web articles: the main article only, as a Book.

The stages, each a plain function:

    bytes --decode_bytes--> text --sanitize_markup--> text
          --page_metadata--> PageMeta (title, byline, date, language, direction, lead image)
          --extract_article--> article HTML (nav, ads, comments dropped)
          --article_blocks--> [(heading level, title) | Block]
          --chapterize--> Chapter*

Article extraction runs two extractors and keeps one article (``choose_article``):
trafilatura (which has its own fallbacks) and readability-lxml's port of Arc90
Readability. readability's is kept where it holds trafilatura's text (95% of its
words, 70% of a text under 2,000 characters, at most 1.3 times its length), since it
keeps the page's own figures, tables and code; trafilatura's otherwise, as readability
alone picks the wrong node when an article is split into many sibling blocks and then
speaks a caption or one paragraph. On trafilatura's evaluation set (250 pages, phrase
scoring, ``bench/bench_html_extractors.py``) the choice scores F1 0.920 against 0.910
for bare trafilatura and 0.877 for bare readability-lxml, and no page comes out empty or
under a tenth of trafilatura's length; the six pages of the corpus with
mozilla/readability's expected text keep a word similarity of 0.945 or more. Data
tables are read row by row (``table_sentences``). Title, byline and date are ours and
follow Readability.js's rules (JSON-LD, then ``<meta>`` tags, then the ``<title>`` with
its site name cut off, then a byline element in the page), because neither extractor
is asked for them.

Hostile markup: control characters and NUL bytes are removed, attribute values over
``MAX_ATTRIBUTE`` characters are emptied (libxml2 silently drops the rest of a document
after a huge one), a DOCTYPE's internal subset is removed so no entity is ever expanded,
script/style/iframe/object content is never spoken, and the tree is walked without
recursion so that deep nesting cannot overflow the stack. Every parse lifts libxml2's
10 MB limit on one text node (``huge_tree``), which would otherwise end the document
silently at a huge paragraph: the page is already capped at ``MAX_HTML_BYTES`` and the
HTML parser expands no declared entity.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict
from urllib.parse import unquote, urlsplit

import lxml.html
from lxml import etree

from ..errors import CorruptDocument, NoTextError
from ..model import Block, BlockKind, Book, Chapter, Cover
from ._decode import decode_bytes, looks_binary, read_capped
from .base import IngestOptions, Ingestor

MAX_HTML_BYTES = 64 * 1024 * 1024  # a saved article is never this big
MAX_ATTRIBUTE = 1024 * 1024  # longest attribute value kept (data: URI covers fit)
MAX_ATTRIBUTES = 512  # attributes kept on one tag
MAX_DEPTH = 200  # element nesting kept (libxml2 stops at 255)
MAX_COVER_BYTES = 16 * 1024 * 1024
MAX_TABLE_ROWS = 30  # rows of a data table read as sentences before the rest is counted
SHORT_ARTICLE_WORDS = 200  # articles shorter than this stay one chapter
CODE_NOTE = "Code example omitted."
# Choosing between the extractors (measured on trafilatura's evaluation set, see
# bench/bench_html_extractors.py): readability's article when it holds COVERS of
# trafilatura's words and is at most LONGER times its length, or when trafilatura's is
# under READABILITY_WINS of readability's length; trafilatura's otherwise.
COVERS = 0.95
COVERS_SHORT = 0.7  # for a short text (SHORT_TEXT characters), where a block is a lot
SHORT_TEXT = 2000
LONGER = 1.3
READABILITY_WINS = 0.5

# Never spoken, whatever the extractor decides.
_SKIP_TAGS = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "svg",
        "math",
        "canvas",
        "video",
        "audio",
        "source",
        "track",
        "map",
        "form",
        "button",
        "input",
        "select",
        "option",
        "textarea",
        "dialog",
        "head",
        "title",
        "meta",
        "link",
        "base",
        "nav",
        "param",
    }
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "main",
        "header",
        "footer",
        "aside",
        "address",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "hr",
        "center",
        "details",
        "summary",
        "body",
        "html",
        "tr",
        "td",
        "th",
        "tbody",
        "thead",
        "tfoot",
        "caption",
        "figure",
        "picture",
    }
)
# Boilerplate that readability sometimes keeps: matched against class and id words.
_BOILERPLATE = re.compile(
    r"(^|[\s_-])(cookie|cookies|consent|gdpr|cc-banner|newsletter|subscribe|share|sharing|"
    r"social|related|recommended|comments?|disqus|advert|advertisement|ads?|adsense|"
    r"sponsor(ed)?|promo|paywall|popup|modal|breadcrumbs?|skip-?link|mw-editsection|"
    r"noprint|navbox|mw-jump-link)($|[\s_-])",
    re.IGNORECASE,
)
_BOILERPLATE_ROLES = frozenset(
    {
        "navigation",
        "banner",
        "contentinfo",
        "complementary",
        "dialog",
        "alertdialog",
        "search",
        "menu",
        "menubar",
        "toolbar",
    }
)
_NOTE_LIST = re.compile(
    r"(^|\s)(references|reflist|refbegin|mw-references-wrap|footnotes|endnotes)(\s|$)",
    re.IGNORECASE,
)
_PERMALINK_MARKS = frozenset({"#", "¶", "§", "🔗", "⁋"})
_NOTE_REF = re.compile(
    r"^\s*\[?\s*(\d{1,4}|[a-z]|note \d+|citation needed)\s*\]?\s*$", re.IGNORECASE
)
_ENTITY_DECL = re.compile(r"<!ENTITY\s+(?:%\s+)?([A-Za-z_][\w.-]{0,100})")
_ENTITY_REF = re.compile(r"&([A-Za-z_][\w.-]{0,100});")
_DOCTYPE_SUBSET = re.compile(r"<!DOCTYPE[^\[>]*\[.*?\]\s*>", re.IGNORECASE | re.DOTALL)
# %-format, as the pattern's own braces would need doubling in an f-string
_HUGE_ATTR = re.compile(r"""=\s*("[^"]{%d,}"|'[^']{%d,}')""" % (MAX_ATTRIBUTE, MAX_ATTRIBUTE))  # noqa: UP031
_WS = re.compile(r"\s+")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PRESCAN_CHARS = 64 * 1024
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]{0,500}\?>")
_LONG_TAG = re.compile(r"<([a-zA-Z][\w:-]{0,40})(\s[^<>]{4096,})>")
_TAG = re.compile(r"<(/?)([a-zA-Z][\w:-]{0,40})[^<>]*>")
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "keygen",
        "command",
        "basefont",
        "frame",
        "isindex",
    }
)
# Elements a new one of their kind (or a sibling kind) closes: they never nest deeply.
_SELF_CLOSING_KINDS = frozenset(
    {
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "option",
        "optgroup",
        "rt",
        "rp",
        "thead",
        "tbody",
        "tfoot",
        "colgroup",
    }
)
_SEPARATORS = r"\|\-–—\\/>»"
_JSONLD_ARTICLE = re.compile(
    r"^(Article|AdvertiserContentArticle|NewsArticle|AnalysisNewsArticle|AskPublicNewsArticle|"
    r"BackgroundNewsArticle|OpinionNewsArticle|ReportageNewsArticle|ReviewNewsArticle|Report|"
    r"SatiricalArticle|ScholarlyArticle|MedicalScholarlyArticle|SocialMediaPosting|"
    r"BlogPosting|LiveBlogPosting|DiscussionForumPosting|TechArticle|APIReference|WebPage)$"
)
_META_PROPERTY = re.compile(
    r"\s*(article|dc|dcterm|og|twitter)\s*:\s*"
    r"(author|creator|description|published_time|title|site_name|image|locale)\s*",
    re.IGNORECASE,
)
_META_NAME = re.compile(
    r"^\s*(?:(dc|dcterm|og|twitter|parsely|weibo:(article|webpage))\s*[-.:]\s*)?"
    r"(author|creator|pub-date|description|title|site_name|date|language)\s*$",
    re.IGNORECASE,
)
_BYLINE = re.compile(r"byline|author|dateline|writtenby|p-author", re.IGNORECASE)
_BY_PREFIX = re.compile(r"^\s*(by|von|par|por|door)\s*[:\s]\s*", re.IGNORECASE)
_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True)
class PageMeta:
    title: str
    byline: str | None = None
    authors: tuple[str, ...] = ()
    date: str | None = None
    language: str | None = None
    direction: Literal["ltr", "rtl"] | None = None
    image: str | None = None  # the lead image's src (og:image or JSON-LD image)
    site_name: str | None = None
    description: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


class HtmlIngestor(Ingestor):
    name: ClassVar[str] = "html"
    extensions: ClassVar[tuple[str, ...]] = (".html", ".htm", ".xhtml")

    def read(self, path: Path, options: IngestOptions) -> Book:
        raw = read_capped(path, MAX_HTML_BYTES, "a web page")
        if not raw.strip():
            raise NoTextError(path, "empty file")
        if looks_binary(raw):
            raise CorruptDocument(path, "not a web page (binary data)")
        decoded = decode_bytes(raw, markup=True)
        return html_to_book(decoded.text, options, source=str(path), base_dir=path.parent)


def html_to_book(
    html: str,
    options: IngestOptions | None = None,
    *,
    source: str = "<html>",
    base_dir: Path | None = None,
) -> Book:
    """Turn the text of a web page into a Book of its main article."""
    options = options or IngestOptions()
    html, warnings = sanitize_markup(html)
    html, page = parse_page(html, source, warnings)
    meta = page_metadata(page)
    article = extract_article(html, source)
    items = article_blocks(article, options, title=meta.title, bare_image_alt=False)
    chapters = chapterize(items, meta.title or Path(source).stem)
    if not any(ch.blocks for ch in chapters) or _word_count(chapters) == 0:
        raise NoTextError(source, "no article text found (only navigation or boilerplate)")
    cover, cover_warning = lead_image(page, article, meta, base_dir) if base_dir else (None, None)
    if cover_warning:
        warnings.append(cover_warning)
    return Book(
        title=meta.title or Path(source).stem,
        chapters=chapters,
        authors=meta.authors,
        language=meta.language,
        cover=cover,
        source=source,
        publisher=meta.site_name,
        date=meta.date,
        description=meta.description,
        direction=meta.direction,
        url=meta.url,
        warnings=tuple(warnings),
    )


# --- markup hygiene ------------------------------------------------------------------


def sanitize_markup(html: str) -> tuple[str, list[str]]:
    """Make a page safe to give to libxml2.

    - control characters (NUL included) are removed;
    - a DOCTYPE's internal subset is removed, so no declared entity is ever expanded;
    - attribute values over MAX_ATTRIBUTE characters are emptied (libxml2 drops the rest
      of the document after one);
    - tags with more than MAX_ATTRIBUTES attributes lose them (libxml2's duplicate check is
      quadratic: 200,000 attributes on one tag take minutes).

    Nesting deeper than libxml2's limit is handled by ``parse_page``.
    """
    warnings: list[str] = []
    html = _XML_DECLARATION.sub("", _CONTROL.sub("", html), count=1)
    head = html[:_PRESCAN_CHARS]
    if "<!" in head and "[" in head:
        m = _DOCTYPE_SUBSET.search(head)
        if m:
            declared = set(_ENTITY_DECL.findall(m.group(0)))
            html = head[: m.start()] + "<!DOCTYPE html>" + head[m.end() :] + html[_PRESCAN_CHARS:]
            warnings.append("DOCTYPE internal subset (entity declarations) ignored")
            if declared:
                # References to the dropped entities are not spoken as "&name;" either.
                html = _ENTITY_REF.sub(lambda r: "" if r.group(1) in declared else r.group(0), html)
    if len(html) > MAX_ATTRIBUTE:
        html, n = _HUGE_ATTR.subn('=""', html)
        if n:
            warnings.append(f"{n} attribute value(s) over {MAX_ATTRIBUTE:,} characters emptied")
    crowded = 0

    def strip_attrs(m: re.Match[str]) -> str:
        nonlocal crowded
        if m.group(2).count("=") <= MAX_ATTRIBUTES:
            return m.group(0)
        crowded += 1
        return f"<{m.group(1)}>"

    html = _LONG_TAG.sub(strip_attrs, html)
    if crowded:
        warnings.append(f"{crowded} tag(s) with over {MAX_ATTRIBUTES} attributes stripped")
    return html, warnings


def parse_html(html: str | bytes) -> lxml.html.HtmlElement:
    """A page's tree, parsed without libxml2's 10 MB cap on a text node (past a longer
    paragraph the default parser silently drops the rest of the document). A new parser
    each time: lxml parsers are not to be shared between threads."""
    parser = lxml.html.HTMLParser(
        huge_tree=True, encoding="utf-8" if isinstance(html, bytes) else None
    )
    return lxml.html.document_fromstring(html, parser=parser)


def parse_page(html: str, source: str, warnings: list[str]) -> tuple[str, lxml.html.HtmlElement]:
    """Parse; where the tree reached libxml2's depth limit (the parser then drops the
    rest of the document), flatten the nesting and parse again."""
    try:
        page = parse_html(html)
        if page.xpath(f"boolean(//*[count(ancestor::*) >= {MAX_DEPTH}])"):
            html, flattened = flatten_nesting(html)
            warnings.append(f"nesting deeper than {MAX_DEPTH} levels flattened ({flattened} tags)")
            page = parse_html(html)
    except (etree.ParserError, ValueError) as exc:
        raise CorruptDocument(source, f"not readable as HTML ({exc})") from None
    return html, page


def flatten_nesting(html: str, max_depth: int | None = None) -> tuple[str, int]:
    """Remove the start and end tags of elements nested deeper than ``max_depth``,
    keeping their text. Tracks open elements the way a parser roughly does: void
    elements and elements that close their own kind (p, li, td...) do not nest; an end
    tag closes everything opened after its start tag."""
    limit = MAX_DEPTH - 20 if max_depth is None else max_depth
    stack: list[tuple[str, bool]] = []  # (tag, kept)
    depth = 0  # kept elements open
    out: list[str] = []
    last = 0
    dropped = 0
    for m in _TAG.finditer(html):
        closing, name = m.group(1) == "/", m.group(2).lower()
        if name in _VOID or name in _SELF_CLOSING_KINDS or m.group(0).endswith("/>"):
            continue
        if not closing:
            keep = depth < limit
            stack.append((name, keep))
            if keep:
                depth += 1
                continue
            dropped += 1
        else:
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == name:
                    break
            else:
                continue  # a stray end tag: the parser ignores it
            keep = stack[i][1]
            for _tag, kept in stack[i:]:
                depth -= kept
            del stack[i:]
            if keep:
                continue
        out.append(html[last : m.start()])
        last = m.end()
    if not dropped:
        return html, 0
    out.append(html[last:])
    return "".join(out), dropped


# --- metadata (Readability.js's rules) ---------------------------------------------


def page_metadata(page: lxml.html.HtmlElement) -> PageMeta:
    jsonld = _jsonld(page)
    values = _meta_values(page)
    doc_title = _clean(_text_of(page.find(".//title"))) if page.find(".//title") is not None else ""
    title = (
        jsonld.get("title")
        or values.get("dc:title")
        or values.get("dcterm:title")
        or values.get("og:title")
        or values.get("weibo:article:title")
        or values.get("weibo:webpage:title")
        or values.get("title")
        or values.get("twitter:title")
        or values.get("parsely-title")
        or article_title(doc_title, page)
    )
    authors: tuple[str, ...] = tuple(jsonld.get("authors", ()))
    byline = ", ".join(authors) if authors else None
    if not byline:
        article_author = values.get("article:author")
        if article_author and _looks_like_url(article_author):
            article_author = None
        byline = (
            values.get("dc:creator")
            or values.get("dcterm:creator")
            or values.get("author")
            or values.get("parsely-author")
            or article_author
            or _byline_element(page)
        )
        if byline:
            authors = (_BY_PREFIX.sub("", byline).strip(),)
    date = (
        jsonld.get("datePublished")
        or values.get("article:published_time")
        or values.get("parsely-pub-date")
        or values.get("dc:date")
        or values.get("date")
        or _first_time(page)
    )
    root = page.getroottree().getroot()
    body = page.find(".//body")
    lang = (
        root.get("lang")
        or root.get("{http://www.w3.org/XML/1998/namespace}lang")
        or root.get("xml:lang")
        or (body.get("lang") if body is not None else None)
        or values.get("dc:language")
        or values.get("language")
        or _http_equiv(page, "content-language")
    )
    direction = None
    for el in (root, body):
        d = (el.get("dir") or "").strip().lower() if el is not None else ""
        if d in ("ltr", "rtl"):
            direction = d
    image = jsonld.get("image") or values.get("og:image") or values.get("twitter:image")
    canonical = page.find('.//link[@rel="canonical"]')
    url = jsonld.get("url") or (canonical.get("href") if canonical is not None else None)
    return PageMeta(
        title=_clean(title or ""),
        byline=_clean(byline) if byline else None,
        authors=tuple(a for a in (_clean(a) for a in authors) if a),
        date=_clean(date) if date else None,
        language=_clean(lang) or None if lang else None,
        direction=direction,  # type: ignore[arg-type]
        image=image,
        site_name=jsonld.get("publisher") or values.get("og:site_name"),
        description=values.get("description") or values.get("og:description"),
        url=url,
    )


def article_title(doc_title: str, page: lxml.html.HtmlElement) -> str:
    """The ``<title>`` with the site's name cut off, as Readability.js does it."""
    orig = cur = doc_title.strip()
    had_hierarchical = False

    def words(s: str) -> int:
        return len(re.split(r"\s+", s.strip())) if s.strip() else 0

    seps = list(re.finditer(rf"\s[{_SEPARATORS}]\s", cur))
    if seps:
        had_hierarchical = bool(re.search(r"\s[\\/>»]\s", cur))
        cur = orig[: seps[-1].start()]
        if words(cur) < 3:
            cur = re.sub(rf"^[^{_SEPARATORS}]*[{_SEPARATORS}]", "", orig, count=1)
    elif ": " in cur:
        headings = [_clean(_text_of(h)) for h in page.iter("h1", "h2")]
        if orig.strip() not in headings:
            cur = orig[orig.rfind(":") + 1 :]
            if words(cur) < 3:
                cur = orig[orig.find(":") + 1 :]
            elif words(orig[: orig.find(":")]) > 5:
                cur = orig
    elif len(cur) > 150 or len(cur) < 15:
        h1s = list(page.iter("h1"))
        if len(h1s) == 1:
            cur = _clean(_text_of(h1s[0]))
    cur = re.sub(r"\s{2,}", " ", cur.strip())
    n = words(cur)
    if n <= 4 and (
        not had_hierarchical or n != words(re.sub(rf"\s[{_SEPARATORS}]\s", "", orig)) - 1
    ):
        cur = orig
    return _clean(cur)


class _JsonLd(TypedDict, total=False):
    """What page_metadata takes from a JSON-LD article object."""

    title: str
    authors: list[str]
    publisher: str
    datePublished: str
    url: str
    image: str


_JSONLD_STRINGS: tuple[Literal["datePublished", "url"], ...] = ("datePublished", "url")


def _jsonld(page: lxml.html.HtmlElement) -> _JsonLd:
    out: _JsonLd = {}
    doc_title = _clean(_text_of(page.find(".//title"))) if page.find(".//title") is not None else ""
    for script in page.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            continue
        content = re.sub(r"^\s*<!\[CDATA\[|\]\]>\s*$", "", script.text or "")
        if len(content) > 1_000_000:
            continue
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            continue
        candidates = data if isinstance(data, list) else [data]
        flat: list[object] = []
        for c in candidates:
            if isinstance(c, dict) and isinstance(c.get("@graph"), list):
                flat.extend(c["@graph"])
            else:
                flat.append(c)
        for item in flat:
            if not isinstance(item, dict):
                continue
            kind = item.get("@type")
            kinds = kind if isinstance(kind, list) else [kind]
            if not any(isinstance(k, str) and _JSONLD_ARTICLE.match(k) for k in kinds):
                continue
            name, headline = item.get("name"), item.get("headline")
            name = name.strip() if isinstance(name, str) else None
            headline = headline.strip() if isinstance(headline, str) else None
            if name and headline and name != headline:
                name_ok = _similarity(name, doc_title) > 0.75
                head_ok = _similarity(headline, doc_title) > 0.75
                out["title"] = headline if head_ok and not name_ok else name
            elif title := name or headline:
                out["title"] = title
            author = item.get("author")
            authors = author if isinstance(author, list) else [author]
            names = []
            for a in authors:
                if isinstance(a, dict) and isinstance(a.get("name"), str):
                    names.append(a["name"].strip())
                elif isinstance(a, str):
                    names.append(a.strip())
            if names:
                out["authors"] = [n for n in names if n]
            publisher = item.get("publisher")
            if isinstance(publisher, dict) and isinstance(publisher.get("name"), str):
                out["publisher"] = publisher["name"].strip()
            for key in _JSONLD_STRINGS:
                if isinstance(item.get(key), str):
                    out[key] = item[key].strip()
            image = item.get("image")
            if isinstance(image, dict):
                image = image.get("url")
            elif isinstance(image, list) and image:
                image = image[0] if isinstance(image[0], str) else None
            if isinstance(image, str):
                out["image"] = image
            return out
    return out


def _similarity(a: str, b: str) -> float:
    """Readability.js's _textSimilarity: the share of b's tokens also in a."""
    ta = [t for t in re.split(r"\W+", a.lower()) if t]
    tb = [t for t in re.split(r"\W+", b.lower()) if t]
    if not ta or not tb:
        return 0.0
    uniq_b = [t for t in tb if t not in ta]
    return 1 - len(" ".join(uniq_b)) / len(" ".join(tb))


def _meta_values(page: lxml.html.HtmlElement) -> dict[str, str]:
    values: dict[str, str] = {}
    for meta in page.iter("meta"):
        content = meta.get("content")
        if not content:
            continue
        content = content.strip()
        prop = meta.get("property")
        matched = False
        if prop:
            for m in _META_PROPERTY.finditer(prop):
                values[_WS.sub("", m.group(0).lower())] = content
                matched = True
        name = meta.get("name")
        if not matched and name and _META_NAME.match(name):
            values[_WS.sub("", name.lower()).replace(".", ":")] = content
    return values


def _http_equiv(page: lxml.html.HtmlElement, which: str) -> str | None:
    for meta in page.iter("meta"):
        if (meta.get("http-equiv") or "").lower() == which and meta.get("content"):
            return meta.get("content")
    return None


def _byline_element(page: lxml.html.HtmlElement) -> str | None:
    body = page.find(".//body")
    if body is None:
        return None
    for el in body.iter(etree.Element):
        if el.tag in _SKIP_TAGS:
            continue
        rel = (el.get("rel") or "").lower()
        itemprop = (el.get("itemprop") or "").lower()
        match = f"{el.get('class') or ''} {el.get('id') or ''}"
        if rel == "author" or "author" in itemprop or _BYLINE.search(match):
            text = _clean(_text_of(el))
            if 0 < len(text) < 100:
                return text
    return None


def _first_time(page: lxml.html.HtmlElement) -> str | None:
    for el in page.iter("time"):
        if el.get("datetime"):
            return el.get("datetime")
    return None


def _looks_like_url(s: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", s.strip(), re.IGNORECASE))


# --- the article -------------------------------------------------------------------


def extract_article(html: str, source: str) -> lxml.html.HtmlElement:
    """The main article as an element, boilerplate pruned: trafilatura's extraction and
    readability-lxml's, whichever ``choose_article`` prefers (see the module's notes)."""
    by_trafilatura = trafilatura_article(html)
    page = parse_html(html)
    prune_boilerplate(page, by_class=False)
    page_text = _text_of(page)  # without navigation, hidden parts and scripts
    prune_boilerplate(page)
    cleaned = lxml.html.tostring(page, encoding="unicode")
    try:
        by_readability: lxml.html.HtmlElement | None = readability_article(cleaned, source)
    except NoTextError:
        by_readability = None
    if by_readability is not None and not _clean(_text_of(by_readability)):
        by_readability = None
    # Alone, a few words from trafilatura must be the page's own, not its navigation or
    # hidden parts (a landing page of links). Longer texts are kept: pages that fill
    # their article in from a template or hide it until a script runs are articles too.
    if by_readability is None and by_trafilatura is not None:
        alone = _text_of(by_trafilatura)
        if len(alone.split()) < 50 and _covers(page_text, alone) < 0.5:
            by_trafilatura = None
    article = choose_article(by_trafilatura, by_readability)
    if article is None:
        raise NoTextError(source, "no article text found")
    prune_boilerplate(article)
    return article


def choose_article(
    by_trafilatura: lxml.html.HtmlElement | None,
    by_readability: lxml.html.HtmlElement | None,
) -> lxml.html.HtmlElement | None:
    """readability's article where it holds trafilatura's (at least ``COVERS`` of its
    words, ``COVERS_SHORT`` for a short text, at most ``LONGER`` times its length): it
    keeps the page's own figures, tables and code. Otherwise trafilatura's, which does not
    collapse to one block of an article split into siblings; readability's again when
    trafilatura's is missing or under ``READABILITY_WINS`` of readability's length."""
    if by_trafilatura is None or by_readability is None:
        return by_trafilatura if by_trafilatura is not None else by_readability
    t_text = _clean(_text_of(by_trafilatura))
    r_text = _clean(_text_of(by_readability))
    if len(t_text) < READABILITY_WINS * len(r_text):
        return by_readability
    need = COVERS_SHORT if len(t_text) < SHORT_TEXT else COVERS
    if _covers(r_text, t_text) >= need and len(r_text) <= LONGER * len(t_text):
        return by_readability
    return by_trafilatura


def _covers(text: str, part: str) -> float:
    """The share of ``part``'s words (counted with repeats) that ``text`` holds."""
    have = Counter(text.lower().split())
    want = Counter(part.lower().split())
    return sum((have & want).values()) / max(1, sum(want.values()))


def trafilatura_article(html: str) -> lxml.html.HtmlElement | None:
    """trafilatura's main text as HTML (headings, paragraphs, lists, tables, quotes, code,
    images), comments left out; None when it finds none."""
    import trafilatura

    try:
        out = trafilatura.extract(
            html,
            output_format="html",
            include_comments=False,
            include_tables=True,
            include_images=True,
            include_links=False,
            include_formatting=True,
        )
    except Exception:  # noqa: BLE001 - a third-party extractor on hostile input
        return None
    if not out or not out.strip():
        return None
    try:
        body = parse_html(out).find(".//body")
    except (etree.ParserError, ValueError, AssertionError):
        return None
    if body is None or not _clean(_text_of(body)):
        return None
    return body


def readability_article(cleaned: str, source: str) -> lxml.html.HtmlElement:
    """readability-lxml's article from a page already pruned of boilerplate."""
    from readability.readability import Unparseable

    try:
        summary = _readability_document(cleaned).summary(html_partial=True)
    except Unparseable:
        raise NoTextError(source, "no article text found") from None
    except Exception as exc:  # noqa: BLE001 - a third-party extractor on hostile input
        raise CorruptDocument(source, f"not readable as HTML ({type(exc).__name__})") from None
    try:
        doc = parse_html(summary) if summary.strip() else None
    except (etree.ParserError, ValueError, AssertionError):
        doc = None
    body = doc.find(".//body") if doc is not None else None
    if body is None:
        raise NoTextError(source, "no article text found")
    return body


def _readability_document(html: str) -> Any:
    """readability's Document, parsing the page as ``parse_html`` does (its own parser
    keeps libxml2's 10 MB text-node cap and would drop the rest of the article)."""
    from readability import Document

    class _Document(Document):  # type: ignore[misc,no-any-unimported]
        def _parse(self, input: Any) -> Any:
            if isinstance(input, str):
                # as readability's build_doc: through UTF-8, which drops lone surrogates
                input = parse_html(input.encode("utf-8", "replace"))
            return super()._parse(input)

    return _Document(html)


def prune_boilerplate(root: lxml.html.HtmlElement, *, by_class: bool = True) -> None:
    """Remove elements that are never article text: scripts, navigation, hidden elements,
    and (``by_class``) cookie banners, share bars, comments by their class and id words.
    Works on any depth without recursion."""
    doomed = []
    for el in root.iter(etree.Element):
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in _SKIP_TAGS:
            doomed.append(el)
            continue
        if el.get("hidden") is not None or (el.get("aria-hidden") or "").lower() == "true":
            doomed.append(el)
            continue
        role = (el.get("role") or "").lower()
        if role in _BOILERPLATE_ROLES:
            doomed.append(el)
            continue
        style = (el.get("style") or "").replace(" ", "").lower()
        if "display:none" in style or "visibility:hidden" in style:
            doomed.append(el)
            continue
        marker = f"{el.get('class') or ''} {el.get('id') or ''}"
        if (
            by_class
            and marker.strip()
            and tag not in ("html", "body")
            and _BOILERPLATE.search(marker)
        ):
            doomed.append(el)
    for el in doomed:
        if el.getparent() is not None:
            el.drop_tree()  # keeps the tail text


def article_blocks(
    article: lxml.html.HtmlElement,
    options: IngestOptions,
    *,
    title: str = "",
    bare_image_alt: bool = True,
) -> list[Heading | Block]:
    """Walk the article in document order, without recursion, into headings and blocks.
    ``bare_image_alt=False`` reads the alt text of figures' images only: on a web page a
    bare image's alt is a label for screen readers (logos, icons, decoration)."""
    tables = options.tables
    out: list[Heading | Block] = []
    buf: list[str] = []
    kind_stack: list[BlockKind] = []  # "quote" / "list_item" contexts for paragraph text
    norm_title = _norm(title)

    def flush() -> None:
        text = _clean("".join(buf))
        buf.clear()
        if text:
            kind: BlockKind = kind_stack[-1] if kind_stack else "paragraph"
            out.append(Block(kind, text))

    # Comments and processing instructions (a CDATA section in HTML is parsed as a
    # comment) come as events of their own: without them the text after one, its tail,
    # would never be seen.
    walker = etree.iterwalk(article, events=("start", "end", "comment", "pi"))
    for event, el in walker:
        tag = el.tag if isinstance(el.tag, str) else ""
        if event in ("comment", "pi"):
            if el.tail:
                buf.append(el.tail)
            continue
        if event == "start":
            if tag in _SKIP_TAGS or _is_note_ref(el):
                walker.skip_subtree()
                continue
            if options.footnotes == "drop" and _is_note_list(el):
                walker.skip_subtree()
                continue
            if tag in _HEADINGS:
                flush()
                text = _clean(_text_of(el))
                if text and not (tag == "h1" and _norm(text) == norm_title):
                    out.append(Heading(_HEADINGS[tag], text))
                walker.skip_subtree()
                continue
            if tag == "pre" or (tag == "code" and "\n" in (el.text_content() or "").strip()):
                flush()
                out.append(Block("code", CODE_NOTE))
                walker.skip_subtree()
                continue
            if tag == "table" and tables != "read" and _is_data_table(el):
                flush()
                if tables == "summary":
                    out.append(Block("paragraph", table_summary(el)))
                elif tables == "rows":
                    out.extend(Block("paragraph", s) for s in table_sentences(el))
                walker.skip_subtree()
                continue
            if tag == "img":
                alt = _clean(el.get("alt") or "")
                if options.captions and alt and (bare_image_alt or _in_figure(el)):
                    flush()
                    out.append(Block("image_alt", alt))
                continue
            if tag == "figcaption":
                flush()
                if options.captions:
                    text = _clean(_text_of(el))
                    if text:
                        out.append(Block("image_alt", text))
                walker.skip_subtree()
                continue
            if tag == "br":
                buf.append(" ")
                continue
            if tag == "blockquote":
                flush()
                kind_stack.append("quote")
            elif tag == "li":
                flush()
                kind_stack.append("list_item")
            elif tag in _BLOCK_TAGS:
                flush()
            if el.text:
                buf.append(el.text)
        else:  # end
            if tag == "blockquote" or tag == "li":
                flush()
                kind_stack.pop()
            elif tag in _BLOCK_TAGS:
                flush()
            if el.tail:
                buf.append(el.tail)
    flush()
    return out


def _is_note_ref(el: lxml.html.HtmlElement) -> bool:
    """Footnote markers ("[12]", "3") and heading permalinks ("#", "¶") are not read
    aloud."""
    tag = el.tag
    cls = (el.get("class") or "").lower()
    if tag == "a" and (el.text_content() or "").strip() in _PERMALINK_MARKS:
        return True
    if tag == "sup" and ("reference" in cls or "footnote" in cls or "noteref" in cls):
        return True
    if tag in ("sup", "a"):
        text = el.text_content() if tag == "sup" or el.get("href", "").startswith("#") else None
        if text is not None and _NOTE_REF.match(text) and (tag == "sup" or _in_sup(el)):
            return True
        # An in-page link whose text is only a number ("12", "[12]") is a note reference.
        if tag == "a" and text is not None and re.fullmatch(r"\s*\[?\d{1,4}\]?\s*", text):
            return True
    return False


def _is_note_list(el: etree._Element) -> bool:
    """A list of footnotes or references (Wikipedia's reflist, DPUB endnotes)."""
    role = (el.get("role") or "").lower()
    if role in ("doc-endnotes", "doc-footnote", "doc-bibliography"):
        return True
    return bool(_NOTE_LIST.search(f"{el.get('class') or ''} {el.get('id') or ''}"))


def _in_figure(el: etree._Element) -> bool:
    return any(a.tag == "figure" for a in el.iterancestors())


def _in_sup(el: etree._Element) -> bool:
    parent = el.getparent()
    return parent is not None and parent.tag == "sup"


def _is_data_table(table: lxml.html.HtmlElement) -> bool:
    """A table of data, not a layout table holding paragraphs."""
    for el in table.iter("p", "div", "table", "ul", "ol", "blockquote", "pre"):
        if el is table:
            continue
        if el.tag == "table" or len(_clean(_text_of(el))) > 200:
            return False
    rows = _rows(table)
    return len(rows) >= 2 and max((len(r) for r in rows), default=0) >= 2


def _rows(table: lxml.html.HtmlElement) -> list[list[str]]:
    rows = []
    for tr in table.iter("tr"):
        cells = [_clean(_text_of(c)) for c in tr if c.tag in ("td", "th")]
        if any(cells):
            rows.append(cells)
    return rows


def table_summary(table: lxml.html.HtmlElement) -> str:
    """'A table with N rows: <caption>; columns: <first row>.' (spoken instead of cells)."""
    rows = _rows(table)
    caption_el = table.find("caption")
    caption = _clean(_text_of(caption_el)) if caption_el is not None else ""
    headers = [c for c in rows[0] if c] if rows else []
    n = max(len(rows) - 1, 0) if table.find(".//th") is not None else len(rows)
    text = f"A table with {n} row{'s' if n != 1 else ''}"
    if caption:
        text += f": {caption}"
    if headers:
        text += f"; columns: {', '.join(headers[:8])}"
        if len(headers) > 8:
            text += f" and {len(headers) - 8} more"
    return text + "."


def table_sentences(table: lxml.html.HtmlElement) -> list[str]:
    """A data table read as sentences: the caption, then one sentence a row, each cell
    named by its column's header ("Name: Ada; Born: 1815."). A table of more than
    ``MAX_TABLE_ROWS`` rows is introduced by its summary and read up to there."""
    rows = _rows(table)
    if not rows:
        return []
    first = table.find(".//tr")
    has_header = first is not None and first.find("th") is not None
    header, body = (rows[0], rows[1:]) if has_header else ([], rows)
    out = []
    if len(body) > MAX_TABLE_ROWS:
        out.append(table_summary(table))
    else:
        caption_el = table.find("caption")
        caption = _clean(_text_of(caption_el)) if caption_el is not None else ""
        if caption:
            out.append(caption if caption[-1:] in ".!?" else caption + ".")
    for row in body[:MAX_TABLE_ROWS]:
        if header and len(header) == len(row):
            cells = [f"{h}: {v}" if h else v for h, v in zip(header, row, strict=True) if v]
            text = "; ".join(cells)
        else:
            text = ", ".join(c for c in row if c)
        if text:
            out.append(text if text[-1:] in ".!?" else text + ".")
    if len(body) > MAX_TABLE_ROWS:
        rest = len(body) - MAX_TABLE_ROWS
        out.append(f"And {rest} more row{'s' if rest != 1 else ''}.")
    return out


def chapterize(items: list[Heading | Block], title: str) -> tuple[Chapter, ...]:
    """Headings become chapters; text before the first heading is a chapter titled with
    the article's title. Levels rank the heading tags present (the highest is level 1).
    A short article stays one chapter, its headings spoken as heading blocks; an h1 that
    opens it titles that chapter."""
    words = sum(len(i.text.split()) for i in items if isinstance(i, Block))
    headings = [i for i in items if isinstance(i, Heading)]
    if not headings or words < SHORT_ARTICLE_WORDS:
        if items and isinstance(items[0], Heading) and items[0].level == 1:
            # the article opens with its own title: it names the chapter, rather than
            # the page's <title> with its site name and tagline
            title, items = items[0].text, items[1:]
        blocks = tuple(i if isinstance(i, Block) else Block("heading", i.text) for i in items)
        return (Chapter(title=title, level=1, blocks=blocks),)
    ranks = {lvl: n + 1 for n, lvl in enumerate(sorted({h.level for h in headings}))}
    chapters: list[Chapter] = []
    cur_title, cur_level = title, 1
    cur_blocks: list[Block] = []
    for item in items:
        if isinstance(item, Heading):
            if cur_blocks or chapters or cur_title != title:
                chapters.append(Chapter(cur_title, cur_level, tuple(cur_blocks)))
            cur_title, cur_level, cur_blocks = item.text, ranks[item.level], []
        else:
            cur_blocks.append(item)
    chapters.append(Chapter(cur_title, cur_level, tuple(cur_blocks)))
    return tuple(chapters)


# --- lead image ----------------------------------------------------------------------


def lead_image(
    page: lxml.html.HtmlElement,
    article: lxml.html.HtmlElement,
    meta: PageMeta,
    base_dir: Path,
) -> tuple[Cover | None, str | None]:
    """A cover from og:image / JSON-LD image or the article's first image, when it is a
    data: URI or a local file next to the page. Remote images are never fetched."""
    srcs = [meta.image] if meta.image else []
    srcs += [s for img in article.iter("img") if (s := img.get("src"))][:3]
    for src in srcs:
        if src.startswith("data:"):
            cover = _data_uri_image(src)
        else:
            cover = _local_image(src, base_dir)
        if cover is not None:
            return cover, None
    return None, None


def _data_uri_image(src: str) -> Cover | None:
    m = re.match(r"data:([\w/+.-]*)(;[^,]*)?,(.*)$", src, re.DOTALL)
    if not m or ";base64" not in (m.group(2) or ""):
        return None
    payload = m.group(3)
    if len(payload) > MAX_COVER_BYTES * 4 // 3 + 4:
        return None
    try:
        data = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None
    media = _sniff_image(data)
    return Cover(data, media) if media else None


def _local_image(src: str, base_dir: Path) -> Cover | None:
    parts = urlsplit(src)
    if parts.scheme not in ("", "file") or parts.netloc:
        return None
    rel = unquote(parts.path)
    if not rel:
        return None
    candidate = (base_dir / rel).resolve() if not rel.startswith("/") else Path(rel).resolve()
    # Only files beside the page (or below it): a page cannot make us read other files.
    try:
        candidate.relative_to(base_dir.resolve())
    except ValueError:
        return None
    try:
        if not candidate.is_file() or candidate.stat().st_size > MAX_COVER_BYTES:
            return None
        data = candidate.read_bytes()
    except OSError:
        return None
    media = _sniff_image(data)
    return Cover(data, media) if media else None


def _sniff_image(data: bytes) -> str | None:
    for magic, media in _IMAGE_MAGIC:
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# --- helpers -------------------------------------------------------------------------


def _text_of(el: lxml.html.HtmlElement | None) -> str:
    """Text of an element without script/style/footnote-marker content."""
    if el is None:
        return ""
    parts: list[str] = []
    walker = etree.iterwalk(el, events=("start", "end", "comment", "pi"))
    for event, node in walker:
        tag = node.tag if isinstance(node.tag, str) else ""
        if event in ("comment", "pi"):  # only its tail is text
            if node is not el and node.tail:
                parts.append(node.tail)
            continue
        if event == "start":
            if node is not el and (tag in _SKIP_TAGS or _is_note_ref(node)):
                walker.skip_subtree()
                continue
            if tag == "br" or tag in _BLOCK_TAGS:
                parts.append(" ")
            if node.text:
                parts.append(node.text)
        else:
            if tag in _BLOCK_TAGS or tag in ("td", "th"):
                parts.append(" ")
            if node is not el and node.tail:
                parts.append(node.tail)
    return "".join(parts)


def _clean(s: str) -> str:
    return _WS.sub(" ", s.replace("\u00ad", "").replace("\ufeff", "")).strip()


def _norm(s: str) -> str:
    return re.sub(r"\W+", " ", s).strip().lower()


def _word_count(chapters: tuple[Chapter, ...]) -> int:
    return sum(len(b.text.split()) for ch in chapters for b in ch.blocks if b.kind != "code")


def book_words(book: Book) -> list[str]:
    """Every word that will be spoken, chapter titles included, in order."""
    words: list[str] = []
    for ch in book.chapters:
        words += ch.title.split()
        for block in ch.blocks:
            words += block.text.split()
    return words
