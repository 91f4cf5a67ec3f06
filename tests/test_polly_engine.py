"""The Polly engine: pure helpers here, then the real boto3 client against moto (S3, SNS,
SQS) and the project's Polly emulator over HTTP (marked ``aws``)."""

from __future__ import annotations

import json

import pytest

from audiobook.errors import ConfigError, EngineError, Throttled, TransientEngineError
from audiobook.engines.polly import (
    PollyEngine,
    map_client_error,
    marks_to_webvtt,
    parse_notification,
    parse_s3_uri,
    pick_mode,
    reason_is_transient,
    unsupported_ssml,
)

# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://s3.us-west-2.amazonaws.com/my-bucket/p/k/70b6.mp3", ("my-bucket", "p/k/70b6.mp3")),
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
    expected = {"task_id": "t-1", "status": "completed", "output_uri": "s3://b/k/t-1.mp3",
                "reason": ""}
    assert parse_notification(json.dumps(envelope)) == expected
    assert parse_notification(json.dumps(message)) == expected
    failed = dict(message, taskStatus="FAILED", taskStatusReason="Internal service error")
    note = parse_notification(json.dumps({"Message": json.dumps(failed)}))
    assert note is not None and (note["status"], note["reason"]) == (
        "failed", "Internal service error")
    assert parse_notification("not json") is None
    assert parse_notification(json.dumps({"Message": "hello"})) is None


def test_pick_mode_per_job():
    assert pick_mode("auto", 2_999, 5_000) == "sync"
    assert pick_mode("auto", 3_000, 6_000) == "sync"
    assert pick_mode("auto", 3_001, 5_000) == "async"
    assert pick_mode("auto", 100, 6_001) == "async"
    assert pick_mode("sync", 10**6, 10**6) == "sync"  # the user decides
    assert pick_mode("async", 10, 10) == "async"
    with pytest.raises(ConfigError, match="--mode"):
        pick_mode("fast", 1, 1)


def test_engine_limits_follow_the_mode():
    e = PollyEngine(voice="Joanna", bucket="b-ok")
    assert e.limits.max_billable == 100_000  # auto, not planned yet: async
    assert e.plan(2_000, 4_000) == "sync" and e.limits.max_billable == 3_000
    assert e.plan(200_000, 400_000) == "async" and e.limits.max_total == 200_000
    e = PollyEngine(voice="Joanna", bucket="b-ok", mode="sync")
    assert e.plan(10**6, 10**6) == "sync"


def test_identity_names_everything_that_changes_the_audio():
    e = PollyEngine(voice="Lea", bucket="b-ok", polly_engine="standard", lexicons=("a", "b"))
    assert e.identity() == "polly:standard:Lea:mp3:22050:a,b"
    e = PollyEngine(voice="Lea", bucket="b-ok", output_format="pcm", sample_rate="8000")
    assert e.identity() == "polly:neural:Lea:pcm:8000:"
    assert (e.audio_format.ext, e.audio_format.sample_rate) == ("wav", 8000)


@pytest.mark.parametrize(
    ("ssml", "engine", "bad"),
    [
        ("<speak><emphasis>x</emphasis></speak>", "neural", "<emphasis>"),
        ("<speak><emphasis>x</emphasis></speak>", "standard", None),
        ('<speak><amazon:effect name="whispered">x</amazon:effect></speak>', "long-form",
         '<amazon:effect name="whispered">'),
        ('<speak><amazon:effect name="drc">x</amazon:effect></speak>', "neural", None),
        ('<speak><amazon:effect name="drc">x</amazon:effect></speak>', "generative",
         '<amazon:effect name="drc">'),
        ('<speak><amazon:domain name="news">x</amazon:domain></speak>', "standard",
         '<amazon:domain name="news">'),
        ('<speak><amazon:domain name="news">x</amazon:domain></speak>', "neural", None),
        ('<speak><audio src="a.mp3"/></speak>', "standard", "<audio>"),
        ('<speak><break time="12s"/></speak>', "neural", '<break time="12s"> (over 10 seconds)'),
        ('<speak><prosody rate="-90%">x</prosody></speak>', "standard",
         '<prosody rate="-90%"> (slower than -80%)'),
        ("<speak><blink>x</blink></speak>", "standard", "<blink>"),
        ('<speak><p><s>Tom &amp; "Jerry" &lt;b&gt;</s></p><break time="1500ms"/></speak>',
         "generative", None),
    ],
)
def test_unsupported_ssml(ssml, engine, bad):
    assert unsupported_ssml(ssml, engine) == bad


