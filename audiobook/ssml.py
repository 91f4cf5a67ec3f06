"""Book -> SSML, through jinja2 templates. Pure: no I/O beyond reading the templates.

A chapter renders to one ``<speak>`` document. The text of the book is plain text; before
a template sees it, it is cleaned (characters XML 1.0 forbids are removed, whitespace is
collapsed) and escaped, so that text which looks like SSML (``<break time="10s"/>``,
``</speak>``, ``&amp;``) is spoken, never interpreted. The jinja2 environment autoescapes
too, so a user's template that prints anything else is safe as well.

Only tags every Amazon Polly engine accepts are used by the shipped templates: ``speak``,
``p``, ``s`` and ``break`` (at most 10 s). espeak-ng accepts the same.

Templates are found by name in the shipped ``audiobook.templates`` folder
(``default`` -> ``default.ssml.j2``) or given as a path to a ``.j2`` file; a template
given as a path may ``{% extends "default.ssml.j2" %}``.

Counting (what Polly bills): ``billable_chars`` = characters of text outside tags, each
entity counted once as the character it stands for, whitespace included;
``total_chars`` = every character of the SSML.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import os
import re
import xml.parsers.expat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from .config import RenderOptions
from .errors import ConfigError
from .lexicon import Entry
from .lexicon import find as find_words
from .model import Block, Book

__all__ = [
    "BUILTIN_TEMPLATES",
    "billable_chars",
    "clean_text",
    "escape_text",
    "render_book",
    "render_chapter",
    "spoken_text",
    "total_chars",
]

MAX_BREAK_MS = 10_000  # Polly's longest <break>

# Characters XML 1.0 allows: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
# [#x10000-#x10FFFF]. C1 controls (U+007F-U+009F) are allowed but meaningless in prose
# (mostly mis-decoded cp1252), so they go too. Whitespace-like controls become spaces so
# that the words on either side stay apart.
_SPACE_LIKE = re.compile("[\x0b\x0c\x1c-\x1f\x85\u2028\u2029]")
_ILLEGAL = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_WS = re.compile(r"\s+")

# SSML reserved characters, escaped as Polly's documentation spells them.
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&apos;"))

# A tag, comment, processing instruction, declaration or CDATA section. Attribute values
# may hold ">" so quoted strings are matched as a whole; each alternative starts with a
# distinct character, so there is no catastrophic backtracking.
_MARKUP = re.compile(
    r"<!--.*?-->|<!\[CDATA\[(.*?)\]\]>|<\?.*?\?>|<!(?:[^>\"']|\"[^\"]*\"|'[^']*')*>"
    r"|<(/?)([^\s/>]*)(?:[^>\"']|\"[^\"]*\"|'[^']*')*>",
    re.DOTALL,
)
_ENTITY = re.compile(r"&(?:#[0-9]+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9._-]*);")

# Sentence ends: terminal punctuation, closing quotes/brackets, then whitespace; CJK full
# stops need no space after them. Shared with the chunker.
CLOSERS = (
    r"(?:[\"'\u201d\u2019\u00bb\u203a)\]}\u300d\u300f\uff09\u3011\u3015\u3009\u300b]|&quot;|&apos;)"
)
SENTENCE_END = re.compile(  # the lookahead lets the regex engine skip fast to candidates
    r"(?=[.!?\u2026\u203c\u2047\u2048\u2049\u061f\u06d4\u0964\u3002\uff01\uff1f\uff61\ufe12\uff0e])"
    r"(?:[.!?\u2026\u203c\u2047\u2048\u2049\u061f\u06d4\u0964]+" + CLOSERS + r"*\s+"
    r"|[\u3002\uff01\uff1f\uff61\ufe12\uff0e]+" + CLOSERS + r"*\s*)"
)
_ABBREV_WORD = re.compile(r"([\w.]+)$")
ABBREVIATIONS = frozenset(
    "mr mrs ms mx dr prof st sr jr mt rev hon gen col capt lt sgt cmdr gov pres fr "  # noqa: SIM905
    "vs etc e.g i.e cf no nos vol vols p pp fig figs ch chap ed eds al approx ca "
    "jan feb mar apr jun jul aug sep sept oct nov dec "
    "m mme mlle hr hrn bzw usw z.b d.h".split()
)

NOTES_INTRO = {
    "en": "Notes.",
    "fr": "Notes.",
    "de": "Anmerkungen.",
    "es": "Notas.",
    "it": "Note.",
    "pt": "Notas.",
    "nl": "Noten.",
    "sv": "Noter.",
    "da": "Noter.",
    "nb": "Noter.",
    "pl": "Przypisy.",
    "ru": "Примечания.",
    "fi": "Huomautukset.",
}

BUILTIN_TEMPLATES = ("default", "plain", "sentences")
DEFAULT_OPTIONS = RenderOptions()
_SUFFIX = ".ssml.j2"


# --- text ---------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Remove what XML 1.0 forbids and collapse whitespace (one space, no ends)."""
    text = _SPACE_LIKE.sub(" ", text)
    text = _ILLEGAL.sub("", text)
    return _WS.sub(" ", text).strip()


