"""Every knob in one place, as value objects.

Facts about Amazon Polly that no source confirms are marked UNVERIFIED (see the Polly
reference); they live here so that they are easy to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Output formats: an M4B with chapters, an MP3 with ID3 chapters, a folder of chapters,
# a read-along EPUB 3 (the text, an audio file per chapter, media overlays).
FORMATS = ("m4b", "mp3", "chapters", "epub")
# Caption formats written beside the audio (``--captions``).
CAPTIONS = ("vtt", "srt")


@dataclass(frozen=True)
class EngineLimits:
    """How much SSML one request or task may carry.

    billable = characters of text outside tags (what Polly bills);
    total = every character of the SSML, tags included.
    """

    max_billable: int
    max_total: int


# Amazon Polly quotas (limits.html).
POLLY_SYNC_LIMITS = EngineLimits(max_billable=3_000, max_total=6_000)
POLLY_TASK_LIMITS = EngineLimits(max_billable=100_000, max_total=200_000)

# List prices in USD per 1,000,000 billable characters (from a third-party page,
# UNVERIFIED against the AWS pricing page).
POLLY_PRICES_PER_MILLION: dict[str, float] = {
    "standard": 4.0,
    "neural": 16.0,
    "long-form": 100.0,
    "generative": 30.0,
}

# StartSpeechSynthesisTask transactions per second and burst, per engine.
POLLY_START_TPS: dict[str, tuple[float, int]] = {
    "standard": (10.0, 12),
    "neural": (10.0, 12),  # burst UNVERIFIED
    "long-form": (1.0, 1),
    "generative": (1.0, 1),
}
POLLY_GET_LIST_TPS = 10.0  # GetSpeechSynthesisTask + ListSpeechSynthesisTasks combined
POLLY_SYNC_TPS: dict[str, tuple[float, int]] = {
    "standard": (80.0, 100),
    "neural": (8.0, 10),
    "long-form": (8.0, 10),
    "generative": (8.0, 8),
}


@dataclass(frozen=True)
class PipelineConfig:
    """Limits for the synthesis pipeline (s3transfer's TransferConfig, for speech).

    max_inflight: tasks submitted and not yet fetched, at most.
    tps / burst:  start calls per second allowed by the rate limiter (token bucket).
    poll_tps:     status calls per second (Polly: Get + List share 10 tps).
    max_attempts: attempts per chunk for retryable errors.
    backoff_base / backoff_cap: exponential backoff with full jitter, in seconds.
    """

    max_inflight: int = 32
    tps: float = 10.0
    burst: int = 12
    poll_tps: float = 8.0
    max_attempts: int = 6
    backoff_base: float = 0.2
    backoff_cap: float = 20.0
    workers: int = 0  # local synthesis processes; 0 = one per core


@dataclass(frozen=True)
class RenderOptions:
    """What the SSML renderer is asked to do."""

    template: str = "default"  # a name in templates/ or a path to a .j2 file
    paragraph_pause_ms: int = 600
    chapter_pause_ms: int = 1500
    speak_chapter_titles: bool = True
    extra: dict[str, str] = field(default_factory=dict)
