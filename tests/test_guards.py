"""The promises the suite guards (issue 19), each through the real CLI where it can be:

* a second run with another voice re-synthesizes, and is not "up to date";
* a deleted (or changed) output is rebuilt, not reported "up to date", and nothing is
  paid for again;
* HTTP 429 and a 5xx with an error code nobody knows are retried, never fatal: as
  botocore builds the error from the emulator's answer, and through the pipeline;
* auto mode takes SynthesizeSpeech for a small book and tasks for a large one;
* exit codes 1, 6, 8, 10 and 130 end in one line on stderr, the code, no traceback;
* ``--format mp3`` and ``--format chapters`` end to end, re-runs included, read back with
  mutagen and PyAV and compared with ``inspect --json``.

The comment over each test names the one-line mutation of the orchestration it kills
(``make mutation`` measures the rest).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from audiobook.cli import cli
from audiobook.emulator.faults import UNKNOWN_ERROR_CODE
from audiobook.engines.polly.checks import pick_mode
from audiobook.errors import (
    RETRYABLE,
    ConfigError,
    EngineError,
    RetriesExceeded,
    TaskFailed,
    Throttled,
    TransientEngineError,
)
from audiobook.pipeline import synthesize
from audiobook.scheduler import Limiters
from audiobook.state import StateStore
from tests.runs import audio_digest, audiobook_argv, day_epub, decoded_seconds
from tests.test_pipeline import OPTS, Crash, FakeClock, ScriptedEngine, book

CHAPTERS = [
    ("Morning", "<p>The sun rose over the hill. Birds began to sing.</p>"),
    ("Noon", "<p>It was hot at noon. Nobody moved.</p><p>The dog slept in the shade.</p>"),
    ("Night", "<p>Stars came out. The owl called twice.</p>"),
]
TITLES = [t for t, _ in CHAPTERS]
POLLY = ["--engine", "polly", "--voice", "Joanna", "--polly-engine", "neural"]


@pytest.fixture
def tiny_epub(tmp_path: Path) -> Path:
    return day_epub(tmp_path / "tiny.epub", CHAPTERS)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def run_cli(*args: str | Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``python -m audiobook ARGS`` in a real process: what a user's shell sees."""
    return subprocess.run(
        audiobook_argv(*args),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        **kw,
    )


def synthesized(stdout: str) -> int:
    m = re.search(r"(\d+) synthesized", stdout)
    assert m, stdout
    return int(m.group(1))


def assert_one_line_error(code: int, want: int, stderr: str, *words: str) -> str:
    """Exit code ``want``, stderr one line ``audiobook: error: ...`` with ``words``, no
    traceback."""
    assert code == want, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("audiobook: error: "), stderr
    for w in words:
        assert w in lines[0], (w, stderr)
    return lines[0]


def inspect_titles(book: Path) -> list[str]:
    r = invoke("inspect", book, "--json")
    assert r.exit_code == 0, r.output
    return [c["title"] for c in json.loads(r.stdout)["chapters"]]


# --- the options fingerprint follows --voice ------------------------------------------------


@pytest.mark.ffmpeg
def test_another_voice_resynthesizes_and_is_not_up_to_date(tiny_epub, tmp_path):
    # Kills: ConvertOptions.fingerprint leaving out "voice".
    out, state = tmp_path / "day.m4b", tmp_path / "state"
    base = ["convert", tiny_epub, "-o", out, "--state-dir", state]
    r = invoke(*base, "--voice", "en-us")
    assert r.exit_code == 0 and synthesized(r.stdout) == 3, r.output
    us = audio_digest(out)

    r = invoke(*base, "--voice", "fr")
    assert r.exit_code == 0, r.output
    assert "up to date" not in r.stdout
    assert synthesized(r.stdout) == 3  # every piece in the new voice
    assert audio_digest(out) != us

    # Back to the first voice: its pieces are cached, the output is the first one again.
    r = invoke(*base, "--voice", "en-us")
    assert r.exit_code == 0 and "up to date" not in r.stdout, r.output
    assert synthesized(r.stdout) == 0 and "3 cached" in r.stdout
    assert audio_digest(out) == us
    r = invoke(*base, "--voice", "en-us")
    assert "up to date" in r.stdout


# --- the output must still be there ---------------------------------------------------------


