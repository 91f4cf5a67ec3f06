"""``PollyEngine``: Amazon Polly behind the engine seam (see the package docstring)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
import wave
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from ...config import POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS, EngineLimits
from ...errors import AudiobookError, ConfigError, EngineError, TransientEngineError, one_line
from ...files import atomic_path, copy_atomic, temp_dir_prefix
from ...model import Chunk
from ..base import AudioFormat, Capabilities, Engine, TaskRef, TaskState
from ..options import PollyOptions
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
    pick_mode,
    same_kms_key,
    unsupported_ssml,
)
from .notify import NotificationListener
from .voices import polly_voice_for

log = logging.getLogger(__name__)

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
        self.output_format = options.output_format
        self.sample_rate = str(options.sample_rate) if options.sample_rate else None
        self.marks = tuple(options.marks)
        self.notification_grace = options.notification_grace
        self._session: Any = None
        self._polly, self._s3, self._sqs, self._sns = polly, s3, sqs, sns
        self._lock = threading.RLock()
        self._half_started: dict[str, dict[str, Any]] = {}
        self._uncertain: dict[tuple[str, bool], float] = {}
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
                    f"--bucket {b!r}: not writable ({one_line(e).split(': ', 1)[-1]})"
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
            if d.get("SSEAlgorithm", "").startswith("aws:kms") and same_kms_key(have, want):
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
            hint = (
                f" (did you mean {lower[self.voice.lower()]}?)"
                if self.voice.lower() in lower
                else " (see `audiobook voices`)"
            )
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
        for task in list_tasks(self.polly):
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

    def poll_many(self, refs: Sequence[TaskRef]) -> list[TaskState]:
        """Where many tasks stand, in one status call where possible.

        Without SNS, one ListSpeechSynthesisTasks page (the newest 100 tasks) answers for
        every task on it, so ten tasks finishing together are all seen within one call
        of the shared Get/List quota instead of ten. A task not on that page (more than
        100 newer tasks in the account) is asked about with GetSpeechSynthesisTask. With
        SNS, notifications answer and this is ``poll`` per task."""
        if self.sns_topic or not refs:
            return [self.poll(r) for r in refs]
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

        return [self.poll(r) if _is_sync(r) else self._task_state(r, state) for r in refs]

    def _status(self, task_id: str) -> TaskState:
        """One task's state: from its notification when there is one (or while it is
        within its grace time), else from GetSpeechSynthesisTask."""
        if self.notifications is not None:
            known = self.notifications.known(task_id)
            if known is not None:
                return known
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
