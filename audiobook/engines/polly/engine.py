"""``PollyEngine``: Amazon Polly behind the engine seam (see the package docstring)."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
import wave
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from ...config import POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS, EngineLimits
from ...errors import (
    RETRYABLE,
    AudiobookError,
    ConfigError,
    EngineError,
    TransientEngineError,
    UnsupportedSsml,
    one_line,
)
from ...files import atomic_path, copy_atomic, temp_dir_prefix
from ...model import Book, Chunk
from ..base import AudioFormat, Capabilities, Engine, TaskRef, TaskState
from ..options import RATE_RANGE, PollyOptions, prosody_rate
from .aws import (
    _call,
    _error_code,
    list_tasks,
    list_voices,
    map_client_error,
    parse_s3_uri,
    polly_client_config,
    task_state,
)
from .checks import (
    EXTENSIONS,
    MODES,
    check_options,
    default_sample_rate,
    denies_plain_put,
    pick_mode,
    same_kms_key,
    ssml_problem,
)
from .notify import NotificationListener
from .voices import polly_voice_for

log = logging.getLogger(__name__)

# What GetSpeechSynthesisTask answers for a task it no longer keeps (after 72 hours).
_GONE_CODES = ("SynthesisTaskNotFoundException", "InvalidTaskIdException")

# recover() accepts tasks created up to this long before ``since``: the skew between
# our clock (the recorded intent) and the service's (the task's CreationTime).
RECOVER_SKEW_S = 300.0


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.voice = options.voice or polly_voice_for(options.language, options.polly_engine)
        mode = options.mode
        if mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.polly_engine = options.polly_engine
        self.bucket = options.bucket or ""
        self.prefix = options.prefix or ""
        self.requested_mode = mode
        self.mode: Literal["sync", "async"] = "sync" if mode == "sync" else "async"
        self.sns_topic = options.sns_topic or None
        self.kms_key = options.kms_key or None
        self.region = options.region
        self.lexicons = tuple(options.lexicons)
        # The book's own lexicons (``pronounce``): (name, content) under a name derived
        # from the content and the voice, uploaded by ``preflight``.
        self.book_lexicons: tuple[tuple[str, str, str], ...] = ()  # (name, content, source)
        self._applied: tuple[str, ...] = ()  # book lexicon names whose language fits the voice
        self.other_voices: tuple[str, ...] = ()  # voices pieces ask for (use_voices)
        self._languages: dict[str, str] = {}  # voice -> language code (preflight)
        self.output_format = options.output_format
        self.sample_rate = str(options.sample_rate) if options.sample_rate else None
        self.marks = tuple(options.marks)
        self.notification_grace = options.notification_grace
        self.rate = options.rate
        if self.rate is not None and not RATE_RANGE[0] <= self.rate <= RATE_RANGE[1]:
            raise ConfigError(
                f"--rate {self.rate:g} is out of range {RATE_RANGE[0]:g}-{RATE_RANGE[1]:g}"
            )
        self._session: Any = None
        self._polly, self._s3, self._sqs, self._sns = polly, s3, sqs, sns
        self._lock = threading.RLock()
        self._half_started: dict[str, dict[str, Any]] = {}
        self._uncertain: dict[tuple[str, bool], float] = {}
        self._status_gate: Callable[[], object] | None = None
        self._start_gate: Callable[[], object] | None = None
        self._lexicon_ids: str | None = None if self.lexicons else ""
        self._language_code: str | None = None  # "" once known to be none
        self._voice_list: list[dict[str, Any]] | None = None
        self._workdir: Path | None = None
        self.notifications: NotificationListener | None = None
        if self.sns_topic:
            self.notifications = NotificationListener(
                self.sns_topic,
                sqs=lambda: self.sqs,
                sns=lambda: self.sns,
                grace=self.notification_grace,
                clock=clock,
            )
        ext = EXTENSIONS.get(self.output_format, self.output_format)
        rate = int(self.sample_rate or default_sample_rate(self.output_format, self.polly_engine))
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
            marks_alone=bool(self.marks),
            price_kind=self.polly_engine,
        )

    def limit_start_calls(self, acquire: Callable[[], object]) -> bool:
        """Every StartSpeechSynthesisTask and SynthesizeSpeech call takes a token: with
        speech marks on, a submit makes two of them."""
        self._start_gate = acquire
        return True

    def limit_status_calls(self, acquire: Callable[[], object]) -> bool:
        """Every Get and List call (they share one quota) goes through ``acquire``."""
        self._status_gate = acquire
        return True

    def _gate(self) -> None:
        if self._status_gate is not None:
            self._status_gate()

    @property
    def limits(self) -> EngineLimits:  # type: ignore[override]
        limits = POLLY_SYNC_LIMITS if self.mode == "sync" else POLLY_TASK_LIMITS
        extra = len(self.text("<speak></speak>")) - len("<speak></speak>")  # the rate's tag
        return EngineLimits(limits.max_billable, limits.max_total - extra) if extra else limits

    def plan(self, billable_chars: int, total_chars: int) -> None:
        """Settle ``mode="auto"`` for a job of this size (see ``pick_mode``); call it
        before chunking, since ``limits`` follow the mode."""
        self.mode = pick_mode(self.requested_mode, billable_chars, total_chars)

    def identity(self) -> str:
        """Voice, engine kind, format, rate, and each lexicon by name and content (its
        SHA-256, from GetLexicon): an edited lexicon makes new keys, so what it is
        applied to is synthesized again."""
        rate = self.sample_rate or default_sample_rate(self.output_format, self.polly_engine)
        speed = f":rate={prosody_rate(self.rate)}" if self.rate not in (None, 1.0) else ""
        lang = self.language_code() if self.options.language else None
        book = ",".join(n for n, _c, _s in self.book_lexicons)
        return (
            f"polly:{self.polly_engine}:{self.voice}:{self.output_format}:{rate}:"
            f"{self._lexicon_identity()}"
            + (f":book-lexicons={book}" if book else "")
            + (f":lang={lang}" if lang else "")
            + speed
        )

    def language_code(self) -> str | None:
        """The LanguageCode to send: for a bilingual voice (Aditi, Kajal: en-IN and
        hi-IN), the one of its languages the book is in; None otherwise (Polly speaks
        the voice's own language). Asked of DescribeVoices once."""
        with self._lock:
            if self._language_code is None:
                self._language_code = self._pick_language()
            return self._language_code or None

    def _pick_language(self) -> str:
        book = (self.options.language or "").replace("_", "-").lower()
        if not book:
            return ""
        v = next((v for v in self._voices() if v.get("Id") == self.voice), None)
        extra = list((v or {}).get("AdditionalLanguageCodes") or [])
        if v is None or not extra:
            return ""
        codes = [str(v.get("LanguageCode") or ""), *map(str, extra)]
        for code in codes:
            if code.lower() == book:
                return code
        for code in codes:
            if code.split("-")[0].lower() == book.split("-")[0]:
                return code
        return ""

    def _voices(self) -> list[dict[str, Any]]:
        with self._lock:
            if self._voice_list is None:
                self._voice_list = list_voices(self.polly, additional=True)
            return self._voice_list

    def _lexicon_identity(self) -> str:
        """``name=<sha256 of its content>`` per lexicon, asked of Polly once."""
        with self._lock:
            if self._lexicon_ids is None:
                parts = []
                for name in self.lexicons:
                    try:
                        resp = _call(f"Polly GetLexicon {name}", self.polly.get_lexicon, Name=name)
                    except AudiobookError as e:
                        if _error_code(e) == "LexiconNotFoundException":
                            raise ConfigError(
                                f"--lexicon {name!r}: no such lexicon in Polly"
                            ) from e
                        raise
                    content = str(resp.get("Lexicon", {}).get("Content") or "")
                    parts.append(f"{name}={hashlib.sha256(content.encode()).hexdigest()}")
                self._lexicon_ids = ",".join(parts)
            return self._lexicon_ids

    def pronounce(self, book: Book) -> list[str]:
        """The book's PLS lexicons go to Polly (PutLexicon in ``preflight``) under a name
        derived from their content and the voice, at most five lexicons a task with
        ``--lexicon``'s; ``ssml:ph`` arrives as ``<phoneme>``, which Polly reads."""
        notes: list[str] = []
        room = MAX_LEXICONS - len(self.lexicons)
        chosen: list[tuple[str, str, str]] = []
        for lx in book.lexicons:
            if len(chosen) >= room:
                notes.append(
                    f"pronunciation lexicon {lx.source} is left out: Polly takes at most "
                    f"{MAX_LEXICONS} lexicons a task"
                )
                continue
            chosen.append((book_lexicon_name(lx.content, self.voice), lx.content, lx.source))
        self.book_lexicons = tuple(chosen)
        self._applied = tuple(n for n, _c, _s in chosen)
        return notes

    def text(self, ssml: str) -> str:
        """The SSML sent for a chunk: with a speaking rate, its content wrapped in
        ``<prosody rate="N%">`` (Polly's speech marks then count from that text)."""
        if self.rate in (None, 1.0):
            return ssml
        return with_rate(ssml, prosody_rate(self.rate or 1.0))

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

    # The notification queue, as the tests look at it.
    @property
    def _queue_url(self) -> str | None:
        return self.notifications.queue_url if self.notifications else None

    @property
    def _subscription_arn(self) -> str | None:
        return self.notifications.subscription_arn if self.notifications else None

    def _drain_queue(self) -> None:
        if self.notifications:
            self.notifications.drain()

    # -- pre-flight -----------------------------------------------------------------

    def check_options(self) -> None:
        """Local checks of the options (no AWS call)."""
        check_options(
            bucket=self.bucket,
            prefix=self.prefix,
            polly_engine=self.polly_engine,
            voice=self.voice,
            output_format=self.output_format,
            sample_rate=self.sample_rate,
            lexicons=self.lexicons,
            marks=self.marks,
            mode=self.mode,
        )

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
        language = self._check_voice()
        for voice in self.other_voices:
            self._languages[voice] = self._check_voice(voice)
        self._languages[self.voice] = language
        self._upload_lexicons(language)
        self._lexicon_identity()  # each lexicon exists (and its content is known)
        if self.sns_topic:
            try:
                _call(
                    "SNS GetTopicAttributes", self.sns.get_topic_attributes, TopicArn=self.sns_topic
                )
            except AudiobookError as e:
                if _error_code(e) in ("NotFound", "NotFoundException", "InvalidParameter"):
                    raise ConfigError(f"--sns-topic {self.sns_topic}: no such SNS topic") from e
                raise

    def _check_bucket(self) -> None:
        b = self.bucket
        try:
            head = _call(f"S3 HeadBucket {b}", self.s3.head_bucket, Bucket=b)
        except AudiobookError as e:
            code = _error_code(e)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ConfigError(f"--bucket {b!r}: no such S3 bucket") from e
            if code in ("403", "AccessDenied"):
                raise ConfigError(f"--bucket {b!r}: access denied to this S3 bucket") from e
            raise
        headers = (head.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        self._check_regions(
            str(head.get("BucketRegion") or headers.get("x-amz-bucket-region") or "")
        )
        if self.kms_key:
            self._check_kms()
        # The probe is written the way Polly writes its output: no encryption headers of
        # its own (the bucket's default encryption applies), so that a policy denying
        # such uploads refuses the probe, not the paid tasks.
        probe = f"{self.prefix}.audiobook-probe-{uuid.uuid4().hex}"
        put: dict[str, Any] = {"Bucket": b, "Key": probe, "Body": b"probe"}
        try:
            _call(f"S3 PutObject {b}", self.s3.put_object, **put)
        except AudiobookError as e:
            if isinstance(e, ConfigError) or _error_code(e) in ("403", "AccessDenied"):
                raise ConfigError(
                    f"--bucket {b!r}: not writable ({one_line(e).split(': ', 1)[-1]})"
                    + self._policy_note(probe)
                ) from e
            raise
        try:
            _call(f"S3 DeleteObject {b}", self.s3.delete_object, Bucket=b, Key=probe)
        except AudiobookError as e:  # writable but not deletable: say so, go on
            log.warning("could not delete the probe object s3://%s/%s: %s", b, probe, e)

    def _check_regions(self, bucket_region: str) -> None:
        """Polly writes only to a bucket, and notifies only a topic, in its own region
        (longer-cli.html): the bucket's region (HeadBucket's x-amz-bucket-region) and
        the topic ARN's against the Polly client's, saying which to change."""
        here = str(self.polly.meta.region_name or "")
        topic_region = ""
        if self.sns_topic:
            parts = self.sns_topic.split(":")
            topic_region = parts[3] if len(parts) > 5 else ""
        away = []  # (option, what to use instead, its region)
        if bucket_region and bucket_region != here:
            away.append((f"--bucket {self.bucket!r}", "a bucket", bucket_region))
        if topic_region and topic_region != here:
            away.append((f"--sns-topic {self.sns_topic}", "an SNS topic", topic_region))
        if not here or not away:
            return
        what = " and ".join(f"{name} is in {region}" for name, _, region in away)
        instead = " and ".join(f"{kind} in {here}" for _, kind, _ in away)
        regions = {r for r in (bucket_region, topic_region) if r}
        # Everything named lives in one other region: Polly can go there instead.
        move = f"--region {regions.pop()}, or " if len(regions) == 1 else ""
        raise ConfigError(
            f"{what}, but Polly runs in {here} and uses only a bucket and topic of its own "
            f"region: use {move}{instead}"
        )

    def _policy_note(self, key: str) -> str:
        """Why a write as Polly makes it was refused, when the bucket policy says so: a
        statement denying uploads without an encryption header ("" otherwise)."""
        try:
            resp = _call(
                f"S3 GetBucketPolicy {self.bucket}", self.s3.get_bucket_policy, Bucket=self.bucket
            )
        except AudiobookError:
            return ""
        sid = denies_plain_put(str(resp.get("Policy") or ""), self.bucket, key)
        if sid is None:
            return ""
        return (
            f": its policy{f' ({sid})' if sid else ''} denies uploads without an encryption "
            "header, and Polly sends none (it writes with the bucket's default encryption)"
        )

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
            if d.get("SSEAlgorithm", "").startswith("aws:kms") and same_kms_key(have, want):
                return
        raise ConfigError(
            f"--kms-key {want}: Polly writes with bucket {b!r}'s default encryption, which "
            f"is not SSE-KMS with this key (set it: aws s3api put-bucket-encryption)"
        )

    def _upload_lexicons(self, voice_language: str) -> None:
        """Each book lexicon whose language is the voice's, in Polly under its name:
        uploaded once (a name already there holds the same content), then waited for
        until GetLexicon sees it (PutLexicon is eventually consistent)."""
        applied = []
        for name, content, source in self.book_lexicons:
            fitted = fit_language(content, voice_language)
            if fitted is None:
                log.warning(
                    "pronunciation lexicon %s is not for the voice %s (%s); left out",
                    source,
                    self.voice,
                    voice_language,
                )
                continue
            if not self._lexicon_exists(name):
                _call(f"Polly PutLexicon {name}", self.polly.put_lexicon, Name=name, Content=fitted)
                self._wait_for_lexicon(name)
            applied.append(name)
        self._applied = tuple(applied)

    def _lexicon_exists(self, name: str) -> bool:
        try:
            _call(f"Polly GetLexicon {name}", self.polly.get_lexicon, Name=name)
        except AudiobookError as e:
            if _error_code(e) == "LexiconNotFoundException":
                return False
            raise
        return True

    def _wait_for_lexicon(self, name: str) -> None:
        delay, waited = 0.1, 0.0
        while not self._lexicon_exists(name):
            if waited >= LEXICON_WAIT_S:
                raise TransientEngineError(
                    f"Polly lexicon {name} not visible {LEXICON_WAIT_S:.0f} s after PutLexicon"
                )
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 2.0)

    def use_voices(self, voices: Sequence[str]) -> None:
        """Voices pieces ask for besides ``voice``: checked by ``preflight``."""
        self.other_voices = tuple(v for v in voices if v != self.voice)

    def _check_voice(self, voice: str | None = None) -> str:
        """Check the voice exists and takes the engine; its language code."""
        voice = voice or self.voice
        voices = self._voices()
        by_id = {v.get("Id"): v for v in voices}
        v = by_id.get(voice)
        if v is None:
            lower = {str(k).lower(): k for k in by_id}
            hint = (
                f" (did you mean {lower[voice.lower()]}?)"
                if voice.lower() in lower
                else " (see `audiobook voices`)"
            )
            raise ConfigError(f"--voice {voice!r}: Polly has no such voice{hint}")
        engines = v.get("SupportedEngines") or []
        if engines and self.polly_engine not in engines:
            raise ConfigError(
                f"--voice {voice!r} does not support the {self.polly_engine} engine "
                f"(it supports: {', '.join(engines)})"
            )
        return str(v.get("LanguageCode") or "")

    def validate_ssml(self, ssml: str) -> None:
        """Reject, locally, SSML the chosen engine (and voice) would refuse
        (UnsupportedSsml naming the tag and the engine), so that a bad template fails
        before any task is started."""
        problem = ssml_problem(ssml, self.polly_engine, self.voice)
        if problem:
            bad, needle = problem
            raise UnsupportedSsml(
                f"SSML tag {bad} is not supported by the Polly {self.polly_engine} engine"
                + (f" with the voice {self.voice}" if "news" in bad else ""),
                needle=needle,
            )

    # -- submit ---------------------------------------------------------------------

    def _task_params(self, chunk: Chunk, key: str, marks: bool) -> dict[str, Any]:
        p: dict[str, Any] = {
            "Engine": self.polly_engine,
            "VoiceId": chunk.voice or self.voice,
            "Text": self.text(chunk.ssml),
            "TextType": "ssml",
            "OutputFormat": "json" if marks else self.output_format,
        }
        if marks:
            p["SpeechMarkTypes"] = list(self.marks)
        elif self.sample_rate:
            p["SampleRate"] = self.sample_rate
        # the book's lexicons are in the book voice's language: for a voice of another
        # language they are left out
        own = self._languages.get(chunk.voice or self.voice, "")
        same = not chunk.voice or own == self._languages.get(self.voice, "")
        names = self.lexicons + (self._applied if same else ())
        if names:
            p["LexiconNames"] = list(names)
        lang = self.language_code() if self.options.language and same else None
        if lang:
            p["LanguageCode"] = lang
        return p

    def submit(self, chunk: Chunk, key: str) -> TaskRef:
        self.validate_ssml(self.text(chunk.ssml))
        if self.mode == "sync":
            return self._submit_sync(chunk, key)
        since = time.time()
        with self._lock:
            # An audio task started by an earlier call whose speech-mark start failed.
            task = self._half_started.pop(key, None)
        if task is None:
            task = self._start(chunk, key, marks=False, since=since)
        extra = {"mode": "async", "key": key, "voice": chunk.voice or self.voice}
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

    def submit_marks(self, chunk: Chunk, key: str) -> TaskRef:
        """Only the speech-mark task (the audio is cached): billed for the marks alone."""
        self.validate_ssml(chunk.ssml)
        if self.mode == "sync":
            mpath = self._workdir_path() / f"sync-{uuid.uuid4().hex}.marks"
            chars = self._synthesize(chunk, key, marks=True, dest=mpath)
            task_id = f"{mpath.stem}-marks"
            extra = {"mode": "sync", "key": key, "path": str(mpath), "marks_only": "1"}
            extra |= {"marks_task_id": task_id, "marks_path": str(mpath)}
            return TaskRef(task_id=task_id, engine=self.name, billed_chars=chars, extra=extra)
        mtask = self._start(chunk, key, marks=True, since=time.time())
        extra = {"mode": "async", "key": key, "marks_only": "1"}
        extra["marks_task_id"] = mtask["TaskId"]
        if mtask.get("OutputUri"):
            extra["marks_bucket"], extra["marks_s3_key"] = parse_s3_uri(
                mtask["OutputUri"], self.bucket
            )
        self._track(mtask["TaskId"])
        return TaskRef(
            task_id=mtask["TaskId"],
            engine=self.name,
            billed_chars=int(mtask.get("RequestCharacters") or 0),
            extra=extra,
        )

    def _start(self, chunk: Chunk, key: str, *, marks: bool, since: float) -> dict[str, Any]:
        params = self._task_params(chunk, key, marks)
        params["OutputS3BucketName"] = self.bucket
        params["OutputS3KeyPrefix"] = f"{self.prefix}{key}/"
        if self.notifications is not None:
            self.notifications.ensure()
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
        if self._start_gate is not None:
            self._start_gate()
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
        task: dict[str, Any] = resp["SynthesisTask"]
        return task

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
        if self._start_gate is not None:
            self._start_gate()
        resp = _call("Polly SynthesizeSpeech", self.polly.synthesize_speech, **params)
        wav_rate = (
            self.audio_format.sample_rate if not marks and self.output_format == "pcm" else None
        )
        _write_stream(
            resp["AudioStream"],
            dest,
            chunk_size=64 * 1024,
            wav_rate=wav_rate,
            what="Polly SynthesizeSpeech (reading audio)",
        )
        return int(resp.get("RequestCharacters") or 0)

    def _workdir_path(self) -> Path:
        with self._lock:
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix=temp_dir_prefix("polly")))
            return self._workdir

    # -- recover --------------------------------------------------------------------

    def _find_task(self, key: str, since: float, *, want_marks: bool) -> dict[str, Any] | None:
        """The best task whose OutputUri holds ``/<prefix><key>/``, created at or after
        ``since`` (minus clock skew), not failed: completed first, then newest."""
        needle = f"/{self.prefix}{key}/"
        cutoff = since - RECOVER_SKEW_S
        best: dict[str, Any] | None = None
        best_rank: tuple[bool, float] | None = None
        newest_first, last_ts = True, float("inf")
        for task in list_tasks(self.polly, gate=self._status_gate):
            created: Any = task.get("CreationTime")
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
            if best_rank is None or rank > best_rank:
                best, best_rank = dict(task), rank
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
        if self.notifications is not None:
            self.notifications.track(task_id)

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
        audio = self._or_gone(ref, ref.task_id, status, marks=False)
        marks_id = ref.extra.get("marks_task_id") if self.marks else None
        if audio.status != "completed" or not marks_id:
            return audio
        marks = self._or_gone(ref, marks_id, status, marks=True)
        if marks.status == "failed":
            return TaskState(
                "failed", reason=f"speech marks: {marks.reason}", transient=marks.transient
            )
        if marks.status != "completed":
            return TaskState(marks.status)
        return audio

    def _or_gone(
        self, ref: TaskRef, task_id: str, status: Callable[[str], TaskState], *, marks: bool
    ) -> TaskState:
        """``status(task_id)``; for a task Polly no longer knows (it keeps a task record
        72 hours, the S3 object outlives it), where its output stands: completed when
        the object is at the key recorded for it, else failed (transient: the caller
        starts a new task)."""
        try:
            return status(task_id)
        except AudiobookError as e:
            if _error_code(e) not in _GONE_CODES:
                raise
        bucket = ref.extra.get("marks_bucket" if marks else "bucket")
        key = ref.extra.get("marks_s3_key" if marks else "s3_key")
        if bucket and key and self._object_exists(bucket, key):
            log.info("Polly task %s is gone; its output is at s3://%s/%s", task_id, bucket, key)
            return TaskState("completed")
        where = f"s3://{bucket}/{key}" if bucket and key else "no recorded S3 key"
        return TaskState(
            "failed",
            reason=f"task {task_id} is gone (Polly keeps tasks 72 hours) and so is its "
            f"output ({where})",
            transient=True,
        )

    def _object_exists(self, bucket: str, key: str) -> bool:
        try:
            _call(f"S3 HeadObject s3://{bucket}/{key}", self.s3.head_object, Bucket=bucket, Key=key)
        except AudiobookError as e:
            if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def poll_many(self, refs: Sequence[TaskRef]) -> list[TaskState]:
        """Where many tasks stand, in one status call where possible.

        Without SNS, one ListSpeechSynthesisTasks page (the newest 100 tasks) answers for
        every task on it, so ten tasks finishing together are all seen within one call
        of the shared Get/List quota instead of ten. A task not on that page (more than
        100 newer tasks in the account) is asked about with GetSpeechSynthesisTask. With
        SNS, notifications answer and this is ``poll`` per task.

        A retryable error of one task's call (throttled, 5xx) stops the round: the tasks
        not yet answered stay ``inProgress`` and are asked next round; the error is
        raised only when no task was answered, so one throttled Get among many does not
        count against all of them."""
        if self.sns_topic or not refs:
            return _answered([partial(self.poll, r) for r in refs])
        self._gate()
        page = _call(
            "Polly ListSpeechSynthesisTasks", self.polly.list_speech_synthesis_tasks, MaxResults=100
        )
        seen = {t["TaskId"]: t for t in page.get("SynthesisTasks", [])}

        def state(task_id: str) -> TaskState:
            task = seen.get(task_id)
            if task is None:
                return self._status(task_id)
            return task_state(
                task.get("TaskStatus", "scheduled"),
                task.get("TaskStatusReason") or "",
                task.get("OutputUri") or "",
            )

        return _answered(
            [
                partial(self.poll, r) if _is_sync(r) else partial(self._task_state, r, state)
                for r in refs
            ],
            listed=True,
        )

    def _status(self, task_id: str) -> TaskState:
        """One task's state: from its notification when there is one (or while it is
        within its grace time), else from GetSpeechSynthesisTask."""
        if self.notifications is not None:
            known = self.notifications.known(task_id)
            if known is not None:
                return known
        self._gate()
        resp = _call(
            "Polly GetSpeechSynthesisTask", self.polly.get_speech_synthesis_task, TaskId=task_id
        )
        task = resp["SynthesisTask"]
        status = task.get("TaskStatus", "scheduled")
        if self.notifications is not None:
            self.notifications.heard(task_id, status)
        return task_state(status, task.get("TaskStatusReason") or "", task.get("OutputUri") or "")

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
            self._gate()
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
            _copy_sync_output(Path(ref.extra.get("path", "")), dest)
            return
        bucket, key = self._location(ref, marks=False)
        wav_rate = self.audio_format.sample_rate if self.output_format == "pcm" else None
        self._download(bucket, key, dest, wav_rate=wav_rate)

    def release(self, ref: TaskRef) -> None:
        """Delete the task's outputs (audio, marks) from the bucket now that they are in
        the cache, unless ``keep_outputs``; a failure is logged, not raised (a
        lifecycle rule on the prefix catches what is left: see the README)."""
        if self.options.keep_outputs or _is_sync(ref):
            return
        for marks in (False, True) if "marks_task_id" in ref.extra else (False,):
            try:
                bucket, key = self._location(ref, marks=marks)
                _call(
                    f"S3 DeleteObject s3://{bucket}/{key}",
                    self.s3.delete_object,
                    Bucket=bucket,
                    Key=key,
                )
            except AudiobookError as e:
                log.warning("could not delete the output of task %s: %s", ref.task_id, e)

    def fetch_marks(self, ref: TaskRef, dest: Path) -> None:
        """Write the chunk's speech marks (JSON lines, Polly's format: time in ms from
        the start of the chunk, type, start/end byte offsets into the SSML, value) to
        ``dest``, whole or not at all. Only for engines built with ``marks``."""
        dest = Path(dest)
        if not self.marks:
            raise ConfigError("this engine was not asked for speech marks (--marks)")
        if _is_sync(ref):
            _copy_sync_output(Path(ref.extra.get("marks_path", "")), dest)
            return
        bucket, key = self._location(ref, marks=True)
        self._download(bucket, key, dest)

    def _download(self, bucket: str, key: str, dest: Path, wav_rate: int | None = None) -> None:
        what = f"S3 GetObject s3://{bucket}/{key}"
        resp = _call(what, self.s3.get_object, Bucket=bucket, Key=key)
        _write_stream(resp["Body"], dest, chunk_size=256 * 1024, wav_rate=wav_rate, what=what)

    # -- close ----------------------------------------------------------------------

    def close(self) -> None:
        if self.notifications is not None:
            self.notifications.close()
        with self._lock:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None