@pytest.mark.ffmpeg
def test_deleted_or_changed_output_is_rebuilt_without_paying_again(tiny_epub, tmp_path):
    # Kills: _up_to_date accepting a missing output (the fingerprint check off, or
    # _outputs_fingerprint answering for a file that is gone), accepting an output
    # whose size or time changed since the run wrote it, or one written to another -o.
    from mutagen.mp4 import MP4

    out, state = tmp_path / "day.m4b", tmp_path / "state"
    cmd = ["convert", tiny_epub, "-o", out, "--state-dir", state]
    r = invoke(*cmd)
    assert r.exit_code == 0 and synthesized(r.stdout) == 3, r.output
    digest = audio_digest(out)

    out.unlink()
    r = invoke(*cmd)
    assert r.exit_code == 0, r.output
    assert "up to date" not in r.stdout
    assert synthesized(r.stdout) == 0 and "3 cached" in r.stdout
    assert [c.title for c in MP4(out).chapters] == TITLES
    assert audio_digest(out) == digest

    out.write_bytes(b"not the audiobook any more")  # another file under the same name
    r = invoke(*cmd)
    assert r.exit_code == 0 and "up to date" not in r.stdout, r.output
    assert synthesized(r.stdout) == 0 and audio_digest(out) == digest

    st = out.stat()  # same size, a quarter second off: rewritten by someone else
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns - 250_000_000))
    r = invoke(*cmd)
    assert r.exit_code == 0 and "up to date" not in r.stdout, r.output
    assert synthesized(r.stdout) == 0

    r = invoke(*cmd)
    assert r.exit_code == 0 and "up to date" in r.stdout, r.output

    # Another -o: the first output being there does not make the second up to date.
    other = tmp_path / "other.m4b"
    r = invoke("convert", tiny_epub, "-o", other, "--state-dir", state)
    assert r.exit_code == 0 and "up to date" not in r.stdout, r.output
    assert synthesized(r.stdout) == 0 and audio_digest(other) == digest


# --- 429 and unknown 5xx are retryable ------------------------------------------------------


def _polly_client(url: str) -> Any:
    import boto3

    from audiobook.engines.polly import polly_client_config

    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return session.client("polly", endpoint_url=url, config=polly_client_config())


@pytest.mark.parametrize(
    "status, kind",
    [
        (429, Throttled),
        (500, TransientEngineError),
        (502, TransientEngineError),
        (503, TransientEngineError),
        (504, TransientEngineError),
        (400, EngineError),
        (403, ConfigError),
    ],
)
def test_unknown_error_codes_are_classified_by_status(make_polly_emulator, status, kind):
    # Kills: map_client_error without "status == 429" (429 -> permanent EngineError) and
    # with "status > 500" or without the 5xx test (500 -> permanent EngineError).
    # The ClientError is botocore's own, parsed from the emulator's HTTP answer.
    from botocore.exceptions import ClientError

    from audiobook.engines.polly.aws import _call

    emu = make_polly_emulator(unknown_error_rate=1.0, unknown_error_status=status)
    polly = _polly_client(emu.url)
    with pytest.raises(kind) as err:
        _call("Polly DescribeVoices", polly.describe_voices)
    assert type(err.value) is kind
    cause = err.value.__cause__
    assert isinstance(cause, ClientError)
    assert cause.response["Error"]["Code"] == UNKNOWN_ERROR_CODE
    assert cause.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert isinstance(err.value, RETRYABLE) == (status == 429 or status >= 500)
    assert str(err.value) == (
        f"Polly DescribeVoices: {UNKNOWN_ERROR_CODE}: An error the emulator was asked to make up"
    )


def botocore_client_error(status: int, body: bytes = b"", **headers: str) -> Any:
    """The ClientError a boto3 Polly client raises for this HTTP answer: botocore's own
    rest-json parser, then the exception class the client picks by the parsed code."""
    import botocore.parsers
    import botocore.session

    model = botocore.session.get_session().get_service_model("polly")
    parser = botocore.parsers.create_parser(model.metadata["protocol"])
    http = {"status_code": status, "headers": headers, "body": body}
    parsed = parser.parse(http, model.operation_model("SynthesizeSpeech").output_shape)
    client = _polly_client("http://127.0.0.1:9")  # never called: its exception table only
    code = parsed["Error"]["Code"]
    return client.exceptions.from_code(code)(parsed, "SynthesizeSpeech")


