"""Amazon Polly behind the engine seam: long-audio tasks through S3, or SynthesizeSpeech.

    engine = PollyEngine(voice="Joanna", bucket="my-bucket", polly_engine="neural")
    engine.preflight()                 # every check that can fail, before money is spent
    ref = engine.submit(chunk, key)    # StartSpeechSynthesisTask (or SynthesizeSpeech)
    engine.poll(ref)                   # TaskState: scheduled|inProgress|completed|failed
    engine.fetch(ref, dest)            # streams the S3 object to dest (temp file, os.replace)
    engine.close()                     # removes the SQS queue/subscription and temp files

Paths. ``mode="async"`` sends every chunk as a StartSpeechSynthesisTask writing to
``s3://<bucket>/<prefix><key>/<TaskId>.<ext>``; ``mode="sync"`` sends each chunk through
SynthesizeSpeech, which answers at once (``submit`` stores the audio in a private temp
directory and ``poll`` says completed). The tool picks the path per job with
``pick_mode(requested, billable_chars, total_chars)``: a job whose whole text fits one
SynthesizeSpeech request (3,000 billable / 6,000 total characters) goes sync; anything
longer goes async, because an async task is recorded by id and can be found again after
a crash (``recover``), whereas a sync request lost mid-flight is paid again. An engine
built with ``mode="auto"`` that was never told the job size behaves as ``async``.

Retries. The Polly client is built with ``Config(retries={"total_max_attempts": 1})``:
botocore does not retry on its own. Throttling and 5xx surface at once as ``Throttled``
/ ``TransientEngineError`` (``errors.RETRYABLE``) so the pipeline's own loop does the
backoff with jitter and keeps the attempt count honest; a hidden botocore retry of a
start call whose first attempt reached Polly would start (and bill) a second task.
``submit`` also asks ``recover`` after a transient failure of the start call, so a task
that was created although the answer was lost is reused, not paid twice.

Completion. Without ``sns_topic``: GetSpeechSynthesisTask per ``poll`` (the pipeline
keeps poll calls inside the shared Get+List quota of 10 tps). With ``sns_topic``: the
engine creates an SQS queue, lets the topic send to it, subscribes it, and ``poll``
reads completion messages from the queue; a task with no message for
``notification_grace`` seconds is checked with GetSpeechSynthesisTask anyway (lost
notifications still complete).

Speech marks. With ``marks=("sentence", "word")`` each chunk also gets a json
speech-mark task (same S3 prefix, OutputFormat json) whose id is in
``TaskRef.extra["marks_task_id"]``; ``poll`` reports completed only when both are done
and ``fetch_marks(ref, dest)`` writes the marks (JSON lines, times in ms from the start
of the chunk). ``marks_to_webvtt([(offset_s, marks_jsonl), ...])`` turns a chapter's
marks into WebVTT captions; ``write_webvtt(dest, [(offset_s, marks_path), ...])`` writes
them atomically. Marks are billed like audio (``estimate(..., marks=True)``).

TaskRef.extra (strings, store it as JSON beside the task id): ``mode`` (sync|async),
``bucket``/``s3_key`` of the output, ``path`` (sync output file), ``key`` (content key),
``marks_task_id``/``marks_bucket``/``marks_s3_key``/``marks_path``. A bare
``TaskRef(task_id, "polly")`` (after a restart) still works: it is looked up with
GetSpeechSynthesisTask.

Library functions for the CLI: ``list_voices(polly, engine=None, language=None)`` and
``list_tasks(polly, status=None, max_items=None)``; ``pick_mode(requested, billable,
total)``; ``polly_client_config()`` for a Polly client built elsewhere.

Pre-flight: ``preflight(ssml=())`` raises ConfigError on one line before anything is
billed; ``validate_ssml(ssml)`` is also run by ``submit`` before each start call.

Nothing secret is logged: only operation names, task ids, bucket/key names and Polly's
own error messages.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from ..config import POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS, EngineLimits
from ..errors import (
    AudiobookError,
    ConfigError,
    EngineError,
    Throttled,
    TransientEngineError,
)
from ..model import Chunk
from .base import AudioFormat, Capabilities, Engine, TaskRef, TaskState
from .options import PollyOptions

log = logging.getLogger(__name__)

POLLY_ENGINES = ("standard", "neural", "long-form", "generative")
OUTPUT_FORMATS = ("mp3", "ogg_vorbis", "ogg_opus", "pcm")
MARK_TYPES = ("sentence", "word", "ssml", "viseme")
MODES = ("auto", "async", "sync")

# File extension of what ``fetch`` writes, per OutputFormat. pcm is wrapped in WAV.
_EXT = {"mp3": "mp3", "ogg_vorbis": "ogg", "ogg_opus": "opus", "pcm": "wav"}
# Valid sample rates per output format (POLLY.md section 9).
_SAMPLE_RATES = {
    "mp3": ("8000", "16000", "22050", "24000", "44100", "48000"),
    "ogg_vorbis": ("8000", "16000", "22050", "24000", "44100", "48000"),
    "ogg_opus": ("48000",),
    "pcm": ("8000", "16000"),
}

# Seconds a task may go without an SNS notification before we ask GetSpeechSynthesisTask.
NOTIFICATION_GRACE_S = 60.0
# The SQS queue is read at most this often, however many tasks are polled.
DRAIN_INTERVAL_S = 0.2
# recover() accepts tasks created up to this long before ``since`` (clock skew).
RECOVER_SKEW_S = 120.0

_LEXICON_NAME = re.compile(r"^[0-9A-Za-z]{1,20}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[0-9a-zA-Z/!\-_.*'():;$@=+,?&]{0,700}$")

# Error codes that mean "fix your options", not "try again".
_CONFIG_CODES = {
    "InvalidSsmlException",
    "TextLengthExceededException",
    "EngineNotSupportedException",
    "InvalidS3BucketException",
    "InvalidS3KeyException",
    "InvalidSampleRateException",
    "InvalidSnsTopicArnException",
    "LexiconNotFoundException",
    "MarksNotSupportedForFormatException",
    "SsmlMarksNotSupportedForTextTypeException",
    "LanguageNotSupportedException",
    "ValidationException",
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "NoSuchBucket",
}
_THROTTLE_CODES = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "ProvisionedThroughputExceededException",
}
_TRANSIENT_CODES = {
    "ServiceFailureException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
}
_TRANSIENT_REASON = re.compile(
    r"internal|service ?failure|throttl|timed? ?out|timeout|unavailable|try again|temporar",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------- errors


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def map_client_error(exc: BaseException, what: str) -> AudiobookError:
    """A botocore exception as one of our errors, with the service's message on one line.

    ThrottlingException (any status) -> Throttled; 5xx, ServiceFailure and connection
    errors -> TransientEngineError; request problems the user must fix -> ConfigError;
    anything else -> EngineError.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError as BotoConnectionError,
        HTTPClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        msg = _one_line(err.get("Message") or code)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{what}: {code}: {msg}" if msg and msg != code else f"{what}: {code}"
        if code in _THROTTLE_CODES or status == 429:
            return Throttled(text)
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientEngineError(text)
        if code in _CONFIG_CODES or status in (401, 403):
            return ConfigError(text)
        return EngineError(text)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigError(
            f"{what}: no AWS credentials found (environment, ~/.aws profile or instance role)"
        )
    if isinstance(exc, NoRegionError):
        return ConfigError(f"{what}: no AWS region set (use --region or AWS_DEFAULT_REGION)")
    if isinstance(exc, BotoConnectionError | HTTPClientError | ReadTimeoutError):
        return TransientEngineError(f"{what}: {_one_line(exc)}")
    if isinstance(exc, BotoCoreError):
        return EngineError(f"{what}: {_one_line(exc)}")
    if isinstance(exc, OSError):
        return TransientEngineError(f"{what}: {_one_line(exc)}")
    return EngineError(f"{what}: {_one_line(exc)}", expected=False)