def _answered(asks: Sequence[Callable[[], TaskState]], *, listed: bool = False) -> list[TaskState]:
    """Each ask's state, in order; after a retryable error the rest stay ``inProgress``
    (asked next round). The error is raised when nothing was answered (``listed``: the
    listing call that came first already was)."""
    states: list[TaskState] = []
    for ask in asks:
        try:
            states.append(ask())
        except RETRYABLE as e:
            if not states and not listed:
                raise
            log.debug("status call failed (%s); asking the rest next round", e)
            break
    return states + [TaskState("inProgress")] * (len(asks) - len(states))


MAX_LEXICONS = 5  # lexicons a task may name
LEXICON_WAIT_S = 30.0  # how long PutLexicon may take to show


def book_lexicon_name(content: str, voice: str) -> str:
    """A lexicon's name in Polly ([0-9A-Za-z]{1,20}): from its content and the voice
    (whose language it is uploaded in), so a change of either is a new name."""
    digest = hashlib.sha256(f"{voice}\0{content}".encode()).hexdigest()
    return "ab" + digest[:18]


_XML_LANG = re.compile(r"""(<(?:\w+:)?lexicon\b[^>]*?\bxml:lang\s*=\s*)(["'])([^"']*)\2""")


def fit_language(content: str, language: str) -> str | None:
    """The PLS ``content`` with its ``xml:lang`` set to the voice's ``language`` when
    both name the same language ("en" fits "en-US"); None when they do not."""
    m = _XML_LANG.search(content)
    if m is None or not language:
        return None
    have = m.group(3).strip().lower().replace("_", "-")
    want = language.lower()
    if have.split("-")[0] != want.split("-")[0] or ("-" in have and have != want):
        return None
    return content[: m.start(3)] + language + content[m.end(3) :]


