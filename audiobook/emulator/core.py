"""The emulator's behaviour, without HTTP: one method per Polly operation, taking the
validated input parameters and returning the output members (or raising PollyError).

Synthesis tasks live in memory for 72 hours (by ``clock``). A scheduler hands each task
to a bounded worker pool after the queue wait; a worker marks it ``inProgress``,
synthesizes real audio with espeak-ng, encodes it with ffmpeg, waits out the latency
model (characters / ``chars_per_second``), writes the object to S3 with the bucket's
default encryption, marks it ``completed`` (or ``failed`` with a reason) and publishes
the completion message to the task's SNS topic.

Design choices (UNVERIFIED against AWS, kept here):
- A bucket that does not exist, or whose bucket policy denies ``s3:PutObject`` to
  everyone, fails StartSpeechSynthesisTask at once with InvalidS3BucketException; an S3
  error while writing the object fails the task with the S3 error as its reason. A
  policy that denies uploads without an encryption header lets Start through (it
  cannot see the upload) and fails the task when its output is written: billed.
- An SNS topic that does not exist fails Start with InvalidSnsTopicArnException.
- Speech marks on the generative engine: EngineNotSupportedException.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import hashlib
import heapq
import itertools
import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from .. import ffmpeg
from . import facts
from . import ssml as ssmlmod
from .faults import FaultInjector, FaultOptions
from .protocol import PollyError
from .quotas import Quotas
from .voices import BY_ID, VOICES, VoiceInfo, espeak_voice

log = logging.getLogger(__name__)


SILENCE_CHARS_PER_SECOND = 1_000  # audio="silence": seconds of audio per character


@dataclass(frozen=True)
class EmulatorOptions:
    """Every knob of the emulator.

    s3_endpoint / sns_endpoint: where output objects and notifications go (moto's
        server in tests; sns_endpoint defaults to s3_endpoint).
    queue_delay: seconds a task stays ``scheduled`` before a worker may take it.
    chars_per_second: synthesis speed of the latency model (a task is not completed
        before billable characters / this rate seconds in progress).
    workers: tasks synthesized at once.
    quota_scale / quotas_enabled / quota_overrides: rate quotas (see quotas.py).
    concurrency_overrides: open tasks per engine kind at most (facts.CONCURRENCY).
    faults: injected faults (see faults.py).
    voices_page_size: DescribeVoices page size (None: all voices in one page).
    espeak_rate_wpm: espeak-ng speaking rate (None: its default, 175 words/minute).
    audio: "speech" (espeak-ng, the default) or "silence": silent audio of one second
        per SILENCE_CHARS_PER_SECOND billable characters, for benchmarks that measure
        orchestration against the latency model rather than espeak-ng's speed.
    clock: wall clock for CreationTime and retention (injectable in tests).
    """

    region: str = "us-east-1"
    s3_endpoint: str | None = None
    sns_endpoint: str | None = None
    queue_delay: float = 0.05
    chars_per_second: float = 50_000.0
    workers: int = 4
    quota_scale: float = 1.0
    quotas_enabled: bool = True
    quota_overrides: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    concurrency_overrides: Mapping[str, int] = field(default_factory=dict)
    faults: FaultOptions = field(default_factory=FaultOptions)
    voices_page_size: int | None = None
    espeak_rate_wpm: int | None = None
    audio: str = "speech"
    account_id: str = facts.ACCOUNT_ID
    access_key: str = "emulator"
    secret_key: str = "emulator"
    clock: Callable[[], float] = time.time


@dataclass
class Task:
    """A synthesis task: the SynthesisTask members plus what the emulator keeps."""

    TaskId: str
    TaskStatus: str
    OutputUri: str
    CreationTime: float
    RequestCharacters: int
    OutputFormat: str
    TextType: str
    VoiceId: str
    Engine: str
    SampleRate: str | None = None
    SnsTopicArn: str | None = None
    LexiconNames: list[str] | None = None
    SpeechMarkTypes: list[str] | None = None
    LanguageCode: str | None = None
    TaskStatusReason: str | None = None
    # not echoed by Polly
    text: str = field(default="", repr=False)
    bucket: str = ""
    key: str = ""
    sample_rate: int = 0
    started: float | None = None
    finished: float | None = None
    injected_failure: str | None = None
    notified: bool | None = None  # None: no topic

    API_FIELDS = (
        "Engine",
        "TaskId",
        "TaskStatus",
        "TaskStatusReason",
        "OutputUri",
        "CreationTime",
        "RequestCharacters",
        "SnsTopicArn",
        "LexiconNames",
        "OutputFormat",
        "SampleRate",
        "SpeechMarkTypes",
        "TextType",
        "VoiceId",
        "LanguageCode",
    )

    def api(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.API_FIELDS if getattr(self, k) is not None}


@dataclass(frozen=True)
class TaskInfo:
    """What tests read about a task (``EmulatorServer.tasks``)."""

    task_id: str
    status: str
    reason: str | None
    request_characters: int
    text_sha256: str
    bucket: str
    key: str
    output_format: str
    voice_id: str
    engine: str
    creation_time: float
    injected_failure: str | None
    notified: bool | None
    lexicon_names: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Lexicon:
    name: str
    content: str
    alphabet: str
    language: str
    lexemes: int
    modified: float


def _iso(ts: float) -> str:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def output_key(prefix: str, task_id: str, fmt: str) -> str:
    """Polly's object key: ``prefix/`` + id, or ``prefix.`` + id, then the extension."""
    ext = facts.EXTENSIONS[fmt]
    if not prefix:
        return task_id + ext
    if prefix.endswith("/"):
        return prefix + task_id + ext
    return f"{prefix}.{task_id}{ext}"


