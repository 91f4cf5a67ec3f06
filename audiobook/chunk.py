"""Split rendered SSML into pieces an engine accepts. Pure.

Every piece is a well-formed ``<speak>`` document with at most ``limits.max_billable``
billable characters (text outside tags, entities counted once) and ``limits.max_total``
characters in all. Elements open at a cut (``<p>``, ``<s>``, ...) are closed at the end of
one piece and reopened at the start of the next, so that each piece stands alone.

Where to cut, best first: between top-level elements (paragraphs), at a sentence end, at
clause punctuation (; : , —), at whitespace, and only as a last resort between two
characters (CJK text has no spaces) — never inside a tag or an entity, and not before a
combining mark, inside an emoji sequence or between the two halves of a flag. Pieces are
filled greedily close to the limit (fewer, larger tasks are cheaper); a tiny last piece is
avoided by cutting the last two more evenly.

No text is lost, duplicated or reordered: the text of the pieces, in order, is exactly the
text of the input (whitespace included: a cut at whitespace leaves it at the end of the
earlier piece). The work is linear in the length of the input.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from .config import EngineLimits, RenderOptions
from .model import Book, Chunk
from .ssml import (
    CLOSERS,
    DEFAULT_OPTIONS,
    SENTENCE_END,
    billable_chars,
    entity_overhead,
    is_sentence_end,
    render_book,
)

__all__ = ["chunk_book", "chunk_rendered", "split_ssml"]

_TEXT, _OPEN, _CLOSE, _EMPTY, _OTHER = range(5)

_TOKEN = re.compile(
    r"(<!--.*?-->|<\?.*?\?>|<!\[CDATA\[.*?\]\]>|<!(?:[^>\"']|\"[^\"]*\"|'[^']*')*>)"
    r"|<(/?)([^\s/>]+)(?:[^>\"']|\"[^\"]*\"|'[^']*')*>"
    r"|[^<]+|<",  # a stray "<" (not well-formed) is kept as text, never dropped
    re.DOTALL,
)
_CLAUSE = re.compile(  # the lookahead lets the regex engine skip fast to candidates
    r"(?=[;:,\u2014\u2013\uff0c\u3001\uff1b\uff1a\u060c\u061b])"
    r"(?:[;:,](?<!&quot;)(?<!&apos;)(?<!&amp;)(?<!&lt;)(?<!&gt;)" + CLOSERS + r"*\s+"
    r"|[\u2014\u2013]\s*"
    r"|[\uff0c\u3001\uff1b\uff1a\u060c\u061b]" + CLOSERS + r"*\s*)"
)
# Elements whose text must stay whole (an alias, a pronunciation, a word).
_ATOMIC = frozenset({"sub", "say-as", "phoneme", "w", "token", "audio", "mark"})
_NEVER = 99  # level of a position that is no cut at all


@dataclass(frozen=True)
class _Stack:
    """The elements open at a position: what to reopen and what to close."""

    names: tuple[str, ...]
    prefix: str  # the start tags, outermost first
    suffix: str  # the end tags, innermost first
    atomic: bool

    def push(self, name: str, tag: str) -> _Stack:
        local = name.rsplit(":", 1)[-1]
        return _Stack(
            self.names + (name,),
            self.prefix + tag,
            f"</{name}>" + self.suffix,
            self.atomic or local in _ATOMIC,
        )


class _Doc:
    """The tokens of one ``<speak>`` document, with running billable counts."""

    def __init__(self, ssml: str) -> None:
        self.s = ssml
        starts: list[int] = []
        ends: list[int] = []
        kinds: list[int] = []
        names: list[str] = []
        stacks: list[_Stack] = []
        cum = [0]
        stack_history: list[_Stack] = []
        stack: _Stack | None = None
        root_end = -1
        for m in _TOKEN.finditer(ssml):
            if m.group(1) is not None:
                kind, name = _OTHER, ""
            elif m.group(3) is not None:
                name = m.group(3)
                if m.group(2):
                    kind = _CLOSE
                elif m.group().endswith("/>"):
                    kind = _EMPTY
                else:
                    kind = _OPEN
            else:
                kind, name = _TEXT, ""
            if stack is None:  # the prolog, up to the root element
                if kind in (_OPEN, _EMPTY):
                    if name.rsplit(":", 1)[-1] != "speak":
                        raise ValueError(f"SSML root element is <{name}>, not <speak>")
                    if kind == _EMPTY:
                        raise ValueError("SSML document is an empty <speak/>")
                    stack = _Stack((name,), m.group(), f"</{name}>", False)
                    self.body_start = m.end()
                continue
            if kind == _CLOSE and len(stack.names) == 1:
                if name != stack.names[0]:
                    raise ValueError(f"SSML is not well-formed: </{name}> closes <speak>")
                root_end = m.start()
                break
            starts.append(m.start())
            ends.append(m.end())
            kinds.append(kind)
            names.append(name)
            stacks.append(stack)
            if kind == _TEXT:
                text = m.group()
                billable = len(text) - entity_overhead(text)
            elif kind == _OTHER and m.group().startswith("<![CDATA["):
                billable = len(m.group()) - 12
            else:
                billable = 0
            cum.append(cum[-1] + billable)
            if kind == _OPEN:
                stack_history.append(stack)
                stack = stack.push(name, m.group())
            elif kind == _CLOSE:
                if name != stack.names[-1]:
                    raise ValueError(
                        f"SSML is not well-formed: </{name}> closes <{stack.names[-1]}>"
                    )
                stack = stack_history.pop()
        if stack is None or root_end < 0:
            raise ValueError("SSML is not one well-formed <speak> document")
        self.root_stack = _Stack(stack.names[:1], stack.prefix, stack.suffix, False)
        self.body_end = root_end
        self.n = len(starts)
        self.starts = starts + [root_end]
        self.ends = ends + [root_end]
        self.kinds = kinds + [_CLOSE]
        self.names = names + [self.root_stack.names[0]]
        self.stacks = stacks + [stack]
        self.cum = cum

    # --- positions --------------------------------------------------------------

    def token_at(self, pos: int) -> int:
        """The token that holds ``pos`` (a boundary belongs to the token after it)."""
        return bisect.bisect_right(self.starts, pos) - 1 if pos < self.body_end else self.n

    def stack_at(self, pos: int) -> _Stack:
        return self.stacks[self.token_at(pos)]

    def billable(self, a: int, b: int) -> int:
        ka, kb = self.token_at(a), self.token_at(b)
        if ka == kb:
            return self._part(ka, a, b)
        return (
            self._part(ka, a, self.ends[ka])
            + self.cum[kb]
            - self.cum[ka + 1]
            + self._part(kb, self.starts[kb], b)
        )

    def _part(self, k: int, a: int, b: int) -> int:
        if k >= self.n or a >= b:
            return 0
        if a == self.starts[k] and b == self.ends[k]:
            return self.cum[k + 1] - self.cum[k]
        return (b - a) - entity_overhead(self.s[a:b])  # only text tokens are cut inside

    def piece(self, a: int, b: int) -> str:
        return self.stack_at(a).prefix + self.s[a:b] + self.stack_at(b).suffix

    # --- how far a piece can reach ---------------------------------------------------

    def max_fill(self, a: int, limits: EngineLimits) -> int:
        """The furthest position ``b`` such that the piece [a, b) fits the limits."""
        rem_t = limits.max_total - len(self.stack_at(a).prefix)
        rem_b = limits.max_billable
        k = self.token_at(a)
        best = a
        used_b = 0
        while k < self.n:
            s, e = max(self.starts[k], a), self.ends[k]
            # Check the total first: billable counts of what cannot fit anyway would make
            # a huge paragraph cost quadratic time.
            fits_t = (e - a) + len(self.stacks[k + 1].suffix) <= rem_t
            tb = self._part(k, s, e) if fits_t else 0
            if fits_t and used_b + tb <= rem_b:
                used_b += tb
                best = e
                k += 1
                continue
            if self.kinds[k] == _TEXT:
                room_t = rem_t - len(self.stacks[k].suffix) - (s - a)
                cut = self._fit_text(s, min(e, s + max(0, room_t)), rem_b - used_b)
                best = max(best, cut)
            break
        else:
            best = self.body_end
        return best

    def _fit_text(self, s: int, o_max: int, room_b: int) -> int:
        """The furthest cut in the text [s, o_max) with at most room_b billable characters,
        never inside an entity. Each round adds as many raw characters as billable room
        is left, so the cost is linear in the text covered."""
        text, o, used = self.s, s, 0
        while True:
            step = min(room_b - used, o_max - o)
            if step <= 0:
                return o
            n = o + step
            amp = text.rfind("&", max(o, n - 12), n)
            if amp != -1 and text.find(";", amp, n) == -1:  # n is inside an entity
                semi = text.find(";", n, amp + 12)
                n = semi + 1 if semi != -1 and semi < o_max else amp
            if n <= o:
                return o
            used += (n - o) - entity_overhead(text[o:n])
            o = n

    # --- where to cut ---------------------------------------------------------------

    def boundary_level(self, k: int) -> int:
        """How good a cut is at the boundary before token k (0 best)."""
        if k <= 0 or k >= self.n:
            return _NEVER
        prev, nxt = self.kinds[k - 1], self.kinds[k]
        if prev == _OPEN or nxt == _CLOSE:
            return _NEVER  # it would leave an empty element behind
        stack = self.stacks[k]
        if stack.atomic:
            return 5
        if len(stack.names) == 1:
            return 1 if nxt == _EMPTY else 0
        prev_name = self.names[k - 1].rsplit(":", 1)[-1]
        next_name = self.names[k].rsplit(":", 1)[-1]
        if (prev == _CLOSE and prev_name == "s") or (nxt == _OPEN and next_name == "s"):
            return 1
        if prev == _EMPTY or nxt == _EMPTY:
            return 2
        return 3

    def _inner_latest(self, k: int, lo: int, hi: int, latest: list[int]) -> None:
        """Record in latest[level] the latest cut of each level 1..3 strictly inside text
        token k, in (lo, hi], where none is recorded yet."""
        if self.kinds[k] != _TEXT or self.stacks[k].atomic:
            return
        s0, e0 = self.starts[k], self.ends[k]
        lo, hi = max(lo, s0), min(hi, e0 - 1)
        if hi <= lo:
            return
        text = self.s
        if latest[1] < 0:
            for m in SENTENCE_END.finditer(text, max(s0, lo - 16), hi):
                c = m.end()
                if c > lo and is_sentence_end(text, m.start(), c):
                    latest[1] = c
        if latest[2] < 0:
            for m in _CLAUSE.finditer(text, max(s0, lo - 16), hi):
                if m.end() > lo:
                    latest[2] = m.end()
        if latest[3] < 0:
            ws = max(text.rfind(" ", lo, hi), text.rfind("\n", lo, hi), text.rfind("\t", lo, hi))
            if ws >= 0:
                latest[3] = ws + 1

    def latest_cuts(self, lo: int, hi: int, stop: int) -> list[int]:
        """The latest cut of each level 0..3 in (lo, hi] (-1 where there is none),
        found in one walk back from hi; the walk ends early once a paragraph boundary
        at or after ``stop`` is found, or once every level has one."""
        latest = [-1, -1, -1, -1]
        k = self.token_at(hi)
        while k >= 0:
            if k < self.n and self.starts[k] < hi:
                self._inner_latest(k, lo, hi, latest)
            b = self.starts[k]
            if b <= lo:
                break
            if b <= hi:
                level = self.boundary_level(k)
                if level <= 3 and latest[level] < 0:
                    latest[level] = b
                    if level == 0 and b >= stop:
                        break
            if min(latest) >= 0:
                break
            k -= 1
        return latest

    @staticmethod
    def _pick(latest: list[int], tiers: tuple[tuple[int, int], ...]) -> int | None:
        """The first tier (maxlevel, lowest position) met by the latest cut of level <=
        maxlevel."""
        for maxlevel, low in tiers:
            c = max(latest[: maxlevel + 1])
            if c >= 0 and c > low:
                return c
        return None

    def char_cut(self, a: int, p: int) -> int:
        """A cut at or just before p between two characters (the last resort)."""
        k = self.token_at(p)
        if k < self.n and p == self.starts[k]:
            while k > 0 and self.kinds[k - 1] == _OPEN and self.starts[k - 1] > a:
                k -= 1
            return self.starts[k]
        if k >= self.n or self.kinds[k] != _TEXT:
            return p
        text, s0 = self.s, self.starts[k]
        p = c = _outside_entity(text, s0, p)
        floor = max(s0, a)
        for _ in range(32):
            if c <= floor or not _joined(text, c):
                break
            c = _outside_entity(text, s0, c - 1)
        if c > floor and not _joined(text, c):
            return c
        return p

    def choose(self, a: int, p: int) -> int:
        """Where the piece that starts at a and may reach p ends: a paragraph boundary in
        the last tenth, else a sentence end (or paragraph boundary) in the last half,
        else a clause, else whitespace in the last three quarters, else between two
        characters at p."""
        span = p - a
        q1, q2, q3 = a + span // 4, a + span // 2, a + span * 9 // 10
        # A piece with nothing to say (only a pause) is a wasted request: cut after the
        # first character of text, where there is text before p.
        text = self.first_text(a)
        if text < p:
            q1, q2, q3 = max(q1, text), max(q2, text), max(q3, text)
        latest = self.latest_cuts(q1, p, stop=q3)
        c = self._pick(latest, ((0, q3), (1, q2), (2, q2), (3, q1)))
        return c if c is not None and c > a else self.char_cut(a, p)

    def first_text(self, a: int) -> int:
        """The position of the first billable character at or after a (or the end)."""
        k = self.token_at(a)
        if k >= self.n:
            return self.body_end
        if self.kinds[k] == _TEXT and a > self.starts[k]:
            return a  # inside a text token, which has billable text from a on
        j = bisect.bisect_right(self.cum, self.cum[k], lo=k)
        return self.starts[j - 1] if j <= self.n else self.body_end

    def balance(self, a: int, limits: EngineLimits) -> int | None:
        """A cut near the middle of [a, end) (by billable characters) after which the
        rest fits in one piece, so that the last two pieces are of similar size; or None."""
        end = self.body_end
        billable = self.billable(a, end)

        def at(fraction: float) -> int:  # where that fraction of the text is spoken
            room = EngineLimits(max(1, int(billable * fraction)), limits.max_total * 2)
            return self.max_fill(a, room)

        hi = min(self.max_fill(a, limits), at(0.7))
        latest = self.latest_cuts(at(0.3), hi, stop=at(0.4))
        least = max(1, min(limits.max_billable, billable) // 4)
        text = self.first_text(a)
        for c in [*latest, self.char_cut(a, at(0.5))]:
            if (
                max(a, text) < c <= hi
                and self.billable(c, end) >= least
                and self.max_fill(c, limits) >= end
            ):
                return c
        # Uneven, then: the latest cut that leaves some text to the last piece.
        hi = min(self.max_fill(a, limits), self.last_text() - 1)
        latest = self.latest_cuts(text, hi, stop=hi)
        for c in [max(latest), self.char_cut(a, hi)]:
            if max(a, text) < c <= hi and self.max_fill(c, limits) >= end:
                return c
        return None

    def last_text(self) -> int:
        """The position just after the last billable character of the body."""
        j = bisect.bisect_left(self.cum, self.cum[self.n])
        return self.ends[j - 1] if j > 0 else self.body_start


def _outside_entity(text: str, s0: int, c: int) -> int:
    """c, or the start of the entity that c falls inside (the text starts at s0)."""
    amp = text.rfind("&", max(s0, c - 12), c)
    if amp != -1 and text.find(";", amp, c) == -1:
        return amp
    return c


def _is_extend(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return (
        cat in ("Mn", "Mc", "Me")
        or ch == "\u200d"
        or "\U0001f3fb" <= ch <= "\U0001f3ff"  # skin tones
        or "\U000e0020" <= ch <= "\U000e007f"  # emoji tag sequences
    )


def _is_ri(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"


def _joined(text: str, c: int) -> bool:
    """True when a cut before text[c] would break a character cluster."""
    ch, prev = text[c], text[c - 1]
    if _is_extend(ch) or prev == "\u200d" or (prev == "\r" and ch == "\n"):
        return True
    if _is_ri(ch) and _is_ri(prev):
        run, i = 0, c - 1
        while i >= 0 and _is_ri(text[i]):
            run, i = run + 1, i - 1
        return run % 2 == 1
    return False


def split_ssml(ssml: str, limits: EngineLimits) -> list[str]:
    """Split one ``<speak>`` document into well-formed ``<speak>`` pieces under ``limits``.

    A document that already fits comes back unchanged. Raises ValueError when the SSML is
    not one ``<speak>`` document or when the limits cannot hold even one character with
    its tags.
    """
    if len(ssml) <= limits.max_total and billable_chars(ssml) <= limits.max_billable:
        return [ssml]
    doc = _Doc(ssml)
    bounds: list[tuple[int, int]] = []
    a = doc.body_start
    while True:
        p = doc.max_fill(a, limits)
        if p >= doc.body_end:
            bounds.append((a, doc.body_end))
            break
        if p <= a:
            raise ValueError(
                f"limits too small to hold the SSML near offset {a} "
                f"(max_billable={limits.max_billable}, max_total={limits.max_total})"
            )
        c = doc.choose(a, p)
        if c <= a:
            raise ValueError(f"no place to cut the SSML near offset {a}")
        bounds.append((a, c))
        a = c
    if len(bounds) >= 2:
        last_a, last_b = bounds[-1]
        if doc.billable(last_a, last_b) < max(1, limits.max_billable // 4):
            even = doc.balance(bounds[-2][0], limits)
            if even is not None:
                bounds[-2:] = [(bounds[-2][0], even), (even, doc.body_end)]
    return [doc.piece(a, b) for a, b in bounds]


def chunk_rendered(rendered: Sequence[str], limits: EngineLimits) -> list[Chunk]:
    """Split each chapter's SSML (``ssml.render_book``'s list) under ``limits``; a chunk
    never spans two chapters. ``seq`` counts the pieces of each chapter from 0."""
    chunks: list[Chunk] = []
    for index, ssml in enumerate(rendered):
        for seq, piece in enumerate(split_ssml(ssml, limits)):
            chunks.append(Chunk.make(index, seq, piece))
    return chunks


def chunk_cast(rendered: Sequence[Sequence[tuple[str, str]]], limits: EngineLimits) -> list[Chunk]:
    """As ``chunk_rendered`` for chapters already cut into (voice, SSML) segments
    (``casting.Casting.voices``): each segment split under ``limits``, its pieces
    carrying its voice, ``seq`` counting the pieces of each chapter from 0."""
    chunks: list[Chunk] = []
    for index, segments in enumerate(rendered):
        seq = 0
        for voice, ssml in segments:
            for piece in split_ssml(ssml, limits):
                chunks.append(Chunk.make(index, seq, piece, voice))
                seq += 1
    return chunks


def chunk_book(
    book: Book, limits: EngineLimits, options: RenderOptions = DEFAULT_OPTIONS
) -> list[Chunk]:
    """Render every chapter and split it under ``limits`` (``chunk_rendered``)."""
    return chunk_rendered(render_book(book, options), limits)
