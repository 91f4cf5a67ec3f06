"""Hostile EPUBs: each case gives a clear error or safe output, never a hang, a crash,
a leaked local file or a file written outside the output folder. Each test fails if
its protection is taken away (noted per test)."""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from audiobook.errors import CorruptDocument
from audiobook.ingest import IngestOptions
from audiobook.ingest._safezip import ZipLimits, is_safe_name
from audiobook.ingest._xhtml import extract
from audiobook.ingest.epub import EpubIngestor, read_epub
from tests.epubkit import Doc, build_epub, ncx_doc, xhtml

CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def all_text(book) -> str:
    parts = [book.title, *book.authors, book.description or "", *book.warnings]
    for c in book.chapters:
        parts.append(c.title)
        parts += [b.text for b in c.blocks] + [b.text for b in c.footnotes]
    return "\n".join(parts)


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# ----------------------------------------------------------------- path traversal


@pytest.mark.parametrize(
    "name",
    ["../secret.xhtml", "../../etc/secret.xhtml", "/abs/secret.xhtml", "a/../../secret.xhtml"],
)
def test_traversal_names_are_never_read(tmp_path, name):
    # Protection: SafeZip refuses names that could escape (is_safe_name).
    work = tmp_path / "work"
    work.mkdir()
    before = files_under(tmp_path)
    docs = [Doc("c1.xhtml", "<p>Good text.</p>"), Doc(name, "<p>TRAVERSAL-SECRET</p>")]
    path = build_epub(
        work / "t.epub", docs, [("One", "c1.xhtml", []), ("Two", name, [])], opf_dir=""
    )
    before.add(path)
    book = read_epub(path)
    assert "TRAVERSAL-SECRET" not in all_text(book)
    assert any("unsafe name" in w for w in book.warnings)
    assert "Good text." in book.chapters[0].text
    assert files_under(tmp_path) == before  # nothing extracted anywhere


def test_is_safe_name():
    assert is_safe_name("OEBPS/text/ch1.xhtml")
    assert is_safe_name("OPS/xhtml/目次.xhtml")
    for bad in ("../x", "a/../../x", "/etc/passwd", "C:/x", "a\\..\\x", "", "a\x00b", ".."):
        assert not is_safe_name(bad), bad


# ----------------------------------------------------------------------- zip bombs


def test_high_ratio_member_is_refused(tmp_path):
    # Protection: the compression-ratio check (3 MB of spaces deflate ~1000:1).
    raw = xhtml("<p>hi</p>" + " " * 3_000_000)
    path = build_epub(tmp_path / "bomb.epub", [Doc("c1.xhtml", raw=raw)], [("One", "c1.xhtml", [])])
    with pytest.raises(CorruptDocument, match="zip bomb") as err:
        read_epub(path)
    assert "\n" not in str(err.value)


def test_member_over_size_cap_is_refused(tmp_path):
    # Protection: the per-member declared-size cap.
    words = " ".join(f"w{i}" for i in range(30_000))
    path = build_epub(
        tmp_path / "big.epub", [Doc("c1.xhtml", f"<p>{words}</p>")], [("One", "c1.xhtml", [])]
    )
    limits = ZipLimits(max_member_bytes=100_000)
    with pytest.raises(CorruptDocument, match="declares"):
        EpubIngestor(limits).read(path, IngestOptions())
    assert EpubIngestor().read(path, IngestOptions()).chapters[0].text.endswith("w29999")


def test_total_inflated_bytes_are_capped(tmp_path):
    # Protection: the running total of inflated bytes across members.
    docs = [
        Doc(f"c{n}.xhtml", "<p>" + " ".join(f"x{n}y{i}" for i in range(8000)) + "</p>")
        for n in range(6)
    ]
    toc = [(f"C{n}", f"c{n}.xhtml", []) for n in range(6)]
    path = build_epub(tmp_path / "many.epub", docs, toc)
    with pytest.raises(CorruptDocument, match="in all"):
        EpubIngestor(ZipLimits(max_total_bytes=300_000)).read(path, IngestOptions())


def test_member_count_is_capped(tmp_path):
    # Protection: the member-count cap.
    docs = [Doc(f"c{n}.xhtml", "<p>x</p>") for n in range(30)]
    path = build_epub(tmp_path / "count.epub", docs, [("C", "c0.xhtml", [])])
    with pytest.raises(CorruptDocument, match="members"):
        EpubIngestor(ZipLimits(max_members=20)).read(path, IngestOptions())


