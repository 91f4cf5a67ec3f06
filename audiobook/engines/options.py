"""Each engine's options as a typed, frozen value (httpx's ``Timeout``, s3transfer's
``TransferConfig``): what the engine is built from, what the output fingerprint hashes.
Pure; importing it loads no engine.

    LocalOptions(voice="en-gb-x-rp", rate_wpm=170)
    PiperOptions(voice="en_US-joe-medium", speed=1.1)
    PollyOptions(bucket="my-bucket", polly_engine="long-form", voice="Danielle")

``voice=None`` lets the engine choose by the book's language (``language``, filled in
by the engine factory from the book).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalOptions:
    """The offline engines: espeak-ng (``espeak``), and ``local``, which is Piper where
    an installed Piper voice speaks the book's language, else espeak-ng.

    voice:    an espeak-ng voice (``audiobook voices --engine espeak``), or for ``local``
              a Piper voice's name or ``.onnx`` path; None follows ``language``.
    language: the book's BCP 47 tag, for the default voice.
    workers:  synthesis processes; 0 = one per core.
    rate_wpm: speaking rate in words per minute (80-450); None = espeak-ng's default.
              (Piper, for ``local``: its speed is ``rate_wpm / 175``.)
    """

    voice: str | None = None
    language: str | None = None
    workers: int = 0
    rate_wpm: int | None = None


@dataclass(frozen=True)
class PiperOptions:
    """Piper, offline: a neural voice on onnxruntime.

    voice:    an installed voice's name ("en_US-joe-medium", see ``audiobook voices
              --engine piper``) or the path of a ``.onnx`` model with its ``.onnx.json``
              beside it; None follows ``language``.
    language: the book's BCP 47 tag, for the default voice.
    workers:  synthesis processes; 0 = one per core.
    threads:  onnxruntime threads per process (1 measured fastest with one process per
              core; see bench/bench_piper.py).
    speed:    speaking speed, 1.0 = the voice's own (0.5-2.0); divides its length scale.
    marks:    speech marks to keep beside each piece: ("sentence",) writes WebVTT captions.
    """

    voice: str | None = None
    language: str | None = None
    workers: int = 0
    threads: int = 1
    speed: float = 1.0
    marks: tuple[str, ...] = ()


@dataclass(frozen=True)
class PollyOptions:
    """Amazon Polly.

    bucket / prefix: where asynchronous tasks write their output (the bucket is required).
    polly_engine:    standard | neural | long-form | generative.
    voice:           a Polly voice id; None follows ``language`` and ``polly_engine``.
    mode:            auto | async | sync (SynthesizeSpeech).
    sns_topic:       topic ARN: learn of finished tasks from notifications.
    kms_key:         KMS key for the outputs (else the bucket's default encryption).
    region:          AWS region (else the usual boto3 way).
    lexicons:        pronunciation lexicon names (at most five).
    output_format / sample_rate: what Polly writes (mp3, ogg_vorbis, ogg_opus, pcm).
    marks:           speech-mark types to fetch beside the audio (sentence, word, ...).
    notification_grace: seconds a task may go without a notification before it is
                     asked about directly.
    """

    bucket: str = ""
    prefix: str = ""
    polly_engine: str = "neural"
    voice: str | None = None
    language: str | None = None
    mode: str = "auto"
    sns_topic: str | None = None
    kms_key: str | None = None
    region: str | None = None
    lexicons: tuple[str, ...] = ()
    output_format: str = "mp3"
    sample_rate: str | None = None
    marks: tuple[str, ...] = ()
    notification_grace: float = 60.0


EngineOptions = LocalOptions | PiperOptions | PollyOptions
