"""What the emulator does with the text of a request: parse and police SSML, count
billable characters, turn SSML into something espeak-ng speaks, and make speech marks.

Speech-mark times are an approximation (documented): the audio is synthesized once, and
each mark's time is its position among the billable characters times the audio
duration. Offsets are UTF-8 byte offsets into the raw input, markup included, as Polly's.
Viseme marks are not produced.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape

from . import facts
from .protocol import PollyError

AMAZON_NS = "https://polly.amazon.com/ssml"  # our stand-in for the undeclared amazon: prefix
_AMZ = "{" + AMAZON_NS + "}"
XML_NS = "{http://www.w3.org/XML/1998/namespace}"

KNOWN_TAGS = {
    "speak",
    "break",
    "lang",
    "p",
    "s",
    "sub",
    "w",
    "emphasis",
    "prosody",
    "mark",
    "phoneme",
    "say-as",
    _AMZ + "effect",
    _AMZ + "auto-breaths",
    _AMZ + "domain",
    _AMZ + "breath",
    _AMZ + "max-duration",
}
UNSUPPORTED_TAGS = {"audio", "lexicon", "lookup", "voice"}  # anywhere [D limits.md]


def parse(text: str) -> ET.Element:
    """The SSML document as an element tree; InvalidSsmlException when malformed.
    The ``amazon:`` prefix Polly uses without declaring it is declared first."""
    src = text
    if "amazon:" in src and "xmlns:amazon" not in src:
        src = re.sub(r"<speak\b", f'<speak xmlns:amazon="{AMAZON_NS}"', src, count=1)
    try:
        root = ET.fromstring(src)
    except ET.ParseError:
        raise PollyError("InvalidSsmlException", facts.INVALID_SSML_MESSAGE) from None
    if _local(root.tag) != "speak":
        raise PollyError("InvalidSsmlException", facts.INVALID_SSML_MESSAGE)
    return root


def _local(tag: str) -> str:
    """Tag without the SSML namespace (kept for amazon: tags)."""
    if tag.startswith("{http://www.w3.org/2001/10/synthesis}"):
        return tag.split("}", 1)[1]
    return tag


def _seconds(value: str) -> float | None:
    m = re.fullmatch(r"\s*([\d.]+)\s*(ms|s)\s*", value or "")
    if not m:
        return None
    n = float(m.group(1))
    return n / 1000 if m.group(2) == "ms" else n


def check(root: ET.Element, engine: str, voice: str | None = None) -> None:
    """Raise for tags the engine (and voice) rejects [D supportedtags.html, limits.md;
    prosody-tag.html: no <prosody pitch> but on standard; newscaster-tag.html:
    facts.NEWS_VOICES, neural only]."""

    def unsupported() -> PollyError:
        return PollyError(facts.UNSUPPORTED_SSML_ERROR, facts.UNSUPPORTED_SSML_MESSAGE)

    plain = engine == "standard"
    for el in root.iter():
        tag = _local(el.tag)
        if not isinstance(tag, str):  # comments, processing instructions
            continue
        if tag in UNSUPPORTED_TAGS or tag not in KNOWN_TAGS:
            raise unsupported()
        if tag == "break":
            secs = _seconds(el.get("time", "0ms"))
            if el.get("time") is not None and (secs is None or secs > facts.MAX_BREAK_SECONDS):
                raise PollyError("InvalidSsmlException", facts.INVALID_SSML_MESSAGE)
        if tag == "prosody":
            rate = el.get("rate", "")
            if rate.endswith("%"):
                try:
                    pct = float(rate[:-1])
                except ValueError:
                    raise PollyError("InvalidSsmlException", facts.INVALID_SSML_MESSAGE) from None
                if pct < facts.MIN_PROSODY_RATE_PERCENT and not rate.startswith(("-", "+")):
                    raise unsupported()
                if rate.startswith("-") and pct < -(100 - facts.MIN_PROSODY_RATE_PERCENT):
                    raise unsupported()
            if not plain and el.get(_AMZ + "max-duration") is not None:
                raise unsupported()
            if not plain and el.get("pitch") is not None:
                raise unsupported()
        if plain:
            if tag == _AMZ + "domain":
                raise unsupported()  # news style is not on standard voices
            continue
        # neural, long-form, generative
        if tag in ("emphasis", _AMZ + "auto-breaths", _AMZ + "breath", _AMZ + "max-duration"):
            raise unsupported()
        if tag == _AMZ + "effect":
            name = el.get("name")
            if (
                name != "drc"
                or engine == "generative"
                or el.get("phonation")
                or el.get("vocal-tract-length")
            ):
                raise unsupported()
        if tag == _AMZ + "domain" and (
            engine != "neural" or (voice is not None and voice not in facts.NEWS_VOICES)
        ):
            raise unsupported()


def billable_chars(text: str, text_type: str) -> int:
    """Characters Polly bills, counted here from the documented rule and nothing of the
    client's: "SSML tags are not billed" [D limits.html] (``facts.BILLING_RULE``): the
    text content of the parsed document (entities and CDATA as the characters they
    stand for, the whitespace between tags included); plain text whole."""
    if text_type != "ssml":
        return len(text)
    return len("".join(parse(text).itertext()))


# --- text for espeak-ng ---------------------------------------------------------------------

_KEEP = {"p", "s"}
_BREAK_STRENGTH = {
    "none": 0.0,
    "x-weak": 0.1,
    "weak": 0.25,
    "medium": 0.4,
    "strong": 0.7,
    "x-strong": 1.2,
}


def _render_el(el: ET.Element) -> str:
    """One element (not its tail) for espeak-ng: p/s and break kept, sub spoken as its
    alias, every other tag unwrapped (espeak-ng does not know Polly's)."""
    if not isinstance(el.tag, str):  # comment, processing instruction
        return ""
    tag = _local(el.tag)
    if tag == "break":
        secs = _seconds(el.get("time", ""))
        if secs is None:
            secs = _BREAK_STRENGTH.get(el.get("strength", "medium"), 0.4)
        return f'<break time="{int(secs * 1000)}ms"/>'
    if tag == "sub":
        return escape(el.get("alias") or "".join(el.itertext()))
    inner = _render_content(el)
    return f"<{tag}>{inner}</{tag}>" if tag in _KEEP else inner


def _render_content(el: ET.Element) -> str:
    out = [escape(el.text or "")]
    for child in el:
        out.append(_render_el(child))
        out.append(escape(child.tail or ""))
    return "".join(out)


def _split_text(text: str, max_chars: int) -> Iterator[str]:
    """``text`` in pieces of at most ``max_chars``, cut after sentences, else at spaces."""
    if len(text) <= max_chars:
        yield text
        return
    buf = ""
    for part in re.split(r"(?<=[.!?;:])(?=\s)|(?<=\s)(?=\S)", text):
        if buf and len(buf) + len(part) > max_chars:
            yield buf
            buf = ""
        buf += part
    if buf:
        yield buf


def _pieces(el: ET.Element, max_chars: int) -> Iterator[str]:
    """An element as espeak-ng fragments, descending into it when it is too long."""
    whole = _render_el(el)
    if len(whole) <= max_chars or not isinstance(el.tag, str):
        yield whole
        return
    yield from _split_text(escape(el.text or ""), max_chars)
    for child in el:
        yield from _pieces(child, max_chars)
        yield from _split_text(escape(child.tail or ""), max_chars)


def espeak_batches(text: str, text_type: str, max_chars: int = 4000) -> Iterator[tuple[str, bool]]:
    """The input as a series of (text, is_ssml) pieces for espeak-ng of about
    ``max_chars`` each, cut between elements, sentences or words, so that a long task
    never holds all of its audio in memory."""
    if text_type == "ssml":
        pieces: Iterator[str] = _pieces(parse(text), max_chars)
    else:
        pieces = _split_text(text, max_chars)
    buf = ""
    for piece in pieces:
        if buf and len(buf) + len(piece) > max_chars:
            if buf.strip():
                yield (f"<speak>{buf}</speak>", True) if text_type == "ssml" else (buf, False)
            buf = ""
        buf += piece
    if buf.strip():
        yield (f"<speak>{buf}</speak>", True) if text_type == "ssml" else (buf, False)


# --- speech marks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Seg:
    start: int  # character index of the segment in the raw input
    raw: str  # raw text, entities not decoded


_TOKEN = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<[^>]*>", re.DOTALL)
_BLOCK_END = re.compile(r"</\s*(s|p|speak)\s*>|<\s*break\b[^>]*>", re.IGNORECASE)
_MARK = re.compile(r"<\s*mark\b[^>]*\bname\s*=\s*(['\"])(.*?)\1[^>]*>", re.IGNORECASE)
_WORD = re.compile(r"[\w'’&;#-]+")


def speech_marks(text: str, text_type: str, types: list[str], duration_ms: int) -> bytes:
    """Line-delimited JSON speech marks (sentence, word, ssml) for ``text``."""
    # Logical text: the spoken characters with their raw character positions, and a
    # sentence break ("\n") at the end of s/p elements and breaks.
    chars: list[str] = []
    pos: list[int] = []
    marks: list[tuple[int, int, int, str]] = []  # (logical index, raw start, raw end, name)
    if text_type == "ssml":
        last = 0
        for m in _TOKEN.finditer(text):
            for i in range(last, m.start()):
                chars.append(text[i])
                pos.append(i)
            if _BLOCK_END.match(m.group(0)):
                chars.append("\n")
                pos.append(-1)
            mk = _MARK.match(m.group(0))
            if mk:
                marks.append((len(chars), m.start(), m.end(), html.unescape(mk.group(2))))
            last = m.end()
    else:
        chars = list(text)
        pos = list(range(len(text)))
    logical = "".join(chars)
    spoken = [i for i, p in enumerate(pos) if p >= 0]
    order = {li: n for n, li in enumerate(spoken)}
    total = max(1, len(spoken))

    byte_at = [0]
    for ch in text:
        byte_at.append(byte_at[-1] + len(ch.encode("utf-8")))

    def t(li: int) -> int:
        n = order.get(li)
        if n is None:
            n = next((order[j] for j in range(li, len(pos)) if j in order), total)
        return int(duration_ms * n / total)

    def entry(kind: str, a: int, b: int) -> dict[str, object]:
        ra, rb = pos[a], pos[b - 1] + 1
        return {
            "time": t(a),
            "type": kind,
            "start": byte_at[ra],
            "end": byte_at[rb],
            "value": text[ra:rb],
        }

    events: list[tuple[int, int, dict[str, object]]] = []
    if "sentence" in types:
        for m in re.finditer(
            r"[^\n.!?]*[^\s\n.!?][^\n.!?]*(?:[.!?]+[\"')\]»”’]*|(?=\n)|$)", logical
        ):
            a, b = m.start(), m.end()
            while a < b and logical[a].isspace():
                a += 1
            while b > a and logical[b - 1].isspace():
                b -= 1
            if a < b and all(p >= 0 for p in pos[a:b]):
                events.append((t(a), 0, entry("sentence", a, b)))
    if "word" in types:
        for m in _WORD.finditer(logical):
            a, b = m.start(), m.end()
            if all(p >= 0 for p in pos[a:b]) and any(c.isalnum() for c in logical[a:b]):
                events.append((t(a), 1, entry("word", a, b)))
    if "ssml" in types:
        for li, rs, re_, name in marks:
            events.append(
                (
                    t(li),
                    2,
                    {
                        "time": t(li),
                        "type": "ssml",
                        "start": byte_at[rs],
                        "end": byte_at[re_],
                        "value": name,
                    },
                )
            )
    events.sort(key=lambda e: (e[0], e[1]))
    return b"".join(json.dumps(e[2], ensure_ascii=False).encode() + b"\n" for e in events)