@pytest.mark.parametrize(
    "status, body, headers, kind, text",
    [
        # a proxy's throttle: no body, no error type; botocore names it by its status
        (429, b"", {}, Throttled, "429"),
        (
            502,
            b"<html>Bad Gateway</html>",
            {"content-type": "text/html"},
            TransientEngineError,
            "502: Bad Gateway",
        ),
        (
            500,
            b'{"__type": "x#BrandNewFailure", "message": "boom"}',
            {},
            TransientEngineError,
            "BrandNewFailure: boom",
        ),
        (
            401,
            b'{"message": "who?"}',
            {"x-amzn-errortype": "WhoAreYou"},
            ConfigError,
            "WhoAreYou: who?",
        ),
        (403, b"", {}, ConfigError, "403"),
        (
            400,
            b'{"__type": "x#NewKindOfMistake", "message": "no"}',
            {},
            EngineError,
            "NewKindOfMistake: no",
        ),
        (
            400,
            b'{"__type": "x#ThrottlingException", "message": "Rate exceeded"}',
            {},
            Throttled,
            "ThrottlingException: Rate exceeded",
        ),
        (
            400,
            b'{"__type": "x#InvalidSsmlException", "message": "bad"}',
            {},
            ConfigError,
            "InvalidSsmlException: bad",
        ),
    ],
)
def test_botocore_parsed_errors_are_classified_and_named(status, body, headers, kind, text):
    # Kills the status mutants of map_client_error for answers the emulator does not
    # give (a bare 429, an HTML 502, a 401), and the ones that repeat or drop the message.
    from audiobook.engines.polly.aws import map_client_error

    err = map_client_error(botocore_client_error(status, body, **headers), "Polly SynthesizeSpeech")
    assert type(err) is kind
    assert str(err) == f"Polly SynthesizeSpeech: {text}"
    assert isinstance(err, RETRYABLE) == (status == 429 or status >= 500 or kind is Throttled)


def test_errors_without_an_http_answer_are_classified_and_named():
    # Kills the mutants of map_client_error's other branches (the message dropped or
    # made of None): each error as botocore raises it, named on one line.
    import socket

    from botocore.exceptions import NoCredentialsError, NoRegionError

    from audiobook.engines.polly.aws import _call, map_client_error

    err = map_client_error(NoCredentialsError(), "Polly DescribeVoices")
    assert type(err) is ConfigError
    assert str(err).startswith("Polly DescribeVoices: no AWS credentials found")
    err = map_client_error(NoRegionError(), "Polly DescribeVoices")
    assert type(err) is ConfigError
    assert str(err).startswith("Polly DescribeVoices: no AWS region set")

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientEngineError) as lost:
        _call("Polly DescribeVoices", _polly_client(f"http://127.0.0.1:{port}").describe_voices)
    assert str(lost.value).startswith("Polly DescribeVoices: Could not connect to the endpoint")

    with pytest.raises(EngineError) as bad:  # botocore refuses the call itself
        _call("Polly SynthesizeSpeech", _polly_client("http://127.0.0.1:9").synthesize_speech)
    assert type(bad.value) is EngineError and not isinstance(bad.value, RETRYABLE)
    assert str(bad.value).startswith("Polly SynthesizeSpeech: Parameter validation failed: ")
    assert "\n" not in str(bad.value)

    reset = ConnectionResetError(104, "Connection reset by peer")
    err = map_client_error(reset, "S3 GetObject")
    assert type(err) is TransientEngineError
    assert str(err) == "S3 GetObject: [Errno 104] Connection reset by peer"
    err = map_client_error(ValueError("odd"), "S3 GetObject")
    assert type(err) is EngineError and err.expected is False
    assert str(err) == "S3 GetObject: odd"


@pytest.fixture
def polly_cli(aws_env, make_polly_emulator, monkeypatch, s3_bucket):
    """start(**emulator options) -> a fresh emulator that the CLI's Polly client talks to
    (the environment says so), and the arguments that choose Polly and the bucket."""

    def start(**options: Any) -> tuple[Any, list[str]]:
        emu = make_polly_emulator(**options)
        monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", emu.url)
        aws_env["AWS_ENDPOINT_URL_POLLY"] = emu.url
        return emu, [*POLLY, "--bucket", s3_bucket]

    return start


def check_polly_run(emu: Any, mode: str, pieces: int) -> None:
    """The run took the ``mode`` path, and paid for each piece once."""
    tasks = [t for t in emu.tasks if t.output_format != "json"]
    if mode == "sync":
        assert tasks == []
        assert emu.stats.get("sync_requests", 0) == pieces
    else:
        assert emu.stats.get("sync_requests", 0) == 0
        assert len(tasks) == pieces
        assert len({t.text_sha256 for t in tasks}) == pieces  # no piece paid twice
        assert {t.status for t in tasks} == {"completed"}


