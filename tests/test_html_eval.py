"""Article extraction on the public benchmark in ``corpus/html-eval`` (250 pages of
trafilatura's evaluation set), scored as its README says: per phrase over all pages, a
``with`` phrase found is a true positive, a ``without`` phrase found a false positive.
Our spoken text is scored against bare trafilatura's in the same run (bench/
bench_html_extractors.py has the scoring and reports all three extractors)."""

from __future__ import annotations

import pytest

from bench import bench_html_extractors as bench
from tests.conftest import corpus_path

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def texts():
    corpus_path("html-eval", "evaldata.json")  # skips (or fails under CI) when absent
    data = bench.load()
    ours, _ = bench.extract_all(data, bench.ours)
    theirs, _ = bench.extract_all(data, bench.bare_trafilatura)
    return data, ours, theirs


def test_f1_at_least_trafilatura(texts):
    data, ours, theirs = texts
    mine, reference = bench.score(data, ours), bench.score(data, theirs)
    assert mine["f1"] >= reference["f1"], (mine, reference)


def test_no_page_collapses(texts):
    data, ours, theirs = texts
    assert bench.collapses(data, ours, theirs) == []