def _call(what: str, fn: Any, **kwargs: Any) -> Any:
    """Call a boto3 method and convert its errors at this edge."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError, OSError) as e:
        raise map_client_error(e, what) from e


def _error_code(exc: BaseException) -> str:
    cause = exc.__cause__
    resp = getattr(cause, "response", None)
    if isinstance(resp, dict):
        return str(resp.get("Error", {}).get("Code", ""))
    return ""


def reason_is_transient(reason: str) -> bool:
    """A failed task's TaskStatusReason that is worth another task."""
    return bool(_TRANSIENT_REASON.search(reason or ""))


# --------------------------------------------------------------------------- pure helpers


def pick_mode(requested: str, billable_chars: int, total_chars: int) -> Literal["sync", "async"]:
    """The path for one job: ``requested`` if it is sync/async; for ``auto``, sync when
    the job's whole text fits one SynthesizeSpeech request, async otherwise."""
    if requested not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, not {requested!r}")
    if requested != "auto":
        return requested  # type: ignore[return-value]
    fits = (
        billable_chars <= POLLY_SYNC_LIMITS.max_billable
        and total_chars <= POLLY_SYNC_LIMITS.max_total
    )
    return "sync" if fits else "async"


def default_sample_rate(output_format: str, polly_engine: str) -> str:
    if output_format == "pcm":
        return "16000"
    if output_format == "ogg_opus":
        return "48000"
    return "22050" if polly_engine == "standard" else "24000"


def parse_s3_uri(uri: str, bucket: str | None = None) -> tuple[str, str]:
    """(bucket, key) of an OutputUri in any of the forms seen:
    ``s3://b/k``, ``https://s3.<region>.amazonaws.com/b/k`` (path style),
    ``https://b.s3.<region>.amazonaws.com/k`` (virtual host), and an emulator's
    ``http://127.0.0.1:PORT/b/k``. ``bucket``, when known, settles the virtual-host case.
    """
    u = urlparse(uri)
    path = unquote(u.path)
    if u.scheme == "s3":
        return u.netloc, path.lstrip("/")
    host = u.hostname or ""
    if bucket and host.startswith(bucket + "."):
        return bucket, path.lstrip("/")
    m = re.match(r"^(.+)\.s3[.-]", host)
    if m and not host.startswith("s3.") and not bucket:
        return m.group(1), path.lstrip("/")
    b, _, k = path.lstrip("/").partition("/")
    if not b or not k:
        raise EngineError(f"cannot read bucket and key from OutputUri {uri!r}")
    return b, k


