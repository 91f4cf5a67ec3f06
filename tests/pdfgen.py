"""A tiny PDF writer for tests: hand-made content streams, outlines and broken structures.

``build_pdf`` writes numbered objects exactly as given (so a test can make loops);
``simple_pdf`` makes a normal document from pages of ``text()`` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text(x: float, y: float, s: str, font: str = "F1", size: float = 11) -> str:
    """One run of text at (x, y). Fonts: F1 Helvetica, F2 Helvetica-Bold, F3 Helvetica whose
    code \\x01 maps to the ligature U+FB01 (fi)."""
    return f"BT /{font} {size} Tf {x} {y} Td ({_esc(s)}) Tj ET\n"


def pdf_string(s: str) -> str:
    return "(" + _esc(s) + ")"


def build_pdf(objects: dict[int, bytes | str], root: int, info: int | None = None) -> bytes:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        body = objects[num]
        data = body.encode("latin-1") if isinstance(body, str) else body
        offsets[num] = len(out)
        out += f"{num} 0 obj\n".encode() + data + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    out += f"xref\n0 {size}\n".encode() + b"0000000000 65535 f \n"
    for n in range(1, size):
        if n in offsets:
            out += f"{offsets[n]:010d} 00000 n \n".encode()
        else:
            out += b"0000000000 65535 f \n"
    trailer = f"trailer\n<< /Size {size} /Root {root} 0 R"
    if info:
        trailer += f" /Info {info} 0 R"
    out += (trailer + " >>\n").encode() + f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def stream(data: str | bytes) -> bytes:
    raw = data.encode("latin-1") if isinstance(data, str) else data
    return b"<< /Length %d >>\nstream\n" % len(raw) + raw + b"\nendstream"


_TOUNICODE = """/CIDInit /ProcSet findresource begin
12 dict begin
begincmap
/CMapName /Test-UCS def
/CMapType 2 def
1 begincodespacerange
<00> <FF>
endcodespacerange
1 beginbfchar
<01> <FB01>
endbfchar
1 beginbfrange
<20> <7E> <0020>
endbfrange
endcmap
CMapName currentdict /CMapResource defineresource pop
end
end
"""


@dataclass(frozen=True)
class Mark:
    """An outline entry: title, target page (0-based), /XYZ top (None: /Fit), level."""

    title: str
    page: int
    top: float | None = None
    level: int = 1


# fixed object numbers of simple_pdf
CATALOG, PAGES, F1, F2, F3, TOUNI, INFO, OUTLINES = 1, 2, 3, 4, 5, 6, 7, 8
FIRST_FREE = 20


def simple_pdf(
    pages: Sequence[str],
    outline: Sequence[Mark] = (),
    title: str | None = None,
    author: str | None = None,
    lang: str | None = None,
    width: float = 612,
    height: float = 792,
) -> bytes:
    objs: dict[int, bytes | str] = {}
    objs[F1] = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    objs[F2] = (
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
    )
    objs[F3] = f"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode {TOUNI} 0 R >>"
    objs[TOUNI] = stream(_TOUNICODE)
    n = FIRST_FREE
    kids = []
    page_nums = []
    for content in pages:
        page_num, content_num = n, n + 1
        n += 2
        objs[content_num] = stream(content)
        objs[page_num] = (
            f"<< /Type /Page /Parent {PAGES} 0 R /MediaBox [0 0 {width} {height}] "
            f"/Resources << /Font << /F1 {F1} 0 R /F2 {F2} 0 R /F3 {F3} 0 R >> >> "
            f"/Contents {content_num} 0 R >>"
        )
        kids.append(f"{page_num} 0 R")
        page_nums.append(page_num)
    objs[PAGES] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    catalog = f"<< /Type /Catalog /Pages {PAGES} 0 R"
    if lang:
        catalog += f" /Lang {pdf_string(lang)}"
    if outline:
        n = _outline(objs, outline, page_nums, n)
        catalog += f" /Outlines {OUTLINES} 0 R"
    objs[CATALOG] = catalog + " >>"
    info = None
    if title is not None or author is not None:
        fields = []
        if title is not None:
            fields.append(f"/Title {pdf_string(title)}")
        if author is not None:
            fields.append(f"/Author {pdf_string(author)}")
        objs[INFO] = "<< " + " ".join(fields) + " >>"
        info = INFO
    return build_pdf(objs, CATALOG, info)


def _outline(
    objs: dict[int, bytes | str], marks: Sequence[Mark], page_nums: list[int], n: int
) -> int:
    nums = list(range(n, n + len(marks)))
    parent: list[int] = []
    children: dict[int, list[int]] = {OUTLINES: []}
    stack: list[tuple[int, int]] = [(0, OUTLINES)]  # (level, obj)
    for num, m in zip(nums, marks):
        while stack[-1][0] >= m.level:
            stack.pop()
        par = stack[-1][1]
        parent.append(par)
        children.setdefault(par, []).append(num)
        children.setdefault(num, [])
        stack.append((m.level, num))
    for k, (num, m) in enumerate(zip(nums, marks)):
        sib = children[parent[k]]
        i = sib.index(num)
        dest = (
            f"[{page_nums[m.page]} 0 R /XYZ 0 {m.top} null]"
            if m.top is not None
            else (f"[{page_nums[m.page]} 0 R /Fit]")
        )
        d = f"<< /Title {pdf_string(m.title)} /Parent {parent[k]} 0 R /Dest {dest}"
        if i > 0:
            d += f" /Prev {sib[i - 1]} 0 R"
        if i + 1 < len(sib):
            d += f" /Next {sib[i + 1]} 0 R"
        kids = children[num]
        if kids:
            d += f" /First {kids[0]} 0 R /Last {kids[-1]} 0 R /Count {len(kids)}"
        objs[num] = d + " >>"
    top = children[OUTLINES]
    objs[OUTLINES] = (
        f"<< /Type /Outlines /First {top[0]} 0 R /Last {top[-1]} 0 R /Count {len(top)} >>"
    )
    return n + len(marks)


def lines_at(x: float, y: float, lines: Sequence[str], leading: float = 14, **kw) -> str:
    """Runs for consecutive lines going down the page from (x, y)."""
    return "".join(text(x, y - i * leading, s, **kw) for i, s in enumerate(lines))
