"""Polly as AWS behaves: the cases where the engine and the emulator could share a wrong
assumption, each driven through the CLI against moto and the emulator, whose behaviour is
cited to the AWS source in ``audiobook/emulator/facts.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from audiobook.cli import cli
from audiobook.emulator import facts
from tests.epubkit import Doc, build_epub
from tests.runs import audiobook_argv, day_epub
from tests.servers import encrypt_bucket

CHAPTERS = [
    ("Morning", "<p>The sun rose over the quiet town. Birds sang in the trees.</p>"),
    ("Noon", "<p>At noon the market was full of people and voices.</p>"),
    ("Night", "<p>When night fell, the streets were empty and still.</p>"),
]
TITLES = [t for t, _ in CHAPTERS]
POLLY = ["--engine", "polly", "--voice", "Joanna", "--polly-engine", "neural"]


def make_epub(path: Path, chapters: list[tuple[str, str]] = CHAPTERS) -> Path:
    return day_epub(path, chapters)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def polly_api(emu: Any) -> Any:
    import boto3

    return boto3.session.Session(region_name="us-east-1").client("polly", endpoint_url=emu.url)


def chapter_titles(path: Path) -> list[str]:
    from mutagen.mp4 import MP4

    return [c.title for c in MP4(path).chapters]


def parts_epub(path: Path, parts: int) -> tuple[Path, list[str]]:
    """An EPUB of ``parts`` one-sentence chapters at ``path``: (the book, its titles)."""
    chapters = [(f"Part {i}", f"<p>Words of part {i} go here.</p>") for i in range(parts)]
    return make_epub(path, chapters), [t for t, _ in chapters]


def convert_parts(tmp_path: Path, parts: int, polly: list[str]) -> tuple[Path, list[str], Result]:
    """A book of ``parts`` one-sentence chapters converted with Polly's asynchronous
    tasks: (the output, the chapter titles, the CLI's result)."""
    out = tmp_path / "parts.m4b"
    book, titles = parts_epub(tmp_path / "parts.epub", parts)
    r = invoke(
        "convert", book, "-o", out, *polly, "--mode", "async", "--state-dir", tmp_path / "st"
    )
    return out, titles, r


@pytest.fixture
def polly_cli(aws_env, make_polly_emulator, monkeypatch, s3_bucket):
    """start(**emulator options) -> (emulator, CLI arguments choosing Polly and the
    bucket); the environment points the CLI's Polly client at that emulator."""

    def start(**options: Any) -> tuple[Any, list[str]]:
        emu = make_polly_emulator(**options)
        monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", emu.url)
        aws_env["AWS_ENDPOINT_URL_POLLY"] = emu.url
        return emu, [*POLLY, "--bucket", s3_bucket]

    return start


def interrupted_run(emu: Any, env: dict[str, str], args: list[str | Path], pieces: int) -> None:
    """``audiobook ARGS`` in a real process, ended with SIGTERM once its ``pieces`` tasks
    are started (and so recorded: a stopping run lets its calls in flight finish)."""
    proc = subprocess.Popen(
        audiobook_argv(*args),
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(emu.tasks) < pieces and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert len(emu.tasks) == pieces, "the tasks did not start within the deadline"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr


# --- 1. a resume more than 72 hours later -------------------------------------------------


@pytest.mark.parametrize("notify", ["poll", "sns"])
@pytest.mark.parametrize("audio_kept", [True, False], ids=["audio-in-s3", "audio-gone"])
def test_resume_after_72_hours_finds_the_audio_or_starts_anew(
    polly_cli, aws_env, sns_client, s3_client, s3_bucket, tmp_path, notify, audio_kept
):
    now = [time.time()]
    # Tasks wait in the queue long enough for the run to be stopped before any finishes.
    emu, polly = polly_cli(clock=lambda: now[0], queue_delay=1.5)
    if notify == "sns":
        topic = sns_client.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"]
        polly += ["--sns-topic", topic]
    book, out, state = make_epub(tmp_path / "day.epub"), tmp_path / "day.m4b", tmp_path / "st"
    args: list[str | Path] = ["convert", book, "-o", out, *polly, "--mode", "async"]
    args += ["--state-dir", state]
    interrupted_run(emu, aws_env, args, pieces=3)
    assert emu.wait_idle(timeout=60)
    first = emu.tasks
    assert {t.status for t in first} == {"completed"}
    # 73 hours later Polly has forgotten the tasks; their objects are still in S3 (or
    # a lifecycle rule removed them too).
    now[0] += 73 * 3600
    assert polly_api(emu).list_speech_synthesis_tasks()["SynthesisTasks"] == []
    if not audio_kept:
        for t in first:
            s3_client.delete_object(Bucket=t.bucket, Key=t.key)

    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert chapter_titles(out) == TITLES
    again = emu.tasks
    if audio_kept:
        assert again == []  # nothing paid again: the audio was at the recorded keys
    else:
        assert len(again) == 3  # one new task per piece, each paid once
        assert {t.text_sha256 for t in again} == {t.text_sha256 for t in first}
    # And a further run has nothing left to do.
    r = invoke(*args, "--force")
    assert r.exit_code == 0, r.output
    assert "0 synthesized" in r.stdout


# --- 4. a failed task whose notification gives no reason ------------------------------------


def test_failure_notified_without_a_reason_is_classified_by_get(polly_cli, sns_client, tmp_path):
    # The first task fails with a transient reason that only GetSpeechSynthesisTask
    # tells (facts.NOTIFICATION_CARRIES_REASON): a new task is started, the book ends.
    assert not facts.NOTIFICATION_CARRIES_REASON
    emu, polly = polly_cli(fail_rate=1.0, fail_limit=1, seed=1)
    topic = sns_client.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"]
    out = tmp_path / "day.m4b"
    r = invoke(
        "convert",
        make_epub(tmp_path / "day.epub"),
        "-o",
        out,
        *polly,
        "--mode",
        "async",
        "--sns-topic",
        topic,
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 0, r.output
    assert chapter_titles(out) == TITLES
    tasks = emu.tasks
    assert emu.stats["tasks_failed_transient_injected"] == 1
    assert [t.status for t in tasks].count("failed") == 1
    assert len(tasks) == 4 and len({t.text_sha256 for t in tasks}) == 3
    assert all(t.notified for t in tasks)


# --- 7. every status call through the shared rate limiter -----------------------------------


def test_fallback_gets_stay_inside_the_get_list_quota(polly_cli, s3_bucket, tmp_path):
    # 100 newer tasks in the account push the book's tasks off the first List page, so
    # each of its 12 pieces is asked with GetSpeechSynthesisTask: 13 status calls a
    # round against a quota of 10 a second (burst 10, unscaled). Each must wait its turn.
    now = [time.time()]
    emu, polly = polly_cli(
        clock=lambda: now[0],
        quota_scale=1,
        quota_overrides={"start:standard": (1000.0, 1000), "start:neural": (1000.0, 1000)},
        concurrency_overrides={"standard": 1000},
        audio="silence",
        queue_delay=1.0,
    )
    api = polly_api(emu)
    now[0] += 3600  # the others' tasks are newer than the book's
    for i in range(100):
        api.start_speech_synthesis_task(
            Text=f"Another task {i}.",
            VoiceId="Joanna",
            OutputFormat="mp3",
            OutputS3BucketName=s3_bucket,
            OutputS3KeyPrefix="others/",
        )
    now[0] -= 3600
    out, titles, r = convert_parts(tmp_path, 12, polly)
    assert r.exit_code == 0, r.output
    assert chapter_titles(out) == titles
    assert emu.stats.get("throttled_quota", 0) == 0, emu.stats


def test_a_throttled_listing_during_resume_is_retried(polly_cli, aws_env, tmp_path):
    # The run is killed while Polly's answer to its start call is on the way: the task
    # exists, its id was never recorded. The next run finds it with
    # ListSpeechSynthesisTasks, which is throttled twice (HTTP 429) first.
    emu, polly = polly_cli(
        slow_start_answer=30.0,
        unknown_error_rate=1.0,
        unknown_error_status=429,
        unknown_error_limit=2,
        fault_operations=("ListSpeechSynthesisTasks",),
    )
    book = make_epub(tmp_path / "one.epub", CHAPTERS[:1])
    out, state = tmp_path / "one.m4b", tmp_path / "st"
    args: list[str | Path] = ["convert", book, "-o", out, *polly, "--mode", "async"]
    args += ["--state-dir", state]
    proc = subprocess.Popen(
        audiobook_argv(*args),
        env={**os.environ, **aws_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not emu.tasks and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(emu.tasks) == 1
    finally:
        proc.kill()
        proc.wait()
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert emu.stats["unknown_errors_injected"] == 2
    assert len(emu.tasks) == 1  # found again, not paid twice
    assert chapter_titles(out) == TITLES[:1]


# --- 2. sample rates by path ---------------------------------------------------------------


def test_44100_hz_is_for_synthesize_speech_only(polly_cli, s3_bucket, tmp_path):
    emu, polly = polly_cli()
    book = make_epub(tmp_path / "day.epub")
    # An asynchronous task takes 8000-24000 Hz for mp3: refused before any call to Polly.
    r = invoke(
        "convert",
        book,
        "-o",
        tmp_path / "a.m4b",
        *polly,
        "--mode",
        "async",
        "--sample-rate",
        "44100",
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 2, r.output
    assert "--sample-rate 44100" in r.stderr and "SynthesizeSpeech only" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert emu.stats.get("requests.StartSpeechSynthesisTask", 0) == 0
    # SynthesizeSpeech takes it.
    out = tmp_path / "s.m4b"
    r = invoke(
        "convert",
        book,
        "-o",
        out,
        *polly,
        "--mode",
        "sync",
        "--sample-rate",
        "44100",
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 0, r.output
    assert emu.stats["sync_requests"] == 3
    assert chapter_titles(out) == TITLES
    # And the emulator draws the same line, as the model documents each path.
    api = polly_api(emu)
    with pytest.raises(api.exceptions.InvalidSampleRateException):
        api.start_speech_synthesis_task(
            Text="Hi.",
            VoiceId="Joanna",
            OutputFormat="mp3",
            SampleRate="44100",
            OutputS3BucketName=s3_bucket,
        )
    for rate in facts.TASK_SAMPLE_RATES["mp3"]:
        api.start_speech_synthesis_task(
            Text="Hi.",
            VoiceId="Joanna",
            OutputFormat="mp3",
            SampleRate=str(rate),
            OutputS3BucketName=s3_bucket,
        )
    got = api.synthesize_speech(
        Text="Hi.", VoiceId="Joanna", OutputFormat="mp3", SampleRate="48000"
    )
    assert got["AudioStream"].read()


# --- 6. headroom under the limits, and an independent count -------------------------------


def test_the_emulator_counts_billable_characters_on_its_own():
    # Not the project's counter: a shared mistake would make estimate and bill agree.
    src = Path(__file__).resolve().parent.parent / "audiobook" / "emulator"
    for path in src.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"from \.\.(ssml|chunk|estimate) import|audiobook\.ssml", text), path


def test_pieces_keep_a_margin_and_status_compares_the_counts(polly_cli, tmp_path):
    from audiobook.config import POLLY_LIMITS_TASK, POLLY_TASK_LIMITS

    emu, polly = polly_cli(audio="silence")
    sentence = "The long road went on and on past the hills and the farms. "  # 60 chars
    body = "".join(f"<p>{sentence * 25}</p>" for _ in range(67))  # about 98,800 characters
    book = make_epub(tmp_path / "long.epub", [("Long", body)])
    r = invoke("estimate", book, "--mode", "async", "--json")
    assert r.exit_code == 0, r.output
    est = json.loads(r.stdout)
    assert POLLY_TASK_LIMITS.max_billable < est["billable_chars"] < POLLY_LIMITS_TASK.max_billable
    state = tmp_path / "st"
    out = tmp_path / "long.m4b"
    r = invoke("convert", book, "-o", out, *polly, "--mode", "async", "--state-dir", state)
    assert r.exit_code == 0, r.output
    tasks = emu.tasks
    assert len(tasks) == est["tasks"] == 2
    assert max(t.request_characters for t in tasks) <= POLLY_TASK_LIMITS.max_billable
    # The emulator's own count of every task, against the estimate: equal.
    assert sum(t.request_characters for t in tasks) == est["billable_chars"]
    r = invoke("status", "--state-dir", state)
    assert r.exit_code == 0, r.output
    want = f"Polly counted {est['billable_chars']:,} billable characters for 2 pieces, "
    assert want + f"the estimate {est['billable_chars']:,} (drift +0 in 0 pieces)" in r.stdout


def corpus_books() -> list[str]:
    from tests.conftest import CORPUS

    names = []
    for kind in ("epub", "pdf", "html"):
        folder = CORPUS / kind
        if folder.is_dir():
            names += [f"{kind}/{p.name}" for p in sorted(folder.iterdir()) if p.is_file()]
    return names or ["epub/gutenberg-1661-adventures-of-sherlock-holmes.epub"]


@pytest.mark.parametrize("name", corpus_books())
def test_emulator_count_equals_the_estimate_on_each_corpus_book(corpus, name):
    # Book by book: what the engine estimates (the CLI's estimate) equals what the
    # emulator's own counter bills for the pieces the engine would send.
    from audiobook.chunk import chunk_rendered
    from audiobook.config import POLLY_LIMITS_TASK, POLLY_TASK_LIMITS
    from audiobook.emulator.ssml import billable_chars as emulator_count
    from audiobook.ingest import read_book
    from audiobook.ssml import render_book

    path = corpus(*name.split("/"))
    r = invoke("estimate", path, "--mode", "async", "--json")
    if r.exit_code in (3, 4, 5, 6, 7):  # an input the tool refuses, on one line
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        print(f"{name}: not a book, nothing to bill ({r.stderr.strip()})")
        return
    assert r.exit_code == 0, r.output
    est = json.loads(r.stdout)
    chunks = chunk_rendered(render_book(read_book(path)), POLLY_TASK_LIMITS)
    counts = [emulator_count(c.ssml, "ssml") for c in chunks]
    print(f"{name}: estimate {est['billable_chars']:,}, emulator {sum(counts):,}")
    assert len(chunks) == est["tasks"]
    assert sum(counts) == est["billable_chars"], name
    assert max(counts, default=0) <= POLLY_LIMITS_TASK.max_billable


# --- 8. the write probe uploads as Polly does -----------------------------------------------


def test_a_policy_denying_unencrypted_uploads_is_caught_before_paying(
    polly_cli, moto_server, s3_client, s3_bucket, tmp_path
):
    # The bucket encrypts with a KMS key by default and its policy denies uploads that
    # carry no encryption header. Polly writes with no header of its own (the default
    # encryption applies), so every output would be refused: the run must stop in
    # preflight, even though --kms-key names the bucket's own key.
    import boto3

    kms = boto3.session.Session(region_name="us-east-1").client("kms", endpoint_url=moto_server)
    key = kms.create_key()["KeyMetadata"]["Arn"]
    encrypt_bucket(s3_client, s3_bucket, key)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyUnencrypted",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{s3_bucket}/*",
                "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
            }
        ],
    }
    s3_client.put_bucket_policy(Bucket=s3_bucket, Policy=json.dumps(policy))
    emu, polly = polly_cli()
    r = invoke(
        "convert",
        make_epub(tmp_path / "day.epub"),
        "-o",
        tmp_path / "day.m4b",
        *polly,
        "--kms-key",
        key,
        "--mode",
        "async",
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 2, r.output
    # (moto denies this probe with or without an encryption header; real S3 only
    # without, which the probe now is: the message says which statement and why.)
    assert "not writable" in r.stderr and "(DenyUnencrypted) denies uploads" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert emu.tasks == []  # nothing started, nothing paid
    # The emulator, like Polly, takes such a task and fails it at the write.
    api = polly_api(emu)
    task = api.start_speech_synthesis_task(
        Text="Hi.", VoiceId="Joanna", OutputFormat="mp3", OutputS3BucketName=s3_bucket
    )["SynthesisTask"]
    assert emu.wait_idle(timeout=30)
    done = api.get_speech_synthesis_task(TaskId=task["TaskId"])["SynthesisTask"]
    assert done["TaskStatus"] == "failed" and "Access denied" in done["TaskStatusReason"]


# --- 9. lexicon content in the cache key ---------------------------------------------------


def pls(alias: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><lexicon version="1.0" '
        'xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa" '
        f'xml:lang="en-US"><lexeme><grapheme>town</grapheme><alias>{alias}</alias>'
        "</lexeme></lexicon>"
    )


def test_an_edited_lexicon_is_synthesized_again(polly_cli, tmp_path):
    emu, polly = polly_cli()
    api = polly_api(emu)
    api.put_lexicon(Name="places", Content=pls("village"))
    book, out, state = make_epub(tmp_path / "day.epub"), tmp_path / "day.m4b", tmp_path / "st"
    args = ["convert", book, "-o", out, *polly, "--lexicon", "places", "--mode", "async"]
    args += ["--state-dir", state, "--force"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert "3 synthesized" in r.stdout
    r = invoke(*args)  # unchanged: all from the cache
    assert r.exit_code == 0 and "0 synthesized" in r.stdout, r.output
    api.put_lexicon(Name="places", Content=pls("hamlet"))
    r = invoke(*args)  # edited: synthesized again, with the new lexicon
    assert r.exit_code == 0, r.output
    assert "3 synthesized" in r.stdout
    assert len(emu.tasks) == 6


# --- 10. stale queues ----------------------------------------------------------------------


def test_gc_removes_the_queues_of_killed_runs(polly_cli, aws_env, sns_client, sqs_client, tmp_path):
    emu, polly = polly_cli(queue_delay=30.0)  # tasks wait: the run is waiting when killed
    topic = sns_client.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"]
    book, state = make_epub(tmp_path / "day.epub"), tmp_path / "st"
    args: list[str | Path] = ["convert", book, "-o", tmp_path / "day.m4b", *polly]
    args += ["--sns-topic", topic, "--mode", "async", "--state-dir", state]
    proc = subprocess.Popen(
        audiobook_argv(*args),
        env={**os.environ, **aws_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(emu.tasks) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(emu.tasks) == 3
    finally:
        proc.kill()  # SIGKILL: no cleanup
        proc.wait()

    def ours() -> list[str]:
        urls = sqs_client.list_queues(QueueNamePrefix="audiobook-polly-").get("QueueUrls", [])
        return [u.rsplit("/", 1)[-1] for u in urls]

    def subscribed() -> list[str]:
        subs = sns_client.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        return [s["Endpoint"] for s in subs]

    # (the session's moto may hold queues of other tests' killed runs: they go too)
    left = [q for q in ours() if q.split("-")[3] == str(proc.pid)]
    assert len(left) == 1 and subscribed()
    # A queue of a live process (this one) is not touched.
    from audiobook.engines.polly.notify import queue_name

    live = sqs_client.create_queue(QueueName=queue_name())["QueueUrl"].rsplit("/", 1)[-1]
    r = invoke("gc", "--queues", "--dry-run", "--state-dir", state)
    assert r.exit_code == 0, r.output
    assert "would remove" in r.stdout and left[0] in r.stdout and live not in r.stdout
    assert set(left + [live]) <= set(ours())
    r = invoke("gc", "--queues", "--state-dir", state)
    assert r.exit_code == 0, r.output
    assert "stale notification queue" in r.stdout and left[0] in r.stdout
    assert left[0] not in ours() and live in ours()
    assert subscribed() == []
    sqs_client.delete_queue(QueueUrl=sqs_client.get_queue_url(QueueName=live)["QueueUrl"])


# --- 5. regions ----------------------------------------------------------------------------


def test_a_bucket_or_topic_in_another_region_is_named_in_preflight(
    polly_cli, moto_server, s3_client, sns_client, tmp_path
):
    import boto3

    emu, polly = polly_cli()
    far = f"far-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(
        Bucket=far, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    eu_sns = boto3.session.Session(region_name="eu-west-1").client("sns", endpoint_url=moto_server)
    eu_topic = eu_sns.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"]
    us_topic = sns_client.create_topic(Name=f"t-{uuid.uuid4().hex[:12]}")["TopicArn"]
    book = make_epub(tmp_path / "day.epub")
    polly_args = polly[: polly.index("--bucket")]

    def run(bucket: str, topic: str) -> Result:
        return invoke(
            "convert",
            book,
            "-o",
            tmp_path / "day.m4b",
            *polly_args,
            "--bucket",
            bucket,
            "--sns-topic",
            topic,
            "--mode",
            "async",
            "--state-dir",
            tmp_path / "st",
        )

    r = run(far, us_topic)
    assert r.exit_code == 2, r.output
    assert f"--bucket '{far}' is in eu-west-1, but Polly runs in us-east-1" in r.stderr
    assert "region: use a bucket in us-east-1" in r.stderr  # the topic is in us-east-1
    r = run(polly[polly.index("--bucket") + 1], eu_topic)
    assert r.exit_code == 2, r.output
    assert f"--sns-topic {eu_topic} is in eu-west-1" in r.stderr
    assert "region: use an SNS topic in us-east-1" in r.stderr
    r = run(far, eu_topic)  # both away, in one region: move Polly there
    assert r.exit_code == 2, r.output
    want = "use --region eu-west-1, or a bucket in us-east-1 and an SNS topic in us-east-1"
    assert want in r.stderr
    assert all(len(x.strip().splitlines()) == 1 for x in [r.stderr])
    assert emu.tasks == []
    # The emulator, as AWS documents it, takes neither.
    api = polly_api(emu)
    with pytest.raises(api.exceptions.InvalidS3BucketException, match="eu-west-1"):
        api.start_speech_synthesis_task(
            Text="Hi.", VoiceId="Joanna", OutputFormat="mp3", OutputS3BucketName=far
        )
    with pytest.raises(api.exceptions.InvalidSnsTopicArnException, match="eu-west-1"):
        api.start_speech_synthesis_task(
            Text="Hi.",
            VoiceId="Joanna",
            OutputFormat="mp3",
            SnsTopicArn=eu_topic,
            OutputS3BucketName=polly[polly.index("--bucket") + 1],
        )


# --- 3. SSML per engine, from the documented table ------------------------------------------

PITCH_TEMPLATE = """\
<speak>
{%- if index > 0 %}<prosody pitch="+10%">{% endif -%}
<p>{{ title }}</p>
{%- for b in blocks %}<p>{{ b.text }}</p>{% endfor -%}
{%- if index > 0 %}</prosody>{% endif -%}
</speak>
"""


def test_a_template_breaking_an_engine_rule_fails_in_preflight(polly_cli, tmp_path):
    # <prosody pitch> is for standard voices only (prosody-tag.html); this template
    # uses it from the second chapter on: no task may start, the first chapter's either.
    emu, polly = polly_cli()
    template = tmp_path / "pitched.ssml.j2"
    template.write_text(PITCH_TEMPLATE)
    book = make_epub(tmp_path / "day.epub")
    r = invoke(
        "convert",
        book,
        "-o",
        tmp_path / "day.m4b",
        *polly,
        "--template",
        template,
        "--mode",
        "async",
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1
    assert f'{template}:2: SSML tag <prosody pitch="+10%"> ' in err
    assert "is not supported by the Polly neural engine" in err
    assert emu.tasks == [] and emu.stats.get("requests.StartSpeechSynthesisTask", 0) == 0
    # The standard engine takes it.
    r = invoke(
        "convert",
        book,
        "-o",
        tmp_path / "std.m4b",
        *polly,
        "--polly-engine",
        "standard",
        "--template",
        template,
        "--mode",
        "async",
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 0, r.output
    # The emulator refuses it on neural too, and the news style off its four voices.
    api = polly_api(emu)
    pitched = '<speak><prosody pitch="+10%">Hi.</prosody></speak>'
    news = '<speak><amazon:domain name="news">Hi.</amazon:domain></speak>'
    for text, voice in ((pitched, "Joanna"), (news, "Ruth")):
        with pytest.raises(api.exceptions.ClientError, match="SSML"):
            api.synthesize_speech(
                Text=text, TextType="ssml", VoiceId=voice, Engine="neural", OutputFormat="mp3"
            )
    ok = api.synthesize_speech(
        Text=news, TextType="ssml", VoiceId="Joanna", Engine="neural", OutputFormat="mp3"
    )
    assert ok["AudioStream"].read()


@pytest.mark.parametrize(
    ("ssml", "engine", "voice", "bad"),
    [
        ('<speak><prosody pitch="low">x</prosody></speak>', "generative", None, "pitch="),
        ('<speak><prosody pitch="low">x</prosody></speak>', "standard", None, None),
        ('<speak><prosody volume="loud">x</prosody></speak>', "neural", None, None),
        (
            '<speak><amazon:domain name="news">x</amazon:domain></speak>',
            "neural",
            "Ruth",
            "<amazon:domain",
        ),
        ('<speak><amazon:domain name="news">x</amazon:domain></speak>', "neural", "Amy", None),
        (
            '<speak><amazon:domain name="news">x</amazon:domain></speak>',
            "long-form",
            "Ruth",
            "<amazon:domain",
        ),
        (
            "<speak><amazon:auto-breaths>x</amazon:auto-breaths></speak>",
            "long-form",
            None,
            "<amazon:auto-breaths",
        ),
        (
            '<speak><amazon:effect name="drc">x</amazon:effect></speak>',
            "generative",
            None,
            "<amazon:effect",
        ),
        ('<speak><prosody rate="-85%">x</prosody></speak>', "standard", None, "rate="),
    ],
)
def test_ssml_rules_per_engine(ssml, engine, voice, bad):
    from audiobook.engines.polly.checks import ssml_problem

    problem = ssml_problem(ssml, engine, voice)
    assert (problem[1] if problem else None) == bad


# --- concurrency per engine kind ------------------------------------------------------------


def test_tasks_in_flight_stay_within_the_engine_kinds_concurrency(polly_cli, tmp_path):
    # Neural allows 18 concurrent requests (limits.html); the emulator refuses a 19th
    # open task. 24 pieces, each waiting a second in the queue: the run keeps 18 open.
    from audiobook.config import POLLY_CONCURRENCY

    assert POLLY_CONCURRENCY == facts.CONCURRENCY
    emu, polly = polly_cli(audio="silence", queue_delay=1.0)
    _, _, r = convert_parts(tmp_path, 24, polly)
    assert r.exit_code == 0, r.output
    stats = emu.stats
    assert stats.get("throttled_concurrency", 0) == 0, stats
    assert stats["peak_open_tasks.neural"] == POLLY_CONCURRENCY["neural"] == 18
    assert len(emu.tasks) == 24


# --- cost guard: --max-cost and convert --dry-run ----------------------------------------------


def test_dry_run_and_max_cost(polly_cli, tmp_path):
    emu, polly = polly_cli()
    book, out, state = make_epub(tmp_path / "day.epub"), tmp_path / "day.m4b", tmp_path / "st"
    est = json.loads(invoke("estimate", book, "--mode", "async", "--json").stdout)
    chars, price = est["billable_chars"], est["price_per_million"]
    args = ["convert", book, "-o", out, *polly, "--mode", "async", "--state-dir", state]
    r = invoke(*args, "--dry-run")
    assert r.exit_code == 0, r.output
    want = (
        f"would submit 3 task(s) for 3 of 3 piece(s) (0 cached): {chars:,} billable "
        f"characters, ${chars * price / 1e6:,.2f} at list prices (neural)"
    )
    assert r.stdout.strip() == want
    assert emu.tasks == [] and not out.exists()
    # A ceiling below the price: refused before anything starts.
    r = invoke(*args, "--max-cost", "0.0001")
    assert r.exit_code == 2, r.output
    assert "would cost $0.00 at list prices" in r.stderr or "would cost $" in r.stderr
    assert "more than --max-cost 0.0001" in r.stderr
    assert emu.tasks == [] and not out.exists()
    # Above it: converted; then nothing is left to pay for.
    r = invoke(*args, "--max-cost", "1")
    assert r.exit_code == 0, r.output
    assert len(emu.tasks) == 3
    r = invoke(*args, "--dry-run")
    assert r.stdout.startswith("would submit 0 task(s) for 0 of 3 piece(s) (3 cached): 0 ")


# --- S3 hygiene: outputs deleted once cached, unless --keep-outputs ---------------------------


@pytest.mark.parametrize("keep", [False, True])
def test_task_outputs_leave_the_bucket_once_cached(polly_cli, s3_client, s3_bucket, tmp_path, keep):
    emu, polly = polly_cli()
    out = tmp_path / "day.m4b"
    args = ["convert", make_epub(tmp_path / "day.epub"), "-o", out, *polly, "--mode", "async"]
    args += ["--marks", "sentence", "--state-dir", tmp_path / "st"]
    r = invoke(*args, *(["--keep-outputs"] if keep else []))
    assert r.exit_code == 0, r.output
    assert chapter_titles(out) == TITLES
    assert len(emu.tasks) == 6  # audio and speech marks per piece
    left = s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
    assert sorted(o["Key"] for o in left) == (sorted(t.key for t in emu.tasks) if keep else [])


# --- the emulator as a user tool -------------------------------------------------------------


def test_the_emulator_documents_how_to_point_tools_at_it():
    r = invoke("polly-emulator", "--help")
    assert r.exit_code == 0
    for words in ("AWS_ENDPOINT_URL_POLLY", "aws polly describe-voices", "boto3", "moto_server"):
        assert words in r.stdout
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for words in (
        "AWS_ENDPOINT_URL_POLLY=http://127.0.0.1:4000",
        "put-bucket-lifecycle-configuration",
        '"Prefix": "audiobook/"',
        "--keep-outputs",
        "gc --queues",
    ):
        assert words in readme


# --- languages: LanguageCode for bilingual voices --------------------------------------------


def test_a_bilingual_voice_speaks_the_books_language(polly_cli, tmp_path):
    # Kajal speaks en-IN and hi-IN: a Hindi book is sent with LanguageCode hi-IN (else
    # Polly reads it in the voice's default language, Indian English).
    emu, polly = polly_cli()
    polly = [a if a != "Joanna" else "Kajal" for a in polly]
    docs = [Doc("c0.xhtml", "<h1>Pahla</h1><p>Namaste duniya.</p>")]
    book = build_epub(
        tmp_path / "hi.epub", docs, [("Pahla", "c0.xhtml", [])], title="Kitab", language="hi"
    )
    r = invoke(
        "convert",
        book,
        "-o",
        tmp_path / "hi.m4b",
        *polly,
        "--mode",
        "async",
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 0, r.output
    tasks = polly_api(emu).list_speech_synthesis_tasks()["SynthesisTasks"]
    assert [t.get("LanguageCode") for t in tasks] == ["hi-IN"]
    # An English book with the same voice: en-IN, the voice's English.
    r = invoke(
        "convert",
        make_epub(tmp_path / "en.epub"),
        "-o",
        tmp_path / "en.m4b",
        *polly,
        "--mode",
        "async",
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 0, r.output
    tasks = polly_api(emu).list_speech_synthesis_tasks()["SynthesisTasks"]
    assert sorted(str(t.get("LanguageCode")) for t in tasks) == ["en-IN"] * 3 + ["hi-IN"]


# --- languages: <lang xml:lang> for passages in another language -----------------------------


def test_a_passage_in_another_language_is_marked_for_polly(polly_cli, tmp_path):
    import hashlib

    from audiobook.chunk import chunk_rendered
    from audiobook.config import POLLY_TASK_LIMITS
    from audiobook.ingest import read_book
    from audiobook.ssml import render_book

    emu, polly = polly_cli()
    chapters = [
        ("Paris", '<p>We arrived at noon.</p><p xml:lang="fr">Bonjour mes amis.</p>'),
        ("Home", "<p>Then we went home.</p>"),
    ]
    book = make_epub(tmp_path / "trip.epub", chapters)
    ssml = [c.ssml for c in chunk_rendered(render_book(read_book(book)), POLLY_TASK_LIMITS)]
    assert '<lang xml:lang="fr-FR">Bonjour mes amis.</lang>' in ssml[0]
    assert "<lang" not in ssml[1]
    r = invoke(
        "convert",
        book,
        "-o",
        tmp_path / "trip.m4b",
        *polly,
        "--mode",
        "async",
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 0, r.output
    sent = {t.text_sha256 for t in emu.tasks}
    assert sent == {hashlib.sha256(s.encode()).hexdigest() for s in ssml}


def test_books_of_a_batch_share_the_engine_kinds_concurrency(polly_cli, tmp_path):
    # Two books of 12 pieces at once: 24 tasks, 18 at most in flight between them.
    from audiobook.config import POLLY_CONCURRENCY

    emu, polly = polly_cli(audio="silence", queue_delay=1.0)
    books = tmp_path / "books"
    books.mkdir()
    for name in ("one", "two"):
        chapters = [(f"{name} {i}", f"<p>Words of {name}, part {i}.</p>") for i in range(12)]
        make_epub(books / f"{name}.epub", chapters)
    r = invoke(
        "batch",
        books,
        "-o",
        tmp_path / "out",
        *polly,
        "--mode",
        "async",
        "--jobs",
        "2",
        "--state-dir",
        tmp_path / "st",
    )
    assert r.exit_code == 0, r.output
    stats = emu.stats
    assert stats.get("throttled_concurrency", 0) == 0, stats
    assert stats["peak_open_tasks.neural"] <= POLLY_CONCURRENCY["neural"]
    assert len(emu.tasks) == 24


def test_with_speech_marks_each_start_call_takes_a_token(
    aws_env, make_polly_emulator, s3_bucket, tmp_path, monkeypatch
):
    """With speech marks on, a submit starts two tasks (audio, marks): both come out of
    the start quota. The emulator counts (without throttling) every start over 10 per
    second with a burst of 8; the run asks for 8 per second with a burst of 1. The
    margins absorb calls that leave on time but are handled together on a loaded
    machine (a burst of 4 once counted 5 over). Taking one token per submit, the run
    starts 16 tasks a second and goes over."""
    from audiobook.config import PipelineConfig
    from audiobook.engines.options import PollyOptions
    from audiobook.options import ConvertOptions
    from audiobook.pipeline import convert

    emu = make_polly_emulator(
        quota_scale=1,
        quotas_enabled=False,  # nothing throttled: over-quota calls are only counted
        quota_overrides={"start:standard": (10.0, 8)},
        audio="silence",
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", emu.url)
    parts = 24
    book, _ = parts_epub(tmp_path / "marks.epub", parts)
    opts = ConvertOptions(
        engine="polly",
        voice="Joanna",
        engine_options=PollyOptions(
            bucket=s3_bucket,
            polly_engine="standard",
            mode="async",
            voice="Joanna",
            marks=("sentence",),
        ),
        config=PipelineConfig(tps=8.0, burst=1),
    )
    convert(book, tmp_path / "marks.m4b", opts, state_dir=tmp_path / "st")
    stats = emu.stats
    assert stats["tasks_created"] == 2 * parts, stats
    assert stats.get("over_quota.start:standard", 0) == 0, stats
