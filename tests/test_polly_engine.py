"""The Polly engine: pure helpers here, then the real boto3 client against moto (S3, SNS,
SQS) and the project's Polly emulator over HTTP (marked ``aws``)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from audiobook.captions import marks_to_webvtt
from audiobook.engines.base import TaskRef, TaskState
from audiobook.engines.options import PollyOptions
from audiobook.engines.polly import (
    PollyEngine,
    map_client_error,
    parse_notification,
    parse_s3_uri,
    pick_mode,
    polly_client_config,
    reason_is_transient,
    unsupported_ssml,
)
from audiobook.errors import ConfigError, EngineError, Throttled, TransientEngineError
from audiobook.model import Chunk
from audiobook.ssml import billable_chars
from tests.servers import deny_put, encrypt_bucket

# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://s3.us-west-2.amazonaws.com/my-bucket/p/k/7b.mp3", ("my-bucket", "p/k/7b.mp3")),
        ("http://127.0.0.1:50123/my-bucket/books/abc/t1.mp3", ("my-bucket", "books/abc/t1.mp3")),
        ("s3://my-bucket/todoId-X/uuid.mp3", ("my-bucket", "todoId-X/uuid.mp3")),
        ("https://my-bucket.s3.eu-west-1.amazonaws.com/a/b.mp3", ("my-bucket", "a/b.mp3")),
        ("https://s3.amazonaws.com/my-bucket/a%20b/c.mp3", ("my-bucket", "a b/c.mp3")),
    ],
)
def test_parse_s3_uri(uri, expected):
    assert parse_s3_uri(uri) == expected
    assert parse_s3_uri(uri, "my-bucket") == expected


def test_parse_s3_uri_rejects_what_it_cannot_read():
    with pytest.raises(EngineError, match="OutputUri"):
        parse_s3_uri("https://s3.amazonaws.com/only-a-bucket")


def test_parse_notification_sns_envelope_and_raw():
    message = {
        "taskId": "t-1",
        "taskStatus": "COMPLETED",
        "outputUri": "s3://b/k/t-1.mp3",
        "creationTime": "2022-07-12T02:55:08.937Z",
        "requestCharacters": 17818,
    }
    envelope = {"Type": "Notification", "MessageId": "m", "Message": json.dumps(message)}
    expected = {
        "task_id": "t-1",
        "status": "completed",
        "output_uri": "s3://b/k/t-1.mp3",
        "reason": "",
    }
    assert parse_notification(json.dumps(envelope)) == expected
    assert parse_notification(json.dumps(message)) == expected
    failed = dict(message, taskStatus="FAILED", taskStatusReason="Internal service error")
    note = parse_notification(json.dumps({"Message": json.dumps(failed)}))
    assert note is not None and (note["status"], note["reason"]) == (
        "failed",
        "Internal service error",
    )
    assert parse_notification("not json") is None
    assert parse_notification(json.dumps({"Message": "hello"})) is None


def test_pick_mode_per_job():
    # SynthesizeSpeech takes 3,000 / 6,000 characters; a job goes sync up to the
    # headroom below them (config.POLLY_SYNC_LIMITS).
    from audiobook.config import POLLY_SYNC_LIMITS as lim

    assert (lim.max_billable, lim.max_total) == (2_940, 5_880)
    assert pick_mode("auto", 2_939, 5_000) == "sync"
    assert pick_mode("auto", 2_940, 5_880) == "sync"
    assert pick_mode("auto", 2_941, 5_000) == "async"
    assert pick_mode("auto", 100, 5_881) == "async"
    assert pick_mode("sync", 10**6, 10**6) == "sync"  # the user decides
    assert pick_mode("async", 10, 10) == "async"
    with pytest.raises(ConfigError, match="--mode"):
        pick_mode("fast", 1, 1)


def test_engine_limits_follow_the_mode():
    e = PollyEngine(PollyOptions(voice="Joanna", bucket="b-ok"))
    assert e.limits.max_billable == 98_000  # auto, not planned yet: async (2% headroom)
    e.plan(2_000, 4_000)
    assert e.mode == "sync" and e.limits.max_billable == 2_940
    e.plan(200_000, 400_000)
    assert e.mode == "async" and e.limits.max_total == 196_000
    e = PollyEngine(PollyOptions(voice="Joanna", bucket="b-ok", mode="sync"))
    e.plan(10**6, 10**6)
    assert e.mode == "sync"


def test_identity_names_everything_that_changes_the_audio():
    # (with lexicons, their content too: tests/test_polly_aws.py)
    e = PollyEngine(PollyOptions(voice="Lea", bucket="b-ok", polly_engine="standard"))
    assert e.identity() == "polly:standard:Lea:mp3:22050:"
    e = PollyEngine(
        PollyOptions(voice="Lea", bucket="b-ok", output_format="pcm", sample_rate="8000")
    )
    assert e.identity() == "polly:neural:Lea:pcm:8000:"
    assert (e.audio_format.ext, e.audio_format.sample_rate) == ("wav", 8000)


@pytest.mark.parametrize(
    ("ssml", "engine", "bad"),
    [
        ("<speak><emphasis>x</emphasis></speak>", "neural", "<emphasis>"),
        ("<speak><emphasis>x</emphasis></speak>", "standard", None),
        (
            '<speak><amazon:effect name="whispered">x</amazon:effect></speak>',
            "long-form",
            '<amazon:effect name="whispered">',
        ),
        ('<speak><amazon:effect name="drc">x</amazon:effect></speak>', "neural", None),
        (
            '<speak><amazon:effect name="drc">x</amazon:effect></speak>',
            "generative",
            '<amazon:effect name="drc">',
        ),
        (
            '<speak><amazon:domain name="news">x</amazon:domain></speak>',
            "standard",
            '<amazon:domain name="news">',
        ),
        ('<speak><amazon:domain name="news">x</amazon:domain></speak>', "neural", None),
        ('<speak><audio src="a.mp3"/></speak>', "standard", "<audio>"),
        ('<speak><break time="12s"/></speak>', "neural", '<break time="12s"> (over 10 seconds)'),
        (
            '<speak><prosody rate="-90%">x</prosody></speak>',
            "standard",
            '<prosody rate="-90%"> (slower than -80%)',
        ),
        ("<speak><blink>x</blink></speak>", "standard", "<blink>"),
        (
            '<speak><p><s>Tom &amp; "Jerry" &lt;b&gt;</s></p><break time="1500ms"/></speak>',
            "generative",
            None,
        ),
    ],
)
def test_unsupported_ssml(ssml, engine, bad):
    assert unsupported_ssml(ssml, engine) == bad


def test_validate_ssml_is_one_line_naming_the_tag():
    e = PollyEngine(PollyOptions(voice="Joanna", bucket="b-ok", polly_engine="neural"))
    with pytest.raises(ConfigError) as info:
        e.validate_ssml("<speak><emphasis>loud</emphasis></speak>")
    assert str(info.value) == "SSML tag <emphasis> is not supported by the Polly neural engine"


def test_reason_is_transient():
    assert reason_is_transient("Internal service error")
    assert reason_is_transient("Service temporarily unavailable, please retry")
    assert reason_is_transient("Request timed out")
    assert not reason_is_transient(
        "Error occurred while trying to synthesize the text: unsupported character"
    )
    assert not reason_is_transient("Access denied writing the output to Amazon S3")


def _client_error(code: str, status: int, message: str = "boom\nsecond line"):
    from botocore.exceptions import ClientError

    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "StartSpeechSynthesisTask",
    )


def test_map_client_error():
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    assert isinstance(map_client_error(_client_error("ThrottlingException", 400), "x"), Throttled)
    assert isinstance(
        map_client_error(_client_error("ServiceFailureException", 500), "x"), TransientEngineError
    )
    assert isinstance(map_client_error(_client_error("Whatever", 503), "x"), TransientEngineError)
    err = map_client_error(_client_error("InvalidSsmlException", 400), "Polly Start")
    assert isinstance(err, ConfigError)
    assert str(err) == "Polly Start: InvalidSsmlException: boom second line"
    assert isinstance(
        map_client_error(_client_error("SynthesisTaskNotFoundException", 400), "x"), EngineError
    )
    assert isinstance(
        map_client_error(EndpointConnectionError(endpoint_url="http://x"), "x"),
        TransientEngineError,
    )
    assert isinstance(map_client_error(NoCredentialsError(), "x"), ConfigError)


def test_check_options_one_line_errors():
    with pytest.raises(ConfigError, match="^--bucket is required for --engine polly$"):
        PollyEngine(PollyOptions(voice="Joanna", bucket="")).check_options()
    with pytest.raises(ConfigError, match="not a valid S3 bucket name"):
        PollyEngine(PollyOptions(voice="Joanna", bucket="Bad_Bucket")).check_options()
    with pytest.raises(ConfigError, match="--polly-engine"):
        PollyEngine(
            PollyOptions(voice="Joanna", bucket="b-ok", polly_engine="turbo")
        ).check_options()
    with pytest.raises(ConfigError, match="sample-rate 44100 is not valid for pcm"):
        PollyEngine(
            PollyOptions(voice="Joanna", bucket="b-ok", output_format="pcm", sample_rate="44100")
        ).check_options()
    with pytest.raises(ConfigError, match="generative engine produces no speech marks"):
        PollyEngine(
            PollyOptions(
                voice="Ruth", bucket="b-ok", polly_engine="generative", marks=("sentence",)
            )
        ).check_options()


# --------------------------------------------------------------------------- WebVTT

CHUNK1 = "\n".join(
    json.dumps(m)
    for m in [
        {"time": 0, "type": "sentence", "start": 13, "end": 36, "value": "Mary had a little lamb."},
        {"time": 6, "type": "word", "start": 13, "end": 17, "value": "Mary"},
        {"time": 373, "type": "word", "start": 18, "end": 21, "value": "had"},
        {"time": 604, "type": "word", "start": 22, "end": 23, "value": "a"},
        {
            "time": 1500,
            "type": "sentence",
            "start": 40,
            "end": 58,
            "value": "Tom &amp; Jerry &lt;3",
        },
    ]
)
CHUNK2 = json.dumps({"time": 250, "type": "sentence", "start": 7, "end": 14, "value": "The end"})


def test_marks_to_webvtt_sentences_with_word_timing():
    vtt = marks_to_webvtt([(0.0, CHUNK1), (3.0, CHUNK2)])
    assert vtt == (
        "WEBVTT\n\n"
        "1\n00:00:00.000 --> 00:00:01.500\n"
        "Mary <00:00:00.373>had <00:00:00.604>a little lamb.\n\n"
        "2\n00:00:01.500 --> 00:00:03.250\nTom &amp; Jerry &lt;3\n\n"
        "3\n00:00:03.250 --> 00:00:04.250\nThe end\n"
    )


def test_marks_to_webvtt_empty():
    assert marks_to_webvtt([]) == "WEBVTT\n\n"
    assert marks_to_webvtt([(0.0, "")]) == "WEBVTT\n\n"


# --------------------------------------------------------------------------- over HTTP
# The real boto3 client against moto (S3, SNS, SQS) and the Polly emulator.

SSML = (
    "<speak><p><s>It was a bright cold day in April.</s> "
    "<s>The clocks were striking thirteen &amp; nobody minded.</s></p>"
    '<break time="500ms"/></speak>'
)
CHUNK = Chunk.make(0, 0, SSML)


def _key() -> str:
    return uuid.uuid4().hex


class Calls:
    """Every AWS operation our clients make in one test, as (service, operation)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def count(self, op: str) -> int:
        return sum(1 for _, o in self.seen if o == op)


