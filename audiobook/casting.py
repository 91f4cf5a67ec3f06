"""Voices: who reads what. Pure but for reading the voice map.

    casting = Casting(chapter_voices={2: "Matthew"}, dialogue_voice="Joanna", language="en")
    segments = split_dialogue(ssml, "en")   # [(False, "<speak>...narration..."), (True, ...)]
    pairs = read_voice_map(Path("voices.txt"))      # (("1", "Matthew"), ("Epilogue", "Amy"))
    resolve_voice_map(pairs, book)                 # {chapter index: voice}

A chapter is read by its voice from ``--voice-map`` (by number or title), else the
book's voice; with ``--dialogue-voice`` the quoted speech of every chapter is cut out
of its SSML into pieces of its own, read by the second voice. The quotation marks of
the book's language are followed: “…”, «…» (»…« in German and Danish), „…“, 「…」 and
『…』, straight quotes, and dialogue dashes (a paragraph that opens with a dash is
speech, each further dash switches between speech and narration: “—Ven —dijo—. Ya.”).
A quotation that runs over several paragraphs (each of them opened again, the English
way) stays one voice; one left open is closed at the first paragraph that does not
open with a quotation mark.

Each cut closes the elements open at that point and opens them again in the next
segment, so every segment is a well-formed ``<speak>`` document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .model import Book

_TOKEN = re.compile(r"<[^>]*>|[^<]+")
_NAME = re.compile(r"</?\s*([^\s/>]+)")
_PAIRS = {"“": "”", "«": "»", "„": "“”", "「": "」", "『": "』", "‹": "›"}
_PAIRS_REVERSED = {"»": "«", "›": "‹"}  # German, Danish: »so«
_REVERSED_LANGS = {"de", "da", "cs", "sk", "hr", "sl"}
_DASHES = "—―"
_STRAIGHT = "&quot;"


@dataclass(frozen=True)
class Casting:
    """Which voice reads what: ``chapter_voices`` (chapter index -> voice; the rest
    keep the book's voice) and ``dialogue_voice`` (quoted speech), in ``language``."""

    chapter_voices: dict[int, str] = field(default_factory=dict)
    dialogue_voice: str | None = None
    language: str | None = None

    def voices(self, index: int, ssml: str) -> list[tuple[str, str]]:
        """Chapter ``index``'s SSML as (voice, SSML) segments in order ("" = the
        engine's own voice)."""
        narrator = self.chapter_voices.get(index, "")
        if not self.dialogue_voice:
            return [(narrator, ssml)]
        return [
            (self.dialogue_voice if quoted else narrator, doc)
            for quoted, doc in split_dialogue(ssml, self.language)
        ]


def _pairs(language: str | None) -> dict[str, str]:
    lang = (language or "en").lower().replace("_", "-").split("-")[0]
    pairs = dict(_PAIRS)
    if lang in _REVERSED_LANGS:
        for a in _PAIRS_REVERSED.values():
            pairs.pop(a, None)
        pairs.update(_PAIRS_REVERSED)
    return pairs


def _name(tag: str) -> str:
    m = _NAME.match(tag)
    return m.group(1) if m else ""


def split_dialogue(ssml: str, language: str | None = None) -> list[tuple[bool, str]]:
    """``ssml`` (one ``<speak>`` document) cut at the edges of quoted speech:
    (quoted, document) in order, each document well-formed; pauses with no text stay
    with the text before them, and neighbours of one kind are joined."""
    pairs = _pairs(language)
    tokens = _TOKEN.findall(ssml)
    stack: list[str] = []  # open start tags, outermost (speak) first
    segments: list[tuple[bool, list[str]]] = [(False, [])]
    closer = ""  # the marks that close the open quotation ("" = none open)
    dashes = False  # a dialogue-dash paragraph, in speech

    def cut(quoted: bool) -> None:
        body = segments[-1][1]
        body.extend(f"</{_name(t)}>" for t in reversed(stack))
        segments.append((quoted, list(stack)))

    in_dash_paragraph = False
    for i, tok in enumerate(tokens):
        if tok.startswith("<"):
            name = _name(tok)
            if tok.startswith("</"):
                if name == "p" and in_dash_paragraph:
                    if dashes:  # dialogue dashes end with their paragraph
                        segments[-1][1].append(tok)
                        if stack:
                            stack.pop()
                        cut(False)
                        dashes = False
                        in_dash_paragraph = False
                        continue
                    in_dash_paragraph = False
                segments[-1][1].append(tok)
                if stack:
                    stack.pop()
                continue
            if tok.endswith("/>") or tok.startswith(("<?", "<!")):
                segments[-1][1].append(tok)
                continue
            if name == "p" and closer:
                nxt = _next_text(tokens, i + 1)
                if not any(nxt.startswith(o) for o in (*pairs, _STRAIGHT)):
                    cut(False)  # a quotation left open ends with its paragraph
                    closer = ""
            segments[-1][1].append(tok)
            stack.append(tok)
            if name == "p" and not closer:
                nxt = _next_text(tokens, i + 1)
                if nxt[:1] in _DASHES:
                    in_dash_paragraph = True
            continue
        # text
        out = segments[-1][1]
        j = 0
        while j < len(tok):
            ch = tok[j]
            if tok.startswith(_STRAIGHT, j):
                if closer == _STRAIGHT:
                    out.append(tok[: j + len(_STRAIGHT)])
                    tok, j = tok[j + len(_STRAIGHT) :], 0
                    cut(False)
                    out, closer = segments[-1][1], ""
                    continue
                if not closer and not dashes:
                    out.append(tok[:j])
                    tok, j = tok[j:], len(_STRAIGHT)
                    cut(True)
                    out, closer = segments[-1][1], _STRAIGHT
                    continue
                j += len(_STRAIGHT)
                continue
            if in_dash_paragraph and ch in _DASHES and not closer:
                if not dashes:  # speech starts at the dash
                    out.append(tok[:j])
                    tok, j = tok[j:], 1
                    cut(True)
                    out, dashes = segments[-1][1], True
                else:  # narration starts at the dash
                    out.append(tok[:j])
                    tok, j = tok[j:], 1
                    cut(False)
                    out, dashes = segments[-1][1], False
                continue
            if closer and closer != _STRAIGHT and ch in closer:
                out.append(tok[: j + 1])
                tok, j = tok[j + 1 :], 0
                cut(False)
                out, closer = segments[-1][1], ""
                continue
            if not closer and not dashes and ch in pairs:
                out.append(tok[:j])
                tok, j = tok[j:], 1
                cut(True)
                out, closer = segments[-1][1], pairs[ch]
                continue
            j += 1
        out.append(tok)
    docs: list[tuple[bool, str]] = []
    pauses = ""  # a segment of pauses alone, before any text: it joins the next one
    for quoted, parts in segments:
        doc = "".join(parts)
        if not _has_text(doc):
            if "<break" not in doc:
                continue
            if docs:  # a pause needs no voice of its own: it stays with the text before
                docs[-1] = (docs[-1][0], _join(docs[-1][1], doc))
            else:
                pauses = _join(pauses, doc) if pauses else doc
            continue
        if pauses:
            doc, pauses = _join(pauses, doc), ""
        if docs and docs[-1][0] == quoted:
            docs[-1] = (quoted, _join(docs[-1][1], doc))
        else:
            docs.append((quoted, doc))
    return docs or [(False, ssml)]


def _next_text(tokens: list[str], start: int) -> str:
    for tok in tokens[start:]:
        if not tok.startswith("<"):
            return tok.lstrip()
        if tok.startswith("</"):
            return ""
    return ""


def _has_text(doc: str) -> bool:
    return any(t.strip() for t in _TOKEN.findall(doc) if not t.startswith("<"))


def _join(a: str, b: str) -> str:
    """Two segments of one voice as one document (b's root start tag dropped)."""
    end = a.rfind("</speak>")
    start = b.find(">") + 1
    return a[:end] + b[start:] if end >= 0 and start > 0 else a + b


# --- the voice map --------------------------------------------------------------------------


def read_voice_map(path: Path) -> tuple[tuple[str, str], ...]:
    """``--voice-map``: one line each, a chapter (its number from 1, or its title)
    then a tab (or two spaces) and the voice; ``#`` starts a comment. The (chapter,
    voice) pairs in order; ConfigError (one line, naming file and line)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the voice map ({e})") from None
    out: list[tuple[str, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = "" if raw.lstrip().startswith("#") else raw.strip()
        if not line:
            continue
        parts = re.split(r"\t+|\s{2,}", line, maxsplit=1)
        if len(parts) != 2 or not parts[1].strip():
            raise ConfigError(f"{path}:{n}: expected a chapter, a tab (or two spaces), a voice")
        out.append((parts[0].strip(), parts[1].strip()))
    return tuple(out)


def resolve_voice_map(pairs: tuple[tuple[str, str], ...], book: Book) -> dict[int, str]:
    """The voice map's (chapter, voice) pairs as chapter index -> voice for ``book``;
    ConfigError for a chapter the book does not have."""
    titles: dict[str, list[int]] = {}
    for i, ch in enumerate(book.chapters):
        titles.setdefault(" ".join(ch.title.split()).casefold(), []).append(i)
    out: dict[int, str] = {}
    for key, voice in pairs:
        if key.isdigit():
            index = int(key) - 1
            if not 0 <= index < len(book.chapters):
                raise ConfigError(f"--voice-map: chapter {key} (the book has {len(book.chapters)})")
            out[index] = voice
            continue
        found = titles.get(" ".join(key.split()).casefold())
        if not found:
            raise ConfigError(f"--voice-map: no chapter titled {key!r}")
        for index in found:
            out[index] = voice
    return out
