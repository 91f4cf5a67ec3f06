"""What a Polly job will cost, before anything is sent: pure, no AWS call.

    est = estimate(chunks, "neural")
    est.billable_chars, est.total_chars, est.tasks, est.cost_usd, est.price_per_million

Billable characters are counted by ``audiobook.ssml.billable_chars`` (text outside tags,
entities decoded), the same function the Polly emulator bills with, so that the estimate
equals the sum of RequestCharacters of the tasks. Prices are Polly's list prices per
million characters from ``config.POLLY_PRICES_PER_MILLION``. Speech marks are billed like
audio, so ``marks=True`` doubles the tasks and the characters billed.

For a whole book, ``estimate_book`` picks the path a conversion would take (sync requests
or async tasks, as ``--mode`` says) and chunks the book under that path's limits:

    be = estimate_book(book, "neural", mode="auto", render=RenderOptions())
    be.mode, be.estimate.tasks, be.estimate.cost_usd

``billed_summary`` prices what a state store has already billed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .chunk import chunk_rendered
from .config import POLLY_PRICES_PER_MILLION, POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS, RenderOptions
from .engines.polly import pick_mode
from .errors import ConfigError
from .model import Book, Chunk
from .ssml import DEFAULT_OPTIONS, billable_chars, render_book, total_chars
from .state import StatusSummary


@dataclass(frozen=True)
class Estimate:
    billable_chars: int  # characters Polly bills (marks tasks included when asked)
    total_chars: int  # every character sent, tags included
    tasks: int  # StartSpeechSynthesisTask calls (or SynthesizeSpeech requests)
    cost_usd: float
    price_per_million: float
    polly_engine: str = "neural"


def price_per_million(polly_engine: str) -> float:
    try:
        return POLLY_PRICES_PER_MILLION[polly_engine]
    except KeyError:
        known = ", ".join(POLLY_PRICES_PER_MILLION)
        raise ConfigError(f"--polly-engine must be one of {known}, not {polly_engine!r}") from None


def estimate(chunks: Sequence[Chunk], polly_engine: str, *, marks: bool = False) -> Estimate:
    """Characters, tasks and list-price cost of synthesizing ``chunks`` (one task each)."""
    price = price_per_million(polly_engine)
    billable = sum(billable_chars(c.ssml) for c in chunks)
    total = sum(len(c.ssml) for c in chunks)
    tasks = len(chunks)
    if marks:
        billable, total, tasks = 2 * billable, 2 * total, 2 * tasks
    cost = round(billable * price / 1_000_000, 6)
    return Estimate(
        billable_chars=billable,
        total_chars=total,
        tasks=tasks,
        cost_usd=cost,
        price_per_million=price,
        polly_engine=polly_engine,
    )


@dataclass(frozen=True)
class BookEstimate:
    mode: Literal["sync", "async"]  # the path the conversion would take
    estimate: Estimate  # tasks are SynthesizeSpeech requests when mode is "sync"


def estimate_book(
    book: Book,
    polly_engine: str,
    *,
    mode: str = "auto",
    marks: bool = False,
    render: RenderOptions = DEFAULT_OPTIONS,
) -> BookEstimate:
    """Characters, tasks and cost of converting ``book`` on Polly, calling nothing.

    ``mode`` is ``--mode`` (auto: sync when the whole book fits one request); the book is
    rendered once and split under the limits of the chosen path."""
    rendered = render_book(book, render)
    path = pick_mode(
        mode, sum(billable_chars(s) for s in rendered), sum(total_chars(s) for s in rendered)
    )
    limits = POLLY_SYNC_LIMITS if path == "sync" else POLLY_TASK_LIMITS
    chunks = chunk_rendered(rendered, limits)
    return BookEstimate(mode=path, estimate=estimate(chunks, polly_engine, marks=marks))


@dataclass(frozen=True)
class BilledSummary:
    billed_chars: int  # every character billed, local pieces included
    by_kind: tuple[tuple[str, int], ...]  # (price kind, chars) of the priced kinds, sorted
    cost_usd: float  # at list prices; kinds without a price cost nothing


def billed_summary(summary: StatusSummary) -> BilledSummary:
    """What a state store's pieces have billed (``StateStore.summary()``), at list prices."""
    by_kind = summary.billed_by_kind
    cost = sum(n * POLLY_PRICES_PER_MILLION.get(kind, 0.0) / 1e6 for kind, n in by_kind.items())
    return BilledSummary(
        billed_chars=summary.billed_chars,
        by_kind=tuple((kind, n) for kind, n in sorted(by_kind.items()) if kind),
        cost_usd=cost,
    )
