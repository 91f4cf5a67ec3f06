"""Loudness: one gain per chapter that brings it to a delivery profile's level.

    gains = chapter_gains(profile, len(chapters), pcm_of_chapter, rate, workers=2)
    chain(profile, gains[0].db)       # "volume=3.10dB,alimiter=..." for one chapter
    volume_expression(starts, dbs)    # one gain per chapter inside one stream

Each chapter is measured once as it is (ffmpeg's ``ebur128`` and ``volumedetect``, its PCM
streamed: memory stays flat) and given the gain that brings it to the target; a peak
limiter at the profile's ceiling follows the gain where a peak would pass it. Where the limiter would take off
more than ``LIMITER_SLACK_DB``, the chapter is measured again through gain and limiter
and the gain corrected, until it is within ``TOLERANCE_DB`` of the target (or
``MAX_PASSES`` measurements). The decisions are pure functions; ``chapter_gains`` runs
the measurements, chapters in parallel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import ffmpeg
from .config import LIMITER_SLACK_DB, DeliveryProfile

TOLERANCE_DB = 0.3  # a measurement this close to the target is good enough
MAX_PASSES = 4  # measurements of one chapter, at most
MAX_GAIN_DB = 30.0  # never raise a near-silent chapter further than this
SILENT_LUFS = -60.0  # a chapter quieter than this is left alone (nothing to hear)
LIMITER_ATTACK_MS = 1.0  # short: the limiter catches plosives without pumping
LIMITER_RELEASE_MS = 20.0


def active(profile: DeliveryProfile | None) -> bool:
    """Whether ``profile`` changes the level at all."""
    return profile is not None and profile.measure in ("lufs", "rms")


def level_of(level: ffmpeg.Level, profile: DeliveryProfile) -> float:
    """The figure of ``level`` that ``profile`` aims at."""
    return level.integrated if profile.measure == "lufs" else level.rms


def first_gain(level: ffmpeg.Level, profile: DeliveryProfile) -> float:
    """The gain (dB) that brings a chapter measured as ``level`` to the target; 0 for
    a silent chapter."""
    have = level_of(level, profile)
    if not math.isfinite(have) or level.integrated <= SILENT_LUFS:
        return 0.0
    return max(-MAX_GAIN_DB, min(MAX_GAIN_DB, profile.target - have))


def limiting(level: ffmpeg.Level, gain: float, profile: DeliveryProfile) -> float:
    """How many dB the limiter takes off the loudest peak after ``gain``."""
    if not math.isfinite(level.peak):
        return 0.0
    return max(0.0, level.peak + gain - profile.ceiling)


def limiter(profile: DeliveryProfile) -> str:
    """ffmpeg's lookahead limiter at the profile's ceiling: no auto level, its delay
    compensated (so every sample stays where it was: chapter marks stay exact)."""
    limit = 10 ** (profile.ceiling / 20)
    return (
        f"alimiter=limit={limit:.6f}:level=false:latency=true"
        f":attack={LIMITER_ATTACK_MS:g}:release={LIMITER_RELEASE_MS:g}"
    )


def chain(profile: DeliveryProfile, gain: float) -> str:
    """The filter chain of one chapter: its gain, then the limiter."""
    return f"volume={gain:.2f}dB,{limiter(profile)}"


def volume_expression(starts: Sequence[float], gains: Sequence[float]) -> str:
    """A ``volume`` filter whose gain changes at each time of ``starts`` (seconds from
    the start of the stream; the first is where ``gains[0]`` begins): one chain for a
    stream that holds several chapters. The change falls on a frame of the filter, in
    the pause that ends each chapter. Equal neighbours are merged (a constant gain
    needs no expression)."""
    merged_starts: list[float] = []
    merged: list[float] = []
    for t, g in zip(starts, gains):
        if not merged or round(g, 2) != round(merged[-1], 2):
            merged_starts.append(t)
            merged.append(g)
    starts, gains = merged_starts, merged
    if len(gains) == 1:
        return f"volume={gains[0]:.2f}dB"
    expr = f"{10 ** (gains[-1] / 20):.6f}"
    for t, g in zip(reversed(starts[1:]), reversed(gains[:-1])):
        expr = f"if(lt(t\\,{t:.6f})\\,{10 ** (g / 20):.6f}\\,{expr})"
    return f"volume=eval=frame:volume='{expr}'"


def multi_chain(
    profile: DeliveryProfile,
    starts: Sequence[float],
    gains: Sequence[float],
    limit: bool = True,
) -> str:
    """The filter chain of a stream holding several chapters; ``limit=False`` when no
    chapter of it has a peak over the ceiling after its gain."""
    volume = volume_expression(starts, gains)
    return f"{volume},{limiter(profile)}" if limit else volume


@dataclass(frozen=True)
class Gain:
    """A chapter's gain (dB) and whether its peaks need the limiter after it."""

    db: float
    limit: bool


def chapter_gain(profile: DeliveryProfile, pcm: Callable[[], Iterable[bytes]], rate: int) -> Gain:
    """Measure one chapter (``pcm()`` streams it from the start, as often as asked)
    and return its gain."""
    level = ffmpeg.measure(pcm(), rate)
    gain = first_gain(level, profile)
    over = limiting(level, gain, profile)
    if over <= LIMITER_SLACK_DB:
        return Gain(gain, over > 0)
    for _ in range(MAX_PASSES - 1):
        after = level_of(ffmpeg.measure(pcm(), rate, chain(profile, gain)), profile)
        if not math.isfinite(after):
            break
        miss = profile.target - after
        if abs(miss) <= TOLERANCE_DB:
            break
        gain = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, gain + miss))
    return Gain(gain, True)


def chapter_gains(
    profile: DeliveryProfile,
    count: int,
    pcm: Callable[[int], Iterable[bytes]],
    rate: int,
    *,
    workers: int = 1,
) -> list[Gain]:
    """The gain of each of ``count`` chapters (``pcm(i)`` streams chapter i), measured
    ``workers`` at a time."""
    if not active(profile):
        return [Gain(0.0, False)] * count

    def one(i: int) -> Gain:
        return chapter_gain(profile, lambda: pcm(i), rate)

    if workers <= 1 or count <= 1:
        return [one(i) for i in range(count)]
    with ThreadPoolExecutor(min(workers, count)) as ex:
        return list(ex.map(one, range(count)))
