"""Every knob in one place, as value objects.

Facts about Amazon Polly that no source confirms are marked UNVERIFIED (see the Polly
reference); they live here so that they are easy to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .lexicon import Entry

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


# Amazon Polly's limits per request (limits.html): SynthesizeSpeech 3,000 billable /
# 6,000 total characters, a task 100,000 / 200,000. Pieces are filled to 98% of them:
# AWS documents what it bills only as "SSML tags are not billed", so our count may
# differ from RequestCharacters, and a piece a few characters over would be refused
# (TextLengthExceededException) after the rest of the book was paid for.
POLLY_LIMITS_SYNC = EngineLimits(max_billable=3_000, max_total=6_000)
POLLY_LIMITS_TASK = EngineLimits(max_billable=100_000, max_total=200_000)
POLLY_HEADROOM = 0.02
POLLY_SYNC_LIMITS = EngineLimits(max_billable=2_940, max_total=5_880)
POLLY_TASK_LIMITS = EngineLimits(max_billable=98_000, max_total=196_000)

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
# Concurrent requests per engine kind [limits.html, "Concurrent requests": generative 26,
# long-form 26, neural 18, standard 80]: the tasks a run keeps in flight at most.
POLLY_CONCURRENCY: dict[str, int] = {
    "standard": 80,
    "neural": 18,
    "long-form": 26,
    "generative": 26,
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

    max_inflight: tasks submitted and not yet fetched, at most (by this process).
    concurrency:  the account's tasks in flight at most, across every process that
                  shares the quota (0: what Polly documents for the engine kind,
                  ``POLLY_CONCURRENCY``).
    tps / burst:  start calls per second allowed by the rate limiter (token bucket).
    poll_tps:     status calls per second (Polly: Get + List share 10 tps).
    max_attempts: attempts per chunk for retryable errors.
    backoff_base / backoff_cap: exponential backoff with full jitter, in seconds.
    max_cost_usd: the most a run may spend at list prices (None: no limit); a run whose
                  pieces to synthesize cost more refuses to start.
    """

    max_inflight: int = 32
    concurrency: int = 0
    tps: float = 10.0
    burst: int = 12
    poll_tps: float = 8.0
    max_attempts: int = 6
    backoff_base: float = 0.2
    backoff_cap: float = 20.0
    max_cost_usd: float | None = None  # refuse to start pieces whose list price is more
    workers: int = 0  # local synthesis processes; 0 = one per core


@dataclass(frozen=True)
class RenderOptions:
    """What the SSML renderer is asked to do."""

    template: str = "default"  # a name in templates/ or a path to a .j2 file
    paragraph_pause_ms: int = 600
    chapter_pause_ms: int = 1500
    speak_chapter_titles: bool = True
    extra: dict[str, str] = field(default_factory=dict)
    # the user's pronunciation lexicon (--lexicon-file): each word as <sub> or <phoneme>
    lexicon: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class DeliveryProfile:
    """How loud the output is, and what a store's submission rules add to it.

    Loudness is measured on each chapter before it is encoded (ffmpeg's ``ebur128`` and
    ``volumedetect``) and set with one gain per chapter, then a peak limiter at ``ceiling``;
    where the limiter takes off more than ``LIMITER_SLACK_DB`` the chapter is measured
    again through gain and limiter, and the gain corrected (``loudness.py``).

    measure:  "lufs" (integrated loudness, EBU R 128) or "rms" (RMS of the whole file,
              silence included, as ACX measures it); "" = leave the level alone.
    target:   the level aimed at, in LUFS or dBFS RMS.
    ceiling:  sample peak limit in dBFS (the limiter's threshold).
    fmt:      the output format the profile requires ("" = any).
    chapter_ext / sample_rate / bitrate / cbr: the audio of each chapter file when the
              profile fixes it (ACX: MP3 at 44.1 kHz, 192 kbps, constant bitrate).
    lead_in / tail: seconds of room tone before each chapter (counting the silence its
              first piece starts with) and after it (added to the chapter's own pause).
    max_chapter_seconds: longest chapter file the profile accepts (0 = no limit).
    """

    name: str
    measure: str = ""
    target: float = 0.0
    ceiling: float = 0.0
    fmt: str = ""
    chapter_ext: str = "m4b"
    sample_rate: int = 0
    bitrate: str = ""
    cbr: bool = False
    lead_in: float = 0.0
    tail: float = 0.0
    max_chapter_seconds: float = 0.0


LIMITER_SLACK_DB = 1.0  # limiting up to this much costs under 0.3 LU: no second pass

PROFILES: dict[str, DeliveryProfile] = {
    # An audiobook at one loudness across chapters, engines and voices (-20 LUFS sits
    # inside the range audiobook stores recommend, and leaves espeak-ng's peaks alone).
    "default": DeliveryProfile("default", measure="lufs", target=-20.0, ceiling=-1.5),
    # Podcasts: -16 LUFS integrated, true peak at most -1 dBTP (the lossy encoders add
    # up to about 1.5 dB to the sample peak, hence the lower limiter threshold).
    "podcast": DeliveryProfile("podcast", measure="lufs", target=-16.0, ceiling=-3.0),
    # ACX (Audible): each chapter file RMS -23..-18 dB, peak <= -3 dBFS, noise floor
    # <= -60 dB, 0.5-1 s of room tone at the start and 1-5 s at the end, MP3 at
    # 44.1 kHz 192 kbps CBR, one file per chapter, none longer than 120 minutes.
    "acx": DeliveryProfile(
        "acx",
        measure="rms",
        target=-20.5,
        ceiling=-4.0,
        fmt="chapters",
        chapter_ext="mp3",
        sample_rate=44100,
        bitrate="192k",
        cbr=True,
        lead_in=0.75,
        tail=2.0,
        max_chapter_seconds=120 * 60.0,
    ),
    # The audio as the engine made it.
    "none": DeliveryProfile("none"),
}