_CURRENT: list[Calls] = [Calls()]
_CLIENTS: dict[tuple[str, str], Any] = {}


def _recorded_client(service: str, url: str) -> Any:
    """One boto3 client per (service, endpoint) for the whole session (making a client
    costs ~0.2 s), its calls recorded into the running test's ``Calls``."""
    client = _CLIENTS.get((service, url))
    if client is None:
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        config = polly_client_config() if service == "polly" else None
        client = session.client(service, endpoint_url=url, config=config)

        def record(model: Any, **_: Any) -> None:
            _CURRENT[0].seen.append((service, model.name))

        client.meta.events.register("before-call.*.*", record)
        _CLIENTS[(service, url)] = client
    return client


@pytest.fixture
def calls() -> Calls:
    _CURRENT[0] = Calls()
    return _CURRENT[0]


@pytest.fixture
def engine_on(moto_server, calls) -> Callable[..., PollyEngine]:
    """engine_on(emulator, **kw): a PollyEngine whose injected clients talk to that
    emulator (Polly) and moto (S3/SNS/SQS), every call recorded; closed after the test."""
    made: list[PollyEngine] = []

    def make(emulator: Any, **kw: Any) -> PollyEngine:
        kw.setdefault("voice", "Joanna")
        kw.setdefault("polly_engine", "neural")
        e = PollyEngine(
            PollyOptions(**kw),
            polly=_recorded_client("polly", emulator.url),
            s3=_recorded_client("s3", moto_server),
            sqs=_recorded_client("sqs", moto_server),
            sns=_recorded_client("sns", moto_server),
        )
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