def _shrink_declared_size(path: Path, member: str, new_size: int) -> None:
    """Rewrite the local and central headers of ``member`` to claim ``new_size`` bytes."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    # local header: uncompressed size at offset 22
    struct.pack_into("<I", data, info.header_offset + 22, new_size)
    # central directory entry: find it by signature + name
    name = member.encode()
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        nlen = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46 : pos + 46 + nlen]) == name:
            struct.pack_into("<I", data, pos + 24, new_size)
            break
        pos = data.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(data))


def test_member_lying_about_its_size_is_not_read_past_it(tmp_path):
    # Protection: reads stop at the declared size (and a bad CRC is damage, reported).
    body = "<p>Short.</p>" + "<p>HIDDEN-TAIL</p>" * 2000
    path = build_epub(
        tmp_path / "lie.epub",
        [Doc("c1.xhtml", "<p>Ok.</p>"), Doc("c2.xhtml", body)],
        [("One", "c1.xhtml", []), ("Two", "c2.xhtml", [])],
    )
    _shrink_declared_size(path, "OEBPS/c2.xhtml", 300)
    book = read_epub(path)
    assert "HIDDEN-TAIL" not in all_text(book)
    assert any("c2.xhtml" in w for w in book.warnings)
    assert book.chapters[0].text == "Ok."


# ------------------------------------------------------------------ XML entities

LAUGHS = (
    '<!ENTITY a "lolol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
    '<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">'
    '<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
    '<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">'
    '<!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">'
    '<!ENTITY i "&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;">'
)


def _doc_with_dtd(subset: str, body: str, malformed: bool = False) -> bytes:
    close = "" if malformed else "</p>"
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE html [{subset}]>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title></head>'
        f"<body><p>Safe words.</p><p>{body}{close}</body></html>"
    ).encode()


@pytest.mark.parametrize(
    ("body", "malformed"), [("[&c;]", False), ("[&c;] [&i;]", False), ("[&c;] [&i;]", True)]
)
def test_billion_laughs_in_xhtml_stay_inert(tmp_path, body, malformed):
    # Protection: resolve_entities=False (a resolving parser expands &c; to 500 chars;
    # &i; is 5e8 characters, which libxml2 itself refuses past its amplification limit).
    raw = _doc_with_dtd(LAUGHS, body, malformed)
    book = read_epub(
        build_epub(tmp_path / "lol.epub", [Doc("c1.xhtml", raw=raw)], [("One", "c1.xhtml", [])])
    )
    text = all_text(book)
    assert "lolol" not in text
    assert "Safe words." in text


def test_billion_laughs_in_opf_and_ncx(tmp_path):
    # Protection: resolve_entities=False on the package and NCX parsers.
    docs = [Doc("c1.xhtml", "<p>Body.</p>")]
    path = build_epub(
        tmp_path / "lol2.epub",
        docs,
        version=2,
        title="Real",
        ncx_raw=ncx_doc([("&c;", "c1.xhtml", [])], doctype=f"<!DOCTYPE ncx [{LAUGHS}]>"),
    )
    # put the entity into the OPF title too
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    opf = members["OEBPS/content.opf"].decode()
    opf = opf.replace("<package", f"<!DOCTYPE package [{LAUGHS}]>\n<package", 1)
    opf = opf.replace("<dc:title>Real</dc:title>", "<dc:title>&c;Real</dc:title>")
    members["OEBPS/content.opf"] = opf.encode()
    out = tmp_path / "lol3.epub"
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    book = read_epub(out)
    assert "lolol" not in all_text(book)
    assert book.title == "Real"
    assert len(book.chapters) == 1 and book.chapters[0].text == "Body."


def _xxe(secret: Path) -> str:
    return f'<!ENTITY xxe SYSTEM "file://{secret}"><!ENTITY pw SYSTEM "file:///etc/passwd">'


@pytest.mark.parametrize("malformed", [False, True])
def test_external_entities_in_xhtml_are_not_loaded(tmp_path, malformed):
    # Protection: resolve_entities=False + no_network=True + load_dtd=False.
    secret = tmp_path / "secret.txt"
    secret.write_text("XXE-LOCAL-SECRET\n")
    raw = _doc_with_dtd(_xxe(secret), "[&xxe;] [&pw;]", malformed)
    book = read_epub(
        build_epub(tmp_path / "xxe.epub", [Doc("c1.xhtml", raw=raw)], [("One", "c1.xhtml", [])])
    )
    text = all_text(book)
    assert "XXE-LOCAL-SECRET" not in text
    assert "root:" not in text
    assert "Safe words." in text


def test_external_entities_in_opf_ncx_and_nav(tmp_path):
    # Protection: the same safe parser for the package, NCX and nav documents.
    secret = tmp_path / "secret.txt"
    secret.write_text("XXE-LOCAL-SECRET\n")
    dtd = f"[{_xxe(secret)}]"
    nav = (
        f'<?xml version="1.0"?>\n<!DOCTYPE html {dtd}>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
        '<head><title>n</title></head><body><nav epub:type="toc"><ol>'
        '<li><a href="c1.xhtml">Nav &xxe; &pw;</a></li></ol></nav></body></html>'
    ).encode()
    path = build_epub(
        tmp_path / "x.epub",
        [Doc("c1.xhtml", "<p>Body.</p>")],
        nav_raw=nav,
        title="T",
        metadata_extra="<dc:description>&xxe;&pw;</dc:description>",
        ncx_toc=[("&xxe;", "c1.xhtml", [])],
    )
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    opf = members["OEBPS/content.opf"].decode()
    members["OEBPS/content.opf"] = opf.replace(
        "<package", f"<!DOCTYPE package {dtd}>\n<package", 1
    ).encode()
    ncx = members["OEBPS/toc.ncx"].decode()
    members["OEBPS/toc.ncx"] = ncx.replace("<ncx", f"<!DOCTYPE ncx {dtd}>\n<ncx", 1).encode()
    out = tmp_path / "x2.epub"
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    book = read_epub(out)
    text = all_text(book)
    assert "XXE-LOCAL-SECRET" not in text and "root:" not in text
    assert book.chapters[0].title.startswith("Nav")


def test_external_dtd_is_not_fetched(tmp_path):
    # Protection: load_dtd=False (the DTD would define &leak; as the secret).
    secret_dtd = tmp_path / "evil.dtd"
    secret_dtd.write_text('<!ENTITY leak "DTD-SECRET">')
    raw = (
        f'<?xml version="1.0"?>\n<!DOCTYPE html SYSTEM "file://{secret_dtd}">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title></head>'
        "<body><p>Before &leak; after.</p></body></html>"
    ).encode()
    book = read_epub(
        build_epub(tmp_path / "dtd.epub", [Doc("c1.xhtml", raw=raw)], [("One", "c1.xhtml", [])])
    )
    assert "DTD-SECRET" not in all_text(book)
    assert "Before" in book.chapters[0].text


# ----------------------------------------------------------------- hostile text


def test_huge_paragraph_without_sentence_end(tmp_path):
    words = " ".join(f"word{i % 9973}" for i in range(250_000))  # ~2 MB, no full stop
    path = build_epub(
        tmp_path / "huge.epub", [Doc("c1.xhtml", f"<p>{words}</p>")], [("One", "c1.xhtml", [])]
    )
    blocks = read_epub(path).chapters[0].blocks
    assert len(blocks) == 1
    assert blocks[0].text == words


def test_control_characters_are_stripped(tmp_path):
    # Protection: clean_text's control-character filter. Raw C0 bytes make the XML
    # malformed, so this goes through the recovering HTML parser too.
    raw = (
        b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title></head><body>'
        b"<p>al\x01pha\x1b[31m be\x07ta\x7f gam\xc2\x85ma</p></body></html>"
    )
    ok = "<p>del&#x7f;ta &#x85;epsilon&#x9f;</p>"
    path = build_epub(
        tmp_path / "ctl.epub",
        [Doc("c1.xhtml", raw=raw), Doc("c2.xhtml", ok)],
        [("One", "c1.xhtml", []), ("Two", "c2.xhtml", [])],
    )
    book = read_epub(path)
    assert not CONTROL.search(all_text(book))
    assert book.chapters[0].text == "alpha[31m beta gamma"
    assert book.chapters[1].text == "delta epsilon"


def test_rtl_cjk_emoji_come_out_as_text(tmp_path):
    body = (
        "<p dir='rtl'>مرحبا بالعالم، هذا نص عربي.</p><p>中文測試，日本語のテキスト。</p>"
        "<p>Family 👩‍👩‍👧 party 🎉 flag 🇫🇷.</p><p>עברית\u200f mixed</p>"
    )
    path = build_epub(
        tmp_path / "uni.epub",
        [Doc("c1.xhtml", body)],
        [("عنوان 章 🎉", "c1.xhtml", [])],
        title="كتاب 書 📚",
        language="ar",
    )
    book = read_epub(path)
    assert book.title == "كتاب 書 📚"
    assert book.chapters[0].title == "عنوان 章 🎉"
    assert [b.text for b in book.chapters[0].blocks] == [
        "مرحبا بالعالم، هذا نص عربي.",
        "中文測試，日本語のテキスト。",
        "Family 👩‍👩‍👧 party 🎉 flag 🇫🇷.",
        "עברית\u200f mixed",
    ]


def test_fake_ssml_stays_literal_text(tmp_path):
    body = (
        '<p>&lt;speak&gt;&lt;break time="100s"/&gt;&lt;/speak&gt; &amp;amp; '
        "<![CDATA[<prosody rate='x-slow'>]]></p>"
    )
    book = read_epub(
        build_epub(
            tmp_path / "ssml.epub",
            [Doc("c1.xhtml", body)],
            [("&lt;voice name='x'&gt;", "c1.xhtml", [])],
        )
    )
    ch = book.chapters[0]
    assert ch.text == "<speak><break time=\"100s\"/></speak> &amp; <prosody rate='x-slow'>"
    assert ch.title == "<voice name='x'>"


def test_deep_nesting_does_not_crash(tmp_path):
    # Protection: libxml2's depth limit (huge_tree=False) and the walker's depth guard.
    deep = "<div>" * 3000 + "deep words" + "</div>" * 3000
    path = build_epub(
        tmp_path / "deep.epub",
        [Doc("c1.xhtml", f"<p>Shallow.</p>{deep}")],
        [("One", "c1.xhtml", [])],
    )
    book = read_epub(path)
    assert "Shallow." in book.chapters[0].text
    assert any("malformed" in w for w in book.warnings)


def test_walker_depth_guard_keeps_text_without_recursion_error():
    # Protection: _MAX_DEPTH in the walker (a tree deeper than Python's recursion limit).
    parser = etree.XMLParser(huge_tree=True)
    doc = (
        '<html xmlns="http://www.w3.org/1999/xhtml"><body>'
        + "<div>" * 1800
        + "bottom words"
        + "</div>" * 1800
        + "</body></html>"
    )
    root = etree.fromstring(doc.encode(), parser)
    events = extract(root)
    assert any("bottom words" in e.block.text for e in events if hasattr(e, "block"))


def test_long_whitespace_runs_stay_linear(tmp_path):
    # Protection: whitespace is collapsed before the empty-bracket clean-up, whose old
    # form (a leading \s*) backtracked quadratically over a long run of whitespace.
    import random

    rng = random.Random(7)
    gap = "".join(rng.choice(" \t\n") for _ in range(50_000))
    body = f"<p>a[{gap}b ({gap}) c</p>"
    path = build_epub(tmp_path / "ws.epub", [Doc("c1.xhtml", body)], [("One", "c1.xhtml", [])])
    assert read_epub(path).chapters[0].text == "a[ b c"


# ------------------------------------------------------------------- fuzzing

_FUZZ_BASE: dict[str, bytes] = {}
_SNIPPETS = [
    b"<",
    b">",
    b"&",
    b'"',
    b"\x00",
    b"<!DOCTYPE x [",
    b"]>",
    b"encoding='bogus'",
    b"\xff\xfe",
    b"</",
    b"<a id='x'>",
    b"&#0;",
    b"<li><span>",
    b"href='#'",
    b"src='../../x'",
    b"linear='no'",
    b"<nav epub:type='toc'><ol><li>",
]


def _fuzz_members(tmp_path_factory) -> dict[str, bytes]:
    if not _FUZZ_BASE:
        base = build_epub(
            tmp_path_factory.mktemp("fz") / "base.epub",
            [
                Doc("c1.xhtml", "<h1>One</h1><p>Text <b>bold</b>.</p>"),
                Doc("c2.xhtml", "<p id='x'>Two</p>"),
            ],
            [("One", "c1.xhtml", []), ("Two", "c2.xhtml#x", [])],
            ncx_toc=[("N", "c1.xhtml", [])],
        )
        with zipfile.ZipFile(base) as zf:
            _FUZZ_BASE.update({i.filename: zf.read(i) for i in zf.infolist()})
    return _FUZZ_BASE


def test_mutated_epubs_give_a_book_or_an_input_error(tmp_path_factory):
    """Random damage to any member, or to the zip's own bytes: the result is a Book or
    one InputError, never another exception (it found an unknown-encoding LookupError
    and zip OSError/NotImplementedError escapes)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from audiobook.errors import InputError

    members = _fuzz_members(tmp_path_factory)
    folder = tmp_path_factory.mktemp("fuzz")
    edit = st.tuples(
        st.sampled_from(["set", "insert", "delete"]),
        st.integers(0, 10_000),
        st.integers(0, 255),
        st.sampled_from(_SNIPPETS),
    )

    @settings(
        max_examples=100,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        st.sampled_from(sorted(members)),
        st.lists(edit, min_size=1, max_size=6),
        st.one_of(st.none(), st.tuples(st.integers(0, 10_000), st.integers(0, 255))),
    )
    def run(name, edits, zip_byte):
        data = bytearray(members[name])
        for op, pos, byte, snippet in edits:
            pos %= len(data) + 1
            if op == "set" and data:
                data[min(pos, len(data) - 1)] = byte
            elif op == "insert":
                data[pos:pos] = snippet
            else:
                del data[pos : pos + 1 + byte % 40]
        path = folder / "f.epub"
        with zipfile.ZipFile(path, "w") as zf:
            for k, v in members.items():
                zf.writestr(k, bytes(data) if k == name else v, compress_type=zipfile.ZIP_DEFLATED)
        if zip_byte is not None:
            raw = bytearray(path.read_bytes())
            raw[zip_byte[0] % len(raw)] = zip_byte[1]
            path.write_bytes(bytes(raw))
        try:
            read_epub(path)
        except InputError as err:
            assert "\n" not in str(err)

    run()


