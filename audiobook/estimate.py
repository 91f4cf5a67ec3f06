"""What a Polly job will cost, before anything is sent: pure, no AWS call.

    est = estimate(chunks, "neural")
    est.billable_chars, est.total_chars, est.tasks, est.cost_usd, est.price_per_million

Billable characters are counted by ``audiobook.ssml.billable_chars`` (text outside tags,
entities decoded), the same function the Polly emulator bills with, so that the estimate
equals the sum of RequestCharacters of the tasks. Prices are Polly's list prices per
million characters from ``config.POLLY_PRICES_PER_MILLION``. Speech marks are billed like
audio, so ``marks=True`` doubles the tasks and the characters billed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import POLLY_PRICES_PER_MILLION
from .errors import ConfigError
from .model import Chunk
from .ssml import billable_chars


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