def default_sample_rate(fmt: str, engine: str) -> int:
    if fmt in facts.DEFAULT_RATES:
        return facts.DEFAULT_RATES[fmt]
    return facts.DEFAULT_RATE_STANDARD if engine == "standard" else facts.DEFAULT_RATE_OTHER


_CODECS: dict[str, list[str]] = {
    # compression_level 9: lame's fastest algorithm, 2-3x faster on long tasks
    "mp3": ["-c:a", "libmp3lame", "-b:a", "48k", "-compression_level", "9", "-f", "mp3"],
    "ogg_vorbis": ["-c:a", "libvorbis", "-q:a", "3", "-f", "ogg"],
    "ogg_opus": ["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
    "pcm": ["-c:a", "pcm_s16le", "-f", "s16le"],
    "mulaw": ["-c:a", "pcm_mulaw", "-f", "mulaw"],
    "alaw": ["-c:a", "pcm_alaw", "-f", "alaw"],
}


def _token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _untoken(token: str) -> dict[str, Any]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise PollyError(
            "InvalidNextTokenException",
            "The NextToken is invalid. Verify that it's spelled correctly, and then try again.",
        )
    return doc


class Emulator:
    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.quotas = Quotas(options.quota_scale, options.quota_overrides, options.quotas_enabled)
        self.faults = FaultInjector(options.faults)
        self.counts: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._lexicons: dict[str, Lexicon] = {}
        self.lexicon_uploads: list[str] = []  # the name of each PutLexicon, in order
        self._workdir = tempfile.TemporaryDirectory(prefix="polly-emulator-")
        self._pool = ThreadPoolExecutor(max(1, options.workers), thread_name_prefix="polly-task")
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._stop = threading.Event()  # wakes workers' waits at shutdown
        self._scheduler = threading.Thread(
            target=self._schedule_loop, name="polly-scheduler", daemon=True
        )
        self._scheduler.start()
        self._clients: dict[str, Any] = {}

    def _client(self, service: str, url: str | None) -> Any:
        """A boto3 client for moto's S3 or SNS, made on first use (None without a URL)."""
        if url is None:
            return None
        with self._lock:
            if service not in self._clients:
                session = boto3.session.Session(
                    aws_access_key_id=self.options.access_key,
                    aws_secret_access_key=self.options.secret_key,
                    region_name=self.options.region,
                )
                cfg = botocore.config.Config(
                    s3={"addressing_style": "path"},
                    retries={"mode": "standard", "total_max_attempts": 3},
                )
                self._clients[service] = session.client(service, endpoint_url=url, config=cfg)
            return self._clients[service]

    @property
    def s3(self) -> Any:
        return self._client("s3", self.options.s3_endpoint)

    @property
    def sns(self) -> Any:
        return self._client("sns", self.options.sns_endpoint or self.options.s3_endpoint)

    # --- bookkeeping ------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_status = Counter(t.TaskStatus for t in self._tasks.values())
            return {**self.counts, **self.faults.snapshot(), "tasks_by_status": dict(by_status)}

    def task_infos(self) -> list[TaskInfo]:
        with self._lock:
            return [
                TaskInfo(
                    t.TaskId,
                    t.TaskStatus,
                    t.TaskStatusReason,
                    t.RequestCharacters,
                    hashlib.sha256(t.text.encode()).hexdigest(),
                    t.bucket,
                    t.key,
                    t.OutputFormat,
                    t.VoiceId,
                    t.Engine,
                    t.CreationTime,
                    t.injected_failure,
                    t.notified,
                    tuple(t.LexiconNames or ()),
                )
                for t in sorted(self._tasks.values(), key=lambda t: t.CreationTime)
            ]

    def _purge(self) -> None:
        limit = self.options.clock() - facts.TASK_RETENTION_SECONDS
        with self._lock:
            for tid in [k for k, t in self._tasks.items() if t.CreationTime < limit]:
                del self._tasks[tid]

    def close(self) -> None:
        self._stop.set()
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._scheduler.join(timeout=5)
        self._workdir.cleanup()

    # --- shared checks ----------------------------------------------------------------

    def _speech_request(
        self,
        p: Mapping[str, Any],
        limits: tuple[int, int],
        rates: Mapping[str, tuple[int, ...]],
    ) -> tuple[VoiceInfo, str, str, int, int]:
        """Checks common to Start and SynthesizeSpeech (each with its own character
        limits and sample rates); returns (voice, engine, text_type, billable
        characters, sample rate)."""
        voice = BY_ID.get(p["VoiceId"])
        if voice is None:
            raise PollyError(
                "ValidationException",
                f"Voice {p['VoiceId']} is not available in this emulator",
                reason="other",
            )
        engine = p.get("Engine", "standard")
        if engine not in voice.engines:
            # a ValidationException gets its required reason="other" from PollyError
            raise PollyError(
                facts.ENGINE_MISMATCH_ERROR, facts.ENGINE_MISMATCH_MESSAGE.format(engine=engine)
            )
        lang = p.get("LanguageCode")
        if lang and lang != voice.language and lang not in voice.additional_languages:
            raise PollyError(
                "LanguageNotSupportedException",
                f"Language {lang} is not supported by voice {voice.id}",
            )
        text_type = p.get("TextType", "text")
        text = p["Text"]
        if text_type == "ssml":
            ssmlmod.check(ssmlmod.parse(text), engine, voice.id)
        billable = ssmlmod.billable_chars(text, text_type)
        if billable > limits[0] or len(text) > limits[1]:
            raise PollyError("TextLengthExceededException", facts.TEXT_LENGTH_MESSAGE)
        fmt = p["OutputFormat"]
        marks = p.get("SpeechMarkTypes") or []
        if marks and fmt != "json":
            raise PollyError(
                "MarksNotSupportedForFormatException",
                "Speech marks are only supported for the json output format",
            )
        if fmt == "json" and not marks:
            raise PollyError(
                "MarksNotSupportedForFormatException",
                "The json output format needs SpeechMarkTypes",
            )  # UNVERIFIED
        if "ssml" in marks and text_type != "ssml":
            raise PollyError(
                "SsmlMarksNotSupportedForTextTypeException",
                "SSML speech marks are not supported for plain text-type input",
            )
        if marks and engine == "generative":
            raise PollyError(
                "EngineNotSupportedException",
                "Speech marks are not supported by the generative engine",
            )
        rate = default_sample_rate(fmt, engine)
        if p.get("SampleRate") is not None and fmt != "json":
            sr = str(p["SampleRate"])
            if not sr.isdigit() or int(sr) not in rates[fmt]:
                raise PollyError(
                    "InvalidSampleRateException",
                    f"The specified sample rate {sr} is not valid for {fmt}",
                )
            rate = int(sr)
        with self._lock:
            for name in p.get("LexiconNames") or []:
                if name not in self._lexicons:
                    raise PollyError("LexiconNotFoundException", f"Lexicon not found: {name}")
        return voice, engine, text_type, billable, rate

    def _check_bucket(self, bucket: str) -> None:
        if self.s3 is None:
            raise PollyError(
                "InvalidS3BucketException", "The emulator has no S3 endpoint to write to"
            )
        try:
            head = self.s3.head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            what = "does not exist" if status == 404 else "is not accessible"
            raise PollyError(
                "InvalidS3BucketException", f"The specified bucket {bucket} {what}"
            ) from None
        headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = head.get("BucketRegion") or headers.get("x-amz-bucket-region")
        if region and region != self.options.region:
            raise PollyError(
                "InvalidS3BucketException",
                facts.OTHER_REGION_MESSAGE.format(
                    what="bucket", name=bucket, region=region, here=self.options.region
                ),
            )
        if self._denied(bucket):
            raise PollyError(
                "InvalidS3BucketException", f"Access denied: cannot write to the bucket {bucket}"
            )

    def _denied(self, bucket: str, key: str = "*", *, writing: bool = False) -> bool:
        """True when the bucket policy denies s3:PutObject to everyone (moto does not
        enforce policies, so the emulator reads them itself). A statement with a
        condition is weighed only when ``writing`` the output (Start cannot know the
        request): Polly's upload has no encryption header (the bucket's default
        encryption applies [D asynchronous.html]), so a ``Null`` condition on
        ``s3:x-amz-server-side-encryption`` denies it; other conditions are passed."""
        assert self.s3 is not None
        try:
            policy = json.loads(self.s3.get_bucket_policy(Bucket=bucket)["Policy"])
        except (botocore.exceptions.ClientError, ValueError, KeyError):
            return False
        stmts = policy.get("Statement", [])
        for st in stmts if isinstance(stmts, list) else [stmts]:
            if st.get("Effect") != "Deny":
                continue
            actions = st.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            if not any(fnmatch.fnmatchcase("s3:PutObject", a) for a in actions):
                continue
            principal = st.get("Principal")
            if principal not in ("*", {"AWS": "*"}):
                continue
            cond = st.get("Condition")
            if cond:
                nulls = {k.lower(): str(v).lower() for k, v in (cond.get("Null") or {}).items()}
                plain = nulls.get("s3:x-amz-server-side-encryption") == "true"
                if not (writing and plain and len(cond) == 1):
                    continue
            res = st.get("Resource", [])
            res = [res] if isinstance(res, str) else res
            if any(
                fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}/{key}", r)
                or fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}/x", r)
                for r in res
            ):
                return True
        return False

    def _check_topic(self, arn: str) -> None:
        if self.sns is None:
            raise PollyError("InvalidSnsTopicArnException", "The emulator has no SNS endpoint")
        region = arn.split(":")[3] if arn.count(":") >= 5 else ""
        if region and region != self.options.region:
            raise PollyError(
                "InvalidSnsTopicArnException",
                facts.OTHER_REGION_MESSAGE.format(
                    what="topic", name=arn, region=region, here=self.options.region
                ),
            )
        try:
            self.sns.get_topic_attributes(TopicArn=arn)
        except botocore.exceptions.ClientError:
            raise PollyError(
                "InvalidSnsTopicArnException",
                f"The SNS topic {arn} does not exist or is not accessible",
            ) from None

    # --- operations -------------------------------------------------------------------

    def start_speech_synthesis_task(self, p: Mapping[str, Any]) -> dict[str, Any]:
        self._purge()
        voice, engine, text_type, billable, rate = self._speech_request(
            p, (facts.TASK_MAX_BILLABLE, facts.TASK_MAX_TOTAL), facts.TASK_SAMPLE_RATES
        )
        bucket = p["OutputS3BucketName"]
        prefix = p.get("OutputS3KeyPrefix", "")
        task_id = str(uuid.uuid4())
        key = output_key(prefix, task_id, p["OutputFormat"])
        if len(key.encode()) > 1024:
            raise PollyError(
                "InvalidS3KeyException",
                "The provided Amazon S3 key prefix is "
                "invalid. Please provide a valid S3 object key name.",
            )
        self._check_bucket(bucket)
        if p.get("SnsTopicArn"):
            self._check_topic(p["SnsTopicArn"])
        endpoint = (self.options.s3_endpoint or "").rstrip("/")
        task = Task(
            TaskId=task_id,
            TaskStatus="scheduled",
            OutputUri=f"{endpoint}/{bucket}/{key}",
            CreationTime=self.options.clock(),
            RequestCharacters=billable,
            OutputFormat=p["OutputFormat"],
            TextType=text_type,
            VoiceId=voice.id,
            Engine=engine,
            SampleRate=p.get("SampleRate"),
            SnsTopicArn=p.get("SnsTopicArn"),
            LexiconNames=p.get("LexiconNames"),
            SpeechMarkTypes=p.get("SpeechMarkTypes"),
            LanguageCode=p.get("LanguageCode"),
            text=p["Text"],
            bucket=bucket,
            key=key,
            sample_rate=rate,
            notified=False if p.get("SnsTopicArn") else None,
        )
        with self._lock:
            open_tasks = sum(
                1
                for t in self._tasks.values()
                if t.Engine == engine and t.TaskStatus in ("scheduled", "inProgress")
            )
            limit = {**facts.CONCURRENCY, **self.options.concurrency_overrides}[engine]
            if open_tasks >= limit:
                # Counted with the quotas off too: a start that WOULD have been refused.
                self.counts[f"over_concurrency.{engine}"] += 1
                if self.options.quotas_enabled:
                    self.counts["throttled_concurrency"] += 1
                    raise PollyError("ThrottlingException", facts.THROTTLING_MESSAGE)
            self._tasks[task_id] = task
            self.counts["tasks_created"] += 1
            self.counts[f"peak_open_tasks.{engine}"] = max(
                self.counts[f"peak_open_tasks.{engine}"], open_tasks + 1
            )
            snapshot = task.api()
        with self._wake:
            heapq.heappush(
                self._heap, (time.monotonic() + self.options.queue_delay, next(self._seq), task_id)
            )
            self._wake.notify()
        if self.options.faults.slow_start_answer > 0:
            self._stop.wait(self.options.faults.slow_start_answer)
        return {"SynthesisTask": snapshot}

    def get_speech_synthesis_task(self, p: Mapping[str, Any]) -> dict[str, Any]:
        self._purge()
        with self._lock:
            task = self._tasks.get(p["TaskId"])
            if task is None:
                raise PollyError(
                    "SynthesisTaskNotFoundException", f"Synthesis task {p['TaskId']} not found"
                )
            return {"SynthesisTask": task.api()}

    def list_speech_synthesis_tasks(self, p: Mapping[str, Any]) -> dict[str, Any]:
        self._purge()
        limit = p.get("MaxResults", facts.LIST_DEFAULT_MAX_RESULTS)
        status = p.get("Status")
        after = None
        if p.get("NextToken"):
            doc = _untoken(p["NextToken"])
            if doc.get("k") != "tasks" or doc.get("s") != status or "a" not in doc:
                raise PollyError(
                    "InvalidNextTokenException",
                    "The NextToken is invalid. "
                    "Verify that it's spelled correctly, and then try again.",
                )
            after = tuple(doc["a"])
        newest = facts.LIST_NEWEST_FIRST
        with self._lock:
            rows = sorted(
                (t for t in self._tasks.values() if status is None or t.TaskStatus == status),
                key=lambda t: (t.CreationTime, t.TaskId),
                reverse=newest,
            )
            if after is not None:
                rows = [
                    t
                    for t in rows
                    if ((t.CreationTime, t.TaskId) < after) == newest
                    and (t.CreationTime, t.TaskId) != after
                ]
            page = rows[:limit]
            out: dict[str, Any] = {"SynthesisTasks": [t.api() for t in page]}
        if len(rows) > limit:
            last = page[-1]
            out["NextToken"] = _token(
                {"k": "tasks", "s": status, "a": [last.CreationTime, last.TaskId]}
            )
        return out

    def synthesize_speech(self, p: Mapping[str, Any]) -> tuple[bytes, str, int]:
        """(audio bytes, content type, billable characters)."""
        voice, _engine, text_type, billable, rate = self._speech_request(
            p, (facts.SYNC_MAX_BILLABLE, facts.SYNC_MAX_TOTAL), facts.SAMPLE_RATES
        )
        fmt = p["OutputFormat"]
        with tempfile.TemporaryDirectory(dir=self._workdir.name) as tmp:
            out = self._render(
                p["Text"],
                text_type,
                voice,
                p.get("LanguageCode"),
                fmt,
                rate,
                p.get("SpeechMarkTypes") or [],
                Path(tmp),
            )
            data = out.read_bytes()
        self.count("sync_requests")
        return data, facts.CONTENT_TYPES[fmt], billable

    def describe_voices(self, p: Mapping[str, Any]) -> dict[str, Any]:
        engine, lang = p.get("Engine"), p.get("LanguageCode")
        extra = p.get("IncludeAdditionalLanguageCodes", False)
        rows = [
            v
            for v in VOICES
            if (engine is None or engine in v.engines)
            and (lang is None or v.language == lang or (extra and lang in v.additional_languages))
        ]
        start = 0
        if p.get("NextToken"):
            doc = _untoken(p["NextToken"])
            if doc.get("k") != "voices" or not isinstance(doc.get("o"), int):
                raise PollyError(
                    "InvalidNextTokenException",
                    "The NextToken is invalid. "
                    "Verify that it's spelled correctly, and then try again.",
                )
            start = doc["o"]
        size = self.options.voices_page_size or len(rows) or 1
        page = rows[start : start + size]
        out: dict[str, Any] = {"Voices": [self._voice(v, extra) for v in page]}
        if start + size < len(rows):
            out["NextToken"] = _token({"k": "voices", "o": start + size})
        return out

    @staticmethod
    def _voice(v: VoiceInfo, extra: bool) -> dict[str, Any]:
        d: dict[str, Any] = {
            "Gender": v.gender,
            "Id": v.id,
            "LanguageCode": v.language,
            "LanguageName": v.language_name,
            "Name": v.name,
            "SupportedEngines": list(v.engines),
        }
        if extra and v.additional_languages:
            d["AdditionalLanguageCodes"] = list(v.additional_languages)
        return d

    # --- lexicons ---------------------------------------------------------------------

    def put_lexicon(self, p: Mapping[str, Any]) -> dict[str, Any]:
        name, content = p["Name"], p["Content"]
        if not re.fullmatch(r"[0-9A-Za-z]{1,20}", name):
            raise PollyError(
                "ValidationException",
                "1 validation error detected: Value "
                f"'{name}' at 'name' failed to satisfy constraint: Member must "
                "satisfy regular expression pattern: [0-9A-Za-z]{1,20}",
                reason="fieldValidationFailed",
            )
        if len(content) > facts.LEXICON_MAX_SIZE:
            raise PollyError(
                "LexiconSizeExceededException",
                "The maximum size of the lexicon would be exceeded by this operation",
            )
        try:
            root = ET.fromstring(content)
        except ET.ParseError as e:
            raise PollyError("InvalidLexiconException", f"Lexicon is not valid PLS: {e}") from None
        ns = "{" + facts.PLS_NAMESPACE + "}"
        if root.tag != ns + "lexicon":
            raise PollyError("InvalidLexiconException", "The root element must be a PLS lexicon")
        alphabet = root.get("alphabet", "")
        if alphabet not in facts.LEXICON_ALPHABETS:
            raise PollyError(
                "UnsupportedPlsAlphabetException", f"The alphabet {alphabet!r} is not supported"
            )
        lang = root.get("{http://www.w3.org/XML/1998/namespace}lang", "")
        langs = {v.language for v in VOICES} | {"en-US", "en-GB"}
        if lang not in langs:
            raise PollyError(
                "UnsupportedPlsLanguageException", f"The language {lang!r} is not supported"
            )
        lexemes = root.findall(ns + "lexeme")
        for lx in lexemes:
            for g in lx.findall(ns + "grapheme") + lx.findall(ns + "alias"):
                if len(g.text or "") > facts.LEXEME_MAX_LENGTH:
                    raise PollyError(
                        "MaxLexemeLengthExceededException",
                        "The maximum size of the lexeme would be exceeded",
                    )
        with self._lock:
            if name not in self._lexicons and len(self._lexicons) >= facts.LEXICON_MAX_COUNT:
                raise PollyError(
                    "MaxLexiconsNumberExceededException",
                    "The maximum number of lexicons would be exceeded",
                )
            self._lexicons[name] = Lexicon(
                name, content, alphabet, lang, len(lexemes), self.options.clock()
            )
            self.lexicon_uploads.append(name)
        return {}

    def _lexicon_attrs(self, lx: Lexicon) -> dict[str, Any]:
        return {
            "Alphabet": lx.alphabet,
            "LanguageCode": lx.language,
            "LastModified": lx.modified,
            "LexemesCount": lx.lexemes,
            "LexiconArn": f"arn:aws:polly:{self.options.region}:{self.options.account_id}"
            f":lexicon/{lx.name}",
            "Size": len(lx.content.encode()),
        }

    def _lexicon(self, name: str) -> Lexicon:
        lx = self._lexicons.get(name)
        if lx is None:
            raise PollyError(
                "LexiconNotFoundException", f"Lexicon not found: {name}"
            )  # wording UNVERIFIED
        return lx

    def get_lexicon(self, p: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            lx = self._lexicon(p["Name"])
            return {
                "Lexicon": {"Content": lx.content, "Name": lx.name},
                "LexiconAttributes": self._lexicon_attrs(lx),
            }

    def list_lexicons(self, p: Mapping[str, Any]) -> dict[str, Any]:
        if p.get("NextToken"):
            _untoken(p["NextToken"])
        with self._lock:
            return {
                "Lexicons": [
                    {"Name": lx.name, "Attributes": self._lexicon_attrs(lx)}
                    for lx in sorted(self._lexicons.values(), key=lambda lx: lx.name)
                ]
            }

    def delete_lexicon(self, p: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._lexicon(p["Name"])
            del self._lexicons[p["Name"]]
        return {}

    # --- task execution -----------------------------------------------------------------

    def _schedule_loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (
                    not self._heap or self._heap[0][0] > time.monotonic()
                ):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                _, _, task_id = heapq.heappop(self._heap)
            try:
                self._pool.submit(self._run, task_id)
            except RuntimeError:  # pool shut down
                return

    def _update(self, task: Task, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(task, k, v)

    def _run(self, task_id: str) -> None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.TaskStatus != "scheduled":
                return
            task.TaskStatus = "inProgress"
            task.started = time.monotonic()
        reason = self.faults.task_failure()
        try:
            if reason is not None:
                self._update(task, injected_failure=reason)
                self._stop.wait(min(0.05, self.options.queue_delay))
                raise _TaskFailure(reason)
            with tempfile.TemporaryDirectory(dir=self._workdir.name) as tmp:
                voice = BY_ID[task.VoiceId]
                out = self._render(
                    task.text,
                    task.TextType,
                    voice,
                    task.LanguageCode,
                    task.OutputFormat,
                    task.sample_rate,
                    task.SpeechMarkTypes or [],
                    Path(tmp),
                )
                due = task.started + task.RequestCharacters / self.options.chars_per_second
                if (wait := due - time.monotonic()) > 0:
                    self._stop.wait(wait)
                if self.options.faults.slow_s3 > 0:
                    self._stop.wait(self.options.faults.slow_s3)
                if self._stop.is_set():
                    raise _TaskFailure("Service shutting down")
                self._write(task, out)
            self._update(task, TaskStatus="completed", finished=time.monotonic())
            self.count("tasks_completed")
        except _TaskFailure as e:
            self._update(
                task, TaskStatus="failed", TaskStatusReason=str(e), finished=time.monotonic()
            )
            self.count("tasks_failed")
        except Exception as e:  # noqa: BLE001 - any error ends the task "failed", as Polly's
            log.warning("task %s failed: %s", task_id, e)
            self._update(
                task,
                TaskStatus="failed",
                finished=time.monotonic(),
                TaskStatusReason=f"Error occurred while synthesizing or writing the output: {e}",
            )
            self.count("tasks_failed")
        self._notify(task)

    def _render(
        self,
        text: str,
        text_type: str,
        voice: VoiceInfo,
        language: str | None,
        fmt: str,
        rate: int,
        marks: list[str],
        tmp: Path,
    ) -> Path:
        """Synthesize with espeak-ng into ``tmp`` and encode; returns the output file."""
        from ..engines import espeak

        ev = espeak_voice(voice, language)
        if not espeak.has_voice(ev):
            ev = "en+f3" if voice.gender == "Female" else "en"
        raw = tmp / "audio.pcm"
        src_rate = espeak.sample_rate()
        if self.options.audio == "silence":
            seconds = ssmlmod.billable_chars(text, text_type) / SILENCE_CHARS_PER_SECOND
            nbytes = 2 * max(1, int(seconds * src_rate))
            with open(raw, "wb") as f:
                f.truncate(0 if fmt == "json" else nbytes)
        else:
            if self._stop.is_set():
                raise _TaskFailure("Service shutting down")
            # In a forked child from a warm library: the same text gives the same audio
            # whatever the emulator synthesized before, and tasks use every core.
            samples = espeak.synthesize_isolated(
                list(ssmlmod.espeak_batches(text, text_type)),
                ev,
                os.devnull if fmt == "json" else raw,
                rate_wpm=self.options.espeak_rate_wpm,
                wav=False,
            )
            nbytes = 2 * samples
        if nbytes == 0 and fmt != "json":
            with open(raw, "wb") as f:
                nbytes = f.write(b"\0\0" * (src_rate // 10))
        out = tmp / ("output" + facts.EXTENSIONS[fmt])
        if fmt == "json":
            duration_ms = int(nbytes / 2 / src_rate * 1000)
            out.write_bytes(ssmlmod.speech_marks(text, text_type, marks, duration_ms))
            return out
        ffmpeg.run(
            [
                "-f",
                "s16le",
                "-ar",
                str(src_rate),
                "-ac",
                "1",
                "-i",
                ffmpeg.path_arg(raw),
                "-map_metadata",
                "-1",
                "-ar",
                str(rate),
                "-ac",
                "1",
                *_CODECS[fmt],
                ffmpeg.path_arg(out),
            ]
        )
        os.unlink(raw)
        return out

    def _encryption(self, bucket: str) -> dict[str, str]:
        assert self.s3 is not None
        try:
            conf = self.s3.get_bucket_encryption(Bucket=bucket)
        except botocore.exceptions.ClientError:
            return {}
        rules = conf.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        for rule in rules:
            default = rule.get("ApplyServerSideEncryptionByDefault") or {}
            algo = default.get("SSEAlgorithm")
            if algo:
                args = {"ServerSideEncryption": algo}
                if default.get("KMSMasterKeyID"):
                    args["SSEKMSKeyId"] = default["KMSMasterKeyID"]
                return args
        return {}

    def _write(self, task: Task, path: Path) -> None:
        if self.s3 is None:
            raise _TaskFailure("No S3 endpoint configured")
        if self._denied(task.bucket, task.key, writing=True):
            raise _TaskFailure("Access denied writing the output to Amazon S3")
        extra = {
            "ContentType": facts.CONTENT_TYPES[task.OutputFormat],
            **self._encryption(task.bucket),
        }
        try:
            self.s3.upload_file(str(path), task.bucket, task.key, ExtraArgs=extra)
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            boto3.exceptions.S3UploadFailedError,
        ) as e:
            raise _TaskFailure(
                f"Error occurred while writing the output to Amazon S3: {e}"
            ) from None
        self.count("s3_objects_written")

    def _notify(self, task: Task) -> None:
        if not task.SnsTopicArn or self.sns is None or self._stop.is_set():
            return
        if self.faults.lose_notification():
            return
        msg: dict[str, Any] = {
            "taskId": task.TaskId,
            "taskStatus": task.TaskStatus.upper(),
            "outputUri": f"s3://{task.bucket}/{task.key}",
            "creationTime": _iso(task.CreationTime),
            "requestCharacters": task.RequestCharacters,
            "snsTopicArn": task.SnsTopicArn,
            "outputFormat": facts.SNS_OUTPUT_FORMATS[task.OutputFormat],
            "textType": facts.SNS_TEXT_TYPES[task.TextType],
            "voiceId": task.VoiceId,
        }
        if task.TaskStatusReason and facts.NOTIFICATION_CARRIES_REASON:
            msg["taskStatusReason"] = task.TaskStatusReason
        try:
            self.sns.publish(TopicArn=task.SnsTopicArn, Message=json.dumps(msg))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            log.warning("task %s: SNS publish failed: %s", task.TaskId, e)
            self.count("notifications_failed")
            return
        self._update(task, notified=True)
        self.count("notifications_sent")


class _TaskFailure(Exception):
    """A task ends ``failed`` with this reason."""
