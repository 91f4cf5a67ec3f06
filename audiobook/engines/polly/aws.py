"""The AWS edge: botocore errors as the tool's own, the Polly client and its config, the
two listing calls, and what a Polly task's status and OutputUri mean.

Every boto3 call goes through ``_call``, which turns botocore's exceptions into
``Throttled`` / ``TransientEngineError`` / ``ConfigError`` / ``EngineError`` with the
service's message on one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlparse

from ...errors import (
    AudiobookError,
    ConfigError,
    EngineError,
    Throttled,
    TransientEngineError,
    one_line,
)
from ..base import TaskState, TaskStatus

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
# Polly's TaskStatus values other than "failed", as the seam's.
_NOT_FAILED: dict[str, TaskStatus] = {
    "scheduled": "scheduled",
    "inProgress": "inProgress",
    "completed": "completed",
}
_TRANSIENT_REASON = re.compile(
    r"internal|service ?failure|throttl|timed? ?out|timeout|unavailable|try again|temporar",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------- errors


def map_client_error(exc: BaseException, what: str) -> AudiobookError:
    """A botocore exception as one of our errors, with the service's message on one line.

    ThrottlingException (any status) -> Throttled; 5xx, ServiceFailure and connection
    errors -> TransientEngineError; request problems the user must fix -> ConfigError;
    anything else -> EngineError.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ReadTimeoutError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        raw = str(err.get("Message") or code)
        msg = one_line(raw) if raw.strip() else ""
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
        return TransientEngineError(f"{what}: {one_line(exc)}")
    if isinstance(exc, BotoCoreError):
        return EngineError(f"{what}: {one_line(exc)}")
    if isinstance(exc, OSError):
        return TransientEngineError(f"{what}: {one_line(exc)}")
    return EngineError(f"{what}: {one_line(exc)}", expected=False)


def _call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a boto3 method and convert its errors at this edge."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError, OSError) as e:
        raise map_client_error(e, what) from e


def _error_code(exc: BaseException) -> str:
    """The AWS error code behind an error raised by ``_call`` ("" when there is none)."""
    cause = exc.__cause__
    resp = getattr(cause, "response", None)
    if isinstance(resp, dict):
        return str(resp.get("Error", {}).get("Code", ""))
    return ""


def reason_is_transient(reason: str) -> bool:
    """A failed task's TaskStatusReason that is worth another task."""
    return bool(_TRANSIENT_REASON.search(reason or ""))


def task_state(status: str, reason: str, output_uri: str) -> TaskState:
    """A Polly TaskStatus (with its reason and OutputUri) as the seam's TaskState; an
    unknown status counts as in progress."""
    if status == "failed":
        return TaskState(
            "failed",
            reason=one_line(reason) if reason.strip() else "failed (no reason given)",
            transient=reason_is_transient(reason),
            output_uri=output_uri or None,
        )
    return TaskState(_NOT_FAILED.get(status, "inProgress"), output_uri=output_uri or None)


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


def polly_client(region: str | None) -> Any:
    """A boto3 Polly client for ``region`` (None: the usual boto3 way) built with
    ``polly_client_config``; ConfigError on one line when none can be made."""
    import boto3

    try:
        return boto3.session.Session(region_name=region).client(
            "polly", config=polly_client_config()
        )
    except Exception as e:  # botocore: NoRegionError and friends
        raise ConfigError(
            f"cannot reach Polly: {one_line(e)} (set --region or AWS_DEFAULT_REGION)"
        ) from e


# --------------------------------------------------------------------------- listing


def list_voices(
    polly: Any,
    engine: str | None = None,
    language: str | None = None,
    additional: bool = False,
) -> list[dict[str, Any]]:
    """DescribeVoices, every page: dicts with Id, Name, Gender, LanguageCode,
    LanguageName, SupportedEngines (and AdditionalLanguageCodes of bilingual voices with
    ``additional``). ``engine`` and ``language`` filter server-side."""
    kwargs: dict[str, Any] = {}
    if additional:
        kwargs["IncludeAdditionalLanguageCodes"] = True
    if engine:
        kwargs["Engine"] = engine
    if language:
        kwargs["LanguageCode"] = language
    voices: list[dict[str, Any]] = []
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
    polly: Any,
    status: str | None = None,
    max_items: int | None = None,
    gate: Callable[[], object] | None = None,
) -> Iterator[dict[str, Any]]:
    """ListSpeechSynthesisTasks through botocore's paginator: SynthesisTask dicts
    (TaskId, TaskStatus, TaskStatusReason, OutputUri, CreationTime, RequestCharacters,
    ...), optionally only those with ``status`` and at most ``max_items``; ``gate`` is
    called before each page's call (a rate limiter)."""
    kwargs: dict[str, Any] = {}
    if status:
        kwargs["Status"] = status
    if max_items:
        kwargs["PaginationConfig"] = {"MaxItems": max_items, "PageSize": min(100, max_items)}
    from botocore.exceptions import BotoCoreError, ClientError

    paginator = polly.get_paginator("list_speech_synthesis_tasks")
    try:
        pages = iter(paginator.paginate(**kwargs))
        while True:
            if gate is not None:
                gate()
            page = next(pages, None)
            if page is None:
                return
            yield from page.get("SynthesisTasks", [])
    except (ClientError, BotoCoreError) as e:
        raise map_client_error(e, "Polly ListSpeechSynthesisTasks") from e