def parse_notification(body: str) -> dict[str, str] | None:
    """A Polly completion message from an SQS body (an SNS envelope or a raw message):
    {"task_id", "status" (Polly's lower/camel case), "output_uri", "reason"} or None."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    if isinstance(data, dict) and "Message" in data and "taskId" not in data:
        try:
            data = json.loads(data["Message"])
        except (ValueError, TypeError):
            return None
    if not isinstance(data, dict) or "taskId" not in data:
        return None
    raw = str(data.get("taskStatus", "")).strip()
    status = {
        "COMPLETED": "completed",
        "FAILED": "failed",
        "SCHEDULED": "scheduled",
        "INPROGRESS": "inProgress",
        "IN_PROGRESS": "inProgress",
    }.get(raw.upper().replace(" ", ""), raw)
    reason = data.get("taskStatusReason") or data.get("reason") or data.get("errorMessage") or ""
    return {
        "task_id": str(data["taskId"]),
        "status": status,
        "output_uri": str(data.get("outputUri") or ""),
        "reason": str(reason),
    }


# SSML tags (and attributes) Polly rejects, per engine (POLLY.md section 11).
_NEVER = {"audio", "lexicon", "lookup", "voice"}
_KNOWN = {
    "speak", "break", "lang", "p", "s", "sub", "w", "emphasis", "prosody", "mark",
    "phoneme", "say-as", "amazon:effect", "amazon:auto-breaths", "amazon:domain",
    "amazon:breath", "amazon:max-duration",
}
_NOT_NEURAL_LIKE = {"emphasis", "amazon:auto-breaths", "amazon:breath", "amazon:max-duration"}
_TAG = re.compile(r"<\s*([A-Za-z_][\w:.\-]*)((?:\s+[^<>]*?)?)\s*/?\s*>")
_ATTR = re.compile(r"([\w:.\-]+)\s*=\s*(\"[^\"]*\"|'[^']*')")


def unsupported_ssml(ssml: str, polly_engine: str) -> str | None:
    """The first tag (with the attribute at fault, if any) that the given Polly engine
    rejects, as it would be written; None when everything is supported. Comments and
    CDATA are not expected (the renderer escapes all text)."""
    for m in _TAG.finditer(ssml):
        tag = m.group(1).lower()
        attrs = {a.lower(): v[1:-1] for a, v in _ATTR.findall(m.group(2) or "")}
        shown = f"<{m.group(1)}>"
        if tag in _NEVER or tag not in _KNOWN:
            return shown
        if tag == "break":
            t = attrs.get("time", "")
            mt = re.fullmatch(r"\s*([\d.]+)\s*(ms|s)\s*", t)
            if mt and float(mt.group(1)) * (0.001 if mt.group(2) == "ms" else 1.0) > 10.0:
                return f'<break time="{t}"> (over 10 seconds)'
        if tag == "prosody":
            rate = attrs.get("rate", "").strip()
            mr = re.fullmatch(r"([+-]?)([\d.]+)%", rate)
            if mr:
                pct = float(mr.group(2))
                if (mr.group(1) == "-" and pct > 80) or (not mr.group(1) and pct < 20):
                    return f'<prosody rate="{rate}"> (slower than -80%)'
            if polly_engine != "standard" and "amazon:max-duration" in attrs:
                return "<prosody amazon:max-duration>"
        if polly_engine == "standard":
            if tag == "amazon:domain":
                return f'<amazon:domain name="{attrs.get("name", "")}">'
            continue
        if tag in _NOT_NEURAL_LIKE:
            return shown
        if tag == "amazon:effect":
            name = attrs.get("name", "")
            if name != "drc" or polly_engine == "generative":
                extra = "".join(f' {a}="{v}"' for a, v in attrs.items())
                return f"<amazon:effect{extra}>"
        if tag == "amazon:domain" and polly_engine != "neural":
            return f'<amazon:domain name="{attrs.get("name", "")}">'
    return None


# --------------------------------------------------------------------------- listing


def list_voices(polly: Any, engine: str | None = None, language: str | None = None) -> list[dict]:
    """DescribeVoices, every page: dicts with Id, Name, Gender, LanguageCode,
    LanguageName, SupportedEngines. ``engine`` and ``language`` filter server-side."""
    kwargs: dict[str, Any] = {}
    if engine:
        kwargs["Engine"] = engine
    if language:
        kwargs["LanguageCode"] = language
    voices: list[dict] = []
    token = None
    while True:
        if token:
            kwargs["NextToken"] = token
        resp = _call("Polly DescribeVoices", polly.describe_voices, **kwargs)
        voices.extend(resp.get("Voices", []))
        token = resp.get("NextToken")
        if not token:
            return voices


def list_tasks(
    polly: Any, status: str | None = None, max_items: int | None = None
) -> Iterator[dict]:
    """ListSpeechSynthesisTasks through botocore's paginator: SynthesisTask dicts
    (TaskId, TaskStatus, TaskStatusReason, OutputUri, CreationTime, RequestCharacters,
    ...), optionally only those with ``status`` and at most ``max_items``."""
    kwargs: dict[str, Any] = {}
    if status:
        kwargs["Status"] = status
    if max_items:
        kwargs["PaginationConfig"] = {"MaxItems": max_items, "PageSize": min(100, max_items)}
    from botocore.exceptions import BotoCoreError, ClientError

    paginator = polly.get_paginator("list_speech_synthesis_tasks")
    try:
        for page in paginator.paginate(**kwargs):
            yield from page.get("SynthesisTasks", [])
    except (ClientError, BotoCoreError) as e:
        raise map_client_error(e, "Polly ListSpeechSynthesisTasks") from e


# --------------------------------------------------------------------------- voices


# A Polly voice per language for books converted without --voice (all neural-capable
# except where none is).
POLLY_DEFAULT_VOICES = {
    "en": "Joanna",
    "en-gb": "Amy",
    "en-au": "Olivia",
    "en-in": "Kajal",
    "fr": "Lea",
    "fr-ca": "Gabrielle",
    "de": "Vicki",
    "es": "Lucia",
    "es-us": "Lupe",
    "es-mx": "Mia",
    "it": "Bianca",
    "pt": "Ines",
    "pt-br": "Camila",
    "nl": "Laura",
    "ja": "Takumi",
    "zh": "Zhiyu",
    "ko": "Seoyeon",
    "ar": "Hala",
    "pl": "Ola",
    "sv": "Elin",
    "da": "Sofie",
    "nb": "Ida",
    "no": "Ida",
    "fi": "Suvi",
    "tr": "Burcu",
}


def polly_voice_for(language: str | None) -> str:
    """A default Polly voice for a BCP 47 language tag; ConfigError when none is known."""
    tag = (language or "en").lower().replace("_", "-")
    voice = POLLY_DEFAULT_VOICES.get(tag) or POLLY_DEFAULT_VOICES.get(tag.split("-")[0])
    if voice is None:
        raise ConfigError(
            f"no default Polly voice for language {language!r}; "
            "choose one with --voice (see `audiobook voices`)"
        )
    return voice


# --------------------------------------------------------------------------- clients


def polly_client_config() -> Any:
    """botocore Config for the Polly client: one attempt (our pipeline retries)."""
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=32,
    )


@dataclass
class _Pending:
    """What the SNS path knows about a task while it waits for its notification."""

    checked: float  # monotonic time of submit or of the last Get
    status: str = "scheduled"
    reason: str = ""
    output_uri: str = ""


# --------------------------------------------------------------------------- the engine


class PollyEngine(Engine):
    name = "polly"

    def __init__(
        self,
        options: PollyOptions,
        *,
        polly: Any = None,
        s3: Any = None,
        sqs: Any = None,
        sns: Any = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.options = options
        mode = options.mode
        polly_engine = options.polly_engine
        output_format = options.output_format
        sample_rate = options.sample_rate
        voice = options.voice or polly_voice_for(options.language)
        bucket, prefix, sns_topic = options.bucket, options.prefix, options.sns_topic
        kms_key, region, lexicons, marks = (
            options.kms_key,
            options.region,
            options.lexicons,
            options.marks,
        )
        notification_grace = options.notification_grace
        if mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.voice = voice
        self.bucket = bucket or ""
        self.prefix = prefix or ""
        self.polly_engine = polly_engine
        self.requested_mode = mode
        self.mode: Literal["sync", "async"] = "sync" if mode == "sync" else "async"
        self.sns_topic = sns_topic or None
        self.kms_key = kms_key or None
        self.region = region
        self.lexicons = tuple(lexicons)
        self.output_format = output_format
        self.sample_rate = str(sample_rate) if sample_rate else None
        self.marks = tuple(marks)
        self.notification_grace = notification_grace
        self._clock = clock
        self._session: Any = None
        self._polly, self._s3, self._sqs, self._sns = polly, s3, sqs, sns
        self._lock = threading.RLock()
        self._queue_url: str | None = None
        self._subscription_arn: str | None = None
        self._pending: dict[str, _Pending] = {}
        self._notified: dict[str, dict[str, str]] = {}
        self._half_started: dict[str, dict[str, Any]] = {}
        self._uncertain: dict[tuple[str, bool], float] = {}
        self._drained = float("-inf")
        self._workdir: Path | None = None
        ext = _EXT.get(output_format, output_format)
        rate = int(self.sample_rate or default_sample_rate(output_format, polly_engine))
        self.audio_format = AudioFormat(ext=ext, sample_rate=rate, channels=1)

    # -- configuration --------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return Capabilities(
            remote=True,
            keeps_tasks=True,
            batch_status=True,
            notified=self.sns_topic is not None,
            marks=bool(self.marks),
            price_kind=self.polly_engine,
        )

    @property
    def limits(self) -> EngineLimits:  # type: ignore[override]
        return POLLY_SYNC_LIMITS if self.mode == "sync" else POLLY_TASK_LIMITS

    def plan(self, billable_chars: int, total_chars: int) -> None:
        """Settle ``mode="auto"`` for a job of this size (see ``pick_mode``); call it
        before chunking, since ``limits`` follow the mode."""
        self.mode = pick_mode(self.requested_mode, billable_chars, total_chars)

    def identity(self) -> str:
        rate = self.sample_rate or default_sample_rate(self.output_format, self.polly_engine)
        return (
            f"polly:{self.polly_engine}:{self.voice}:{self.output_format}:{rate}:"
            f"{','.join(self.lexicons)}"
        )

    def _boto_session(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(region_name=self.region)
        return self._session

    def _client(self, service: str) -> Any:
        attr = f"_{service}"
        with self._lock:
            client = getattr(self, attr)
            if client is None:
                kwargs: dict[str, Any] = {}
                if service == "polly":
                    kwargs["config"] = polly_client_config()
                try:
                    client = self._boto_session().client(service, **kwargs)
                except Exception as e:  # NoRegionError and friends, at the edge
                    raise map_client_error(e, f"AWS {service} client") from e
                setattr(self, attr, client)
            return client

    @property
    def polly(self) -> Any:
        return self._client("polly")

    @property
    def s3(self) -> Any:
        return self._client("s3")

    @property
    def sqs(self) -> Any:
        return self._client("sqs")

    @property
    def sns(self) -> Any:
        return self._client("sns")

    # -- pre-flight -----------------------------------------------------------------

    def check_options(self) -> None:
        """Local checks of the options (no AWS call)."""
        if not self.bucket:
            raise ConfigError("--bucket is required for --engine polly")
        if not _BUCKET_NAME.match(self.bucket):
            raise ConfigError(f"--bucket {self.bucket!r} is not a valid S3 bucket name")
        if not _PREFIX.match(self.prefix):
            raise ConfigError(f"--prefix {self.prefix!r} has characters Polly does not accept")
        if self.polly_engine not in POLLY_ENGINES:
            raise ConfigError(
                f"--polly-engine must be one of {', '.join(POLLY_ENGINES)}, "
                f"not {self.polly_engine!r}"
            )
        if not self.voice:
            raise ConfigError("--voice is required for --engine polly (see `audiobook voices`)")
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(
                f"output format must be one of {', '.join(OUTPUT_FORMATS)}, "
                f"not {self.output_format!r}"
            )
        if self.sample_rate and self.sample_rate not in _SAMPLE_RATES[self.output_format]:
            raise ConfigError(
                f"sample rate {self.sample_rate} is not valid for {self.output_format} "
                f"(valid: {', '.join(_SAMPLE_RATES[self.output_format])})"
            )
        if len(self.lexicons) > 5:
            raise ConfigError(f"at most 5 lexicons per request, got {len(self.lexicons)}")
        for name in self.lexicons:
            if not _LEXICON_NAME.match(name):
                raise ConfigError(f"--lexicon {name!r} is not a valid lexicon name")
        for m in self.marks:
            if m not in MARK_TYPES:
                raise ConfigError(
                    f"--marks: unknown speech mark type {m!r} (use {', '.join(MARK_TYPES)})"
                )
        if self.marks and self.polly_engine == "generative":
            raise ConfigError("--marks: the generative engine produces no speech marks")

    def preflight(self, ssml: Iterable[str] = ()) -> None:
        """Every check that can fail before a task is started (nothing is billed):
        options, the SSML of ``ssml`` (chunks' documents, when given) against the
        engine's tag support, bucket exists and is writable (a probe object is written
        and deleted), KMS key matches the bucket's default encryption, voice exists and
        supports the engine, lexicons exist, SNS topic exists. ConfigError on one line."""
        self.check_options()
        for doc in ssml:
            self.validate_ssml(doc)
        self._check_bucket()
        self._check_voice()
        for name in self.lexicons:
            try:
                _call(f"Polly GetLexicon {name}", self.polly.get_lexicon, Name=name)
            except AudiobookError as e:
                if _error_code(e) == "LexiconNotFoundException":
                    raise ConfigError(f"--lexicon {name!r}: no such lexicon in Polly") from e
                raise
        if self.sns_topic:
            try:
                _call("SNS GetTopicAttributes", self.sns.get_topic_attributes,
                      TopicArn=self.sns_topic)
            except AudiobookError as e:
                if _error_code(e) in ("NotFound", "NotFoundException", "InvalidParameter"):
                    raise ConfigError(f"--sns-topic {self.sns_topic}: no such SNS topic") from e
                raise

    def _check_bucket(self) -> None:
        b = self.bucket
        try:
            _call(f"S3 HeadBucket {b}", self.s3.head_bucket, Bucket=b)
        except AudiobookError as e:
            code = _error_code(e)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ConfigError(f"--bucket {b!r}: no such S3 bucket") from e
            if code in ("403", "AccessDenied"):
                raise ConfigError(f"--bucket {b!r}: access denied to this S3 bucket") from e
            raise
        if self.kms_key:
            self._check_kms()
        probe = f"{self.prefix}.audiobook-probe-{uuid.uuid4().hex}"
        put: dict[str, Any] = {"Bucket": b, "Key": probe, "Body": b"probe"}
        if self.kms_key:
            put.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.kms_key)
        try:
            _call(f"S3 PutObject {b}", self.s3.put_object, **put)
        except AudiobookError as e:
            if isinstance(e, ConfigError) or _error_code(e) in ("403", "AccessDenied"):
                raise ConfigError(
                    f"--bucket {b!r}: not writable ({_one_line(e).split(': ', 1)[-1]})"
                ) from e
            raise
        try:
            _call(f"S3 DeleteObject {b}", self.s3.delete_object, Bucket=b, Key=probe)
        except AudiobookError as e:  # writable but not deletable: say so, go on
            log.warning("could not delete the probe object s3://%s/%s: %s", b, probe, e)

    def _check_kms(self) -> None:
        """Polly has no KMS parameter: it writes with the bucket's default encryption.
        ``kms_key`` therefore has to be the bucket's default SSE-KMS key."""
        b, want = self.bucket, self.kms_key or ""
        try:
            resp = _call(f"S3 GetBucketEncryption {b}", self.s3.get_bucket_encryption, Bucket=b)
        except AudiobookError as e:
            if _error_code(e) != "ServerSideEncryptionConfigurationNotFoundError":
                raise
            resp = {}
        rules = resp.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        for rule in rules:
            d = rule.get("ApplyServerSideEncryptionByDefault", {})
            have = d.get("KMSMasterKeyID") or ""
            if d.get("SSEAlgorithm", "").startswith("aws:kms") and _same_key(have, want):
                return
        raise ConfigError(
            f"--kms-key {want}: Polly writes with bucket {b!r}'s default encryption, which "
            f"is not SSE-KMS with this key (set it: aws s3api put-bucket-encryption)"
        )

    def _check_voice(self) -> None:
        voices = list_voices(self.polly)
        by_id = {v.get("Id"): v for v in voices}
        v = by_id.get(self.voice)
        if v is None:
            lower = {str(k).lower(): k for k in by_id}
            hint = f" (did you mean {lower[self.voice.lower()]}?)" if self.voice.lower() in lower \
                else " (see `audiobook voices`)"
            raise ConfigError(f"--voice {self.voice!r}: Polly has no such voice{hint}")
        engines = v.get("SupportedEngines") or []
        if engines and self.polly_engine not in engines:
            raise ConfigError(
                f"--voice {self.voice!r} does not support the {self.polly_engine} engine "
                f"(it supports: {', '.join(engines)})"
            )

    def validate_ssml(self, ssml: str) -> None:
        """Reject, locally, SSML the chosen engine would refuse (ConfigError naming the
        tag), so that a bad template fails before any task is started."""
        bad = unsupported_ssml(ssml, self.polly_engine)
        if bad:
            raise ConfigError(
                f"SSML tag {bad} is not supported by the Polly {self.polly_engine} engine"
            )

    # -- submit ---------------------------------------------------------------------

    def _task_params(self, chunk: Chunk, key: str, marks: bool) -> dict[str, Any]:
        p: dict[str, Any] = {
            "Engine": self.polly_engine,
            "VoiceId": self.voice,
            "Text": chunk.ssml,
            "TextType": "ssml",
            "OutputFormat": "json" if marks else self.output_format,
        }
        if marks:
            p["SpeechMarkTypes"] = list(self.marks)
        elif self.sample_rate:
            p["SampleRate"] = self.sample_rate
        if self.lexicons:
            p["LexiconNames"] = list(self.lexicons)
        return p

    def submit(self, chunk: Chunk, key: str) -> TaskRef:
        self.validate_ssml(chunk.ssml)
        if self.mode == "sync":
            return self._submit_sync(chunk, key)
        since = time.time()
        with self._lock:
            # An audio task started by an earlier call whose speech-mark start failed.
            task = self._half_started.pop(key, None)
        if task is None:
            task = self._start(chunk, key, marks=False, since=since)
        extra = {"mode": "async", "key": key}
        uri = task.get("OutputUri") or ""
        if uri:
            extra["bucket"], extra["s3_key"] = parse_s3_uri(uri, self.bucket)
        if self.marks:
            try:
                mtask = self._start(chunk, key, marks=True, since=since)
            except BaseException:
                with self._lock:  # the caller retries submit: do not pay for audio twice
                    self._half_started[key] = task
                raise
            extra["marks_task_id"] = mtask["TaskId"]
            if mtask.get("OutputUri"):
                extra["marks_bucket"], extra["marks_s3_key"] = parse_s3_uri(
                    mtask["OutputUri"], self.bucket
                )
        self._track(task["TaskId"])
        if "marks_task_id" in extra:
            self._track(extra["marks_task_id"])
        log.debug("started Polly task %s for %s", task["TaskId"], key)
        return TaskRef(
            task_id=task["TaskId"],
            engine=self.name,
            output_uri=uri or None,
            billed_chars=int(task.get("RequestCharacters") or 0),
            extra=extra,
        )

    def _start(self, chunk: Chunk, key: str, *, marks: bool, since: float) -> dict[str, Any]:
        params = self._task_params(chunk, key, marks)
        params["OutputS3BucketName"] = self.bucket
        params["OutputS3KeyPrefix"] = f"{self.prefix}{key}/"
        if self.sns_topic:
            self._ensure_queue()
            params["SnsTopicArn"] = self.sns_topic
        doubt = (key, marks)
        with self._lock:
            earlier = self._uncertain.get(doubt)
        if earlier is not None:
            # An earlier start for this key failed in a way that may have created the
            # task (5xx, lost connection): look before paying again.
            found = self._find_task(key, earlier, want_marks=marks)
            with self._lock:
                self._uncertain.pop(doubt, None)
            if found is not None:
                log.info("reusing task %s started by an earlier, failed call", found["TaskId"])
                return found
        try:
            resp = _call(
                "Polly StartSpeechSynthesisTask", self.polly.start_speech_synthesis_task, **params
            )
        except TransientEngineError:
            with self._lock:
                self._uncertain[doubt] = since
            found = self._find_task(key, since, want_marks=marks)
            if found is not None:
                with self._lock:
                    self._uncertain.pop(doubt, None)
                log.info("start call failed but task %s exists; reusing it", found["TaskId"])
                return found
            raise
        return resp["SynthesisTask"]

    def _submit_sync(self, chunk: Chunk, key: str) -> TaskRef:
        workdir = self._workdir_path()
        task_id = f"sync-{uuid.uuid4().hex}"
        path = workdir / f"{task_id}.{self.audio_format.ext}"
        chars = self._synthesize(chunk, key, marks=False, dest=path)
        extra = {"mode": "sync", "key": key, "path": str(path)}
        if self.marks:
            mpath = workdir / f"{task_id}.marks"
            self._synthesize(chunk, key, marks=True, dest=mpath)
            extra["marks_task_id"] = f"{task_id}-marks"
            extra["marks_path"] = str(mpath)
        return TaskRef(
            task_id=task_id,
            engine=self.name,
            output_uri=path.as_uri(),
            billed_chars=chars,
            extra=extra,
        )

    def _synthesize(self, chunk: Chunk, key: str, *, marks: bool, dest: Path) -> int:
        params = self._task_params(chunk, key, marks)
        resp = _call("Polly SynthesizeSpeech", self.polly.synthesize_speech, **params)
        body = resp["AudioStream"]
        raw = dest.with_name(dest.name + ".part")
        try:
            with open(raw, "wb") as f:
                for piece in body.iter_chunks(64 * 1024):
                    f.write(piece)
        except Exception as e:
            raw.unlink(missing_ok=True)
            raise map_client_error(e, "Polly SynthesizeSpeech (reading audio)") from e
        finally:
            body.close()
        if not marks and self.output_format == "pcm":
            _pcm_to_wav(raw, dest, self.audio_format.sample_rate)
        else:
            os.replace(raw, dest)
        return int(resp.get("RequestCharacters") or 0)

    def _workdir_path(self) -> Path:
        with self._lock:
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix="audiobook-polly-"))
            return self._workdir

    # -- recover --------------------------------------------------------------------

    def _find_task(self, key: str, since: float, *, want_marks: bool) -> dict[str, Any] | None:
        """The best task whose OutputUri holds ``/<prefix><key>/``, created at or after
        ``since`` (minus clock skew), not failed: completed first, then newest."""
        needle = f"/{self.prefix}{key}/"
        cutoff = since - RECOVER_SKEW_S
        best: dict[str, Any] | None = None
        newest_first, last_ts = True, float("inf")
        for task in list_tasks(self.polly):
            created = task.get("CreationTime")
            ts = created.timestamp() if hasattr(created, "timestamp") else float(created or 0)
            newest_first = newest_first and ts <= last_ts
            last_ts = ts
            if ts < cutoff and newest_first:
                break  # listed newest first: everything after this is older still
            uri = unquote(task.get("OutputUri") or "")
            if needle not in uri and not uri.startswith(f"s3://{self.bucket}/{self.prefix}{key}/"):
                continue
            if (task.get("OutputFormat") == "json") != want_marks:
                continue
            if task.get("TaskStatus") == "failed":
                continue
            if ts < cutoff:
                continue
            rank = (task.get("TaskStatus") == "completed", ts)
            if best is None or rank > best["_rank"]:
                best = dict(task, _rank=rank)
        if best is not None:
            best.pop("_rank", None)
        return best

    def recover(self, key: str, since: float) -> TaskRef | None:
        """A task for ``key`` started at or after ``since`` (epoch seconds) that nobody
        recorded, found with ListSpeechSynthesisTasks by its output prefix."""
        if self.mode == "sync":
            return None
        task = self._find_task(key, since, want_marks=False)
        if task is None:
            return None
        extra = {"mode": "async", "key": key}
        uri = task.get("OutputUri") or ""
        if uri:
            extra["bucket"], extra["s3_key"] = parse_s3_uri(uri, self.bucket)
        if self.marks:
            mtask = self._find_task(key, since, want_marks=True)
            if mtask is not None:
                extra["marks_task_id"] = mtask["TaskId"]
                if mtask.get("OutputUri"):
                    extra["marks_bucket"], extra["marks_s3_key"] = parse_s3_uri(
                        mtask["OutputUri"], self.bucket
                    )
        self._track(task["TaskId"])
        return TaskRef(
            task_id=task["TaskId"],
            engine=self.name,
            output_uri=uri or None,
            billed_chars=int(task.get("RequestCharacters") or 0),
            extra=extra,
        )

    # -- poll -----------------------------------------------------------------------

    def _track(self, task_id: str) -> None:
        if self.sns_topic:
            with self._lock:
                self._pending.setdefault(task_id, _Pending(checked=self._clock()))

    def poll(self, ref: TaskRef) -> TaskState:
        if _is_sync(ref):
            path = ref.extra.get("path")
            if path and Path(path).exists():
                return TaskState("completed", output_uri=ref.output_uri)
            return TaskState(
                "failed", reason="synchronous output is gone (process restarted)", transient=True
            )
        return self._task_state(ref, self._status)

    def _task_state(self, ref: TaskRef, status: Callable[[str], TaskState]) -> TaskState:
        """The state of ``ref``'s audio task, and of its speech-mark task when marks are
        asked for: done only when both are, failed when either failed."""
        audio = status(ref.task_id)
        marks_id = ref.extra.get("marks_task_id") if self.marks else None
        if audio.status != "completed" or not marks_id:
            return audio
        marks = status(marks_id)
        if marks.status == "failed":
            return TaskState(
                "failed", reason=f"speech marks: {marks.reason}", transient=marks.transient
            )
        if marks.status != "completed":
            return TaskState(marks.status)
        return audio

    def poll_many(self, refs: list[TaskRef]) -> list[TaskState]:
        """Where many tasks stand, in one status call where possible.

        Without SNS, one ListSpeechSynthesisTasks page (the newest 100 tasks) answers for
        every task on it, so ten tasks finishing together are all seen within one call
        of the shared Get/List quota instead of ten. A task not on that page (more than
        100 newer tasks in the account) is asked about with GetSpeechSynthesisTask. With
        SNS, notifications answer and this is ``poll`` per task."""
        if self.sns_topic or not refs:
            return [self.poll(r) for r in refs]
        page = _call("Polly ListSpeechSynthesisTasks", self.polly.list_speech_synthesis_tasks,
                     MaxResults=100)
        seen = {t["TaskId"]: t for t in page.get("SynthesisTasks", [])}

        def state(task_id: str) -> TaskState:
            task = seen.get(task_id)
            if task is None:
                return self._status(task_id)
            return _state(task.get("TaskStatus", "scheduled"),
                          task.get("TaskStatusReason") or "", task.get("OutputUri") or "")

        return [self.poll(r) if _is_sync(r) else self._task_state(r, state) for r in refs]

    def _status(self, task_id: str) -> TaskState:
        if self.sns_topic:
            self._drain_queue()
            with self._lock:
                note = self._notified.get(task_id)
                pending = self._pending.get(task_id)
                now = self._clock()
                if note is None and pending is not None:
                    if now - pending.checked < self.notification_grace:
                        return TaskState(pending.status)  # type: ignore[arg-type]
                    pending.checked = now  # fall through to one Get
            if note is not None:
                return _state(note["status"], note["reason"], note["output_uri"])
        resp = _call(
            "Polly GetSpeechSynthesisTask", self.polly.get_speech_synthesis_task, TaskId=task_id
        )
        task = resp["SynthesisTask"]
        status = task.get("TaskStatus", "scheduled")
        if self.sns_topic:
            with self._lock:
                if status in ("completed", "failed"):
                    self._pending.pop(task_id, None)
                else:  # wait for its notification (or the grace time) before asking again
                    entry = self._pending.setdefault(task_id, _Pending(checked=self._clock()))
                    entry.status = status
        return _state(status, task.get("TaskStatusReason") or "", task.get("OutputUri") or "")

    # -- SNS -> SQS -----------------------------------------------------------------

    def _ensure_queue(self) -> None:
        with self._lock:
            if self._queue_url:
                return
            name = f"audiobook-polly-{uuid.uuid4().hex[:12]}"
            url = _call("SQS CreateQueue", self.sqs.create_queue, QueueName=name)["QueueUrl"]
            self._queue_url = url
            try:
                attrs = _call(
                    "SQS GetQueueAttributes",
                    self.sqs.get_queue_attributes,
                    QueueUrl=url,
                    AttributeNames=["QueueArn"],
                )
                arn = attrs["Attributes"]["QueueArn"]
                policy = {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "PollyCompletionFromSns",
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": self.sns_topic}},
                        }
                    ],
                }
                _call(
                    "SQS SetQueueAttributes",
                    self.sqs.set_queue_attributes,
                    QueueUrl=url,
                    Attributes={"Policy": json.dumps(policy)},
                )
                sub = _call(
                    "SNS Subscribe",
                    self.sns.subscribe,
                    TopicArn=self.sns_topic,
                    Protocol="sqs",
                    Endpoint=arn,
                    ReturnSubscriptionArn=True,
                )
                self._subscription_arn = sub.get("SubscriptionArn")
            except BaseException:
                self._teardown_queue()
                raise
            log.debug("listening for Polly notifications on %s", name)

    def _drain_queue(self) -> None:
        """Read every waiting notification (no long poll: poll() must not block), at
        most once per ``DRAIN_INTERVAL_S`` however many tasks are polled."""
        if not self._queue_url:
            return
        with self._lock:
            now = self._clock()
            if now - self._drained < DRAIN_INTERVAL_S:
                return
            self._drained = now
            url = self._queue_url
            for _ in range(100):  # at most 1,000 messages per poll
                resp = _call(
                    "SQS ReceiveMessage",
                    self.sqs.receive_message,
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=0,
                )
                messages = resp.get("Messages", [])
                if not messages:
                    return
                for msg in messages:
                    note = parse_notification(msg.get("Body", ""))
                    if note is not None and note["status"] in ("completed", "failed"):
                        self._notified[note["task_id"]] = note
                        self._pending.pop(note["task_id"], None)
                _call(
                    "SQS DeleteMessageBatch",
                    self.sqs.delete_message_batch,
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )

    def _teardown_queue(self) -> None:
        sub, url = self._subscription_arn, self._queue_url
        self._subscription_arn = self._queue_url = None
        if sub and sub != "PendingConfirmation":
            try:
                _call("SNS Unsubscribe", self.sns.unsubscribe, SubscriptionArn=sub)
            except AudiobookError as e:
                log.warning("could not unsubscribe %s: %s", sub, e)
        if url:
            try:
                _call("SQS DeleteQueue", self.sqs.delete_queue, QueueUrl=url)
            except AudiobookError as e:
                log.warning("could not delete queue %s: %s", url, e)

    # -- fetch ----------------------------------------------------------------------

    def _location(self, ref: TaskRef, marks: bool) -> tuple[str, str]:
        b = ref.extra.get("marks_bucket" if marks else "bucket")
        k = ref.extra.get("marks_s3_key" if marks else "s3_key")
        if b and k:
            return b, k
        task_id = ref.extra.get("marks_task_id") if marks else ref.task_id
        uri = None if marks else ref.output_uri
        if not uri:
            if not task_id:
                raise EngineError(f"task {ref.task_id} has no speech-mark task")
            resp = _call(
                "Polly GetSpeechSynthesisTask",
                self.polly.get_speech_synthesis_task,
                TaskId=task_id,
            )
            uri = resp["SynthesisTask"].get("OutputUri")
        if not uri:
            raise EngineError(f"Polly task {task_id} has no OutputUri")
        return parse_s3_uri(uri, self.bucket)

    def fetch(self, ref: TaskRef, dest: Path) -> None:
        dest = Path(dest)
        if _is_sync(ref):
            _copy_atomic(Path(ref.extra.get("path", "")), dest)
            return
        bucket, key = self._location(ref, marks=False)
        self._download(bucket, key, dest, wav_rate=(
            self.audio_format.sample_rate if self.output_format == "pcm" else None
        ))

    def fetch_marks(self, ref: TaskRef, dest: Path) -> None:
        """Write the chunk's speech marks (JSON lines, Polly's format: time in ms from
        the start of the chunk, type, start/end byte offsets into the SSML, value) to
        ``dest``, whole or not at all. Only for engines built with ``marks``."""
        dest = Path(dest)
        if not self.marks:
            raise ConfigError("this engine was not asked for speech marks (--marks)")
        if _is_sync(ref):
            _copy_atomic(Path(ref.extra.get("marks_path", "")), dest)
            return
        bucket, key = self._location(ref, marks=True)
        self._download(bucket, key, dest)

    def _download(self, bucket: str, key: str, dest: Path, wav_rate: int | None = None) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                resp = _call(f"S3 GetObject s3://{bucket}/{key}", self.s3.get_object,
                             Bucket=bucket, Key=key)
                body = resp["Body"]
                try:
                    for piece in body.iter_chunks(256 * 1024):
                        f.write(piece)
                except Exception as e:
                    raise map_client_error(e, f"S3 GetObject s3://{bucket}/{key}") from e
                finally:
                    body.close()
            if wav_rate:
                _pcm_to_wav(tmp, dest, wav_rate)
                tmp.unlink(missing_ok=True)
            else:
                os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # -- close ----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._teardown_queue()
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None


