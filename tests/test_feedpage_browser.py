"""The feed page in a real browser: headless Chromium (the distribution's package)
over the DevTools protocol, the feed folder served from 127.0.0.1. Every episode's
audio element loads its file, the page logs no error, and the hostile article's
scripts, event handlers and javascript: links run nothing."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from tests.browser import Browser, require_chromium
from tests.test_feedpage import build_page

pytestmark = [pytest.mark.ffmpeg, pytest.mark.browser]

AUDIO_STATE = """
Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(done => {
  const report = () => done({src: a.currentSrc, readyState: a.readyState,
                             duration: a.duration, error: a.error && a.error.code});
  if (a.readyState >= 1 || a.error) { report(); return; }
  a.addEventListener('loadedmetadata', report, {once: true});
  a.addEventListener('error', report, {once: true});
  setTimeout(report, 20000);
})))
"""

# Click everything a visitor could click, open every <details>, then look for any trace
# of the hostile article's scripts having run.
POKE = """
(async () => {
  for (const d of document.querySelectorAll('details')) d.open = true;
  for (const el of document.querySelectorAll('p, h1, h2, article, body')) el.click();
  await new Promise(r => setTimeout(r, 300));
  return {
    pwned: typeof window.__pwned === 'undefined' ? null : String(window.__pwned),
    scripts: document.scripts.length,
    handlers: [...document.querySelectorAll('*')].flatMap(
      el => [...el.attributes].filter(a => a.name.startsWith('on')).map(a => a.name)),
    jsLinks: [...document.querySelectorAll('[href], [src]')].map(
      el => el.getAttribute('href') || el.getAttribute('src')).filter(
      v => /^\\s*(javascript|data:text|vbscript)/i.test(v)),
    hostileTitle: [...document.querySelectorAll('h2')].map(h => h.textContent).find(
      t => t.includes('hostile')),
  };
})()
"""


def test_feed_page_in_headless_chromium(tmp_path, web):
    chromium = require_chromium()
    page_file = build_page(tmp_path)
    web.serve_folder(page_file.parent)
    with Browser(chromium) as browser:
        page = browser.open(web.url("/index.html"))
        audio = page.evaluate(AUDIO_STATE, timeout=60)
        poked = page.evaluate(POKE)
        page.evaluate("new Promise(r => setTimeout(r, 200))")
        errors = list(page.errors)
        # The error capture works: a console error and a failed load are both seen.
        page.evaluate("console.error('probe'); fetch('/missing').catch(() => 0)")
        page.evaluate("new Promise(r => setTimeout(r, 300))")
        probed = list(page.errors)
    print("audio elements:", audio)
    index = json.loads((page_file.parent / "episodes.json").read_text("utf-8"))
    durations = {ep["audio"]: ep["duration"] for ep in index["episodes"].values()}
    assert len(audio) == len(durations) == 2
    for a in audio:
        assert a["error"] is None and a["readyState"] >= 1, a  # HAVE_METADATA or more
        assert a["src"].startswith(web.base + "/"), a
        name = unquote(a["src"][len(web.base) + 1 :])
        assert abs(a["duration"] - durations[name]) < 0.1, (a, durations[name])
    assert errors == []
    assert any("probe" in e for e in probed), probed
    assert poked["pwned"] is None
    assert poked["scripts"] == 0 and poked["handlers"] == [] and poked["jsLinks"] == []
    assert '<script>window.__pwned = "title"</script>' in poked["hostileTitle"]
    # The browser asked for every episode's audio.
    assert sum(1 for path, c in web.counts.items() if path.endswith(".m4b") and c) == 2
