"""convert, inspect and estimate take an http(s) URL where they take a file: fetched
from a real server on 127.0.0.1, errors one line naming the URL."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from mutagen import File as MutagenFile

from audiobook import ConvertOptions, PipelineConfig, convert
from audiobook.cli import cli
from audiobook.errors import FetchError, NoTextError

ARTICLE = (
    "<html><head><title>Tides</title><meta name='author' content='Ann Writer'></head>"
    "<body><article><h1>Tides</h1>"
    + "<p>The sea rises and falls twice a day, along every coast of the world.</p>" * 3
    + "<h2>The moon</h2>"
    + "<p>Its pull, with the sun's, heaps the water up on either side of the earth.</p>" * 3
    + "</article></body></html>"
)


def test_inspect_a_url(web):
    url = web.page("/tides", ARTICLE)
    out = CliRunner().invoke(cli, ["inspect", url, "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["title"] == "Tides" and info["authors"] == ["Ann Writer"]
    assert info["chapters"][0]["title"] == "Tides" and info["total_billable_chars"] > 200
    text = CliRunner().invoke(cli, ["inspect", url, "--text"])
    assert "twice a day" in text.output
    est = CliRunner().invoke(cli, ["estimate", url])
    assert est.exit_code == 0 and est.output.startswith("Tides: ")


@pytest.mark.parametrize(
    ("path", "code", "words"),
    [("/gone", FetchError.exit_code, "HTTP 404"), ("/empty", NoTextError.exit_code, "no article")],
)
def test_a_url_that_fails_is_one_line(web, path, code, words):
    web.page("/empty", "<html><body><nav><a href='/'>Home</a></nav></body></html>")
    out = CliRunner().invoke(cli, ["inspect", web.url(path)])
    assert out.exit_code == code
    assert out.output == f"audiobook: error: {web.url(path)}: " + out.output.split(": ", 3)[-1]
    assert words in out.output and out.output.count("\n") == 1


def test_other_schemes_are_refused():
    out = CliRunner().invoke(cli, ["inspect", "file:///etc/hostname"])
    assert out.exit_code == FetchError.exit_code
    assert "only http and https" in out.output and "Traceback" not in out.output


@pytest.mark.ffmpeg
def test_convert_a_url(web, tmp_path, monkeypatch):
    url = web.page("/tides", ARTICLE)
    monkeypatch.chdir(tmp_path)
    state = str(tmp_path / "state")
    out = CliRunner().invoke(cli, ["convert", url, "--state-dir", state, "--workers", "1"])
    assert out.exit_code == 0, out.output
    audio = MutagenFile(tmp_path / "tides.m4b")
    assert audio.chapters[0].title == "Tides" and audio.info.length > 1
    # The page is in the state folder's cache: the next fetch of it is a 304.
    again = CliRunner().invoke(cli, ["convert", url, "-o", "t.mp3", "--state-dir", state])
    assert again.exit_code == 0, again.output
    assert web.counts["/tides"] == {200: 1, 304: 1}


@pytest.mark.ffmpeg
def test_a_url_rerun_whose_page_is_unchanged_is_up_to_date(web, tmp_path, monkeypatch):
    """As for a file: a second convert of a page that answers 304, into an output still
    as the first run left it, is up to date before any piece is cut or stitched; a page
    that changed is converted again."""
    url = web.page("/tides", ARTICLE)
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    args = ["convert", url, "--state-dir", str(state), "--workers", "1"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    audio = tmp_path / "tides.m4b"
    before = audio.stat()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert again.output == f"{audio.resolve()}: up to date, nothing to do\n"
    after = audio.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert web.counts["/tides"] == {200: 1, 304: 1}
    # A changed page is a new source: converted again, into the same output.
    web.page("/tides", ARTICLE.replace("twice a day", "twice daily"))
    changed = CliRunner().invoke(cli, args)
    assert changed.exit_code == 0, changed.output
    assert "up to date" not in changed.output and audio.stat().st_mtime_ns != before.st_mtime_ns
    assert web.counts["/tides"] == {200: 2, 304: 1}
    # The library's convert takes the URL too; its re-run is decided before the book
    # is cut into pieces, as a file's is (no piece counted).
    opts = ConvertOptions(fmt="mp3", config=PipelineConfig(workers=1))
    made = convert(url, tmp_path / "lib.mp3", opts, state_dir=state)
    assert not made.skipped and made.chunks_total > 0
    kept = convert(url, tmp_path / "lib.mp3", opts, state_dir=state)
    assert kept.skipped and kept.chunks_total == 0
    assert kept.outputs == made.outputs and web.counts["/tides"] == {200: 2, 304: 3}