_SPEAK_OPEN = re.compile(r"<speak(?:\s[^>]*)?>")


def with_rate(ssml: str, rate: str) -> str:
    """``ssml`` with everything inside ``<speak>`` wrapped in ``<prosody rate=...>``."""
    m = _SPEAK_OPEN.search(ssml)
    end = ssml.rfind("</speak>")
    if m is None or end < m.end():
        return ssml
    return f'{ssml[: m.end()]}<prosody rate="{rate}">{ssml[m.end() : end]}</prosody>{ssml[end:]}'


def _is_sync(ref: TaskRef) -> bool:
    return ref.extra.get("mode") == "sync" or ref.task_id.startswith("sync-")


def _copy_sync_output(src: Path, dest: Path) -> None:
    """A SynthesizeSpeech result kept in the work folder, copied to ``dest`` whole."""
    if not src.is_file():
        raise TransientEngineError(f"synchronous output {src} is gone; synthesize again")
    copy_atomic(src, dest)


def _write_stream(
    body: Any, dest: Path, *, chunk_size: int, wav_rate: int | None, what: str
) -> None:
    """Stream a botocore body to ``dest``, whole or not at all; with ``wav_rate``, the
    body is raw s16le mono PCM and is written as a WAV file at that rate. A read error
    is mapped like a client error of ``what``; the body is closed either way."""
    try:
        with atomic_path(dest) as tmp:
            try:
                _write_pieces(body.iter_chunks(chunk_size), tmp, wav_rate)
            except Exception as e:
                raise map_client_error(e, what) from e
    finally:
        body.close()


def _write_pieces(pieces: Iterator[bytes], path: Path, wav_rate: int | None) -> None:
    if wav_rate is None:
        with open(path, "wb") as f:
            f.writelines(pieces)
        return
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(wav_rate)
        for piece in pieces:
            w.writeframes(piece)