def test_validate_ssml_is_one_line_naming_the_tag():
    e = PollyEngine(voice="Joanna", bucket="b-ok", polly_engine="neural")
    with pytest.raises(ConfigError) as info:
        e.validate_ssml("<speak><emphasis>loud</emphasis></speak>")
    assert str(info.value) == "SSML tag <emphasis> is not supported by the Polly neural engine"


def test_reason_is_transient():
    assert reason_is_transient("Internal service error")
    assert reason_is_transient("Service temporarily unavailable, please retry")
    assert reason_is_transient("Request timed out")
    assert not reason_is_transient(
        "Error occurred while trying to synthesize the text: unsupported character")
    assert not reason_is_transient("Access denied writing the output to Amazon S3")


def _client_error(code: str, status: int, message: str = "boom\nsecond line"):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": message},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        "StartSpeechSynthesisTask",
    )


def test_map_client_error():
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    assert isinstance(map_client_error(_client_error("ThrottlingException", 400), "x"), Throttled)
    assert isinstance(map_client_error(_client_error("ServiceFailureException", 500), "x"),
                      TransientEngineError)
    assert isinstance(map_client_error(_client_error("Whatever", 503), "x"), TransientEngineError)
    err = map_client_error(_client_error("InvalidSsmlException", 400), "Polly Start")
    assert isinstance(err, ConfigError)
    assert str(err) == "Polly Start: InvalidSsmlException: boom second line"
    assert isinstance(map_client_error(_client_error("SynthesisTaskNotFoundException", 400), "x"),
                      EngineError)
    assert isinstance(
        map_client_error(EndpointConnectionError(endpoint_url="http://x"), "x"),
        TransientEngineError)
    assert isinstance(map_client_error(NoCredentialsError(), "x"), ConfigError)


def test_check_options_one_line_errors():
    with pytest.raises(ConfigError, match="^--bucket is required for --engine polly$"):
        PollyEngine(voice="Joanna", bucket="").check_options()
    with pytest.raises(ConfigError, match="not a valid S3 bucket name"):
        PollyEngine(voice="Joanna", bucket="Bad_Bucket").check_options()
    with pytest.raises(ConfigError, match="--polly-engine"):
        PollyEngine(voice="Joanna", bucket="b-ok", polly_engine="turbo").check_options()
    with pytest.raises(ConfigError, match="sample rate 44100 is not valid for pcm"):
        PollyEngine(voice="Joanna", bucket="b-ok", output_format="pcm",
                    sample_rate="44100").check_options()
    with pytest.raises(ConfigError, match="generative engine produces no speech marks"):
        PollyEngine(voice="Ruth", bucket="b-ok", polly_engine="generative",
                    marks=("sentence",)).check_options()


# --------------------------------------------------------------------------- WebVTT

CHUNK1 = "\n".join(json.dumps(m) for m in [
    {"time": 0, "type": "sentence", "start": 13, "end": 36, "value": "Mary had a little lamb."},
    {"time": 6, "type": "word", "start": 13, "end": 17, "value": "Mary"},
    {"time": 373, "type": "word", "start": 18, "end": 21, "value": "had"},
    {"time": 604, "type": "word", "start": 22, "end": 23, "value": "a"},
    {"time": 1500, "type": "sentence", "start": 40, "end": 58, "value": "Tom &amp; Jerry &lt;3"},
])
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