@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize(
    "mode, operation",
    [("sync", "SynthesizeSpeech"), ("async", "StartSpeechSynthesisTask")],
)
def test_pipeline_retries_429_and_unknown_5xx(
    polly_cli, tiny_epub, tmp_path, status, mode, operation
):
    # Kills the same two mutations of map_client_error through the whole pipeline: the
    # piece whose paid call was refused is retried and the book completes, where the
    # mutants fail the run with exit 8.
    from mutagen.mp4 import MP4

    emu, polly = polly_cli(
        unknown_error_rate=1.0,
        unknown_error_status=status,
        unknown_error_limit=2,
        fault_operations=(operation,),
    )
    out = tmp_path / "day.m4b"
    r = invoke(
        "convert", tiny_epub, "-o", out, *polly, "--mode", mode, "--state-dir", tmp_path / "state"
    )
    assert r.exit_code == 0, r.output
    assert emu.stats["unknown_errors_injected"] == 2
    assert emu.stats[f"errors.{UNKNOWN_ERROR_CODE}"] == 2
    assert synthesized(r.stdout) == 3
    check_polly_run(emu, mode, pieces=3)
    assert [c.title for c in MP4(out).chapters] == TITLES


# --- auto mode: SynthesizeSpeech for a small book -------------------------------------------


def test_pick_mode_chooses_sync_exactly_when_the_job_fits_one_request():
    # Kills: pick_mode never choosing "sync" in auto mode, and its boundaries moved.
    from audiobook.config import POLLY_SYNC_LIMITS as lim

    assert pick_mode("auto", 1, 1) == "sync"
    assert pick_mode("auto", lim.max_billable, lim.max_total) == "sync"
    assert pick_mode("auto", lim.max_billable + 1, lim.max_total) == "async"
    assert pick_mode("auto", lim.max_billable, lim.max_total + 1) == "async"
    assert pick_mode("sync", 10**6, 10**6) == "sync"
    assert pick_mode("async", 1, 1) == "async"
    with pytest.raises(ConfigError):
        pick_mode("fast", 1, 1)


def test_auto_mode_takes_synthesize_speech_for_a_small_book(polly_cli, tiny_epub, tmp_path):
    # Kills: pick_mode never choosing "sync" (no other pipeline test takes that path).
    from mutagen.mp4 import MP4

    emu, polly = polly_cli()
    out = tmp_path / "day.m4b"
    r = invoke("convert", tiny_epub, "-o", out, *polly, "--state-dir", tmp_path / "state")
    assert r.exit_code == 0, r.output
    check_polly_run(emu, "sync", pieces=3)
    assert [c.title for c in MP4(out).chapters] == TITLES
    r = invoke("convert", tiny_epub, "-o", out, *polly, "--state-dir", tmp_path / "state")
    assert "up to date" in r.stdout and emu.stats["sync_requests"] == 3


def test_auto_mode_takes_tasks_for_a_book_over_one_request(polly_cli, tmp_path):
    # Kills: pick_mode always choosing "sync" in auto mode (a book over 3,000 billable
    # characters must not go out as SynthesizeSpeech pieces).
    long = "<p>" + "The river ran past the mill and under the old stone bridge. " * 30 + "</p>"
    book = day_epub(tmp_path / "long.epub", [("River", long), ("Bridge", long)], "Rivers")
    r = invoke("estimate", book, "--json")
    assert json.loads(r.stdout)["billable_chars"] > 3000
    emu, polly = polly_cli()
    out = tmp_path / "long.m4b"
    r = invoke("convert", book, "-o", out, *polly, "--state-dir", tmp_path / "state")
    assert r.exit_code == 0, r.output
    check_polly_run(emu, "async", pieces=2)


# --- exit codes -----------------------------------------------------------------------------


def test_exit_1_an_unexpected_error_is_one_line(tiny_epub, tmp_path):
    # A user's template is code: a Python error inside it is one nobody foresaw.
    template = tmp_path / "broken.ssml.j2"
    template.write_text("<speak>{{ title }} {{ 1 // 0 }}</speak>\n", encoding="utf-8")
    p = run_cli("convert", tiny_epub, "--template", template, "--state-dir", tmp_path / "state")
    assert_one_line_error(p.returncode, 1, p.stderr, "ZeroDivisionError")
    assert p.stdout == ""
    assert not (tmp_path / "tiny.m4b").exists()
    # Asked for, the traceback is there.
    p = run_cli(
        "-vv", "convert", tiny_epub, "--template", template, "--state-dir", tmp_path / "state"
    )
    assert p.returncode == 1 and "Traceback" in p.stderr and "ZeroDivisionError" in p.stderr


