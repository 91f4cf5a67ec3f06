"""A user's pronunciation lexicon (``--lexicon-file``): words and how to say them.

    entries = read_lexicon(Path("names.txt"))   # or a PLS file
    RenderOptions(lexicon=entries)               # applied by the SSML renderer

Two forms are read:

* PLS (W3C Pronunciation Lexicon Specification, what Polly's lexicons are): each
  ``<lexeme>``'s graphemes with its ``<alias>`` or ``<phoneme>`` (in the lexicon's
  ``alphabet``, ipa or x-sampa).
* A plain text file, one entry a line: the word (or words), a tab or two spaces or
  more, then an alias (``Hermione  her-MY-oh-nee``) or IPA between slashes or brackets
  (``Tbilisi  /tʰbilisi/``). ``#`` starts a comment; blank lines are skipped.

The renderer writes each occurrence of a word (whole words, case as written) as
``<sub alias>`` or ``<phoneme>`` in the SSML itself, so the same lexicon works for both
engines (espeak-ng honours ``<sub>``; IPA only Polly) and a change of the file changes
only the pieces whose text holds a word it changed: only those are synthesized again.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from .errors import ConfigError

PLS_NS = "http://www.w3.org/2005/01/pronunciation-lexicon"
ALPHABETS = ("ipa", "x-sampa")
MAX_ENTRIES = 10_000
_SPLIT = re.compile(r"\t+|\s{2,}")
_IPA = re.compile(r"^[/\[](.+)[/\]]$")


@dataclass(frozen=True)
class Entry:
    """One word (``grapheme``) and how to say it: ``alias`` (other words) or ``ph`` in
    ``alphabet``."""

    grapheme: str
    alias: str = ""
    ph: str = ""
    alphabet: str = "ipa"


def read_lexicon(path: Path) -> tuple[Entry, ...]:
    """The entries of a PLS or two-column lexicon file; ConfigError (one line, naming
    the file and the line) when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read lexicon ({e.strerror or e})") from None
    head = data.lstrip()[:200]
    if head.startswith(b"<"):
        entries = _read_pls(path, data)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: lexicon is not UTF-8 text") from None
        entries = _read_columns(path, text)
    if len(entries) > MAX_ENTRIES:
        raise ConfigError(f"{path}: more than {MAX_ENTRIES} lexicon entries")
    return entries


def _read_pls(path: Path, data: bytes) -> tuple[Entry, ...]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: lexicon is not well-formed XML") from None
    q = etree.QName(root)
    if q.namespace != PLS_NS or q.localname != "lexicon":
        raise ConfigError(f"{path}: not a PLS lexicon (root element <{q.localname}>)")
    alphabet = root.get("alphabet") or "ipa"
    out: list[Entry] = []
    for lexeme in root.iter(f"{{{PLS_NS}}}lexeme"):
        graphemes = [(g.text or "").strip() for g in lexeme.iter(f"{{{PLS_NS}}}grapheme")]
        alias = next((a.text or "" for a in lexeme.iter(f"{{{PLS_NS}}}alias")), "").strip()
        phoneme = next(lexeme.iter(f"{{{PLS_NS}}}phoneme"), None)
        ph = (phoneme.text or "").strip() if phoneme is not None else ""
        own = phoneme.get("alphabet") if phoneme is not None else None
        for g in graphemes:
            if not g:
                continue
            if alias:
                out.append(Entry(g, alias=alias))
            elif ph:
                out.append(Entry(g, ph=ph, alphabet=_alphabet(path, own or alphabet)))
    return tuple(out)


def _alphabet(path: Path, alphabet: str) -> str:
    if alphabet not in ALPHABETS:
        raise ConfigError(f"{path}: alphabet {alphabet!r} (expected {' or '.join(ALPHABETS)})")
    return alphabet


def _read_columns(path: Path, text: str) -> tuple[Entry, ...]:
    out: list[Entry] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        parts = _SPLIT.split(line, maxsplit=1)
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ConfigError(
                f"{path}:{n}: expected a word, a tab (or two spaces), then an alias or /IPA/"
            )
        word, say = parts[0].strip(), parts[1].strip()
        m = _IPA.match(say)
        out.append(Entry(word, ph=m.group(1).strip()) if m else Entry(word, alias=say))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def matcher(entries: tuple[Entry, ...]) -> tuple[re.Pattern[str], dict[str, Entry]] | None:
    """One regex finding every entry's word (whole words, longest first), and the
    entry of each word; None for an empty lexicon."""
    by_word: dict[str, Entry] = {}
    for e in entries:
        by_word.setdefault(e.grapheme, e)
    if not by_word:
        return None
    words = sorted(by_word, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)")
    return pattern, by_word


def find(text: str, entries: Sequence[Entry]) -> list[tuple[int, int, Entry]]:
    """Where the lexicon's words stand in ``text``: (start, end, entry), in order."""
    m = matcher(tuple(entries))
    if m is None:
        return []
    pattern, by_word = m
    return [(x.start(), x.end(), by_word[x.group()]) for x in pattern.finditer(text)]