def escape_text(text: str) -> str:
    """Escape SSML's reserved characters (text must already be clean)."""
    for char, entity in _ESCAPES:
        if char in text:
            text = text.replace(char, entity)
    return text


def _prepare(text: str) -> Markup:
    return Markup(escape_text(clean_text(text)))


PHONEME_ALPHABETS = ("ipa", "x-sampa")  # what Polly's <phoneme> takes


def _prepare_block(block: Block, lexicon: tuple[Entry, ...] = ()) -> Markup:
    """A block's text, clean and escaped, with each of its phonemes (the book's own
    pronunciation, EPUB 3 ``ssml:ph``) as ``<phoneme alphabet ph>word</phoneme>`` and
    each word of the user's lexicon as ``<sub alias>`` or ``<phoneme>``."""
    if not block.phonemes and not lexicon:
        return _prepare(block.text)
    text = block.text
    spans: list[tuple[int, int, str, str]] = []
    for p in block.phonemes:
        ph = clean_text(p.ph)
        if 0 <= p.start < p.end <= len(text) and ph and p.alphabet in PHONEME_ALPHABETS:
            tag = f'<phoneme alphabet="{p.alphabet}" ph="{escape_text(ph)}">'
            spans.append((p.start, p.end, tag, "</phoneme>"))
    for start, end, entry in find_words(text, lexicon) if lexicon else ():
        if entry.alias:
            tag, close = f'<sub alias="{escape_text(clean_text(entry.alias))}">', "</sub>"
        else:
            ph = escape_text(clean_text(entry.ph))
            tag, close = f'<phoneme alphabet="{entry.alphabet}" ph="{ph}">', "</phoneme>"
        spans.append((start, end, tag, close))
    out, pos = [], 0
    for start, end, tag, close in sorted(spans, key=lambda s: s[0]):
        if start < pos:
            continue  # overlaps one before it (the book's own comes first): as written
        out.append(escape_text(_collapse(text[pos:start])))
        word = _collapse(text[start:end]).strip()
        out.append(f"{tag}{escape_text(word)}{close}" if word else "")
        pos = end
    out.append(escape_text(_collapse(text[pos:])))
    return Markup("".join(out).strip())


def _collapse(text: str) -> str:
    """As clean_text, but keeping one space at either end (the text goes on around it)."""
    return _WS.sub(" ", _ILLEGAL.sub("", _SPACE_LIKE.sub(" ", text)))