class Billing:
    """What the shared emulator did during one test: tasks started, sync requests."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.tasks0 = {t.task_id for t in emu.tasks}
        self.sync0 = emu.stats.get("sync_requests", 0)

    @property
    def new_tasks(self) -> list[Any]:
        return [t for t in self.emu.tasks if t.task_id not in self.tasks0]

    @property
    def sync_requests(self) -> int:
        return self.emu.stats.get("sync_requests", 0) - self.sync0


@pytest.fixture
def billing(polly_emulator) -> Billing:
    return Billing(polly_emulator)


def wait_done(engine: PollyEngine, ref: TaskRef, timeout: float = 30.0) -> TaskState:
    deadline = time.monotonic() + timeout
    while True:
        state = engine.poll(ref)
        if state.status in ("completed", "failed"):
            return state
        assert time.monotonic() < deadline, f"task {ref.task_id} still {state.status}"
        time.sleep(0.05)


def audio_seconds(path: Path) -> float:
    import av

    with av.open(str(path)) as f:
        return float(f.duration or 0) / 1_000_000


def test_async_submit_poll_fetch_the_usual_boto3_way(
    aws_env, polly_emulator, s3_client, s3_bucket, tmp_path
):
    """No injected clients: credentials, region and endpoints come from the environment
    (AWS_ENDPOINT_URL_POLLY / _S3), as for a user."""
    key = _key()
    with PollyEngine(PollyOptions(voice="Joanna", bucket=s3_bucket, prefix="books/")) as engine:
        engine.preflight()
        ref = engine.submit(CHUNK, key)
        assert ref.billed_chars == billable_chars(SSML) > 0
        assert ref.extra["s3_key"].startswith(f"books/{key}/")
        assert wait_done(engine, ref).status == "completed"
        dest = tmp_path / "out" / "piece.mp3"
        engine.fetch(ref, dest)
    assert audio_seconds(dest) > 1.0
    assert [p.name for p in dest.parent.iterdir()] == ["piece.mp3"]  # no temp left over
    info = next(t for t in polly_emulator.tasks if t.task_id == ref.task_id)
    assert (info.status, info.bucket, info.request_characters) == (
        "completed",
        s3_bucket,
        billable_chars(SSML),
    )
    # The probe object of the preflight is gone; only the output is in the bucket.
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == [ref.extra["s3_key"]]


def test_sync_path_answers_at_once_and_starts_no_task(
    polly_emulator, billing, engine_on, s3_bucket, tmp_path, calls
):
    engine = engine_on(polly_emulator, bucket=s3_bucket, mode="sync")
    assert engine.limits.max_billable == 2_940
    ref = engine.submit(CHUNK, _key())
    assert engine.poll(ref) == TaskState("completed", output_uri=ref.output_uri)
    assert ref.billed_chars == billable_chars(SSML)
    engine.fetch(ref, tmp_path / "a.mp3")
    assert audio_seconds(tmp_path / "a.mp3") > 1.0
    assert billing.new_tasks == [] and billing.sync_requests == 1
    assert calls.count("StartSpeechSynthesisTask") == 0
    engine.close()
    assert not Path(ref.extra["path"]).exists()  # temp audio removed on close


def test_auto_mode_small_job_goes_sync(polly_emulator, billing, engine_on, s3_bucket):
    engine = engine_on(polly_emulator, bucket=s3_bucket)
    engine.plan(billable_chars(SSML), len(SSML))
    assert engine.mode == "sync"
    ref = engine.submit(CHUNK, _key())
    assert ref.extra["mode"] == "sync" and billing.new_tasks == []


def test_sns_completion_through_sqs(
    polly_emulator, engine_on, s3_bucket, sns_client, sqs_client, calls, tmp_path
):
    emu = polly_emulator
    topic = sns_client.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"]
    engine = engine_on(emu, bucket=s3_bucket, sns_topic=topic, notification_grace=60.0)
    engine.preflight()
    refs = [
        engine.submit(Chunk.make(0, i, SSML.replace("April", f"May {i}")), _key()) for i in range(3)
    ]
    assert all(wait_done(engine, r).status == "completed" for r in refs)
    # Learned from the notifications alone: not one GetSpeechSynthesisTask call.
    assert calls.count("GetSpeechSynthesisTask") == 0
    assert calls.count("ReceiveMessage") >= 1
    engine.fetch(refs[0], tmp_path / "a.mp3")
    assert audio_seconds(tmp_path / "a.mp3") > 1.0
    queue_url = engine._queue_url
    assert queue_url and engine._subscription_arn
    engine.close()
    subs = sns_client.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert subs == []
    assert queue_url not in sqs_client.list_queues().get("QueueUrls", [])


def test_lost_notifications_fall_back_to_get(
    make_polly_emulator, engine_on, s3_bucket, sns_client, calls
):
    emu = make_polly_emulator(lost_notification_rate=1.0)
    topic = sns_client.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"]
    engine = engine_on(emu, bucket=s3_bucket, sns_topic=topic, notification_grace=0.3)
    ref = engine.submit(CHUNK, _key())
    assert wait_done(engine, ref).status == "completed"
    assert emu.stats.get("notifications_lost_injected", 0) >= 1
    gets = calls.count("GetSpeechSynthesisTask")
    assert 1 <= gets <= 1 + 30 / 0.3  # at most one Get per grace interval


def test_throttling_is_raised_as_throttled(make_polly_emulator, engine_on, s3_bucket, calls):
    emu = make_polly_emulator(throttle_rate=1.0)
    engine = engine_on(emu, bucket=s3_bucket)
    with pytest.raises(Throttled, match="ThrottlingException") as info:
        engine.submit(CHUNK, _key())
    assert "\n" not in str(info.value)
    assert calls.count("StartSpeechSynthesisTask") == 1  # botocore did not retry on its own
    assert emu.tasks == []
    with pytest.raises(Throttled):
        engine.poll(TaskRef("00000000-0000-0000-0000-000000000000", "polly"))


def test_5xx_on_start_is_transient_and_starts_nothing(
    make_polly_emulator, engine_on, s3_bucket, calls
):
    emu = make_polly_emulator(error5xx_rate=1.0)
    engine = engine_on(emu, bucket=s3_bucket)
    with pytest.raises(TransientEngineError, match="ServiceFailure"):
        engine.submit(CHUNK, _key())
    assert emu.tasks == []


@pytest.mark.parametrize(
    ("fault", "transient"), [("fail_rate", True), ("permanent_fail_rate", False)]
)
def test_failed_task_reason_and_transient_flag(
    make_polly_emulator, engine_on, s3_bucket, fault, transient
):
    from audiobook.emulator import PERMANENT_REASONS, TRANSIENT_REASONS

    emu = make_polly_emulator(**{fault: 1.0})
    engine = engine_on(emu, bucket=s3_bucket)
    state = wait_done(engine, engine.submit(CHUNK, _key()))
    assert state.status == "failed" and state.transient is transient
    assert state.reason in (TRANSIENT_REASONS if transient else PERMANENT_REASONS)


def test_recover_finds_an_unrecorded_task_by_its_key(
    polly_emulator, engine_on, s3_bucket, tmp_path
):
    emu = polly_emulator
    first = engine_on(emu, bucket=s3_bucket, prefix="lib/")
    key, since = _key(), time.time()
    lost = first.submit(CHUNK, key)  # the process "dies" before recording lost.task_id
    for _ in range(3):  # other tasks around it
        first.submit(Chunk.make(1, 0, SSML.replace("cold", "warm")), _key())
    again = engine_on(emu, bucket=s3_bucket, prefix="lib/")
    ref = again.recover(key, since)
    assert ref is not None and ref.task_id == lost.task_id
    assert ref.billed_chars == lost.billed_chars and ref.extra["s3_key"] == lost.extra["s3_key"]
    assert wait_done(again, ref).status == "completed"
    again.fetch(ref, tmp_path / "r.mp3")
    assert audio_seconds(tmp_path / "r.mp3") > 1.0
    assert again.recover(_key(), since) is None  # nothing for another key
    assert again.recover(key, since + 3600) is None  # nor for a later start
    # A bare TaskRef (only the id survived) still polls and fetches.
    bare = TaskRef(lost.task_id, "polly")
    assert again.poll(bare).status == "completed"
    again.fetch(bare, tmp_path / "b.mp3")
    assert (tmp_path / "b.mp3").read_bytes() == (tmp_path / "r.mp3").read_bytes()


# -- preflight: one line each, before anything is billed


PREFLIGHT_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing bucket", {"bucket": ""}, r"^--bucket is required for --engine polly$"),
    (
        "no such bucket",
        {"bucket": "no-such-bucket-here"},
        r"^--bucket 'no-such-bucket-here': no such S3 bucket$",
    ),
    ("unknown voice", {"voice": "Bob"}, r"^--voice 'Bob': Polly has no such voice"),
    ("voice case", {"voice": "joanna"}, r"did you mean Joanna\?"),
    (
        "engine/voice mismatch",
        {"voice": "Ivy", "polly_engine": "long-form"},
        r"^--voice 'Ivy' does not support the long-form engine \(it supports: standard, neural\)$",
    ),
    ("bucket not writable", {"deny": True}, r"^--bucket '[^']+': not writable \(.*403"),
    ("missing lexicon", {"lexicons": ("nosuch",)}, r"^--lexicon 'nosuch': no such lexicon"),
    (
        "missing topic",
        {"sns_topic": "arn:aws:sns:us-east-1:123456789012:nosuch"},
        r"^--sns-topic arn:aws:sns:us-east-1:123456789012:nosuch: no such SNS topic$",
    ),
]


@pytest.mark.parametrize(
    ("case", "opts", "pattern"), PREFLIGHT_CASES, ids=[c[0] for c in PREFLIGHT_CASES]
)
def test_preflight_errors_are_one_line_and_bill_nothing(
    polly_emulator, billing, engine_on, s3_client, s3_bucket, case, opts, pattern
):
    emu = polly_emulator
    opts = dict(opts)
    if opts.pop("deny", False):
        deny_put(s3_client, s3_bucket)
    opts.setdefault("bucket", s3_bucket)
    engine = engine_on(emu, **opts)
    with pytest.raises(ConfigError) as info:
        engine.preflight()
    assert "\n" not in str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert billing.new_tasks == [] and billing.sync_requests == 0


def test_ssml_an_engine_rejects_fails_before_the_start_call(
    polly_emulator, billing, engine_on, s3_bucket, calls
):
    emu = polly_emulator
    engine = engine_on(emu, bucket=s3_bucket, polly_engine="neural")
    bad = Chunk.make(0, 0, "<speak><emphasis>Loud</emphasis> words.</speak>")
    with pytest.raises(
        ConfigError,
        match=r"^SSML tag <emphasis> is not supported by the "
        r"Polly neural engine$",
    ):
        engine.submit(bad, _key())
    assert calls.count("StartSpeechSynthesisTask") == 0 and billing.new_tasks == []
    # The emulator agrees: sent anyway, Polly refuses it, as a ConfigError on one line.
    with pytest.raises(ConfigError, match="ValidationException"):
        engine._start(bad, _key(), marks=False, since=time.time())
    assert billing.new_tasks == []


def test_bucket_default_encryption_is_honoured(
    polly_emulator, engine_on, s3_client, s3_bucket, tmp_path
):
    encrypt_bucket(s3_client, s3_bucket)
    engine = engine_on(polly_emulator, bucket=s3_bucket)
    engine.preflight()
    ref = engine.submit(CHUNK, _key())
    assert wait_done(engine, ref).status == "completed"
    head = s3_client.head_object(Bucket=s3_bucket, Key=ref.extra["s3_key"])
    assert head["ServerSideEncryption"] == "AES256"
    engine.fetch(ref, tmp_path / "a.mp3")
    assert audio_seconds(tmp_path / "a.mp3") > 1.0


def test_kms_key_passes_through_the_bucket_default(
    polly_emulator, engine_on, s3_client, s3_bucket, tmp_path
):
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    encrypt_bucket(s3_client, s3_bucket, key_arn)
    emu = polly_emulator
    engine = engine_on(emu, bucket=s3_bucket, kms_key="1234abcd-12ab-34cd-56ef-1234567890ab")
    engine.preflight()  # the key id matches the bucket's default key ARN
    ref = engine.submit(CHUNK, _key())
    assert wait_done(engine, ref).status == "completed"
    head = s3_client.head_object(Bucket=s3_bucket, Key=ref.extra["s3_key"])
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)
    engine.fetch(ref, tmp_path / "a.mp3")
    assert audio_seconds(tmp_path / "a.mp3") > 1.0
    other = engine_on(emu, bucket=s3_bucket, kms_key="arn:aws:kms:us-east-1:123456789012:key/x")
    with pytest.raises(ConfigError, match=r"^--kms-key .*not SSE-KMS with this key"):
        other.preflight()


def test_speech_marks_tasks_and_webvtt(polly_emulator, billing, engine_on, s3_bucket, tmp_path):
    emu = polly_emulator
    engine = engine_on(emu, bucket=s3_bucket, marks=("sentence", "word"))
    ref = engine.submit(CHUNK, _key())
    assert ref.extra["marks_task_id"] and ref.extra["marks_task_id"] != ref.task_id
    assert wait_done(engine, ref).status == "completed"
    engine.fetch(ref, tmp_path / "a.mp3")
    engine.fetch_marks(ref, tmp_path / "a.marks")
    lines = [json.loads(x) for x in (tmp_path / "a.marks").read_text().splitlines() if x]
    assert {m["type"] for m in lines} == {"sentence", "word"}
    formats = sorted(t.output_format for t in billing.new_tasks)
    assert formats == ["json", "mp3"]
    vtt = marks_to_webvtt([(0.0, (tmp_path / "a.marks").read_text())])
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.")
    assert (
        "It was a bright cold day in April." in vtt.replace("<", " <").replace("  ", " ")
        or "April." in vtt
    )
    assert vtt.count(" --> ") == 2


def test_iam_policy_names_exactly_the_calls_made(
    polly_emulator, engine_on, s3_client, s3_bucket, sns_client, calls, tmp_path
):
    """Drive every path (preflight with lexicon, KMS and topic; async with SNS and marks;
    fetch; recover; sync; voices and tasks listing; close) and compare the operations
    called with the actions of iam-policy.json."""
    from audiobook.engines.polly import list_tasks, list_voices

    emu = polly_emulator
    polly = _recorded_client("polly", emu.url)
    polly.put_lexicon(
        Name="names",
        Content=(
            '<?xml version="1.0" encoding="UTF-8"?><lexicon version="1.0" '
            'xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa" '
            'xml:lang="en-US"><lexeme><grapheme>W3C</grapheme><alias>World Wide Web '
            "Consortium</alias></lexeme></lexicon>"
        ),
    )
    kms = "arn:aws:kms:us-east-1:123456789012:key/k1"
    encrypt_bucket(s3_client, s3_bucket, kms)
    topic = sns_client.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"]
    engine = engine_on(
        emu,
        bucket=s3_bucket,
        sns_topic=topic,
        kms_key=kms,
        lexicons=("names",),
        marks=("sentence",),
        notification_grace=0.0,
    )
    calls.seen.clear()  # the lexicon set-up above is not the tool's
    engine.preflight()
    key = _key()
    ref = engine.submit(CHUNK, key)
    assert wait_done(engine, ref).status == "completed"
    deadline = time.monotonic() + 20
    while calls.count("DeleteMessageBatch") == 0:  # the notifications, read and deleted
        assert time.monotonic() < deadline, "no SNS notification arrived"
        engine._drain_queue()
        time.sleep(0.25)
    engine.fetch(ref, tmp_path / "a.mp3")
    engine.fetch_marks(ref, tmp_path / "a.marks")
    assert engine.recover(key, time.time() - 60) is not None
    list_voices(engine.polly)
    list(list_tasks(engine.polly, status="completed"))
    engine.close()
    sync = engine_on(emu, bucket=s3_bucket, mode="sync")
    sync.submit(CHUNK, _key())

    iam = {
        ("polly", "StartSpeechSynthesisTask"): "polly:StartSpeechSynthesisTask",
        ("polly", "GetSpeechSynthesisTask"): "polly:GetSpeechSynthesisTask",
        ("polly", "ListSpeechSynthesisTasks"): "polly:ListSpeechSynthesisTasks",
        ("polly", "SynthesizeSpeech"): "polly:SynthesizeSpeech",
        ("polly", "DescribeVoices"): "polly:DescribeVoices",
        ("polly", "GetLexicon"): "polly:GetLexicon",
        ("s3", "HeadBucket"): "s3:ListBucket",
        ("s3", "GetBucketEncryption"): "s3:GetEncryptionConfiguration",
        ("s3", "PutObject"): "s3:PutObject",
        ("s3", "GetObject"): "s3:GetObject",
        ("s3", "DeleteObject"): "s3:DeleteObject",
        ("sns", "GetTopicAttributes"): "sns:GetTopicAttributes",
        ("sns", "Subscribe"): "sns:Subscribe",
        ("sns", "Unsubscribe"): "sns:Unsubscribe",
        ("sqs", "CreateQueue"): "sqs:CreateQueue",
        ("sqs", "GetQueueAttributes"): "sqs:GetQueueAttributes",
        ("sqs", "SetQueueAttributes"): "sqs:SetQueueAttributes",
        ("sqs", "ReceiveMessage"): "sqs:ReceiveMessage",
        ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
        ("sqs", "DeleteQueue"): "sqs:DeleteQueue",
    }
    made = set(calls.seen)
    unknown = made - set(iam)
    assert not unknown, f"calls with no IAM mapping: {unknown}"
    used = {iam[c] for c in made}
    root = Path(__file__).resolve().parent.parent
    policy = json.loads((root / "iam-policy.json").read_text())
    granted = {a for st in policy["Statement"] for a in st["Action"]}
    # Done on our behalf with our rights: Polly publishes to SNS, S3 uses the KMS key.
    on_our_behalf = {"sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"}
    assert used == granted - on_our_behalf


class LossyProxy:
    """An HTTP relay in front of the emulator that, ``lose`` times, lets a start call
    reach Polly and then answers 500 instead of Polly's answer (a lost response). Or,
    following ``starts`` ("pass" | "throttle" per start call, in order), answers
    ThrottlingException without forwarding."""

    def __init__(self, target: str) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlparse

        self.lose = 0
        self.starts: list[str] = []
        proxy = self
        host, port = urlparse(target).hostname, urlparse(target).port

        class Handler(BaseHTTPRequestHandler):
            def relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                is_start = self.command == "POST" and self.path == "/v1/synthesisTasks"
                if is_start and proxy.starts and proxy.starts.pop(0) == "throttle":
                    msg = b'{"message":"Rate exceeded"}'
                    self.send_response(400)
                    self.send_header("x-amzn-ErrorType", "ThrottlingException")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                conn = http.client.HTTPConnection(host, port, timeout=30)
                conn.request(self.command, self.path, body, dict(self.headers))
                resp = conn.getresponse()
                data = resp.read()
                if self.command == "POST" and self.path == "/v1/synthesisTasks" and proxy.lose:
                    proxy.lose -= 1
                    lost = b'{"message":"connection reset after the task was created"}'
                    self.send_response(500)
                    self.send_header("x-amzn-ErrorType", "ServiceFailureException")
                    self.send_header("Content-Length", str(len(lost)))
                    self.end_headers()
                    self.wfile.write(lost)
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = relay

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_lost_start_answer_is_not_paid_twice(polly_emulator, billing, moto_server, s3_bucket):
    proxy = LossyProxy(polly_emulator.url)
    try:
        engine = PollyEngine(
            PollyOptions(voice="Joanna", bucket=s3_bucket),
            polly=_recorded_client("polly", proxy.url),
            s3=_recorded_client("s3", moto_server),
        )
        proxy.lose = 1
        ref = engine.submit(CHUNK, _key())  # 500 after the task was made: found, reused
        assert [t.task_id for t in billing.new_tasks] == [ref.task_id]
        assert wait_done(engine, ref).status == "completed"
    finally:
        proxy.close()


def test_write_webvtt_from_marks_files(tmp_path):
    from audiobook.captions import write_webvtt

    (tmp_path / "1.marks").write_text(CHUNK1)
    (tmp_path / "2.marks").write_text(CHUNK2)
    out = write_webvtt(
        tmp_path / "cap" / "book.01.vtt",
        [(0.0, tmp_path / "1.marks"), (3.0, str(tmp_path / "2.marks"))],
    )
    assert out.read_text() == marks_to_webvtt([(0.0, CHUNK1), (3.0, CHUNK2)])
    assert sorted(p.name for p in out.parent.iterdir()) == ["book.01.vtt"]


def test_pcm_output_is_fetched_as_wav(polly_emulator, engine_on, s3_bucket, tmp_path):
    import wave

    engine = engine_on(polly_emulator, bucket=s3_bucket, output_format="pcm")
    assert engine.audio_format.ext == "wav"
    ref = engine.submit(CHUNK, _key())
    assert wait_done(engine, ref).status == "completed"
    engine.fetch(ref, tmp_path / "a.wav")
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.getnframes() / 16000 > 1.0


def test_sync_path_with_speech_marks(polly_emulator, billing, engine_on, s3_bucket, tmp_path):
    engine = engine_on(polly_emulator, bucket=s3_bucket, mode="sync", marks=("sentence",))
    ref = engine.submit(CHUNK, _key())
    assert engine.poll(ref).status == "completed"
    engine.fetch_marks(ref, tmp_path / "a.marks")
    marks = [json.loads(x) for x in (tmp_path / "a.marks").read_text().splitlines() if x]
    assert [m["type"] for m in marks] == ["sentence", "sentence"]
    assert billing.new_tasks == [] and billing.sync_requests == 2


def test_marks_start_throttled_after_the_audio_start_pays_audio_once(
    polly_emulator, billing, moto_server, s3_bucket
):
    proxy = LossyProxy(polly_emulator.url)
    try:
        engine = PollyEngine(
            PollyOptions(voice="Joanna", bucket=s3_bucket, marks=("sentence",)),
            polly=_recorded_client("polly", proxy.url),
            s3=_recorded_client("s3", moto_server),
        )
        key = _key()
        proxy.starts = ["pass", "throttle"]  # audio task starts, marks task is throttled
        with pytest.raises(Throttled):
            engine.submit(CHUNK, key)
        ref = engine.submit(CHUNK, key)  # the pipeline's retry
        formats = sorted(t.output_format for t in billing.new_tasks)
        assert formats == ["json", "mp3"]  # one audio task, not two
        assert ref.task_id in {t.task_id for t in billing.new_tasks}
        assert wait_done(engine, ref).status == "completed"
        engine.close()
    finally:
        proxy.close()
