"""Issue 19, items 3, 12 and 10: nothing of a document is dropped, every voice the
local engine lists speaks, a book's language finds its voice, and the CLI refuses what
it would ignore and says what it did.

Through the real CLI (click's CliRunner on ``audiobook.cli.cli``, or ``python -m
audiobook`` in a subprocess) against real files; audio is read back with PyAV; the
Polly cases run against the project's emulator and moto.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import av
import boto3
import pytest
from click.testing import CliRunner

from audiobook.cli import cli
from audiobook.emulator import PERMANENT_REASONS
from audiobook.engines import espeak
from audiobook.engines.local import LOCAL_LIMITS, LocalEngine, voice_for_language
from audiobook.engines.options import LocalOptions
from tests.epubkit import Doc, build_epub

HUGE = 10 * 1024 * 1024  # one paragraph of 10 MiB: over libxml2's 10,000,000-byte text node


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def sentences(n: int) -> str:
    """``n`` numbered sentences on one line: 'Word0 is here. Word1 is here. ...'."""
    return " ".join(f"Word{i} is here." for i in range(n))


@functools.cache
def huge_sentences() -> tuple[str, int]:
    n = HUGE // 18
    text = sentences(n)
    assert len(text) > HUGE
    return text, n


@pytest.fixture(scope="module")
def huge_docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """First paragraph, a 10 MiB one-line paragraph, last paragraph: as Markdown, HTML
    and EPUB; and a Markdown file that is only the huge line."""
    d = tmp_path_factory.mktemp("huge")
    big, _n = huge_sentences()
    first, last = "First paragraph here.", "Last paragraph here."
    (d / "three.md").write_text(f"# Huge\n\n{first}\n\n{big}\n\n{last}\n", encoding="utf-8")
    (d / "three.html").write_text(
        "<html><head><title>Huge</title></head><body><article>"
        f"<p>{first}</p><p>{big}</p><p>{last}</p></article></body></html>",
        encoding="utf-8",
    )
    (d / "one.md").write_text(big + "\n", encoding="utf-8")
    build_epub(
        d / "three.epub",
        [Doc("c1.xhtml", f"<h1>Huge</h1><p>{first}</p><p>{big}</p><p>{last}</p>")],
        [("Huge", "c1.xhtml", [])],
    )
    return {p.name: p for p in d.iterdir()}


def spoken(path: Path) -> str:
    r = invoke("inspect", str(path), "--text")
    assert r.exit_code == 0, r.stderr[-2000:]
    return r.stdout


# --- item 3: huge paragraphs --------------------------------------------------------------


@pytest.mark.parametrize("name", ["three.md", "three.html", "three.epub"])
def test_a_huge_paragraph_keeps_the_rest_of_the_document(huge_docs, name):
    _big, n = huge_sentences()
    text = spoken(huge_docs[name])
    assert "First paragraph here." in text
    assert "Last paragraph here." in text
    assert text.index("First paragraph here.") < text.index("Word0 is here.")
    assert text.index(f"Word{n - 1} is here.") < text.index("Last paragraph here.")
    assert len(re.findall(r"\bWord\d+ is here\.", text)) == n  # not one sentence lost


def test_a_huge_one_line_markdown_file_is_spoken(huge_docs):
    _big, n = huge_sentences()
    text = spoken(huge_docs["one.md"])
    assert f"Word{n - 1} is here." in text
    assert len(re.findall(r"\bWord\d+ is here\.", text)) == n


def test_the_huge_paragraph_is_split_under_the_engines_limits(huge_docs):
    from audiobook.chunk import chunk_book
    from audiobook.ingest import IngestOptions, read_book
    from audiobook.ssml import billable_chars, spoken_text

    # What Polly would be asked: every character, in tasks under its task limit.
    r = invoke("estimate", str(huge_docs["three.md"]), "--mode", "async", "--json")
    assert r.exit_code == 0, r.stderr
    est = json.loads(r.stdout)
    assert est["billable_chars"] > HUGE
    assert est["tasks"] >= est["billable_chars"] // 100_000
    # The local engine's pieces: under its limits, cut at sentence ends, nothing lost.
    book = read_book(huge_docs["three.md"], IngestOptions())
    chunks = chunk_book(book, LOCAL_LIMITS)
    assert len(chunks) > HUGE // LOCAL_LIMITS.max_billable
    for c in chunks:
        assert billable_chars(c.ssml) <= LOCAL_LIMITS.max_billable
        assert len(c.ssml) <= LOCAL_LIMITS.max_total
    texts = [spoken_text(c.ssml) for c in chunks]
    assert all(t.rstrip().endswith((".", "Huge")) for t in texts)
    joined = " ".join(texts)
    assert len(re.findall(r"\bWord\d+ is here\.", joined)) == huge_sentences()[1]
    assert "Last paragraph here." in joined


def test_text_after_cdata_comments_and_instructions_is_kept(tmp_path):
    docs = {
        "cdata.md": "Alpha <![CDATA[x]]> Beta end.\n",
        "comment.md": "Alpha <!-- a note --> Beta end.\n",
        "pi.md": "Alpha <?php echo 1 ?> Beta end.\n",
        "cdata.html": "<html><body><p>Alpha <![CDATA[x]]> Beta end.</p></body></html>",
    }
    lost = {}
    for name, content in docs.items():
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        text = spoken(path)
        if not ("Alpha" in text and "Beta end." in text):
            lost[name] = text
    assert lost == {}


# --- item 12: every listed voice speaks, language tags find their voice ---------------------

SENTENCE = "Hello there, this is a short test."


def seconds_of(voice: str) -> float:
    pcm, rate = espeak.synthesize(SENTENCE, voice, ssml=False)
    return len(pcm) / 2 / rate


def test_every_voice_that_voices_lists_synthesizes():
    r = invoke("voices", "--engine", "espeak")
    assert r.exit_code == 0, r.stderr
    names = [line.split("\t")[0] for line in r.stdout.splitlines() if line.strip()]
    assert {"en-gb", "en-us", "en-gb-x-rp", "fr-fr", "cmn", "ja", "pt-br"} <= set(names)
    assert len(names) == len(set(names)), "a listed name must pick one voice"
    quiet = {}
    for name in names:
        LocalEngine(LocalOptions(voice=name)).close()  # --voice takes it
        # A voice without its dictionary says a fraction of a second of noise for any
        # text; speech of this sentence is over a second in every language.
        if (s := seconds_of(name)) < 0.5:
            quiet[name] = s
    assert quiet == {}


# A book's language tag -> the closest espeak-ng voice.
LANGUAGE_VOICES = {
    "en-GB": "en-gb",
    "en_gb": "en-gb",
    "pt-BR": "pt-br",
    "pt-PT": "pt-pt",
    "es-MX": "es-mx",
    "zh-Hant": "cmn",
    "zh-HK": "yue",
    "ja-jp": "ja",
    "jp": "ja",
    "fr-FR": "fr-fr",
    "nn": "nb",
}


def test_language_tags_map_to_voices_that_speak():
    mapped = {tag: voice_for_language(tag) for tag in LANGUAGE_VOICES}
    assert mapped == LANGUAGE_VOICES
    silent = {}
    for voice in sorted(set(mapped.values())):
        try:
            s = seconds_of(voice)
        except Exception as e:  # noqa: BLE001 - collected, to show every voice that fails
            silent[voice] = str(e)
        else:
            if s < 0.5:
                silent[voice] = f"{s:.2f} s"
    assert silent == {}


def test_a_language_whose_voice_cannot_speak_falls_back_with_a_warning(caplog):
    # espeak-ng lists Faroese, but the installed data has no Faroese dictionary.
    assert voice_for_language("fo-FO") == "en"
    assert "fo" in caplog.text and "dictionary" in caplog.text
    r = CliRunner().invoke(cli, ["voices", "--engine", "local", "--language", "fo"])
    assert r.exit_code == 0 and "fo" not in r.stdout.split()


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as f:
        return float(f.duration or 0) / av.time_base


@pytest.mark.ffmpeg
def test_british_books_convert_with_the_default_engine(tmp_path):
    book = tmp_path / "tea.md"
    book.write_text(
        "---\ntitle: Tea\nlang: en-GB\n---\n\nThe colour of the tea was lovely.\n",
        encoding="utf-8",
    )
    state = str(tmp_path / "state")
    r = invoke("convert", str(book), "-o", str(tmp_path / "tea.m4b"), "--state-dir", state)
    assert r.exit_code == 0, r.stderr
    assert audio_seconds(tmp_path / "tea.m4b") > 1.0
    r = invoke(
        "convert",
        str(book),
        "--voice",
        "en-gb",
        "--format",
        "mp3",
        "-o",
        str(tmp_path / "tea.mp3"),
        "--state-dir",
        state,
    )
    assert r.exit_code == 0, r.stderr
    assert audio_seconds(tmp_path / "tea.mp3") > 1.0


def test_a_voice_without_its_dictionary_is_refused_in_one_line(tmp_path):
    book = tmp_path / "b.md"
    book.write_text("Hello there.\n", encoding="utf-8")
    r = CliRunner().invoke(
        cli, ["convert", str(book), "--voice", "fo", "--state-dir", str(tmp_path / "s")]
    )
    assert r.exit_code == 2
    assert r.stderr.startswith("audiobook: error: ") and "dictionary" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b.m4b").exists()


# --- item 10: options that do not apply, defaults, headers, reasons, plurals -----------------


@pytest.fixture
def tiny_md(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.md"
    path.write_text("# Tiny\n\nOne short sentence.\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "extra",
    [
        ["--bucket", "x"],
        ["--lexicon", "names"],
        ["--sns-topic", "arn:aws:sns:us-east-1:123456789012:t"],
        ["--kms-key", "k"],
        ["--region", "eu-west-1"],
        ["--prefix", "books/"],
        ["--polly-engine", "standard"],
        ["--mode", "sync"],
        # not --marks: espeak-ng's timings take it too (word overlays, test_readalong)
    ],
    ids=lambda e: e[0],
)
def test_polly_options_with_the_local_engine_are_refused(tiny_md, tmp_path, extra):
    out = tmp_path / "tiny.m4b"
    args = ["convert", str(tiny_md), "-o", str(out), "--state-dir", str(tmp_path / "s")]
    r = CliRunner().invoke(cli, [*args, "--engine", "local", *extra])
    assert r.exit_code == 2, r.output
    assert r.stderr == f"audiobook: error: {extra[0]} applies only to --engine polly, not local\n"
    assert not out.exists()


def test_local_options_with_polly_are_refused(tiny_md, tmp_path, aws_env, s3_bucket):
    out = tmp_path / "tiny.m4b"
    r = CliRunner().invoke(
        cli,
        [
            "convert",
            str(tiny_md),
            "-o",
            str(out),
            "--engine",
            "polly",
            "--bucket",
            s3_bucket,
            "--workers",
            "2",
            "--state-dir",
            str(tmp_path / "s"),
        ],
    )
    assert r.exit_code == 2, r.output
    assert (
        r.stderr
        == "audiobook: error: --workers applies only to --engine local or piper or espeak, not polly\n"
    )
    assert not out.exists()
    r = CliRunner().invoke(cli, ["voices", "--engine", "local", "--polly-engine", "neural"])
    assert r.exit_code == 2 and "--polly-engine applies only to --engine polly" in r.stderr


def test_voices_defaults_to_the_local_engine_like_convert(aws_env):
    # With Polly reachable (the emulator), the default must still be espeak-ng's list.
    r = invoke("voices")
    assert r.exit_code == 0, r.stderr
    names = [line.split("\t")[0] for line in r.stdout.splitlines()]
    assert "en-gb-x-rp" in names and "Joanna" not in r.stdout
    r = invoke("voices", "--language", "en-GB")
    assert r.exit_code == 0 and "en-gb" in r.stdout.split()


def test_tasks_prints_a_header_and_says_when_there_are_none(
    aws_env, make_polly_emulator, monkeypatch, s3_bucket
):
    emu = make_polly_emulator()
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", emu.url)
    r = invoke("tasks")
    assert r.exit_code == 0 and r.stdout == "no tasks\n"
    r = invoke("tasks", "--status", "failed")
    assert r.exit_code == 0 and r.stdout == "no failed tasks\n"
    polly = boto3.client("polly", endpoint_url=emu.url, region_name="us-east-1")
    task = polly.start_speech_synthesis_task(
        OutputFormat="mp3", OutputS3BucketName=s3_bucket, Text="Hello there.", VoiceId="Joanna"
    )["SynthesisTask"]
    r = invoke("tasks")
    lines = r.stdout.splitlines()
    assert r.exit_code == 0 and len(lines) == 2
    assert lines[0].split() == ["task", "status", "created", "chars", "output", "reason"]
    assert lines[1].startswith(task["TaskId"])


@pytest.mark.ffmpeg
def test_status_shows_why_a_book_failed(
    tiny_md, tmp_path, aws_env, make_polly_emulator, monkeypatch, s3_bucket
):
    emu = make_polly_emulator(permanent_fail_rate=1.0, seed=1)
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", emu.url)
    state = str(tmp_path / "state")
    r = CliRunner().invoke(
        cli,
        [
            "convert",
            str(tiny_md),
            "--engine",
            "polly",
            "--bucket",
            s3_bucket,
            "--mode",
            "async",
            "--voice",
            "Joanna",
            "--state-dir",
            state,
        ],
    )
    assert r.exit_code == 8, r.output
    error = r.stderr.strip().removeprefix("audiobook: error: ")
    assert any(reason in error for reason in PERMANENT_REASONS)
    r = invoke("status", "--state-dir", state)
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    book = next(i for i, line in enumerate(lines) if "failed" in line and "Tiny" in line)
    assert lines[book + 1].split() == ["error:", *error.split()]


def test_counts_of_one_are_singular(tiny_md):
    r = invoke("estimate", str(tiny_md))
    assert r.exit_code == 0 and "1 request (sync)" in r.stdout, r.stdout
    r = invoke("estimate", str(tiny_md), "--mode", "async")
    assert r.exit_code == 0 and "1 task (async)" in r.stdout, r.stdout
    r = invoke("inspect", str(tiny_md))
    assert r.exit_code == 0 and r.stdout.splitlines()[-1].startswith("1 chapter, ")
    for out in (
        invoke("estimate", str(tiny_md)).stdout,
        invoke("estimate", str(tiny_md), "--mode", "async").stdout,
        invoke("inspect", str(tiny_md)).stdout,
    ):
        assert not re.search(r"(?<![\d,])1 (requests|tasks|chapters)\b", out), out


def test_polly_emulator_is_a_click_command(moto_server):
    r = CliRunner().invoke(cli, ["polly-emulator", "--help"], prog_name="audiobook")
    assert r.exit_code == 0
    assert r.stdout.startswith("Usage: audiobook polly-emulator [OPTIONS]")
    assert "Options:" in r.stdout and "Example:" in r.stdout
    for option in ("--s3-endpoint URL", "--port", "--quota NAME=RATE:BURST", "--fail-rate"):
        assert option in r.stdout
    r = CliRunner().invoke(cli, ["polly-emulator"])
    assert r.exit_code == 2 and "Missing option '--s3-endpoint'" in r.stderr
    # It still serves: the URL first, Polly's API on it, a clean exit on SIGTERM.
    proc = subprocess.Popen(
        [sys.executable, "-m", "audiobook", "polly-emulator", "--port", "0"]
        + ["--s3-endpoint", moto_server, "--quota", "describe=100:100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        polly = boto3.client(
            "polly",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert any(v["Id"] == "Joanna" for v in polly.describe_voices()["Voices"])
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