def _encrypted_pdf(path: Path) -> Path:
    import io

    from pypdf import PdfReader, PdfWriter

    from tests.pdfgen import simple_pdf, text

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(simple_pdf([text(72, 700, "A secret page.")]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="right", owner_password="owner", algorithm="AES-256")
    with open(path, "wb") as f:
        writer.write(f)
    return path


def test_exit_6_encrypted_pdf_with_a_wrong_or_missing_password(tmp_path):
    pdf = _encrypted_pdf(tmp_path / "secret.pdf")
    state = ["--state-dir", tmp_path / "state"]
    for args in (
        ["convert", pdf, "--password", "wrong", *state],
        ["convert", pdf, *state],
        ["inspect", pdf],
        ["estimate", pdf, "--password", "wrong"],
    ):
        r = invoke(*args)
        assert r.stdout == ""
        assert_one_line_error(r.exit_code, 6, r.stderr, "secret.pdf", "password")
    assert not (tmp_path / "secret.m4b").exists()
    r = invoke("inspect", pdf, "--password", "right", "--json")
    assert r.exit_code == 0, r.output


def test_exit_8_a_task_that_fails_for_good(polly_cli, tiny_epub, tmp_path):
    emu, polly = polly_cli(permanent_fail_rate=1.0)
    out = tmp_path / "day.m4b"
    r = invoke(
        "convert",
        tiny_epub,
        "-o",
        out,
        *polly,
        "--mode",
        "async",
        "--state-dir",
        tmp_path / "state",
    )
    assert_one_line_error(r.exit_code, 8, r.stderr)
    assert not out.exists()
    # A permanent failure is not paid for again: at most one task per piece.
    texts = [t.text_sha256 for t in emu.tasks]
    assert texts and len(texts) == len(set(texts))


@pytest.mark.ffmpeg
def test_exit_10_ffmpeg_fails_writing_the_output(tmp_path):
    # ffmpeg is the only writer that hits the limit: the second run may write files of
    # at most half the finished book (ulimit -f). Its pieces are cached already and the
    # state store is far smaller, so only ffmpeg's output goes over.
    para = "<p>" + "The river ran past the mill and under the old stone bridge. " * 12 + "</p>"
    book = day_epub(tmp_path / "river.epub", [(t, para) for t in TITLES], "Rivers")
    state = tmp_path / "state"
    first = tmp_path / "first.mp3"
    p = run_cli("convert", book, "--format", "mp3", "-o", first, "--state-dir", state)
    assert p.returncode == 0, p.stderr
    limit = first.stat().st_size // 2
    store = max(f.stat().st_size for f in state.glob("state.sqlite*"))
    assert limit > 4 * store, (limit, store)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "day.mp3"
    p = run_cli(
        "convert", book, "--format", "mp3", "-o", out, "--state-dir", state, preexec_fn=small_files
    )
    assert_one_line_error(p.returncode, 10, p.stderr, "ffmpeg")
    assert p.stdout == ""
    assert list(out_dir.iterdir()) == []  # no output, no temp folder left behind
    # The limit lifted, the same command finishes from the cache.
    p = run_cli("convert", book, "--format", "mp3", "-o", out, "--state-dir", state)
    assert p.returncode == 0 and synthesized(p.stdout) == 0, p.stderr


def test_exit_130_sigint_to_a_running_convert(aws_env, make_polly_emulator, s3_bucket, tmp_path):
    # Slow tasks: the run is surely waiting on Polly when the signal comes.
    emu = make_polly_emulator(queue_delay=0.5, chars_per_second=20.0)
    env = {**os.environ, **aws_env, "AWS_ENDPOINT_URL_POLLY": emu.url}
    book = day_epub(tmp_path / "tiny.epub", CHAPTERS)
    out = tmp_path / "day.m4b"
    cmd = [
        sys.executable,
        "-m",
        "audiobook",
        "convert",
        str(book),
        "-o",
        str(out),
        *POLLY,
        "--bucket",
        s3_bucket,
        "--mode",
        "async",
        "--state-dir",
        str(tmp_path / "state"),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not emu.tasks and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert emu.tasks, "no task started within the deadline"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_one_line_error(proc.returncode, 130, stderr, "interrupted")
    assert stdout == "" and not out.exists()
    # Run again: it follows the tasks already started, paying for no piece twice.
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    texts = [t.text_sha256 for t in emu.tasks]
    assert len(texts) == len(set(texts)) == 3


# --- mp3 and chapters, end to end -----------------------------------------------------------


@pytest.mark.ffmpeg
def test_mp3_end_to_end_with_reruns(tiny_epub, tmp_path):
    from mutagen.id3 import ID3

    titles = inspect_titles(tiny_epub)
    assert titles == TITLES
    out, state = tmp_path / "day.mp3", tmp_path / "state"
    cmd = ["convert", tiny_epub, "--format", "mp3", "-o", out, "--state-dir", state]
    r = invoke(*cmd)
    assert r.exit_code == 0 and synthesized(r.stdout) == 3, r.output

    tags = ID3(out)
    chaps = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert [c.sub_frames["TIT2"].text[0] for c in chaps] == titles
    toc = tags.getall("CTOC")
    assert len(toc) == 1 and list(toc[0].child_element_ids) == [c.element_id for c in chaps]
    starts = [c.start_time for c in chaps]
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(a.end_time == b.start_time for a, b in itertools.pairwise(chaps))
    seconds = decoded_seconds(out)
    assert abs(chaps[-1].end_time / 1000 - seconds) < 0.5
    assert tags["TIT2"].text == ["A Tiny Day"]

    size, mtime = out.stat().st_size, out.stat().st_mtime_ns
    r = invoke(*cmd)
    assert r.exit_code == 0 and "up to date" in r.stdout, r.output
    assert (out.stat().st_size, out.stat().st_mtime_ns) == (size, mtime)

    out.unlink()
    r = invoke(*cmd)
    assert r.exit_code == 0 and "up to date" not in r.stdout, r.output
    assert synthesized(r.stdout) == 0
    assert [c.sub_frames["TIT2"].text[0] for c in ID3(out).getall("CHAP")] == titles


@pytest.mark.ffmpeg
def test_chapters_end_to_end_with_reruns(tiny_epub, tmp_path):
    from mutagen.mp4 import MP4

    titles = inspect_titles(tiny_epub)
    folder, state = tmp_path / "day", tmp_path / "state"
    cmd = ["convert", tiny_epub, "--format", "chapters", "-o", folder, "--state-dir", state]
    r = invoke(*cmd)
    assert r.exit_code == 0 and synthesized(r.stdout) == 3, r.output

    def chapter_files() -> list[Path]:
        return sorted(folder.glob("*.m4b"))

    files = chapter_files()
    assert len(files) == len(titles)
    for i, (f, title) in enumerate(zip(files, titles), 1):
        tags = MP4(f).tags
        assert tags is not None
        assert tags["\xa9nam"] == [title] and tags["\xa9alb"] == ["A Tiny Day"]
        assert tags["trkn"] == [(i, len(titles))]
        assert title in f.name
        assert decoded_seconds(f) > 0.5
    digests = [audio_digest(f) for f in files]
    assert len(set(digests)) == len(files)

    stamps = [(f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    r = invoke(*cmd)
    assert r.exit_code == 0 and "up to date" in r.stdout, r.output
    assert [(f.stat().st_size, f.stat().st_mtime_ns) for f in chapter_files()] == stamps

    files[1].unlink()  # one chapter gone: rebuilt from the cache
    r = invoke(*cmd)
    assert r.exit_code == 0 and "up to date" not in r.stdout, r.output
    assert synthesized(r.stdout) == 0
    assert [audio_digest(f) for f in chapter_files()] == digests
    r = invoke(*cmd)
    assert "up to date" in r.stdout


# --- the scheduler's retries and failures, and what the chunk rows keep ---------------------
# (mutants that survived the first `make mutation`; the scripted engine of test_pipeline
# stands for the service, and the state store is the real one)


class _TopOfRange(random.Random):
    """Full jitter at its ceiling: ``uniform(a, b)`` answers b and keeps (a, b)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b


class _Refusing(ScriptedEngine):
    """Refuses to start the pieces of chapter "Two" with ``error``; keeps every key asked."""

    def __init__(self, error: BaseException | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.error = error
        self.asked: list[str] = []

    def submit(self, chunk, key):
        self.asked.append(key)
        if self.error is not None and "Beta" in chunk.ssml:
            raise self.error
        return super().submit(chunk, key)


def _synthesize(
    store: Any, engine: Any, *chapters: tuple[str, str], rng: Any = None, attempts: int = 4
) -> Any:
    clock = FakeClock()
    opts = replace(OPTS, config=replace(OPTS.config, max_inflight=1, max_attempts=attempts))
    return synthesize(
        book(*chapters),
        opts,
        store=store,
        engine=engine,
        limiters=Limiters(),
        clock=clock.time,
        sleep=clock.sleep,
        rng=rng or random.Random(7),
    )


def test_backoff_doubles_from_the_base_up_to_the_cap(tmp_path, caplog):
    # Kills Scheduler._backoff's mutants (factor, exponent, floor of the jitter) and
    # those that drop where or what from _retry_or_raise's warning.
    rng = _TopOfRange()
    engine = ScriptedEngine(throttle=3)
    with (
        StateStore(tmp_path / "state") as store,
        caplog.at_level(logging.WARNING, logger="audiobook.scheduler"),
    ):
        _synthesize(store, engine, ("Solo", "One short piece."), rng=rng)
    assert rng.ranges == [(0, 0.5), (0, 1.0), (0, 2.0)]  # base 0.5, doubling, cap 4
    assert caplog.messages[0] == (
        "chapter 1 ('Solo') piece 1: ThrottlingException: Rate exceeded. Retrying (1/3)"
    )
    rng = _TopOfRange()
    with StateStore(tmp_path / "state2") as store, pytest.raises(RetriesExceeded):
        _synthesize(store, ScriptedEngine(throttle=100), ("Solo", "One."), rng=rng, attempts=7)
    assert rng.ranges == [(0, 0.5), (0, 1.0), (0, 2.0), (0, 4.0), (0, 4.0), (0, 4.0)]


def test_a_start_refused_for_good_fails_its_piece_and_says_why(tmp_path):
    # Kills the mutants of Scheduler._fail (which no test reached): the error as the
    # engine raised it, the piece's row failed with the reason, no intent left behind.
    err = EngineError("Polly StartSpeechSynthesisTask: InvalidSsmlException: bad")
    engine = _Refusing(err)
    with StateStore(tmp_path / "state") as store:
        with pytest.raises(EngineError) as raised:
            _synthesize(store, engine, ("One", "Alpha walks."), ("Two", "Beta walks."))
        assert raised.value is err
        row = store.chunk(engine.asked[-1])
        assert row is not None and row.status == "failed"
        assert row.last_error == str(err) and row.started_at is None


def test_an_engine_bug_is_named_with_its_piece(tmp_path):
    # Kills the mutants of Scheduler._fail's other branch: an exception that is no
    # AudiobookError becomes one (unexpected), naming the piece and the original.
    engine = _Refusing(ValueError("boom"))
    with StateStore(tmp_path / "state") as store:
        with pytest.raises(EngineError) as raised:
            _synthesize(store, engine, ("One", "Alpha walks."), ("Two", "Beta walks."))
        assert str(raised.value) == "chapter 2 ('Two') piece 1: ValueError: boom"
        assert raised.value.expected is False
        assert isinstance(raised.value.__cause__, ValueError)
        row = store.chunk(engine.asked[-1])
        assert row is not None and row.status == "failed" and row.last_error == "boom"


def test_a_refused_start_leaves_no_intent_behind(tmp_path):
    # Kills mark_not_started matching no row ('PENDING'): a start call that came back
    # with an error started nothing, so a later run must not go looking for its task.
    engine = _Refusing(throttle=100)
    with StateStore(tmp_path / "state") as store:
        with pytest.raises(RetriesExceeded):
            _synthesize(store, engine, ("Solo", "One short piece."))
        row = store.chunk(engine.asked[0])
        assert row is not None and row.status == "pending"
        assert row.started_at is None and row.attempts == 4
        assert row.last_error == "ThrottlingException: Rate exceeded"


def test_a_polly_task_status_as_the_engine_seam_sees_it():
    # Kills task_state's surviving mutants: where a finished task's audio is, the
    # reason of a failure (on one line, or said to be missing), and a status Polly may
    # add one day counting as still in progress.
    from audiobook.engines.base import TaskState
    from audiobook.engines.polly.aws import task_state

    uri = "s3://b/books/k/t.mp3"
    assert task_state("completed", "", uri) == TaskState("completed", output_uri=uri)
    assert task_state("scheduled", "", "") == TaskState("scheduled")
    assert task_state("brandNewStatus", "", uri) == TaskState("inProgress", output_uri=uri)
    assert task_state("failed", " ", uri) == TaskState(
        "failed", reason="failed (no reason given)", transient=False, output_uri=uri
    )
    assert task_state("failed", "Internal\n service   error", "") == TaskState(
        "failed", reason="Internal service error", transient=True
    )


def test_cached_audio_removed_before_the_stitch_is_named(tmp_path):
    # Kills _cached_or_fail's message mutants: a piece removed from the cache between
    # synthesis and stitching (another process's gc) is named, with what to do.
    from audiobook.hooks import Hooks

    class GcElsewhere(Hooks):
        def on_progress(self, done: int, total: int, *_: int) -> None:
            if done == total:  # the last piece is in; another process's gc runs
                for f in store.cache_dir.glob("*/*"):
                    f.unlink()

    engine = ScriptedEngine()
    with StateStore(tmp_path / "state") as store:
        clock = FakeClock()
        with pytest.raises(EngineError) as raised:
            synthesize(
                book(("Solo", "One short piece.")),
                replace(OPTS, config=replace(OPTS.config, max_inflight=1)),
                GcElsewhere(),
                store=store,
                engine=engine,
                limiters=Limiters(),
                clock=clock.time,
                sleep=clock.sleep,
            )
        path = store.cache_path(engine.starts[0], "wav")
        assert str(raised.value) == f"{path}: cached audio vanished; run again"


def test_a_piece_failed_for_good_is_started_anew_by_the_next_run(tmp_path):
    # Kills _resume following any row that has a task id: a failed task is not
    # followed again (it would fail forever); the next run starts a new one.
    engine = ScriptedEngine()
    engine.fail["Solo"] = [(False, "Invalid SSML request")]
    with StateStore(tmp_path / "state") as store:
        with pytest.raises(TaskFailed):
            _synthesize(store, engine, ("Solo", "One short piece."))
        syn = _synthesize(store, engine, ("Solo", "One short piece."))
        assert syn.submitted == 1 and syn.resumed == 0
        assert len(engine.starts) == 2


class _Recovering(ScriptedEngine):
    """Tasks found again carry the engine's notes (``extra``); each start call notes how
    many fetches came before it."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches_before_start: list[int] = []

    def submit(self, chunk, key):
        self.fetches_before_start.append(self.fetches)
        return super().submit(chunk, key)

    def recover(self, key, since):
        ref = super().recover(key, since)
        return None if ref is None else replace(ref, extra={"found": "by recover"})


def test_a_start_that_returned_before_the_crash_is_found_recorded_and_counted(tmp_path, caplog):
    # Kills the mutants of _resume's handling of a task found again (recover): it is
    # named in a note, recorded on its chunk's row (task id, location, the engine's
    # notes) and holds an in-flight slot like any task, so that with one slot the next
    # piece starts only after it is fetched.
    engine = _Recovering()
    engine.crash_after_start = 1
    chapters = (("One", "Alpha walks."), ("Two", "Beta walks."))
    with StateStore(tmp_path / "state") as store:
        with pytest.raises(Crash):
            _synthesize(store, engine, *chapters)
        with caplog.at_level(logging.INFO, logger="audiobook.scheduler"):
            syn = _synthesize(store, engine, *chapters)
        row = store.chunk(engine.starts[0])
    assert syn.resumed == 1 and syn.submitted == 1 and len(engine.starts) == 2
    assert "chapter 1 ('One') piece 1: found task task-0 started by an earlier run" in (
        caplog.messages
    )
    assert row is not None and row.status == "done"
    assert (row.task_id, row.output_uri) == ("task-0", "mem://task-0")
    assert json.loads(row.task_extra) == {"found": "by recover"}
    assert engine.fetches_before_start == [0, 1]  # piece two waited for piece one's slot


def test_a_run_that_gave_up_on_refused_starts_resumes_cleanly(polly_cli, tmp_path):
    # Kills _resume asking the engine to recover a piece whose start never happened
    # (no intent time): the run after a give-up starts the piece once, nothing else.
    emu, polly = polly_cli(
        unknown_error_rate=1.0,
        unknown_error_status=500,
        unknown_error_limit=6,  # as many as a piece's attempts: the first run gives up
        fault_operations=("StartSpeechSynthesisTask",),
    )
    solo = day_epub(tmp_path / "solo.epub", CHAPTERS[:1], "Solo")
    cmd = ["convert", solo, "-o", tmp_path / "solo.m4b", *polly, "--mode", "async"]
    cmd += ["--state-dir", tmp_path / "state"]
    r = invoke(*cmd)
    assert r.exit_code == 8 and "Traceback" not in r.stderr, r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("audiobook: error: ") and "gave up after 6 attempts" in last
    assert emu.tasks == []
    r = invoke(*cmd)
    assert r.exit_code == 0, r.output
    check_polly_run(emu, "async", pieces=1)


class _Particular(ScriptedEngine):
    """Fetches only with the whole TaskRef its start call gave (as Polly reads the
    output's bucket and key from ``extra`` and the OutputUri): an engine, a location and
    notes taken back from the state store must be the ones recorded."""

    def submit(self, chunk, key):
        ref = super().submit(chunk, key)
        return replace(ref, extra={"where": ref.task_id})

    def fetch(self, ref, dest: Path) -> None:
        want = (self.name, f"mem://{ref.task_id}", {"where": ref.task_id})
        if (ref.engine, ref.output_uri, ref.extra) != want:
            raise EngineError(f"fetch of {ref.task_id} without what its start gave: {ref}")
        super().fetch(ref, dest)


def test_a_recorded_task_is_resumed_with_everything_its_start_gave(tmp_path):
    # Kills the mutants of _resume that rebuild a recorded task's TaskRef without its
    # engine, output location or the engine's notes.
    engine = _Particular()
    engine.crash_on_fetch = 1
    with StateStore(tmp_path / "state") as store:
        with pytest.raises(Crash):
            _synthesize(store, engine, ("Solo", "One short piece."))
        syn = _synthesize(store, engine, ("Solo", "One short piece."))
    assert syn.resumed == 1 and syn.submitted == 0 and len(engine.starts) == 1