def test_unknown_encoding_names(tmp_path):
    # Protection: unknown encodings are malformed documents, not LookupError crashes.
    bad = (
        b'<?xml version="1.0" encoding="bogus-8"?>\n<html xmlns="http://www.w3.org/1999/'
        b'xhtml"><head><title>t</title></head><body><p>Still read.</p></body></html>'
    )
    path = build_epub(tmp_path / "enc.epub", [Doc("c1.xhtml", raw=bad)], [("One", "c1.xhtml", [])])
    book = read_epub(path)
    assert book.chapters[0].text == "Still read."
    assert any("malformed" in w for w in book.warnings)
    opf_bad = build_epub(
        tmp_path / "enc2.epub",
        [Doc("c1.xhtml", "<p>x</p>")],
        [("One", "c1.xhtml", [])],
        opf_raw=b'<?xml version="1.0" encoding="bogus-8"?><package/>',
    )
    with pytest.raises(CorruptDocument, match="package"):
        read_epub(opf_bad)


def test_unsupported_compression_method(tmp_path):
    # Protection: zip NotImplementedError becomes a reported damage, not a crash.
    path = build_epub(
        tmp_path / "m.epub",
        [Doc("c1.xhtml", "<p>One.</p>"), Doc("c2.xhtml", "<p>Two.</p>")],
        [("One", "c1.xhtml", []), ("Two", "c2.xhtml", [])],
    )
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("OEBPS/c2.xhtml")
    struct.pack_into("<H", data, info.header_offset + 8, 99)  # AES / unknown method
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        nlen = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46 : pos + 46 + nlen]) == b"OEBPS/c2.xhtml":
            struct.pack_into("<H", data, pos + 10, 99)
        pos = data.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(data))
    book = read_epub(path)
    assert book.chapters[0].text == "One."
    assert any("c2.xhtml" in w and "damaged" in w for w in book.warnings)
