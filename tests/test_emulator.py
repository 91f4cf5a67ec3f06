"""The Polly emulator's behaviour over HTTP, with moto for S3, SNS and SQS: the task
lifecycle, real audio in S3, notifications, encryption, quotas, limits, SSML rules,
injected faults, pagination and retention."""

from __future__ import annotations

import functools
import hashlib
import html
import io
import json
import re
import subprocess
import sys
import time
from typing import Any
from xml.sax.saxutils import escape

import av
import boto3
import botocore.config
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiobook.emulator import PERMANENT_REASONS, TRANSIENT_REASONS, is_transient
from audiobook.emulator.core import output_key
from audiobook.emulator.protocol import PollyError
from audiobook.emulator.quotas import Quotas
from audiobook.emulator.ssml import billable_chars, espeak_batches
from tests.servers import deny_put, encrypt_bucket

TERMINAL = ("completed", "failed")


@functools.cache
def client(url: str, retries: int = 0) -> Any:
    cfg = botocore.config.Config(retries={"mode": "legacy", "total_max_attempts": retries + 1})
    return boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client("polly", endpoint_url=url, config=cfg)


def statuses(polly: Any, task_id: str, timeout: float = 30) -> list[str]:
    """Every status seen while polling a task until it ends."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = polly.get_speech_synthesis_task(TaskId=task_id)["SynthesisTask"]["TaskStatus"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in TERMINAL:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} stuck: {seen}")


def finish(polly: Any, task_id: str) -> dict[str, Any]:
    statuses(polly, task_id)
    return polly.get_speech_synthesis_task(TaskId=task_id)["SynthesisTask"]


def start(
    polly: Any, bucket: str, text: str = "Hello there. This is a test.", **kw: Any
) -> dict[str, Any]:
    params = {
        "OutputFormat": "mp3",
        "OutputS3BucketName": bucket,
        "Text": text,
        "VoiceId": "Joanna",
        **kw,
    }
    return polly.start_speech_synthesis_task(**params)["SynthesisTask"]


def duration(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = sum(f.samples for f in container.decode(stream))
        return frames / stream.rate


# --- pure parts ------------------------------------------------------------------------------


def test_output_key_naming() -> None:
    assert output_key("", "id1", "mp3") == "id1.mp3"
    assert output_key("book/", "id1", "mp3") == "book/id1.mp3"
    assert (
        output_key("optional/prefix/path/file", "id1", "mp3") == "optional/prefix/path/file.id1.mp3"
    )
    assert output_key("x/", "id1", "json") == "x/id1.marks"


def test_billable_characters_skip_tags_and_decode_entities() -> None:
    assert billable_chars("<speak>AT&amp;T <break time='1s'/>ok</speak>", "ssml") == 7
    assert billable_chars("AT&amp;T", "text") == 8  # plain text is not decoded
    with pytest.raises(PollyError) as err:
        billable_chars("<speak>AT&T</speak>", "ssml")
    assert err.value.code == "InvalidSsmlException"


@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=300),
        max_size=30,
    )
)
@settings(max_examples=50, deadline=None)
def test_espeak_batches_lose_no_text(paragraphs: list[str]) -> None:
    ssml = "<speak>" + "".join(f"<p>{escape(p)}</p>" for p in paragraphs) + "</speak>"
    batches = list(espeak_batches(ssml, "ssml", max_chars=200))
    spoken = "".join(html.unescape(re.sub(r"<[^>]*>", "", b)) for b, _ in batches)
    assert re.sub(r"\s", "", spoken) == re.sub(r"\s", "", "".join(paragraphs))
    text = "\n\n".join(paragraphs)
    assert (
        "".join(b for b, _ in espeak_batches(text, "text", max_chars=200)).strip() == text.strip()
        or not text.strip()
    )


# --- lifecycle and output --------------------------------------------------------------------


def test_lifecycle_and_real_audio_in_s3(make_polly_emulator, s3_bucket, s3_client) -> None:
    emu = make_polly_emulator(queue_delay=0.2, chars_per_second=100)
    polly = client(emu.url)
    text = "<speak><p>The quick brown fox jumps over the lazy dog &amp; cat.</p></speak>"
    task = start(polly, s3_bucket, text, TextType="ssml", OutputS3KeyPrefix="book/")
    assert task["TaskStatus"] == "scheduled"
    assert task["RequestCharacters"] == len("The quick brown fox jumps over the lazy dog & cat.")
    key = f"book/{task['TaskId']}.mp3"
    assert task["OutputUri"].endswith(f"/{s3_bucket}/{key}")
    assert statuses(polly, task["TaskId"]) == ["scheduled", "inProgress", "completed"]
    obj = s3_client.get_object(Bucket=s3_bucket, Key=key)
    assert obj["ContentType"] == "audio/mpeg"
    assert duration(obj["Body"].read()) > 1.0
    info = {t.task_id: t for t in emu.tasks}[task["TaskId"]]
    assert info.status == "completed" and info.request_characters == task["RequestCharacters"]
    assert info.text_sha256 == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    "fmt,rate,ext",
    [("ogg_vorbis", None, ".ogg"), ("ogg_opus", None, ".ogg"), ("mp3", "16000", ".mp3")],
)
def test_output_formats_decode(polly_emulator, s3_bucket, s3_client, fmt, rate, ext) -> None:
    polly = client(polly_emulator.url)
    kw = {"SampleRate": rate} if rate else {}
    task = start(
        polly,
        s3_bucket,
        "Sound check, one two.",
        OutputFormat=fmt,
        OutputS3KeyPrefix="out/part",
        **kw,
    )
    assert finish(polly, task["TaskId"])["TaskStatus"] == "completed"
    key = f"out/part.{task['TaskId']}{ext}"
    data = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert duration(data) > 0.5
    if rate:
        with av.open(io.BytesIO(data)) as c:
            assert c.streams.audio[0].rate == int(rate)


def test_pcm_and_speech_marks_tasks(polly_emulator, s3_bucket, s3_client) -> None:
    polly = client(polly_emulator.url)
    text = "Café au lait. Naïve façade!"
    pcm = start(polly, s3_bucket, text, OutputFormat="pcm", VoiceId="Lea")
    marks = start(
        polly,
        s3_bucket,
        text,
        OutputFormat="json",
        VoiceId="Lea",
        SpeechMarkTypes=["sentence", "word"],
    )
    for t in (pcm, marks):
        assert finish(polly, t["TaskId"])["TaskStatus"] == "completed"
    audio = s3_client.get_object(Bucket=s3_bucket, Key=pcm["TaskId"] + ".pcm")["Body"].read()
    assert len(audio) > 16000 and len(audio) % 2 == 0  # s16le at 16 kHz, over half a second
    body = s3_client.get_object(Bucket=s3_bucket, Key=marks["TaskId"] + ".marks")["Body"].read()
    lines = [json.loads(x) for x in body.decode().splitlines()]
    raw = text.encode()
    assert [m["value"] for m in lines if m["type"] == "sentence"] == [
        "Café au lait.",
        "Naïve façade!",
    ]
    assert [m["value"] for m in lines if m["type"] == "word"] == [
        "Café",
        "au",
        "lait",
        "Naïve",
        "façade",
    ]
    for m in lines:
        assert raw[m["start"] : m["end"]].decode() == m["value"]  # UTF-8 byte offsets
    times = [m["time"] for m in lines]
    assert times == sorted(times) and times[-1] > 0


def test_speech_marks_offsets_count_markup(polly_emulator) -> None:
    polly = client(polly_emulator.url)
    text = (
        '<speak><prosody volume="+20dB">Mary had a little lamb.</prosody><mark name="m1"/></speak>'
    )
    out = polly.synthesize_speech(
        OutputFormat="json",
        Text=text,
        TextType="ssml",
        VoiceId="Joanna",
        SpeechMarkTypes=["sentence", "word", "ssml"],
    )
    assert out["ContentType"] == "application/x-json-stream"
    lines = [json.loads(x) for x in out["AudioStream"].read().decode().splitlines()]
    first_word = next(m for m in lines if m["type"] == "word")
    assert (first_word["start"], first_word["value"]) == (31, "Mary")  # as in Polly's docs
    assert {"type": "ssml", "value": "m1"}.items() <= next(
        m for m in lines if m["type"] == "ssml"
    ).items()


def test_sns_notification_reaches_sqs(polly_emulator, s3_bucket, sns_queue, sqs_client) -> None:
    polly = client(polly_emulator.url)
    task = start(
        polly,
        s3_bucket,
        "Notify me.",
        SnsTopicArn=sns_queue.topic_arn,
        OutputS3KeyPrefix="n/",
        TextType="text",
    )
    assert task["SnsTopicArn"] == sns_queue.topic_arn
    assert finish(polly, task["TaskId"])["TaskStatus"] == "completed"
    msgs = sqs_client.receive_message(
        QueueUrl=sns_queue.queue_url, WaitTimeSeconds=5, MaxNumberOfMessages=10
    ).get("Messages", [])
    assert len(msgs) == 1
    note = json.loads(json.loads(msgs[0]["Body"])["Message"])
    assert note["taskId"] == task["TaskId"] and note["taskStatus"] == "COMPLETED"
    assert note["outputUri"] == f"s3://{s3_bucket}/n/{task['TaskId']}.mp3"
    assert note["requestCharacters"] == 10 and note["outputFormat"] == "Mp3"
    assert note["textType"] == "Text" and note["voiceId"] == "Joanna"
    assert note["creationTime"].endswith("Z") and "T" in note["creationTime"]


def test_bucket_default_encryption_is_honoured(polly_emulator, s3_bucket, s3_client) -> None:
    encrypt_bucket(s3_client, s3_bucket)
    polly = client(polly_emulator.url)
    task = start(polly, s3_bucket, "Secret words.")
    assert finish(polly, task["TaskId"])["TaskStatus"] == "completed"
    head = s3_client.head_object(Bucket=s3_bucket, Key=task["TaskId"] + ".mp3")
    assert head["ServerSideEncryption"] == "AES256"


def test_unwritable_bucket_fails_at_start(polly_emulator, s3_bucket, s3_client) -> None:
    deny_put(s3_client, s3_bucket)
    polly = client(polly_emulator.url)
    with pytest.raises(polly.exceptions.InvalidS3BucketException):
        start(polly, s3_bucket)


# --- quotas and limits -----------------------------------------------------------------------


def test_quota_table_and_buckets() -> None:
    now = [0.0]
    quotas = Quotas(clock=lambda: now[0])
    assert quotas.limits["start:standard"] == (10.0, 12)
    assert quotas.limits["start:long-form"] == (1.0, 1)
    assert quotas.limits["sync:standard"] == (80.0, 100)
    assert quotas.limits["getlist"][0] == 10.0 and quotas.limits["lexicon"] == (2.0, 4)
    starts = [quotas.allow("StartSpeechSynthesisTask", "neural") for _ in range(13)]
    assert starts == [True] * 12 + [False]
    assert quotas.allow("StartSpeechSynthesisTask", "long-form")
    assert not quotas.allow("StartSpeechSynthesisTask", "long-form")
    now[0] += 1.0  # one second refills 10 neural starts and 1 long-form start
    assert [quotas.allow("StartSpeechSynthesisTask", "neural") for _ in range(11)] == [
        True
    ] * 10 + [False]
    assert quotas.allow("StartSpeechSynthesisTask", "long-form")
    gets = [quotas.allow("GetSpeechSynthesisTask", None) for _ in range(6)]
    lists = [quotas.allow("ListSpeechSynthesisTasks", None) for _ in range(5)]
    assert gets + lists == [True] * 10 + [False]  # Get and List share one quota
    scaled = Quotas(scale=10)
    assert scaled.limits["start:standard"] == (100.0, 120)


def test_start_quota_throttles_over_http(make_polly_emulator, s3_bucket) -> None:
    emu = make_polly_emulator(quota_overrides={"start:standard": (0.01, 3)}, quota_scale=1)
    polly = client(emu.url)
    outcomes = []
    for _ in range(5):
        try:
            start(polly, s3_bucket, "Hi.")
            outcomes.append("ok")
        except polly.exceptions.ThrottlingException as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            outcomes.append("throttled")
    assert outcomes == ["ok"] * 3 + ["throttled"] * 2
    assert emu.stats["throttled_quota"] == 2
    assert len(emu.tasks) == 3


def test_with_quotas_off_the_calls_over_them_are_counted(make_polly_emulator, s3_bucket) -> None:
    emu = make_polly_emulator(
        quota_overrides={"start:standard": (0.01, 3)},
        concurrency_overrides={"standard": 2},
        quota_scale=1,
        quotas_enabled=False,
        queue_delay=60.0,  # every task stays open
    )
    polly = client(emu.url)
    for _ in range(5):
        start(polly, s3_bucket, "Hi.")  # none throttled
    stats = emu.stats
    assert stats["over_quota.start:standard"] == 2 and "throttled_quota" not in stats
    assert stats["over_concurrency.standard"] == 3 and "throttled_concurrency" not in stats
    assert len(emu.tasks) == 5


def test_botocore_retries_injected_throttling(make_polly_emulator) -> None:
    emu = make_polly_emulator(throttle_rate=0.5, seed=1)  # the first draw throttles
    polly = client(emu.url, retries=9)
    resp = polly.describe_voices(LanguageCode="de-DE")  # throttled once, then retried
    assert {v["Id"] for v in resp["Voices"]} >= {"Hans", "Marlene", "Vicki"}
    assert resp["ResponseMetadata"]["RetryAttempts"] == 1
    assert emu.stats["throttled_injected"] == 1


def test_character_limits(polly_emulator, s3_bucket) -> None:
    polly = client(polly_emulator.url)
    with pytest.raises(polly.exceptions.TextLengthExceededException):
        polly.synthesize_speech(OutputFormat="pcm", Text="a" * 3001, VoiceId="Joanna")
    tagged = "<speak>" + "<s>ab</s>" * 700 + "</speak>"  # 1,400 billable, 6,315 in all
    with pytest.raises(polly.exceptions.TextLengthExceededException):
        polly.synthesize_speech(OutputFormat="pcm", Text=tagged, TextType="ssml", VoiceId="Joanna")
    with pytest.raises(polly.exceptions.TextLengthExceededException):
        start(polly, s3_bucket, "a" * 100_001)
    billed = "<speak>" + "<break/>" * 300 + "x" * 3000 + "</speak>"  # 3,000 billed, 5,415 in all
    out = polly.synthesize_speech(
        OutputFormat="json",
        SpeechMarkTypes=["sentence"],
        Text=billed,
        TextType="ssml",
        VoiceId="Joanna",
    )
    assert out["RequestCharacters"] == 3000


SSML_CASES = [
    ("standard", "Joanna", "<speak><emphasis>yes</emphasis></speak>", None),
    ("neural", "Joanna", "<speak><emphasis>no</emphasis></speak>", "ValidationException"),
    (
        "neural",
        "Joanna",
        '<speak><amazon:effect name="whispered">no</amazon:effect></speak>',
        "ValidationException",
    ),
    ("neural", "Joanna", '<speak><amazon:effect name="drc">ok</amazon:effect></speak>', None),
    (
        "generative",
        "Ruth",
        '<speak><amazon:effect name="drc">no</amazon:effect></speak>',
        "ValidationException",
    ),
    (
        "standard",
        "Joanna",
        '<speak><amazon:domain name="news">no</amazon:domain></speak>',
        "ValidationException",
    ),
    ("standard", "Joanna", '<speak><audio src="x.mp3"/>no</speak>', "ValidationException"),
    ("standard", "Joanna", '<speak>a<break time="11s"/>b</speak>', "InvalidSsmlException"),
    ("standard", "Joanna", '<speak>a<break time="10s"/>b</speak>', None),
    ("standard", "Joanna", "<speak>AT&T</speak>", "InvalidSsmlException"),
    ("long-form", "Danielle", '<speak><prosody rate="90%">fine</prosody></speak>', None),
]


@pytest.mark.parametrize("engine,voice,text,error", SSML_CASES)
def test_ssml_rules_per_engine(polly_emulator, engine, voice, text, error) -> None:
    polly = client(polly_emulator.url)
    call = functools.partial(
        polly.synthesize_speech,
        OutputFormat="json",
        SpeechMarkTypes=["word"],
        Text=text,
        TextType="ssml",
        VoiceId=voice,
        Engine=engine,
    )
    if engine == "generative":
        call = functools.partial(
            polly.synthesize_speech,
            OutputFormat="pcm",
            Text=text,
            TextType="ssml",
            VoiceId=voice,
            Engine=engine,
        )
    if error is None:
        assert call()["RequestCharacters"] > 0
    else:
        with pytest.raises(getattr(polly.exceptions, error)) as err:
            call()
        if error == "ValidationException":
            assert err.value.response["reason"] == "other"


# --- faults ----------------------------------------------------------------------------------


def test_injected_task_failures_and_lost_notifications(
    make_polly_emulator, s3_bucket, sns_queue, sqs_client
) -> None:
    emu = make_polly_emulator(fail_rate=1.0, lost_notification_rate=0.0, seed=3)
    polly = client(emu.url)
    task = start(polly, s3_bucket, "Doomed.", SnsTopicArn=sns_queue.topic_arn)
    done = finish(polly, task["TaskId"])
    assert done["TaskStatus"] == "failed" and done["TaskStatusReason"] in TRANSIENT_REASONS
    assert is_transient(done["TaskStatusReason"])
    msgs = sqs_client.receive_message(QueueUrl=sns_queue.queue_url, WaitTimeSeconds=5)["Messages"]
    note = json.loads(json.loads(msgs[0]["Body"])["Message"])
    # The reason is not in the message (facts.NOTIFICATION_CARRIES_REASON): ask Get.
    assert note["taskStatus"] == "FAILED" and "taskStatusReason" not in note

    emu2 = make_polly_emulator(permanent_fail_rate=1.0, lost_notification_rate=1.0, seed=3)
    polly2 = client(emu2.url)
    task2 = start(polly2, s3_bucket, "Doomed again.", SnsTopicArn=sns_queue.topic_arn)
    done2 = finish(polly2, task2["TaskId"])
    assert done2["TaskStatusReason"] in PERMANENT_REASONS
    assert not is_transient(done2["TaskStatusReason"])
    stats = emu2.stats
    assert stats["tasks_failed_permanent_injected"] == 1
    assert stats["notifications_lost_injected"] == 1
    assert emu2.tasks[0].notified is False
    time.sleep(0.2)
    assert "Messages" not in sqs_client.receive_message(
        QueueUrl=sns_queue.queue_url, WaitTimeSeconds=0
    )


def test_injected_5xx_creates_no_task_and_is_counted(make_polly_emulator, s3_bucket) -> None:
    emu = make_polly_emulator(error5xx_rate=0.5, seed=11, slow_s3=0.1)
    polly = client(emu.url)
    ok = failed = 0
    for _ in range(12):
        try:
            start(polly, s3_bucket, "Maybe.")
            ok += 1
        except polly.exceptions.ServiceFailureException:
            failed += 1
    assert ok and failed
    assert len(emu.tasks) == ok
    assert emu.stats["errors_5xx_injected"] == failed
    assert emu.wait_idle(timeout=30)
    assert {t.status for t in emu.tasks} == {"completed"}


def test_stats_and_tasks_admin_endpoints(polly_emulator) -> None:
    import urllib.request

    with urllib.request.urlopen(polly_emulator.url + "/_emulator/stats") as r:
        stats = json.load(r)
    with urllib.request.urlopen(polly_emulator.url + "/_emulator/tasks") as r:
        tasks = json.load(r)
    assert "tasks_by_status" in stats
    assert len(tasks) == len(polly_emulator.tasks)
    if tasks:
        assert {"task_id", "status", "request_characters", "text_sha256"} <= set(tasks[0])


# --- listing, pagination, retention --------------------------------------------------------


def test_list_pagination_filter_and_order(make_polly_emulator, s3_bucket) -> None:
    emu = make_polly_emulator(queue_delay=0.0)
    polly = client(emu.url)
    ids = [start(polly, s3_bucket, f"Task number {i}.")["TaskId"] for i in range(5)]
    pages, token = [], None
    while True:
        kw = {"MaxResults": 2, **({"NextToken": token} if token else {})}
        resp = polly.list_speech_synthesis_tasks(**kw)
        pages.append([t["TaskId"] for t in resp["SynthesisTasks"]])
        token = resp.get("NextToken")
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [i for p in pages for i in p]
    assert flat == list(reversed(ids))  # newest first
    paginator = polly.get_paginator("list_speech_synthesis_tasks")
    got = [
        t["TaskId"]
        for page in paginator.paginate(PaginationConfig={"PageSize": 2})
        for t in page["SynthesisTasks"]
    ]
    assert got == flat
    for i in ids:
        finish(polly, i)
    done = polly.list_speech_synthesis_tasks(Status="completed")["SynthesisTasks"]
    assert {t["TaskId"] for t in done} == set(ids)
    assert polly.list_speech_synthesis_tasks(Status="scheduled")["SynthesisTasks"] == []


def test_tasks_expire_after_72_hours(make_polly_emulator, s3_bucket) -> None:
    now = [1_700_000_000.0]
    emu = make_polly_emulator(clock=lambda: now[0])
    polly = client(emu.url)
    task = start(polly, s3_bucket, "Short lived.")
    assert task["CreationTime"].timestamp() == pytest.approx(now[0])
    finish(polly, task["TaskId"])
    now[0] += 71 * 3600
    assert polly.get_speech_synthesis_task(TaskId=task["TaskId"])
    now[0] += 2 * 3600
    with pytest.raises(polly.exceptions.SynthesisTaskNotFoundException):
        polly.get_speech_synthesis_task(TaskId=task["TaskId"])
    assert polly.list_speech_synthesis_tasks()["SynthesisTasks"] == []


def test_describe_voices_filters_and_pages(make_polly_emulator) -> None:
    polly = client(make_polly_emulator(voices_page_size=25).url)
    seen, token = [], None
    while True:
        resp = polly.describe_voices(**({"NextToken": token} if token else {}))
        assert len(resp["Voices"]) <= 25
        seen += [v["Id"] for v in resp["Voices"]]
        token = resp.get("NextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) > 90
    hindi = polly.describe_voices(LanguageCode="hi-IN", IncludeAdditionalLanguageCodes=True)[
        "Voices"
    ]
    assert {"Aditi", "Kajal"} <= {v["Id"] for v in hindi}
    assert polly.describe_voices(LanguageCode="hi-IN")["Voices"] == []
    gen = {v["Id"] for v in polly.describe_voices(Engine="generative")["Voices"]}
    assert "Ruth" in gen and "Hans" not in gen


def test_lexicon_lifecycle(polly_emulator) -> None:
    polly = client(polly_emulator.url)
    pls = (
        '<?xml version="1.0"?><lexicon version="1.0" '
        'xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="x-sampa" '
        'xml:lang="en-GB"><lexeme><grapheme>Gr</grapheme><alias>Great</alias></lexeme>'
        "</lexicon>"
    )
    polly.put_lexicon(Name="lifeLex", Content=pls)
    out = polly.synthesize_speech(
        OutputFormat="mp3", Text="Gr.", VoiceId="Amy", LexiconNames=["lifeLex"]
    )
    assert out["RequestCharacters"] == 3
    polly.delete_lexicon(Name="lifeLex")
    with pytest.raises(polly.exceptions.LexiconNotFoundException):
        polly.get_lexicon(Name="lifeLex")


def test_module_entry_point_prints_url(moto_server, s3_bucket) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "audiobook.emulator",
            "--port",
            "0",
            "--s3-endpoint",
            moto_server,
            "--quota",
            "start:standard=0.01:1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        voices = client(url).describe_voices(Engine="long-form")["Voices"]
        assert {v["Id"] for v in voices} == {"Danielle", "Gregory", "Ruth"}
        start(client(url), s3_bucket, "One.")
        with pytest.raises(client(url).exceptions.ThrottlingException):
            start(client(url), s3_bucket, "Two.")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
