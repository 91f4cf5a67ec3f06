"""URLs fetched through the web seam (audiobook/fetch.py) from a real server on
127.0.0.1: every fault is one line naming the URL, and a second run costs only 304s."""

from __future__ import annotations

import pytest

from audiobook.errors import CorruptDocument, FetchError, InputError, UnsupportedFormat
from audiobook.fetch import FetchConfig, Fetcher, check_url, is_url
from audiobook.ingest import read_book

ARTICLE = (
    "<html><head><title>Café society</title></head><body><article><h1>Café society</h1>"
    + "<p>Crème brûlée is a dessert of custard under caramel, served cold. </p>" * 6
    + "</article></body></html>"
)


@pytest.fixture
def fetcher(tmp_path):
    with Fetcher(tmp_path / "cache", FetchConfig(timeout=0.5, max_bytes=100_000)) as f:
        yield f


def _one_line(exc: BaseException, url: str) -> str:
    text = str(exc)
    assert "\n" not in text and text.startswith(url + ": "), text
    return text


def test_a_page_is_fetched_and_read_with_its_declared_charset(web, fetcher):
    url = web.page(
        "/cafe", ARTICLE, content_type="text/html; charset=iso-8859-1", encoding="cp1252"
    )
    got = fetcher.fetch(url)
    assert got.kind == "html" and got.status == "downloaded" and got.charset == "iso-8859-1"
    book = read_book(got.path)
    assert book.title == "Café society"
    assert "Crème brûlée" in book.chapters[0].blocks[0].text


def test_the_header_charset_wins_over_a_meta_that_disagrees(web, fetcher):
    page = ARTICLE.replace("<head>", "<head><meta charset='shift_jis'>")
    url = web.page("/meta", page, content_type="text/html; charset=windows-1252", encoding="cp1252")
    assert read_book(fetcher.fetch(url).path).title == "Café society"


def test_redirects_are_followed_and_the_final_url_kept(web, fetcher):
    target = web.page("/post", ARTICLE)
    web.redirect("/r1", "/r2", 301)
    start = web.redirect("/r2", target, 302)
    got = fetcher.fetch(web.url("/r1"))
    assert got.url == web.url("/r1") and got.final_url == target
    assert start and web.counts["/post"][200] == 1


def test_each_fault_is_one_line_naming_the_url(web, fetcher):
    cases = {
        web.page("/gone", "nope", status=404, content_type="text/plain"): (FetchError, "HTTP 404"),
        web.page("/boom", "oops", status=500, content_type="text/plain"): (FetchError, "HTTP 500"),
        web.page("/slow", ARTICLE, delay=2): (FetchError, "timed out"),
        web.page("/big", "x" * 200_000, content_type="text/plain"): (FetchError, "too large"),
        web.page("/png", b"\x89PNG\r\n\x1a\n", content_type="image/png"): (
            UnsupportedFormat,
            "content type image/png",
        ),
        web.page("/bad-utf8", ARTICLE, encoding="cp1252"): (CorruptDocument, "is not utf-8"),
        web.page("/klingon", ARTICLE, content_type="text/html; charset=klingon"): (
            CorruptDocument,
            "unknown charset 'klingon'",
        ),
        web.redirect("/loop", "/loop"): (FetchError, "more than 5 redirects"),
        web.redirect("/to-file", "file:///etc/passwd"): (FetchError, "file"),
        "file:///etc/passwd": (FetchError, "only http and https"),
        "javascript:alert(1)": (FetchError, "only http and https"),
        "http://127.0.0.1:9/closed": (FetchError, "cannot fetch"),
    }
    for url, (kind, words) in cases.items():
        with pytest.raises(kind) as info:
            fetcher.fetch(url)
        assert words in _one_line(info.value, url), (url, str(info.value))
        assert isinstance(info.value, InputError) and info.value.exit_code in (3, 4, 5, 11)
    assert FetchError("u", "p").exit_code == 11
    # Nothing half-downloaded is left in the cache.
    assert not list((fetcher.cache_dir).glob("*.tmp")) if fetcher.cache_dir.exists() else True


def test_oversized_body_without_content_length_is_cut_off(web, fetcher):
    # A chunked answer gives no length up front: the cap applies to the bytes as they come.
    url = web.page("/stream", "y" * 300_000, content_type="text/plain", sized=False)
    with pytest.raises(FetchError, match="too large"):
        fetcher.fetch(url)


def test_a_second_fetch_costs_a_304_and_serves_the_cached_copy(web, tmp_path):
    url = web.page("/post", ARTICLE)
    with Fetcher(tmp_path / "c") as first:
        got = first.fetch(url)
    with Fetcher(tmp_path / "c") as second:
        again = second.fetch(url)
    assert again.status == "not-modified" and again.path == got.path
    assert (second.downloads, second.not_modified) == (0, 1)
    assert web.counts["/post"] == {200: 1, 304: 1}
    web.page("/post", ARTICLE.replace("cold", "warm"))
    with Fetcher(tmp_path / "c") as third:
        changed = third.fetch(url)
    assert changed.status == "downloaded" and "warm" in changed.path.read_text("utf-8-sig")


def test_a_json_body_is_kept_apart_from_its_cache_record(web, tmp_path):
    """A JSON export (Wallabag's) is a body the cache keeps beside the JSON record of
    its URL: each fetch serves the body as the server sent it, never the record."""
    body = '[{"url": "https://example.org/a", "title": "A"}]'
    url = web.page("/export.json", body, content_type="application/json")
    with Fetcher(tmp_path / "c") as f:
        got = f.fetch(url, kinds=("json",))
        assert got.path.read_text("utf-8") == body
        again = f.fetch(url, kinds=("json",))
    assert again.status == "not-modified" and again.path.read_text("utf-8") == body
    assert web.counts["/export.json"] == {200: 1, 304: 1}


def test_octet_stream_is_told_by_the_url_extension(web, fetcher):
    url = web.page(
        "/notes.md",
        "# Notes\n\n" + "Some words to read. " * 10,
        content_type="application/octet-stream",
    )
    assert fetcher.fetch(url).kind == "markdown"
    other = web.page("/blob", b"\x00\x01", content_type="application/octet-stream")
    with pytest.raises(UnsupportedFormat):
        fetcher.fetch(other)


def test_urls_and_paths_are_told_apart(tmp_path):
    assert is_url("https://example.org/a") and is_url("file:///x") and is_url("ftp://h/x")
    assert not is_url("notes.html") and not is_url(str(tmp_path / "a.html"))
    assert not is_url("C:\\books\\a.epub")
    assert check_url("https://example.org/") == "https://example.org/"
    with pytest.raises(FetchError, match="without a host"):
        check_url("http:///nohost")
