"""Our SSML as Piper reads it: one chunk's ``<speak>`` document into the segments a
Piper worker synthesizes, and what of it could not be honoured. Pure.

    plan = plan_ssml('<speak><p>Hello.</p><break time="1s"/></speak>', phonemes)
    plan.segments     # (Say("Hello.", ...), Pause(1000))
    plan.unsupported  # frozenset() - what was spoken as plain text, one phrase each

Piper speaks text sentence by sentence, so the SSML becomes a list of ``Say`` (one
sentence, or the part of one that a tag cut off) and ``Pause`` segments:

- ``<p>`` and ``<s>`` end a sentence; text inside them is split at sentence ends
  (``ssml.sentence_spans``, abbreviations kept whole). Each sentence is one ``Say``,
  which carries its text and byte offsets for speech marks.
- ``<break time="1.5s"/>`` (or ``strength``) is silence of that length.
- ``<prosody rate="slow|80%|+20%">`` scales Piper's ``length_scale`` (rates multiply when
  nested); pitch and volume are reported.
- ``<phoneme alphabet="ipa" ph="...">`` becomes Piper's raw phoneme input (``[[ ph ]]``)
  when the voice reads espeak-ng IPA and knows every phoneme; else its text is spoken
  and the phoneme reported.
- ``<sub alias="...">`` speaks the alias.
- Any other element (``emphasis``, ``say-as``, ``lang``, ``amazon:effect``, ...) is
  reported and its text spoken.

The book's own text never turns into phonemes: a ``[[`` in it is read as brackets.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field

from ...ssml import _MARKUP, sentence_spans

# Break strengths as pauses, in milliseconds (SSML names; Polly's "medium" is the pause
# after a comma, "strong" after a sentence, "x-strong" after a paragraph).
BREAK_STRENGTH_MS = {
    "none": 0,
    "x-weak": 100,
    "weak": 250,
    "medium": 400,
    "strong": 700,
    "x-strong": 1200,
}
MAX_BREAK_MS = 10_000  # as Polly: a longer break is cut to this
# Named rates as speed factors (length_scale is divided by them).
RATE_WORDS = {"x-slow": 0.6, "slow": 0.8, "medium": 1.0, "fast": 1.25, "x-fast": 1.6}
MIN_RATE, MAX_RATE = 0.2, 4.0

_TIME = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s)\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*([+-]?)([0-9]+(?:\.[0-9]*)?)\s*%\s*$")
_ATTR = re.compile(r"([^\s=/>]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_WS = re.compile(r"\s+")
# Placeholders for phoneme blocks while the text is split into sentences.
_HOLD = "\ue000"
_HOLD_RE = re.compile(_HOLD + r"(\d+)" + _HOLD)


@dataclass(frozen=True)
class Say:
    """Text that Piper speaks in one go.

    text:         what ``PiperVoice.synthesize`` gets (raw phonemes inside ``[[ ]]``)
    rate:         speed factor from ``<prosody rate>`` (the voice's length scale is
                  divided by it)
    sentence_end: a sentence ends here (the sentence gap follows it)
    value:        the words as written, for captions
    start / end:  byte offsets of the text in the chunk's SSML
    """

    text: str
    rate: float = 1.0
    sentence_end: bool = True
    value: str = ""
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Pause:
    ms: int


Segment = Say | Pause


@dataclass(frozen=True)
class Plan:
    segments: tuple[Segment, ...]
    unsupported: frozenset[str] = field(default_factory=frozenset)


def parse_break(attrs: dict[str, str]) -> int:
    """A ``<break>``'s length in ms: ``time`` ("600ms", "1.5s"), else ``strength``,
    else medium; at most ``MAX_BREAK_MS``."""
    m = _TIME.match(attrs.get("time", ""))
    if m:
        value = float(m.group(1))
        ms = value if m.group(2).lower() == "ms" else value * 1000
    else:
        ms = BREAK_STRENGTH_MS.get(attrs.get("strength", "medium").strip().lower(), 400)
    return max(0, min(MAX_BREAK_MS, round(ms)))


def parse_rate(value: str) -> float | None:
    """A prosody rate as a speed factor: "slow" -> 0.8, "150%" -> 1.5, "+20%" -> 1.2,
    "-50%" -> 0.5; None for what is not a rate."""
    word = RATE_WORDS.get(value.strip().lower())
    if word is not None:
        return word
    m = _PERCENT.match(value)
    if not m:
        return None
    number = float(m.group(2)) / 100
    factor = 1 + number if m.group(1) == "+" else 1 - number if m.group(1) == "-" else number
    return max(MIN_RATE, min(MAX_RATE, factor)) if factor > 0 else None


class _Planner:
    def __init__(self, ssml: str, phonemes: Collection[str] | None) -> None:
        self.ssml = ssml
        self.phonemes = phonemes
        self.segments: list[Segment] = []
        self.unsupported: set[str] = set()
        self.rates: list[float] = [1.0]
        # The text gathered since the last boundary, still escaped as in the SSML;
        # phoneme blocks stand as placeholders, aliases as their text.
        self.buf: list[tuple[str, int, bool]] = []  # (raw, offset, as in the SSML)
        self.blocks: list[tuple[str, str]] = []  # (phonemes, written text)
        self.skip: list[str] = []  # elements whose text is replaced (phoneme, sub)
        self.stack: list[str] = []

    # --- building -----------------------------------------------------------------------

    def pause(self, ms: int) -> None:
        if ms <= 0:
            return
        if self.segments and isinstance(self.segments[-1], Pause):
            ms += self.segments[-1].ms
            self.segments[-1] = Pause(min(ms, MAX_BREAK_MS))
        else:
            self.segments.append(Pause(ms))

    def flush(self, sentence_end: bool, at: int) -> None:
        """The gathered text becomes Say segments, one per sentence."""
        if not self.buf:
            return
        pieces, self.buf = self.buf, []
        raw = "".join(t for t, _, _ in pieces)
        rate = self.rates[-1]
        spans = sentence_spans(raw)
        pos = 0
        for i, span in enumerate(spans):
            begin, pos = pos, pos + len(span)
            text = _WS.sub(" ", html.unescape(span)).strip()
            if not text or not any(ch.isalnum() for ch in _HOLD_RE.sub("a", text)):
                continue  # punctuation or space alone: nothing to say
            last = i == len(spans) - 1
            self.segments.append(
                Say(
                    text=self._piper_text(text),
                    rate=rate,
                    sentence_end=sentence_end or not last,
                    value=self._written(text),
                    start=_where(pieces, begin + len(span) - len(span.lstrip())),
                    end=at if last else _where(pieces, pos),
                )
            )

    def _piper_text(self, text: str) -> str:
        # The book's "[[" is spoken as brackets, never read as phonemes (nor a "[" just
        # before a phoneme block taken as its opening).
        text = text.replace("[[", "[ [").replace("]]", "] ]").replace("[" + _HOLD, "[ " + _HOLD)
        return _HOLD_RE.sub(lambda m: f"[[ {self.blocks[int(m.group(1))][0]} ]]", text)

    def _written(self, text: str) -> str:
        return _HOLD_RE.sub(lambda m: self.blocks[int(m.group(1))][1], text)

    # --- elements -----------------------------------------------------------------------

    def start(self, name: str, attrs: dict[str, str], at: int, empty: bool) -> None:
        local = name.lower()
        if self.skip:
            self.unsupported.add(f"<{name}> inside <{self.skip[-1]}>")
            if not empty:
                self.stack.append(name)
                self.skip.append(self.skip[-1])
            return
        if local == "speak":
            pass
        elif local in ("p", "s", "paragraph", "sentence"):
            self.flush(True, at)
        elif local == "break":
            self.flush(True, at)
            self.pause(parse_break(attrs))
        elif local == "prosody":
            rate = self.rates[-1]
            for key, value in attrs.items():
                if key == "rate":
                    factor = parse_rate(value)
                    if factor is None:
                        self.unsupported.add(f'<prosody rate="{value}">')
                    else:
                        self.flush(False, at)
                        rate *= factor
                else:
                    self.unsupported.add(f"<prosody {key}>")
            self.rates.append(rate)
        elif local == "phoneme":
            ph = unicodedata.normalize("NFD", attrs.get("ph", "").strip())
            alphabet = attrs.get("alphabet", "ipa").strip().lower()
            if self.phonemes is None:
                self.unsupported.add("<phoneme> (this voice takes no phoneme input)")
            elif alphabet != "ipa":
                self.unsupported.add(f'<phoneme alphabet="{alphabet}"> (only ipa)')
            elif not ph:
                self.unsupported.add("<phoneme> without ph")
            else:
                missing = sorted({c for c in ph if c not in self.phonemes and not c.isspace()})
                if missing:
                    self.unsupported.add(
                        f"<phoneme> with phonemes the voice does not know: {' '.join(missing)}"
                    )
                else:
                    self._hold_phonemes(ph, at, empty)
                    return
        elif local == "sub":
            alias = attrs.get("alias")
            if alias is not None:
                self.buf.append((html.escape(alias, quote=False), at, False))
                if not empty:
                    self.stack.append(name)
                    self.skip.append(name)
                return
            self.unsupported.add("<sub> without alias")
        else:
            self.unsupported.add(f"<{name}>")
        if not empty:
            self.stack.append(name)

    def _hold_phonemes(self, ph: str, at: int, empty: bool) -> None:
        written = self._element_text(at) if not empty else ""
        self.blocks.append((" ".join(ph.split()), written))
        n = len(self.blocks) - 1
        self.buf.append((f"{_HOLD}{n}{_HOLD}", at, False))
        if not empty:
            self.stack.append("phoneme")
            self.skip.append("phoneme")

    def _element_text(self, at: int) -> str:
        """The written text of the element whose start tag ends at ``at`` (for captions)."""
        close = self.ssml.find("</", at)
        inner = self.ssml[at:close] if close >= 0 else ""
        return html.unescape(_MARKUP.sub(" ", inner)).strip()

    def end(self, name: str, at: int) -> None:
        if not self.stack:
            return
        self.stack.pop()
        local = name.lower()
        if self.skip:
            self.skip.pop()
            return
        if local in ("p", "s", "paragraph", "sentence"):
            self.flush(True, at)
        elif local == "prosody" and len(self.rates) > 1:
            if self.rates[-1] != self.rates[-2]:
                self.flush(False, at)
            self.rates.pop()

    def text(self, raw: str, at: int) -> None:
        if raw and not self.skip:
            self.buf.append((raw, at, True))


def _where(pieces: list[tuple[str, int, bool]], i: int) -> int:
    """The offset in the SSML of character ``i`` of the joined ``pieces`` (a phoneme
    block or an alias stands at its element's offset)."""
    n = 0
    for raw, at, literal in pieces:
        if i < n + len(raw):
            return at + (i - n) if literal else at
        n += len(raw)
    return pieces[-1][1] + len(pieces[-1][0]) if pieces else 0


def plan_ssml(ssml: str, phonemes: Collection[str] | None = None) -> Plan:
    """The segments of one ``<speak>`` document (see the module docstring).

    ``phonemes``: the voice's phoneme symbols (its ``phoneme_id_map`` keys) when it reads
    espeak-ng IPA, so that ``<phoneme>`` can be honoured; None: no phoneme input."""
    p = _Planner(ssml, phonemes)
    pos = 0
    for m in _MARKUP.finditer(ssml):
        if m.start() > pos:
            p.text(ssml[pos : m.start()], pos)
        pos = m.end()
        if m.group(1) is not None:  # CDATA: its text, escaped as the rest is
            p.text(html.escape(m.group(1), quote=False), m.start())
            continue
        name = m.group(3)
        if not name:
            continue  # comment, processing instruction, declaration
        if m.group(2):
            p.end(name, m.start())
            continue
        tag = m.group(0)
        attrs = {k: html.unescape(a or b) for k, a, b in _ATTR.findall(tag[len(name) + 1 :])}
        p.start(name, attrs, m.end(), tag.endswith("/>"))
    if pos < len(ssml):
        p.text(ssml[pos:], pos)
    p.flush(True, len(ssml))
    return Plan(tuple(p.segments), frozenset(p.unsupported))


def byte_offsets(ssml: str, segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
    """The segments with their character offsets turned into byte offsets (UTF-8), as
    speech marks count them."""
    if ssml.isascii():
        return segments
    out: list[Segment] = []
    for s in segments:
        if isinstance(s, Say):
            start = len(ssml[: s.start].encode("utf-8"))
            end = start + len(ssml[s.start : s.end].encode("utf-8"))
            s = Say(s.text, s.rate, s.sentence_end, s.value, start, end)
        out.append(s)
    return tuple(out)
