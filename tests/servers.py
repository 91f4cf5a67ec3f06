"""Real servers for tests, on 127.0.0.1 with port 0: moto (S3, SNS, SQS in one server)
and the project's Polly emulator wired to it. Never real AWS: credentials are fake and
every endpoint points at these servers.

Fixtures:
    moto_server            (session) URL of moto's server, e.g. "http://127.0.0.1:41234"
    polly_emulator         (session) EmulatorServer on moto, quotas x10, no faults
    make_polly_emulator    (function) factory: make_polly_emulator(**options) -> a fresh
                           EmulatorServer on moto (options as for ``serve``), shut down
                           after the test; quota_scale defaults to 10
    aws_env                (function) environment for boto3: fake credentials,
                           us-east-1, AWS_ENDPOINT_URL_{S3,SNS,SQS} -> moto,
                           AWS_ENDPOINT_URL_POLLY -> polly_emulator; returns the dict set
    s3_client, sns_client, sqs_client, polly_client  (session) boto3 clients on them
    s3_bucket              (function) name of a fresh empty bucket
                           (``deny_put(s3_client, bucket)`` makes it refuse writes)
    sns_queue              (function) SnsQueue(topic_arn, queue_url, queue_arn): a fresh
                           topic with a fresh SQS queue subscribed (raw delivery off)
    pg_server              (session) URL of a PostgreSQL server (the pgserver wheel's,
                           started in a temp folder; skips where it cannot start)
    pg_url                 (function) URL of a fresh database on it

Tests that use any of them are marked ``aws`` automatically, and those that use the
emulator ``ffmpeg`` as well (it encodes its audio with ffmpeg).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest

from audiobook.emulator import EmulatorServer, serve

REGION = "us-east-1"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

_AWS_FIXTURES = {
    "moto_server",
    "polly_emulator",
    "make_polly_emulator",
    "aws_env",
    "s3_client",
    "sns_client",
    "sqs_client",
    "polly_client",
    "s3_bucket",
    "sns_queue",
}


# The emulator encodes its audio with ffmpeg.
_FFMPEG_FIXTURES = {"polly_emulator", "make_polly_emulator", "aws_env", "polly_client"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if _AWS_FIXTURES & used:
            item.add_marker(pytest.mark.aws)
        if _FFMPEG_FIXTURES & used:
            item.add_marker(pytest.mark.ffmpeg)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def polly_emulator(moto_server: str) -> Iterator[EmulatorServer]:
    server = serve(s3_endpoint=moto_server, region=REGION, quota_scale=10)
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def make_polly_emulator(moto_server: str) -> Iterator[Callable[..., EmulatorServer]]:
    made: list[EmulatorServer] = []

    def make(**options: Any) -> EmulatorServer:
        options.setdefault("quota_scale", 10)
        server = serve(s3_endpoint=moto_server, region=REGION, **options)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.shutdown()


@pytest.fixture
def aws_env(
    monkeypatch: pytest.MonkeyPatch,
    moto_server: str,
    polly_emulator: EmulatorServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    empty = tmp_path_factory.mktemp("aws") / "none"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_ENDPOINT_URL": moto_server,  # anything else goes to moto, never to AWS
        "AWS_ENDPOINT_URL_S3": moto_server,
        "AWS_ENDPOINT_URL_SNS": moto_server,
        "AWS_ENDPOINT_URL_SQS": moto_server,
        "AWS_ENDPOINT_URL_POLLY": polly_emulator.url,
    }
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _client(service: str, url: str) -> Any:
    return boto3.session.Session(region_name=REGION, **FAKE_CREDENTIALS).client(
        service, endpoint_url=url
    )


@pytest.fixture(scope="session")
def s3_client(moto_server: str) -> Any:
    return _client("s3", moto_server)


@pytest.fixture(scope="session")
def sns_client(moto_server: str) -> Any:
    return _client("sns", moto_server)


@pytest.fixture(scope="session")
def sqs_client(moto_server: str) -> Any:
    return _client("sqs", moto_server)


@pytest.fixture(scope="session")
def polly_client(polly_emulator: EmulatorServer) -> Any:
    return _client("polly", polly_emulator.url)


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name


def encrypt_bucket(s3_client: Any, bucket: str, kms_key: str | None = None) -> None:
    """Default encryption on ``bucket``: SSE-KMS with ``kms_key``, else SSE-S3 (AES256)."""
    rule: dict[str, str] = {"SSEAlgorithm": "AES256"}
    if kms_key is not None:
        rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key}
    s3_client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
    )


def deny_put(s3_client: Any, bucket: str) -> None:
    """A bucket policy that refuses every PutObject into ``bucket``."""
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    s3_client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


@dataclass(frozen=True)
class SnsQueue:
    topic_arn: str
    queue_url: str
    queue_arn: str


@pytest.fixture
def sns_queue(sns_client: Any, sqs_client: Any) -> SnsQueue:
    name = f"test-{uuid.uuid4().hex[:16]}"
    topic = sns_client.create_topic(Name=name)["TopicArn"]
    queue_url = sqs_client.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sqs_client.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "Policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": queue_arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
                        }
                    ],
                }
            )
        },
    )
    sns_client.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return SnsQueue(topic, queue_url, queue_arn)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL server started for the session (a short temp path: the
    server's Unix socket lives in it, and socket paths are limited to ~100 bytes)."""
    pgserver = pytest.importorskip("pgserver", reason="the pgserver wheel is not installed")
    folder = tempfile.mkdtemp(prefix="ab-pg-")
    try:
        try:
            server = pgserver.get_server(Path(folder) / "data", cleanup_mode="stop")
        except Exception as e:  # noqa: BLE001 - whatever stops a server from starting here
            pytest.skip(f"pgserver could not start a PostgreSQL server here: {e}")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh database on the session's server, for one test."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg (the PostgreSQL driver) is missing")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(pg_server)._replace(path=f"/{name}"))