def sentence_spans(text: str) -> list[str]:
    """Split plain or escaped text after each sentence end (abbreviations kept whole).

    The pieces concatenate to the input exactly.
    """
    out: list[str] = []
    start = 0
    for m in SENTENCE_END.finditer(text):
        end = m.end()
        if end >= len(text):
            break
        if not is_sentence_end(text, m.start(), end):
            continue
        out.append(text[start:end])
        start = end
    out.append(text[start:])
    return [s for s in out if s]


def is_sentence_end(text: str, punct_start: int, after: int) -> bool:
    """False for "Mr. Smith", "e.g. this", "J. R. R. Tolkien": an abbreviation or an
    initial before a full stop, or a lower-case letter after it."""
    if text[punct_start] != ".":
        return True
    if after < len(text) and text[after].islower():
        return False
    m = _ABBREV_WORD.search(text, max(0, punct_start - 12), punct_start)
    if m is None:
        return True
    word = m.group(1).lower()
    return not (word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()))


# --- templates ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _builtin_dir() -> Path:
    try:
        path = Path(str(importlib.resources.files("audiobook.templates")))
        if (path / f"default{_SUFFIX}").is_file():
            return path
    except (ImportError, OSError, TypeError, ValueError):
        pass
    # a namespace package in some editable installs; mapped from templates/ at install
    # time, so the type checker does not see it as a module
    pkg = importlib.import_module("audiobook.templates")

    for entry in pkg.__path__:
        if (Path(entry) / f"default{_SUFFIX}").is_file():
            return Path(entry)
    raise ConfigError("the built-in SSML templates are missing from the installation")


@functools.lru_cache(maxsize=16)
def _environment(user_dir: str | None) -> jinja2.Environment:
    dirs = [str(_builtin_dir())]
    if user_dir is not None:
        dirs.insert(0, user_dir)  # a user's file beside a built-in name wins
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(dirs),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def _is_path(template: str) -> bool:
    return (
        "/" in template
        or os.sep in template
        or (os.altsep is not None and os.altsep in template)
        or (template.endswith(".j2") and not (_builtin_dir() / template).is_file())
    )


def load_template(template: str) -> jinja2.Template:
    """A built-in template by name ("default", "plain", "sentences") or a .j2 file path.

    Raises ConfigError (one line, naming the file) when it is missing or does not compile.
    """
    if _is_path(template):
        path = Path(template).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"{template}: template file not found")
        env, name, shown = _environment(str(path.parent)), path.name, template
    else:
        name = template if template.endswith(".j2") else f"{template}{_SUFFIX}"
        env, shown = _environment(None), name
        if not (_builtin_dir() / name).is_file():
            names = ", ".join(BUILTIN_TEMPLATES)
            raise ConfigError(
                f"{template}: no such template (built-in: {names}; or give a path to a .j2 file)"
            )
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"{shown}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.TemplateNotFound as e:
        raise ConfigError(f"{shown}: template not found ({e.name})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{shown}: cannot read template: {e}") from None


# --- rendering ----------------------------------------------------------------------


@dataclass(frozen=True)
class BlockView:
    """What a template sees of a block: ``kind`` and ``text`` (clean, escaped Markup),
    ``sentences`` (the text cut after each sentence end) computed on demand, and
    ``repeats_title``: a first heading that says the chapter title again."""

    kind: str
    text: Markup
    repeats_title: bool = False
    lang: str = ""  # a language other than the book's, as <lang xml:lang> takes it

    @cached_property
    def sentences(self) -> list[Markup]:
        return [Markup(s.strip()) for s in sentence_spans(str(self.text)) if s.strip()]


_NOT_WORD = re.compile(r"[\W_]+")


def _words(text: str) -> str:
    return _NOT_WORD.sub(" ", text).strip().casefold()


