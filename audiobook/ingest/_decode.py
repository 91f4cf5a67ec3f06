"""Bytes to text for HTML, Markdown and plain text, whatever encoding a file declares.

Order (the WHATWG "encoding sniffing" order, simplified): a byte order mark; for markup,
an XML declaration or a ``<meta charset>`` / ``http-equiv`` in the first 4 KB; then strict
UTF-8; then charset_normalizer's best guess; then windows-1252, which decodes any byte.
Declared labels go through the WHATWG aliases (``iso-8859-1`` and ``ascii`` mean
windows-1252, ``shift_jis`` means windows-31j, ...), because that is what browsers do and
what pages written for browsers rely on.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# WHATWG label -> the Python codec that decodes what browsers decode for it.
_ALIASES: dict[str, str] = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "windows-1252": "cp1252",
    "x-cp1252": "cp1252",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "big5": "big5hkscs",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "utf-16": "utf-16-le",  # a declared UTF-16 without a BOM is little-endian for browsers
    "unicode": "utf-16-le",
}

_XML_DECL = re.compile(rb"""^<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,500}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE
)
_PRESCAN = 4096
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the Python codec used
    how: str  # "bom" | "declared" | "utf-8" | "detected" | "fallback"


def codec_for(label: str) -> str | None:
    """The Python codec for an encoding label, or None if Python knows no such codec."""
    name = label.strip().lower()
    name = _ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def declared_encoding(raw: bytes) -> str | None:
    """The encoding an HTML/XML document declares in its first bytes, if any."""
    head = raw[:_PRESCAN]
    m = _XML_DECL.match(head.lstrip())
    if m is None:
        m = _META_CHARSET.search(head)
    if m is None:
        return None
    return codec_for(m.group(1).decode("ascii"))


def decode_bytes(raw: bytes, *, markup: bool) -> Decoded:
    """Decode a document; never raises. Control characters (NUL included) are removed."""
    text, encoding, how = _decode(raw, markup=markup)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return Decoded(text, encoding, how)


def read_capped(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of ``path``, refused as one-line InputErrors when it is over
    ``max_bytes`` ("too large for <what>") or cannot be read."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(path, f"too large for {what} ({size:,} bytes)")
        return path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None


def looks_binary(raw: bytes) -> bool:
    """Whether ``raw`` is not text at all (an image, an archive, random bytes): over 5%
    of its first 8 KB are control bytes that no text encoding produces. UTF-16/32 text
    (with a BOM, or ASCII-range UTF-16 whose zero bytes all sit on one parity) is text."""
    if any(raw.startswith(bom) for bom, _ in _BOMS):
        return False
    head = raw[:8192]
    if not head:
        return False
    controls = sum(1 for b in head if b < 0x20 and b not in (0x09, 0x0A, 0x0C, 0x0D, 0x1B))
    if controls <= len(head) * 0.05:
        return False
    return _utf16_without_bom(head) is None


def _utf16_without_bom(head: bytes) -> str | None:
    even = head[0::2].count(0)
    odd = head[1::2].count(0)
    half = len(head) // 2
    if half and odd >= half * 0.4 and even == 0:
        return "utf-16-le"
    if half and even >= half * 0.4 and odd == 0:
        return "utf-16-be"
    return None


def _decode(raw: bytes, *, markup: bool) -> tuple[str, str, str]:
    for bom, enc in _BOMS:
        if raw.startswith(bom):
            return raw[len(bom) :].decode(enc, errors="replace"), enc, "bom"
    utf16 = _utf16_without_bom(raw[:8192]) if b"\x00" in raw[:8192] else None
    if utf16 is not None:
        return raw.decode(utf16, errors="replace"), utf16, "detected"
    if markup:
        declared = declared_encoding(raw)
        # A page that declares an ASCII-compatible single-byte encoding while being valid
        # UTF-8 with non-ASCII bytes is mislabelled far more often than not.
        mislabelled = declared == "cp1252" and not raw.isascii() and _is_utf8(raw)
        if declared is not None and not mislabelled:
            enc = declared
            if enc.startswith(("utf-16", "utf-32")):
                enc = "utf-8"  # a declaration readable as ASCII cannot be UTF-16 (WHATWG)
            return raw.decode(enc, errors="replace"), enc, "declared"
    if _is_utf8(raw):
        return raw.decode("utf-8"), "utf-8", "utf-8"
    guess = _detect(raw)
    if guess is not None:
        return raw.decode(guess, errors="replace"), guess, "detected"
    return raw.decode("cp1252", errors="replace"), "cp1252", "fallback"


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _detect(raw: bytes) -> str | None:
    from charset_normalizer import from_bytes

    # Detection time grows with the input; a sample decides as well as the whole file.
    best = from_bytes(raw[:200_000]).best()
    if best is None:
        return None
    guess = codec_for(best.encoding)
    # Short Japanese texts in Shift_JIS are often guessed as Korean or Chinese. Hiragana
    # (bytes 0x82 0x9F-0xF1) is frequent in any Japanese text and the bytes that make it
    # are rare in Korean or Chinese code pages, so a strict cp932 decoding rich in
    # hiragana settles it.
    if guess != "cp932" and _hiragana_share(raw, "cp932") >= 0.05:
        return "cp932"
    # Single-byte Latin code pages are hard to tell apart on short texts; where the bytes
    # are valid windows-1252 (the web's default for undeclared pages), prefer it.
    if guess and guess != "cp1252" and _SINGLE_BYTE_LATIN.match(guess):
        try:
            raw.decode("cp1252")
        except UnicodeDecodeError:
            return guess
        return "cp1252"
    return guess


def _hiragana_share(raw: bytes, codec: str) -> float:
    try:
        # Incremental, so that a character cut at the end of the sample is not an error.
        text = codecs.getincrementaldecoder(codec)().decode(raw[:200_000], final=False)
    except UnicodeDecodeError:
        return 0.0
    wide = [c for c in text if ord(c) > 0x7F]
    if not wide:
        return 0.0
    return sum(1 for c in wide if "\u3040" <= c <= "\u309f") / len(wide)


# Latin-script single-byte code pages (not Cyrillic, Greek, Hebrew, Arabic or Thai ones).
_SINGLE_BYTE_LATIN = re.compile(
    r"^(cp1250|cp1252|cp1254|cp1257|cp1258|iso8859-(1|2|3|4|9|10|13|14|15|16)|latin-1|"
    r"mac-(roman|latin2|iceland|turkish|croatian|romanian)|cp437|cp775|cp850|cp852|cp858)$"
)
