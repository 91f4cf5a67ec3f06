"""Build small EPUB 2 / EPUB 3 files for tests, byte by byte, with zipfile.

    build_epub(tmp_path / "b.epub", [Doc("c1.xhtml", "<h1>One</h1><p>Text</p>")],
               toc=[("One", "c1.xhtml", [])])

``toc`` entries are ``(title, href, children)``; an empty href makes a ``<span>``
heading entry. EPUB 3 books get a nav document (and an NCX too if ``ncx_toc`` is
given); EPUB 2 books get only the NCX.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from html import escape
from pathlib import Path

Toc = list[tuple[str, str, "Toc"]]


@dataclass
class Doc:
    name: str  # relative to the OPF folder
    body: str = ""  # inner HTML of <body>, wrapped into an XHTML document
    raw: bytes | None = None  # the whole file as is (overrides body)
    linear: bool = True
    in_spine: bool = True
    body_attrs: str = ""


@dataclass
class Extra:
    """A manifest item that is not a content document (image, audio, ...)."""

    name: str
    media_type: str
    data: bytes | None  # None: listed in the manifest, absent from the zip
    item_id: str = ""
    properties: str = ""


def xhtml(body: str, title: str = "Test", body_attrs: str = "", head: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" '
        'xmlns:epub="http://www.idpf.org/2007/ops">\n'
        f"<head><title>{escape(title)}</title>{head}</head>\n"
        f"<body{(' ' + body_attrs) if body_attrs else ''}>{body}</body></html>\n"
    ).encode()


def _nav_ol(toc: Toc, hidden: bool = False) -> str:
    items = []
    for title, href, children in toc:
        label = f'<a href="{escape(href)}">{title}</a>' if href else f"<span>{title}</span>"
        sub = _nav_ol(children) if children else ""
        items.append(f"<li>{label}{sub}</li>")
    return "<ol>" + "".join(items) + "</ol>"


def nav_doc(toc: Toc, landmarks: tuple[tuple[str, str, str], ...] = ()) -> bytes:
    body = f'<nav epub:type="toc" id="toc"><h1>Contents</h1>{_nav_ol(toc)}</nav>'
    if landmarks:
        lis = "".join(
            f'<li><a epub:type="{t}" href="{escape(h)}">{escape(x)}</a></li>'
            for t, h, x in landmarks
        )
        body += f'<nav epub:type="landmarks"><ol>{lis}</ol></nav>'
    return xhtml(body, "Contents")


def ncx_doc(toc: Toc, doctype: str = "") -> bytes:
    counter = [0]

    def points(entries: Toc) -> str:
        out = []
        for title, href, children in entries:
            counter[0] += 1
            out.append(
                f'<navPoint id="np{counter[0]}" playOrder="{counter[0]}">'
                f"<navLabel><text>{title}</text></navLabel>"
                f'<content src="{escape(href)}"/>{points(children)}</navPoint>'
            )
        return "".join(out)

    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}\n'
        '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
        "<head/><docTitle><text>T</text></docTitle>"
        f"<navMap>{points(toc)}</navMap></ncx>"
    ).encode()


def build_epub(
    path: Path,
    docs: list[Doc],
    toc: Toc | None = None,
    *,
    version: int = 3,
    title: str = "Test Book",
    authors: tuple[str, ...] = ("Ann Author",),
    language: str = "en",
    metadata_extra: str = "",
    ncx_toc: Toc | None = None,
    nav_in_spine: bool = False,
    nav_raw: bytes | None = None,
    ncx_raw: bytes | None = None,
    ncx_name: str = "toc.ncx",
    ncx_id: str = "ncx",
    extras: tuple[Extra, ...] | list[Extra] = (),
    page_direction: str | None = None,
    guide: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
    landmarks: tuple[tuple[str, str, str], ...] | list[tuple[str, str, str]] = (),
    opf_dir: str = "OEBPS",
    opf_raw: bytes | None = None,
    container: bool = True,
    zip_extra: dict[str, bytes] | None = None,
) -> Path:
    """Write an EPUB and return its path."""
    prefix = f"{opf_dir}/" if opf_dir else ""
    manifest, spine = [], []
    files: dict[str, bytes] = {}
    for n, doc in enumerate(docs):
        iid = f"d{n}"
        manifest.append(
            f'<item id="{iid}" href="{escape(doc.name)}" media-type="application/xhtml+xml"/>'
        )
        if doc.in_spine:
            linear = "" if doc.linear else ' linear="no"'
            spine.append(f'<itemref idref="{iid}"{linear}/>')
        files[prefix + doc.name] = (
            doc.raw if doc.raw is not None else xhtml(doc.body, body_attrs=doc.body_attrs)
        )
    if version >= 3 and (toc is not None or nav_raw is not None):
        manifest.append(
            '<item id="nav" href="nav.xhtml" properties="nav" media-type="application/xhtml+xml"/>'
        )
        files[prefix + "nav.xhtml"] = (
            nav_raw if nav_raw is not None else nav_doc(toc or [], tuple(landmarks))
        )
        if nav_in_spine:
            spine.insert(0, '<itemref idref="nav"/>')
    ncx_entries = ncx_toc if version >= 3 else toc
    if ncx_entries is not None or ncx_raw is not None:
        manifest.append(
            f'<item id="{ncx_id}" href="{ncx_name}" media-type="application/x-dtbncx+xml"/>'
        )
        files[prefix + ncx_name] = ncx_raw if ncx_raw is not None else ncx_doc(ncx_entries or [])
    for k, ex in enumerate(extras):
        iid = ex.item_id or f"x{k}"
        props = f' properties="{ex.properties}"' if ex.properties else ""
        manifest.append(
            f'<item id="{iid}" href="{escape(ex.name)}" media-type="{ex.media_type}"{props}/>'
        )
        if ex.data is not None:
            files[prefix + ex.name] = ex.data
    creators = "".join(f"<dc:creator>{escape(a)}</dc:creator>" for a in authors)
    toc_attr = f' toc="{ncx_id}"' if ncx_entries is not None or ncx_raw is not None else ""
    ppd = f' page-progression-direction="{page_direction}"' if page_direction else ""
    guide_xml = ""
    if guide:
        guide_xml = (
            "<guide>"
            + "".join(f'<reference type="{t}" href="{escape(h)}" title="{t}"/>' for t, h in guide)
            + "</guide>"
        )
    opf = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<package xmlns="http://www.idpf.org/2007/opf" version="{version}.0" '
        'unique-identifier="uid">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:opf="http://www.idpf.org/2007/opf">'
        f'<dc:identifier id="uid">urn:test:1</dc:identifier><dc:title>{escape(title)}</dc:title>'
        f"{creators}<dc:language>{language}</dc:language>{metadata_extra}</metadata>"
        f"<manifest>{''.join(manifest)}</manifest>"
        f"<spine{toc_attr}{ppd}>{''.join(spine)}</spine>{guide_xml}</package>"
    ).encode()
    opf_name = prefix + "content.opf"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), b"application/epub+zip")
        if container:
            zf.writestr(
                "META-INF/container.xml",
                (
                    '<?xml version="1.0"?><container version="1.0" '
                    'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                    f'<rootfile full-path="{opf_name}" '
                    'media-type="application/oebps-package+xml"/></rootfiles></container>'
                ),
            )
        zf.writestr(
            opf_name, opf_raw if opf_raw is not None else opf, compress_type=zipfile.ZIP_DEFLATED
        )
        for name, data in files.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        for name, data in dict(zip_extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path
