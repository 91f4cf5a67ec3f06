"""Amazon Polly behind the engine seam: long-audio tasks through S3, or SynthesizeSpeech.

    engine = PollyEngine(PollyOptions(voice="Joanna", bucket="my-bucket", polly_engine="neural"))
    engine.preflight()                 # every check that can fail, before money is spent
    ref = engine.submit(chunk, key)    # StartSpeechSynthesisTask (or SynthesizeSpeech)
    engine.poll(ref)                   # TaskState: scheduled|inProgress|completed|failed
    engine.fetch(ref, dest)            # streams the S3 object to dest, whole or not at all
    engine.close()                     # removes the SQS queue/subscription and temp files

Modules: ``engine`` (PollyEngine), ``aws`` (error mapping, the Polly client and its
config, DescribeVoices/ListSpeechSynthesisTasks, task status, OutputUri parsing),
``checks`` (option checks, SSML rules per engine, sample rates, ``pick_mode``),
``notify`` (the SNS -> SQS notification listener), ``voices`` (default voice per language
and engine kind). Everything below is importable from this package.

Voice. ``PollyOptions(voice=None)`` takes ``polly_voice_for(language, polly_engine)``: a
voice that supports the chosen engine kind for the book's language (a long-form voice
for ``long-form``, a generative one for ``generative``...), or a ConfigError naming the
language and the engine kind when none is known.

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
engine's ``NotificationListener`` creates an SQS queue, lets the topic send to it,
subscribes it, and ``poll`` reads completion messages from the queue; a task with no
message for ``notification_grace`` seconds is checked with GetSpeechSynthesisTask anyway
(lost notifications still complete).

Gone tasks. Polly keeps a task record 72 hours; the S3 object outlives it. A task
GetSpeechSynthesisTask no longer knows is completed if its output is still at the key
recorded for it (``TaskRef.extra``), else failed (transient): a new task is started.
Every Get and List call goes through the scheduler's shared status limiter
(``limit_status_calls``), and every start call (two per submit with speech marks on)
through its start limiter (``limit_start_calls``).

Outputs. Once a piece's audio is in the cache, ``release`` deletes the task's outputs
from the bucket (``PollyOptions.keep_outputs`` keeps them).

Languages. A bilingual voice (Aditi, Kajal) gets ``LanguageCode``: the one of its
languages the book is in; it is part of ``identity``, as is each lexicon's content.

Speech marks. With ``marks=("sentence", "word")`` each chunk also gets a json
speech-mark task (same S3 prefix, OutputFormat json) whose id is in
``TaskRef.extra["marks_task_id"]``; ``poll`` reports completed only when both are done
and ``fetch_marks(ref, dest)`` writes the marks (JSON lines, times in ms from the start
of the chunk); ``audiobook.captions`` turns them into WebVTT. Marks are billed like audio
(``estimate(..., marks=True)``).

TaskRef.extra (strings, store it as JSON beside the task id): ``mode`` (sync|async),
``bucket``/``s3_key`` of the output, ``path`` (sync output file), ``key`` (content key),
``marks_task_id``/``marks_bucket``/``marks_s3_key``/``marks_path``. A bare
``TaskRef(task_id, "polly")`` (after a restart) still works: it is looked up with
GetSpeechSynthesisTask.

Library functions for the CLI: ``polly_client(region)``, ``list_voices(polly,
engine=None, language=None)`` and ``list_tasks(polly, status=None, max_items=None)``;
``pick_mode(requested, billable, total)``; ``polly_client_config()`` for a Polly client
built elsewhere.

Pre-flight: ``preflight(ssml=())`` raises ConfigError on one line before anything is
billed; ``validate_ssml(ssml)`` is also run by ``submit`` before each start call.

Nothing secret is logged: only operation names, task ids, bucket/key names and Polly's
own error messages.
"""

from __future__ import annotations

from .aws import (
    list_tasks,
    list_voices,
    map_client_error,
    parse_s3_uri,
    polly_client,
    polly_client_config,
    reason_is_transient,
    task_state,
)
from .checks import (
    EXTENSIONS,
    MARK_TYPES,
    MODES,
    OUTPUT_FORMATS,
    POLLY_ENGINES,
    SAMPLE_RATES,
    TASK_SAMPLE_RATES,
    check_options,
    default_sample_rate,
    pick_mode,
    unsupported_ssml,
)
from .engine import RECOVER_SKEW_S, PollyEngine
from .notify import (
    DRAIN_INTERVAL_S,
    NOTIFICATION_GRACE_S,
    NotificationListener,
    parse_notification,
    stale_queue,
    sweep_queues,
)
from .voices import DEFAULT_VOICES, polly_voice_for

__all__ = [
    "DEFAULT_VOICES",
    "DRAIN_INTERVAL_S",
    "EXTENSIONS",
    "MARK_TYPES",
    "MODES",
    "NOTIFICATION_GRACE_S",
    "OUTPUT_FORMATS",
    "POLLY_ENGINES",
    "RECOVER_SKEW_S",
    "SAMPLE_RATES",
    "TASK_SAMPLE_RATES",
    "NotificationListener",
    "PollyEngine",
    "check_options",
    "default_sample_rate",
    "list_tasks",
    "list_voices",
    "map_client_error",
    "parse_notification",
    "parse_s3_uri",
    "pick_mode",
    "polly_client",
    "polly_client_config",
    "polly_voice_for",
    "reason_is_transient",
    "stale_queue",
    "sweep_queues",
    "task_state",
    "unsupported_ssml",
]
