"""The emulator against the botocore model: requests serialized by botocore parse back
to the same parameters, responses parse with botocore's own rest-json parser, and
modeled errors come back as the right exception classes with the right status codes."""

from __future__ import annotations

import datetime as dt
import functools
import http.client
import io
import json
import time
import urllib.parse
from typing import Any

import boto3
import botocore.config
import botocore.parsers
import botocore.serialize
import pytest
from botocore.awsrequest import HeadersDict

from audiobook.emulator import protocol

LEXICON = """<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon"
  alphabet="ipa" xml:lang="en-US">
  <lexeme><grapheme>W3C</grapheme><alias>World Wide Web Consortium</alias></lexeme>
</lexicon>"""

MODEL = protocol.service_model()


@functools.cache
def client(url: str, retries: int = 0) -> Any:
    cfg = botocore.config.Config(retries={"mode": "legacy", "total_max_attempts": retries + 1})
    return boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client("polly", endpoint_url=url, config=cfg)


def wait_done(polly: Any, task_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = polly.get_speech_synthesis_task(TaskId=task_id)["SynthesisTask"]
        if task["TaskStatus"] in ("completed", "failed"):
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


# --- requests: botocore's serializer -> the emulator's parser --------------------------------

REQUESTS: dict[str, dict[str, Any]] = {
    "StartSpeechSynthesisTask": {
        "Engine": "neural",
        "LanguageCode": "en-US",
        "LexiconNames": ["abc", "Def1"],
        "OutputFormat": "mp3",
        "OutputS3BucketName": "my-bucket",
        "OutputS3KeyPrefix": "a/b",
        "SampleRate": "24000",
        "SnsTopicArn": "arn:aws:sns:us-east-1:123456789012:t",
        "SpeechMarkTypes": ["word"],
        "Text": "<speak>héllo &amp; wörld</speak>",
        "TextType": "ssml",
        "VoiceId": "Joanna",
    },
    "GetSpeechSynthesisTask": {"TaskId": "70b61c0f-57ce-4715-a247-cae8729dcce9"},
    "ListSpeechSynthesisTasks": {"MaxResults": 7, "NextToken": "abc/+=", "Status": "failed"},
    "SynthesizeSpeech": {
        "Engine": "standard",
        "LexiconNames": ["x"],
        "OutputFormat": "pcm",
        "SampleRate": "8000",
        "Text": "Hi",
        "TextType": "text",
        "VoiceId": "Matthew",
        "SpeechMarkTypes": ["sentence"],
    },
    "DescribeVoices": {
        "Engine": "long-form",
        "LanguageCode": "en-US",
        "IncludeAdditionalLanguageCodes": True,
        "NextToken": "t o/k",
    },
    "PutLexicon": {"Name": "abc", "Content": LEXICON},
    "GetLexicon": {"Name": "abc"},
    "ListLexicons": {"NextToken": "n"},
    "DeleteLexicon": {"Name": "abc"},
    # modeled, answered "unsupportedOperation" by the emulator, parsed all the same
    "GetVoice": {"VoiceId": "vc-0a1b"},
    "DeleteVoice": {"VoiceId": "vc-0a1b"},
    "ListTagsForResource": {"ResourceArn": "arn:aws:polly:us-east-1:123456789012:lexicon/x"},
    "TagResource": {
        "ResourceArn": "arn:aws:polly:us-east-1:123456789012:lexicon/x",
        "Tags": {"k": "v"},
    },
    "UntagResource": {
        "ResourceArn": "arn:aws:polly:us-east-1:123456789012:lexicon/x",
        "TagKeys": ["k"],
    },
}


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_request_shapes_round_trip(operation: str) -> None:
    params = REQUESTS[operation]
    op = MODEL.operation_model(operation)
    req = botocore.serialize.create_serializer("rest-json").serialize_to_request(params, op)
    path, _, query = req["url_path"].partition("?")
    qs = urllib.parse.urlencode(req["query_string"], doseq=True) if req["query_string"] else query
    found = protocol.route(req["method"], path)
    assert found is not None and found[0] == operation
    body = req["body"] if isinstance(req["body"], bytes) else req["body"].encode()
    assert protocol.parse_request(operation, found[1], qs, req["headers"], body) == params
    assert protocol.violations(operation, params) == []


def test_every_route_of_the_model_is_known() -> None:
    for name in MODEL.operation_names:
        op = MODEL.operation_model(name)
        path = (
            op.http["requestUri"]
            .split("?")[0]
            .replace("{TaskId}", "x")
            .replace("{LexiconName}", "x")
            .replace("{VoiceId}", "x")
        )
        assert protocol.route(op.http["method"], path) == (
            name,
            {
                k: "x"
                for k in ("TaskId", "LexiconName", "VoiceId")
                if "{" + k in op.http["requestUri"]
            },
        )


# --- responses: the real client, and botocore's parser on raw HTTP ---------------------------


def raw(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = {
        "status_code": resp.status,
        "headers": HeadersDict(resp.getheaders()),
        "body": resp.read(),
    }
    conn.close()
    return out


def parse(operation: str, response: dict[str, Any]) -> dict[str, Any]:
    parser = botocore.parsers.create_parser("rest-json")
    if operation == "SynthesizeSpeech" and response["status_code"] == 200:
        response = {**response, "body": io.BytesIO(response["body"])}  # a streaming payload
    return parser.parse(response, MODEL.operation_model(operation).output_shape)


def test_every_operation_through_boto3_and_botocore_parser(polly_emulator, s3_bucket) -> None:
    polly = client(polly_emulator.url)
    url = polly_emulator.url

    polly.put_lexicon(Name="modelLex", Content=LEXICON)
    got = polly.get_lexicon(Name="modelLex")
    assert got["Lexicon"] == {"Content": LEXICON, "Name": "modelLex"}
    assert got["LexiconAttributes"]["LexemesCount"] == 1
    assert isinstance(got["LexiconAttributes"]["LastModified"], dt.datetime)
    assert "modelLex" in [x["Name"] for x in polly.list_lexicons()["Lexicons"]]
    parsed = parse("GetLexicon", raw(url, "GET", "/v1/lexicons/modelLex"))
    assert parsed["LexiconAttributes"]["Alphabet"] == "ipa"
    assert parse("ListLexicons", raw(url, "GET", "/v1/lexicons"))["Lexicons"]

    start = polly.start_speech_synthesis_task(
        OutputFormat="mp3",
        OutputS3BucketName=s3_bucket,
        Text="Model check.",
        VoiceId="Joanna",
        LexiconNames=["modelLex"],
    )["SynthesisTask"]
    assert start["TaskStatus"] == "scheduled"
    assert isinstance(start["CreationTime"], dt.datetime)
    assert start["RequestCharacters"] == len("Model check.")
    assert start["LexiconNames"] == ["modelLex"] and start["TextType"] == "text"
    parsed = parse(
        "StartSpeechSynthesisTask",
        raw(
            url,
            "POST",
            "/v1/synthesisTasks",
            {
                "OutputFormat": "ogg_vorbis",
                "OutputS3BucketName": s3_bucket,
                "Text": "Raw.",
                "VoiceId": "Matthew",
            },
        ),
    )
    assert parsed["SynthesisTask"]["OutputFormat"] == "ogg_vorbis"
    done = wait_done(polly, start["TaskId"])
    assert done["TaskStatus"] == "completed"
    parsed = parse(
        "GetSpeechSynthesisTask", raw(url, "GET", f"/v1/synthesisTasks/{start['TaskId']}")
    )
    assert parsed["SynthesisTask"]["TaskId"] == start["TaskId"]
    assert isinstance(parsed["SynthesisTask"]["CreationTime"], dt.datetime)
    listed = parse("ListSpeechSynthesisTasks", raw(url, "GET", "/v1/synthesisTasks?MaxResults=1"))
    assert len(listed["SynthesisTasks"]) == 1 and listed["NextToken"]
    assert polly.list_speech_synthesis_tasks(MaxResults=100)["SynthesisTasks"]

    speech = polly.synthesize_speech(OutputFormat="mp3", Text="Hello.", VoiceId="Amy")
    assert speech["ContentType"] == "audio/mpeg" and speech["RequestCharacters"] == 6
    assert len(speech["AudioStream"].read()) > 100
    parsed = parse(
        "SynthesizeSpeech",
        raw(url, "POST", "/v1/speech", {"OutputFormat": "pcm", "Text": "Hi", "VoiceId": "Amy"}),
    )
    assert parsed["ContentType"] == "audio/pcm" and parsed["RequestCharacters"] == 2
    assert len(parsed["AudioStream"].read()) > 0

    voices = polly.describe_voices(Engine="long-form")["Voices"]
    assert {"Danielle", "Gregory", "Ruth"} <= {v["Id"] for v in voices}
    assert all("long-form" in v["SupportedEngines"] for v in voices)
    assert parse("DescribeVoices", raw(url, "GET", "/v1/voices?LanguageCode=fr-FR"))["Voices"]

    polly.delete_lexicon(Name="modelLex")
    assert (
        parse("DeleteLexicon", raw(url, "DELETE", "/v1/lexicons/nope"))["Error"]["Code"]
        == "LexiconNotFoundException"
    )


# --- modeled errors --------------------------------------------------------------------------

START = {"OutputFormat": "mp3", "Text": "Hello.", "VoiceId": "Joanna"}
SPEAK = {"OutputFormat": "mp3", "Text": "Hello.", "VoiceId": "Joanna"}

ERRORS: list[tuple[str, str, dict[str, Any], str, int]] = [
    (
        "bad bucket name",
        "start_speech_synthesis_task",
        {**START, "OutputS3BucketName": "BAD_Bucket"},
        "InvalidS3BucketException",
        400,
    ),
    (
        "missing bucket",
        "start_speech_synthesis_task",
        {**START, "OutputS3BucketName": "no-such-bucket-here"},
        "InvalidS3BucketException",
        400,
    ),
    (
        "bad prefix",
        "start_speech_synthesis_task",
        {**START, "OutputS3KeyPrefix": "a b"},
        "InvalidS3KeyException",
        400,
    ),
    (
        "bad topic",
        "start_speech_synthesis_task",
        {**START, "SnsTopicArn": "arn:nope"},
        "InvalidSnsTopicArnException",
        400,
    ),
    (
        "missing topic",
        "start_speech_synthesis_task",
        {**START, "SnsTopicArn": "arn:aws:sns:us-east-1:123456789012:missing"},
        "InvalidSnsTopicArnException",
        400,
    ),
    (
        "sample rate",
        "synthesize_speech",
        {**SPEAK, "SampleRate": "12345"},
        "InvalidSampleRateException",
        400,
    ),
    (
        "pcm rate",
        "synthesize_speech",
        {**SPEAK, "OutputFormat": "pcm", "SampleRate": "22050"},
        "InvalidSampleRateException",
        400,
    ),
    (
        "malformed ssml",
        "synthesize_speech",
        {**SPEAK, "TextType": "ssml", "Text": "<speak>a<"},
        "InvalidSsmlException",
        400,
    ),
    (
        "not speak",
        "synthesize_speech",
        {**SPEAK, "TextType": "ssml", "Text": "<p>a</p>"},
        "InvalidSsmlException",
        400,
    ),
    (
        "marks format",
        "synthesize_speech",
        {**SPEAK, "SpeechMarkTypes": ["word"]},
        "MarksNotSupportedForFormatException",
        400,
    ),
    (
        "ssml marks on text",
        "synthesize_speech",
        {**SPEAK, "OutputFormat": "json", "SpeechMarkTypes": ["ssml"]},
        "SsmlMarksNotSupportedForTextTypeException",
        400,
    ),
    (
        "language",
        "synthesize_speech",
        {**SPEAK, "LanguageCode": "fr-FR"},
        "LanguageNotSupportedException",
        400,
    ),
    (
        "marks on generative",
        "synthesize_speech",
        {
            **SPEAK,
            "VoiceId": "Ruth",
            "Engine": "generative",
            "OutputFormat": "json",
            "SpeechMarkTypes": ["word"],
        },
        "EngineNotSupportedException",
        400,
    ),
    (
        "text length",
        "synthesize_speech",
        {**SPEAK, "Text": "a" * 3001},
        "TextLengthExceededException",
        400,
    ),
    (
        "lexicon",
        "synthesize_speech",
        {**SPEAK, "LexiconNames": ["missing"]},
        "LexiconNotFoundException",
        404,
    ),
    (
        "engine mismatch",
        "synthesize_speech",
        {**SPEAK, "VoiceId": "Ruth"},
        "ValidationException",
        400,
    ),
    ("enum", "synthesize_speech", {**SPEAK, "Engine": "turbo"}, "ValidationException", 400),
    (
        "unknown voice",
        "synthesize_speech",
        {**SPEAK, "VoiceId": "Nobody"},
        "ValidationException",
        400,
    ),
    (
        "too many lexicons",
        "synthesize_speech",
        {**SPEAK, "LexiconNames": ["a", "b", "c", "d", "e", "f"]},
        "ValidationException",
        400,
    ),
    ("bad task id", "get_speech_synthesis_task", {"TaskId": "a.b"}, "InvalidTaskIdException", 400),
    (
        "unknown task",
        "get_speech_synthesis_task",
        {"TaskId": "abc-123"},
        "SynthesisTaskNotFoundException",
        400,
    ),
    (
        "bad token",
        "list_speech_synthesis_tasks",
        {"NextToken": "garbage!"},
        "InvalidNextTokenException",
        400,
    ),
    ("max results", "list_speech_synthesis_tasks", {"MaxResults": 101}, "ValidationException", 400),
    ("voices token", "describe_voices", {"NextToken": "zzz"}, "InvalidNextTokenException", 400),
    ("no lexicon", "get_lexicon", {"Name": "absent"}, "LexiconNotFoundException", 404),
    (
        "bad pls",
        "put_lexicon",
        {"Name": "bad", "Content": "<lexicon"},
        "InvalidLexiconException",
        400,
    ),
    (
        "pls alphabet",
        "put_lexicon",
        {"Name": "bad", "Content": LEXICON.replace('"ipa"', '"klingon"')},
        "UnsupportedPlsAlphabetException",
        400,
    ),
    (
        "pls language",
        "put_lexicon",
        {"Name": "bad", "Content": LEXICON.replace("en-US", "xx-XX")},
        "UnsupportedPlsLanguageException",
        400,
    ),
    (
        "pls size",
        "put_lexicon",
        {"Name": "big", "Content": LEXICON + " " * 40_000},
        "LexiconSizeExceededException",
        400,
    ),
]


@pytest.mark.parametrize("what,method,kwargs,code,status", ERRORS, ids=[e[0] for e in ERRORS])
def test_modeled_errors(polly_emulator, s3_bucket, what, method, kwargs, code, status) -> None:
    polly = client(polly_emulator.url)
    if method == "start_speech_synthesis_task":
        kwargs = {"OutputS3BucketName": s3_bucket, **kwargs}
    with pytest.raises(getattr(polly.exceptions, code)) as err:
        getattr(polly, method)(**kwargs)
    meta = err.value.response["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == status
    assert meta["HTTPHeaders"]["x-amzn-requestid"]
    assert err.value.response["Error"]["Message"]


def test_raw_error_wire_format(polly_emulator) -> None:
    resp = raw(
        polly_emulator.url,
        "POST",
        "/v1/speech",
        {"OutputFormat": "mp3", "Text": "x", "VoiceId": "Joanna", "Engine": "turbo"},
    )
    assert resp["status_code"] == 400
    assert resp["headers"]["x-amzn-ErrorType"].startswith("ValidationException")
    body = json.loads(resp["body"])
    assert body["message"] == (
        "1 validation error detected: Value 'turbo' at 'engine' failed to satisfy "
        "constraint: Member must satisfy enum value set: [standard, neural, long-form, "
        "generative]"
    )
    parsed = parse("SynthesizeSpeech", resp)
    assert parsed["Error"]["Code"] == "ValidationException"


def test_service_failure_and_throttling_classes(make_polly_emulator) -> None:
    broken = client(make_polly_emulator(error5xx_rate=1.0, seed=1).url)
    with pytest.raises(broken.exceptions.ServiceFailureException) as err:
        broken.describe_voices()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    busy = client(make_polly_emulator(throttle_rate=1.0, seed=1).url)
    with pytest.raises(busy.exceptions.ThrottlingException) as err:
        busy.list_speech_synthesis_tasks()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_operations_outside_scope_answer_a_modeled_error(polly_emulator) -> None:
    polly = client(polly_emulator.url)
    with pytest.raises(polly.exceptions.ValidationException) as err:
        polly.get_voice(VoiceId="vc-0a1b")
    assert err.value.response["reason"] == "unsupportedOperation"


def test_unknown_route_is_an_error(polly_emulator) -> None:
    resp = raw(polly_emulator.url, "GET", "/v2/whatever")
    assert resp["status_code"] == 404
    assert resp["headers"]["x-amzn-ErrorType"].startswith("UnknownOperationException")
