"""Golden figures for the pure Polly cost estimate."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiobook.chunk import chunk_book
from audiobook.config import POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS
from audiobook.errors import ConfigError
from audiobook.estimate import Estimate, billed_summary, estimate, estimate_book
from audiobook.model import Block, Book, Chapter, Chunk
from audiobook.state import StatusSummary

# A small book of three chunks, as the renderer would send them.
CHUNKS = [
    Chunk.make(0, 0, '<speak><p><s>Chapter One.</s></p><break time="1500ms"/></speak>'),
    Chunk.make(0, 1, "<speak><p><s>Tom &amp; Jerry said &quot;hi&quot;.</s></p></speak>"),
    Chunk.make(1, 0, "<speak><p><s>Caf\u00e9 au lait, s\u2019il vous pla\u00eet.</s></p></speak>"),
]
# Billable = text outside tags with entities decoded:
#   "Chapter One."                     12
#   'Tom & Jerry said "hi".'           22
#   "Café au lait, s’il vous plaît."   30
BILLABLE = 12 + 22 + 30
TOTAL = sum(len(c.ssml) for c in CHUNKS)


def test_golden_neural():
    est = estimate(CHUNKS, "neural")
    assert est == Estimate(
        billable_chars=64,
        total_chars=187,  # every character, tags and entities as written
        tasks=3,
        cost_usd=0.001024,  # 64 chars at $16 per million
        price_per_million=16.0,
        polly_engine="neural",
    )
    assert est.billable_chars == BILLABLE
    assert est.total_chars == TOTAL


@pytest.mark.parametrize(
    ("engine", "price", "cost"),
    [("standard", 4.0, 0.000256), ("long-form", 100.0, 0.0064), ("generative", 30.0, 0.00192)],
)
def test_prices_per_engine(engine, price, cost):
    est = estimate(CHUNKS, engine)
    assert (est.price_per_million, est.cost_usd) == (price, cost)


def test_a_million_characters_costs_the_list_price():
    text = "<speak>" + "a" * 100_000 + "</speak>"
    chunks = [Chunk.make(i, 0, text) for i in range(10)]
    est = estimate(chunks, "neural")
    assert (est.billable_chars, est.tasks, est.cost_usd) == (1_000_000, 10, 16.0)


def test_speech_marks_are_billed_too():
    est = estimate(CHUNKS, "neural", marks=True)
    assert (est.billable_chars, est.tasks) == (128, 6)


def test_empty_book_and_unknown_engine():
    assert estimate([], "standard").cost_usd == 0.0
    with pytest.raises(ConfigError, match="--polly-engine"):
        estimate(CHUNKS, "turbo")


def _book(*texts: str) -> Book:
    return Book(
        title="B",
        chapters=tuple(
            Chapter(title=f"C{i}", blocks=(Block(kind="paragraph", text=t),))
            for i, t in enumerate(texts)
        ),
        language="en",
    )


def test_estimate_book_picks_the_path_and_chunks_under_its_limits():
    small = _book("One short sentence.", "Another one.")
    be = estimate_book(small, "neural")
    assert be.mode == "sync"
    expected = estimate(chunk_book(small, POLLY_SYNC_LIMITS), "neural")
    assert be.estimate == expected and be.estimate.tasks == 2
    assert estimate_book(small, "neural", mode="async").mode == "async"
    # Over one request's worth: auto takes the async path, with its larger pieces.
    big = _book(" ".join(["Words in a long chapter."] * 200))
    be = estimate_book(big, "standard", marks=True)
    assert be.mode == "async"
    assert be.estimate == estimate(chunk_book(big, POLLY_TASK_LIMITS), "standard", marks=True)
    forced = estimate_book(big, "standard", mode="sync")
    assert forced.estimate.tasks == len(chunk_book(big, POLLY_SYNC_LIMITS)) > 1
    with pytest.raises(ConfigError, match="--mode"):
        estimate_book(small, "neural", mode="fast")


def test_billed_summary_prices_the_known_kinds():
    summary = StatusSummary(
        path=Path("state.sqlite"),
        books=(),
        chunks={},
        billed_chars=1_000_000 + 500_000 + 70 + 9,
        billed_by_kind={"neural": 1_000_000, "standard": 500_000, "": 70, "odd": 9},
        cache_files=0,
        cache_bytes=0,
    )
    billed = billed_summary(summary)
    assert billed.billed_chars == 1_500_079
    assert billed.by_kind == (("neural", 1_000_000), ("odd", 9), ("standard", 500_000))
    assert billed.cost_usd == pytest.approx(16.0 + 2.0)
