"""`audiobook gc` and the web cache: downloads (pages, feeds, images) that no run has
used for --web-days days go, with records that serve nothing; what a run still fetches
(a 304 counts as a use) stays. Pages come from a real server on 127.0.0.1; ages are set
on the files (os.utime), never waited for."""

from __future__ import annotations

import os
import time

from click.testing import CliRunner

from audiobook.cli import cli
from audiobook.fetch import CACHE_FOLDER, Fetcher, prune_cache, stale_downloads
from audiobook.state import open_state

DAY = 86400.0
PAGE = "<html><head><title>{0}</title></head><body><p>{0} in words.</p></body></html>"


def _age(folder, days: float) -> None:
    """Every file of ``folder`` last written ``days`` days ago."""
    when = time.time() - days * DAY
    for p in folder.iterdir():
        os.utime(p, (when, when))


def test_gc_removes_downloads_no_run_used_and_keeps_the_rest(web, tmp_path):
    state = tmp_path / "state"
    open_state(state).close()
    cache = state / CACHE_FOLDER
    urls = {name: web.page(f"/{name}", PAGE.format(name)) for name in ("kept", "old", "gone")}
    with Fetcher(cache) as f:
        got = {name: f.fetch(url) for name, url in urls.items()}
    got["gone"].path.unlink()  # its record now names a body that is not there
    temp = cache / ".abc.html.audiobook-4242-x1.tmp"  # a write in progress: not gc's
    temp.write_bytes(b"partial")
    _age(cache, 40)
    with Fetcher(cache) as f:  # a nightly run still reads "kept": a 304 is a use
        assert f.fetch(urls["kept"]).status == "not-modified"
    before = sorted(p.name for p in cache.iterdir())
    assert len(before) == 6  # 3 records, 2 bodies, the temp file
    doomed = [got["old"].path, cache / f"{got['old'].path.stem}.json"]
    doomed.append(cache / f"{got['gone'].path.stem}.json")
    assert prune_cache(cache, dry_run=True) == (3, sum(p.stat().st_size for p in doomed))

    dry = CliRunner().invoke(cli, ["gc", "--dry-run", "--state-dir", str(state)])
    assert dry.exit_code == 0, dry.output
    assert "would remove 3 downloaded files unused for 30 days" in dry.output
    assert sorted(p.name for p in cache.iterdir()) == before

    out = CliRunner().invoke(cli, ["gc", "--state-dir", str(state)])
    assert out.exit_code == 0, out.output
    assert "removed 0 cached pieces" in out.output
    assert "removed 3 downloaded files unused for 30 days" in out.output
    left = sorted(p.name for p in cache.iterdir())
    kept = got["kept"].path
    assert left == sorted([kept.name, f"{kept.stem}.json", temp.name])
    assert prune_cache(cache, dry_run=True) == (0, 0)
    # What stayed still serves a 304; what went is downloaded again.
    web.reset_counts()
    with Fetcher(cache) as f:
        f.fetch(urls["kept"])
        f.fetch(urls["old"])
    assert web.counts["/kept"] == {304: 1} and web.counts["/old"] == {200: 1}


def test_web_days_sets_the_age_and_a_store_without_downloads_has_none(web, tmp_path):
    state = tmp_path / "state"
    open_state(state).close()
    out = CliRunner().invoke(cli, ["gc", "--state-dir", str(state)])
    assert out.exit_code == 0 and "removed 0 downloaded files" in out.output
    cache = state / CACHE_FOLDER
    with Fetcher(cache) as f:
        f.fetch(web.page("/week", PAGE.format("week")))
    _age(cache, 8)
    out = CliRunner().invoke(cli, ["gc", "--web-days", "10", "--state-dir", str(state)])
    assert "removed 0 downloaded files unused for 10 days" in out.output
    out = CliRunner().invoke(cli, ["gc", "--web-days", "7", "--state-dir", str(state)])
    assert "removed 2 downloaded files unused for 7 days" in out.output
    assert list(cache.iterdir()) == []


def test_stale_downloads_is_a_rule_on_names_and_times():
    now = 100 * DAY
    files = [
        ("a.json", now - 1 * DAY),  # record used yesterday: its old body stays too
        ("a.html", now - 90 * DAY),
        ("b.json", now - 31 * DAY),  # not used for 31 days
        ("b.img", now - 31 * DAY),
        ("c.html", now - 1),  # a body whose record is being written: fresh, stays
        ("d.pdf", now - 40 * DAY),  # a body without a record, old: goes
        ("e.json", now - 1),  # a record whose body is gone: goes at once
        (".f.html.audiobook-1-x.tmp", now - 99 * DAY),  # a temp file: not this rule's
    ]
    bodies = {"a": "a.html", "b": "b.img", "e": "e.html"}
    assert stale_downloads(files, bodies, now=now, max_age=30 * DAY) == [
        "b.img",
        "b.json",
        "d.pdf",
        "e.json",
    ]
    assert stale_downloads(files, bodies, now=now, max_age=100 * DAY) == ["e.json"]