# A language's usual region, for a passage that names only the language (<lang
# xml:lang> takes Polly's language codes: "fr-FR", not "fr").
_REGIONS = {
    "ar": "arb",
    "ca": "ca-ES",
    "cy": "cy-GB",
    "da": "da-DK",
    "de": "de-DE",
    "en": "en-US",
    "es": "es-ES",
    "fi": "fi-FI",
    "fr": "fr-FR",
    "hi": "hi-IN",
    "is": "is-IS",
    "it": "it-IT",
    "ja": "ja-JP",
    "ko": "ko-KR",
    "nb": "nb-NO",
    "nl": "nl-NL",
    "no": "nb-NO",
    "pl": "pl-PL",
    "pt": "pt-PT",
    "ro": "ro-RO",
    "ru": "ru-RU",
    "sv": "sv-SE",
    "tr": "tr-TR",
    "zh": "cmn-CN",
}


def passage_lang(tag: str | None, book_lang: str | None) -> str:
    """The language code for ``<lang xml:lang>`` of a passage declared ``tag`` in a
    book in ``book_lang``: "" when it is the book's language (or unknown)."""
    if not tag:
        return ""
    parts = tag.strip().replace("_", "-").split("-")
    primary = parts[0].lower()
    if not primary or primary == (book_lang or "en").replace("_", "-").split("-")[0].lower():
        return ""
    if len(parts) > 1 and len(parts[1]) == 2 and parts[1].isalpha():
        return f"{primary}-{parts[1].upper()}"
    return _REGIONS.get(primary, "")


def _views(
    blocks: tuple[Block, ...],
    title: str = "",
    book_lang: str | None = None,
    lexicon: tuple[Entry, ...] = (),
) -> list[BlockView]:
    views: list[BlockView] = []
    for block in blocks:
        text = _prepare_block(block, lexicon)
        if text:
            repeats = (
                not views
                and block.kind == "heading"
                and bool(title)
                and _words(block.text) == _words(title)
            )
            views.append(BlockView(block.kind, text, repeats, passage_lang(block.lang, book_lang)))
    return views


def _ms(value: int) -> str:
    return f"{max(0, min(int(value), MAX_BREAK_MS))}ms"