def _is_sync(ref: TaskRef) -> bool:
    return ref.extra.get("mode") == "sync" or ref.task_id.startswith("sync-")


def _state(status: str, reason: str, output_uri: str) -> TaskState:
    if status == "failed":
        return TaskState(
            "failed",
            reason=_one_line(reason) or "failed (no reason given)",
            transient=reason_is_transient(reason),
            output_uri=output_uri or None,
        )
    if status not in ("scheduled", "inProgress", "completed"):
        status = "inProgress"
    return TaskState(status, output_uri=output_uri or None)  # type: ignore[arg-type]


def _same_key(have: str, want: str) -> bool:
    """KMS key ids match by full ARN, key id, or alias."""
    if not have or not want:
        return False
    if have == want:
        return True
    tail = lambda s: s.split(":key/")[-1].split(":")[-1]  # noqa: E731
    return tail(have) == tail(want)


def _copy_atomic(src: Path, dest: Path) -> None:
    if not src.is_file():
        raise TransientEngineError(f"synchronous output {src} is gone; synthesize again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pcm_to_wav(raw: Path, dest: Path, rate: int) -> None:
    """Wrap raw s16le mono PCM in a WAV header, streaming, then os.replace."""
    import wave

    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        with open(raw, "rb") as src, wave.open(tmp, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            while piece := src.read(256 * 1024):
                w.writeframes(piece)
        os.replace(tmp, dest)
        if raw != dest:
            raw.unlink(missing_ok=True)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def polly_client(region: str | None) -> Any:
    """A boto3 Polly client for ``region`` (None: the usual boto3 way), with
    ``polly_client_config``; a ConfigError when no client can be made."""
    import boto3

    from ..errors import one_line

    try:
        return boto3.session.Session(region_name=region).client(
            "polly", config=polly_client_config()
        )
    except Exception as e:  # botocore: NoRegionError and friends
        raise ConfigError(
            f"cannot reach Polly: {one_line(str(e))} (set --region or AWS_DEFAULT_REGION)"
        ) from e