def _context(book: Book, index: int, options: RenderOptions) -> dict[str, Any]:
    chapter = book.chapters[index]
    lexicon = options.lexicon
    blocks = _views(chapter.blocks, chapter.title, book.language, lexicon)
    # The ingestor kept the notes only if they are to be read (IngestOptions.footnotes).
    notes = _views(chapter.footnotes, "", book.language, lexicon)
    lang = (book.language or "en").split("-")[0].split("_")[0].lower()
    intro = options.extra.get("notes_intro") or NOTES_INTRO.get(lang, "Notes.")
    para = options.paragraph_pause_ms
    return {
        "title": _prepare_block(Block("heading", chapter.title), lexicon),
        "speak_title": options.speak_chapter_titles,
        "level": chapter.level,
        "index": index,
        "blocks": blocks,
        "notes": notes,
        "notes_intro": _prepare(intro),
        "book_title": _prepare(book.title),
        "authors": [_prepare(a) for a in book.authors],
        "language": _prepare(book.language or ""),
        "paragraph_pause": _ms(para),
        "item_pause": _ms(para // 2),
        "heading_pause": _ms(para * 3 // 2),
        "title_pause": _ms(options.chapter_pause_ms * 2 // 3),
        "chapter_pause": _ms(options.chapter_pause_ms),
        "extra": {k: _prepare(str(v)) for k, v in options.extra.items()},
    }


def _check_well_formed(ssml: str, template: str) -> None:
    parser = xml.parsers.expat.ParserCreate()

    def no_doctype(*_: object) -> None:
        raise ValueError("a DOCTYPE is not allowed")

    parser.StartDoctypeDeclHandler = no_doctype
    root: list[str] = []
    parser.StartElementHandler = lambda name, attrs: root.append(name) if not root else None
    try:
        parser.Parse(ssml, True)
    except (xml.parsers.expat.ExpatError, ValueError) as e:
        raise ConfigError(f"{template}: template output is not well-formed SSML: {e}") from None
    if root[:1] != ["speak"]:
        raise ConfigError(f"{template}: template output must be one <speak> document")


def template_line(template: str, needle: str) -> str | None:
    """``<file>:<line>`` of the first line of ``template``'s own source (a built-in name
    or a .j2 path) that holds ``needle``; None when none does."""
    if not needle:
        return None
    if _is_path(template):
        path, shown = Path(template).expanduser(), template
    else:
        name = template if template.endswith(".j2") else f"{template}{_SUFFIX}"
        path, shown = _builtin_dir() / name, name
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for n, line in enumerate(lines, 1):
        if needle in line:
            return f"{shown}:{n}"
    return None


def render_chapter(book: Book, index: int, options: RenderOptions = DEFAULT_OPTIONS) -> str:
    """One well-formed ``<speak>`` document for chapter ``index`` of ``book``."""
    template = load_template(options.template)
    try:
        ssml = template.render(_context(book, index, options)).strip()
    except jinja2.TemplateError as e:
        raise ConfigError(f"{options.template}: template error: {e}") from None
    _check_well_formed(ssml, options.template)
    return ssml


def render_book(book: Book, options: RenderOptions = DEFAULT_OPTIONS) -> list[str]:
    """One SSML document per chapter, in order."""
    return [render_chapter(book, i, options) for i in range(len(book.chapters))]


# --- counting -----------------------------------------------------------------------


def _text_outside_tags(ssml: str) -> str:
    """Raw (still escaped) text outside tags; CDATA sections count as text."""

    def keep_cdata(m: re.Match[str]) -> str:
        cdata = m.group(1)
        return escape_text(cdata) if cdata is not None else ""

    return _MARKUP.sub(keep_cdata, ssml)


_NAMED = (("&amp;", 4), ("&lt;", 3), ("&gt;", 3), ("&quot;", 5), ("&apos;", 5))


def entity_overhead(raw: str) -> int:
    """How many more characters ``raw`` (escaped text) has than the text it stands for."""
    amps = raw.count("&")
    if not amps:
        return 0
    named, extra = 0, 0
    for entity, more in _NAMED:
        n = raw.count(entity)
        named, extra = named + n, extra + n * more
    if named == amps:  # only the escaper's own entities: counting is enough
        return extra
    stripped, n = _ENTITY.subn("", raw)
    return len(raw) - len(stripped) - n


def billable_chars(ssml: str) -> int:
    """Characters Polly bills: text outside tags, entities decoded, whitespace counted."""
    raw = _text_outside_tags(ssml)
    return len(raw) - entity_overhead(raw)


def total_chars(ssml: str) -> int:
    """Every character of the SSML, tags included (Polly's other limit)."""
    return len(ssml)


_PARA_TAGS = frozenset({"speak", "p", "paragraph", "break"})
_SENT_TAGS = frozenset({"s", "sentence"})


def spoken_text(ssml: str) -> str:
    """The plain text that will be spoken: tags removed, entities decoded; paragraphs,
    breaks and the document's edges separate paragraphs (joined by a blank line);
    whitespace inside a paragraph collapses to one space."""
    parts: list[str] = []
    pos = 0
    for m in _MARKUP.finditer(ssml):
        if m.start() > pos:
            parts.append(html.unescape(ssml[pos : m.start()]).replace("\n", " "))
        pos = m.end()
        if m.group(1) is not None:  # CDATA
            parts.append(m.group(1).replace("\n", " "))
            continue
        name = (m.group(3) or "").split(":")[-1]
        if name in _PARA_TAGS:
            parts.append("\n")
        elif name in _SENT_TAGS:
            parts.append(" ")
    if pos < len(ssml):
        parts.append(html.unescape(ssml[pos:]).replace("\n", " "))
    paragraphs = (" ".join(line.split()) for line in "".join(parts).split("\n"))
    return "\n\n".join(p for p in paragraphs if p)
