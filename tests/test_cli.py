"""The CLI against real temp folders: inspect's JSON contract, one-line errors with
distinct exit codes, a local-engine conversion read back with mutagen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from audiobook.cli import cli
from tests.epubkit import Doc, build_epub

CHAPTERS = [
    ("Morning", "<p>The sun rose over the hill. Birds began to sing.</p>"),
    ("Noon", "<p>It was hot at noon. Nobody moved.</p><p>The dog slept in the shade.</p>"),
    ("Night", "<p>Stars came out. The owl called twice.</p>"),
]


@pytest.fixture
def tiny_epub(tmp_path: Path) -> Path:
    docs = [Doc(f"c{i}.xhtml", f"<h1>{t}</h1>{body}") for i, (t, body) in enumerate(CHAPTERS)]
    toc = [(t, f"c{i}.xhtml", []) for i, (t, _) in enumerate(CHAPTERS)]
    return build_epub(
        tmp_path / "tiny.epub", docs, toc, title="A Tiny Day", authors=("Ann Author",)
    )


# Conversions here test the CLI, not the voice: the fast engine.
ESPEAK = ("--engine", "espeak")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_inspect_json_contract(tiny_epub):
    r = invoke("inspect", str(tiny_epub), "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert set(info) == {"title", "authors", "language", "chapters", "total_billable_chars"}
    assert info["title"] == "A Tiny Day" and info["authors"] == ["Ann Author"]
    assert info["language"] == "en"
    assert [c["title"] for c in info["chapters"]] == [t for t, _ in CHAPTERS]
    for c in info["chapters"]:
        assert set(c) == {"title", "level", "chars", "billable_chars"}
        assert c["level"] == 1 and 0 < c["billable_chars"] < c["chars"]
    assert info["total_billable_chars"] == sum(c["billable_chars"] for c in info["chapters"])


def test_inspect_billable_matches_the_estimate(tiny_epub):
    info = json.loads(invoke("inspect", str(tiny_epub), "--json").stdout)
    est = json.loads(invoke("estimate", str(tiny_epub), "--json").stdout)
    assert est["billable_chars"] == info["total_billable_chars"]
    assert est["tasks"] >= 1 and est["cost_usd"] > 0


def test_inspect_text_shows_what_is_spoken(tiny_epub):
    r = invoke("inspect", str(tiny_epub), "--text")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("#")] == [f"# {t}" for t, _ in CHAPTERS]
    assert "The dog slept in the shade." in r.stdout
    assert "<" not in r.stdout  # no markup, only words


def test_inspect_plain(tiny_epub):
    r = invoke("inspect", str(tiny_epub))
    assert r.exit_code == 0 and "Noon" in r.stdout and "3 chapters" in r.stdout


@pytest.mark.parametrize(
    "make, code, words",
    [
        (lambda d: d / "missing.epub", 3, "no such file"),
        (
            lambda d: (d / "zero.epub").write_bytes(b"") and d / "zero.epub" or d / "zero.epub",
            5,
            "zero.epub",
        ),
        (lambda d: (d / "notes.xyz").write_text("hi") and d / "notes.xyz", 4, "notes.xyz"),
        (lambda d: d, 3, "folder"),
    ],
    ids=["missing", "zero-bytes", "unsupported", "folder"],
)
def test_bad_input_is_one_line_with_its_exit_code(tmp_path, make, code, words):
    path = make(tmp_path)
    for command in ("inspect", "convert", "estimate"):
        extra = ["--state-dir", str(tmp_path / "state")] if command == "convert" else []
        r = CliRunner().invoke(cli, [command, str(path), *extra])
        assert r.exit_code == code, (command, r.output)
        assert r.stdout == ""
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("audiobook: error: "), r.stderr
        assert words in err[0]
        assert "Traceback" not in r.output


def test_polly_needs_a_bucket(tiny_epub, tmp_path):
    r = CliRunner().invoke(
        cli, ["convert", str(tiny_epub), "--engine", "polly", "--state-dir", str(tmp_path / "s")]
    )
    assert r.exit_code == 2 and "--bucket" in r.stderr


def test_corrupt_state_is_a_one_line_error_and_reset_moves_it(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.sqlite").write_bytes(b"not a database" * 100)
    r = CliRunner().invoke(cli, ["status", "--state-dir", str(state)])
    assert r.exit_code == 9 and "--reset-state" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(cli, ["status", "--state-dir", str(state), "--reset-state"])
    assert r.exit_code == 0, r.output
    assert [p.name for p in state.iterdir() if p.name.startswith("state.sqlite.bad-")]


@pytest.mark.ffmpeg
def test_convert_local_to_m4b_with_chapters(tiny_epub, tmp_path):
    from mutagen.mp4 import MP4

    out = tmp_path / "out" / "tiny.m4b"
    out.parent.mkdir()
    state = tmp_path / "state"
    r = invoke("convert", str(tiny_epub), "-o", str(out), "--state-dir", str(state), *ESPEAK)
    assert r.exit_code == 0, r.output
    assert "3 chapters" in r.stdout and "3 synthesized" in r.stdout
    audio = MP4(out)
    chapters = list(audio.chapters)
    assert [c.title for c in chapters] == [t for t, _ in CHAPTERS]
    starts = [c.start for c in chapters]
    assert starts[0] == 0 and starts == sorted(starts) and len(set(starts)) == 3
    assert audio.info.length > starts[-1] > 0
    assert audio.tags["\xa9nam"] == ["A Tiny Day"]
    # The second run does nothing and says so; status shows the book.
    size = out.stat().st_size
    r = invoke("convert", str(tiny_epub), "-o", str(out), "--state-dir", str(state), *ESPEAK)
    assert r.exit_code == 0 and "up to date" in r.stdout and out.stat().st_size == size
    r = invoke("status", "--state-dir", str(state))
    assert "A Tiny Day" in r.stdout and "3 done" in r.stdout
    r = invoke("gc", "--state-dir", str(state))
    assert r.exit_code == 0 and "removed 0" in r.stdout


@pytest.mark.ffmpeg
def test_changed_chapter_resynthesizes_only_that_chapter(tmp_path):
    def make(noon_text: str) -> Path:
        chapters = [CHAPTERS[0], ("Noon", f"<p>{noon_text}</p>"), CHAPTERS[2]]
        docs = [Doc(f"c{i}.xhtml", f"<h1>{t}</h1>{b}") for i, (t, b) in enumerate(chapters)]
        toc = [(t, f"c{i}.xhtml", []) for i, (t, _) in enumerate(chapters)]
        return build_epub(tmp_path / "day.epub", docs, toc, title="A Day")

    state = str(tmp_path / "state")
    out = str(tmp_path / "day.m4b")
    make("It was hot at noon.")
    r = invoke("convert", str(tmp_path / "day.epub"), "-o", out, "--state-dir", state, *ESPEAK)
    assert "0 cached, 3 synthesized" in r.stdout, r.output
    make("It was cold at noon, for once.")
    r = invoke("convert", str(tmp_path / "day.epub"), "-o", out, "--state-dir", state, *ESPEAK)
    assert r.exit_code == 0 and "2 cached, 1 synthesized" in r.stdout, r.output
    # The old version of the changed chapter is what gc removes.
    r = invoke("gc", "--state-dir", state)
    assert "removed 1 cached piece " in r.stdout


def test_voices_and_tasks_on_the_emulator(aws_env, polly_client, s3_bucket):
    r = invoke("voices", "--engine", "polly", "--language", "en-US")
    assert r.exit_code == 0 and "Joanna" in r.stdout
    task = polly_client.start_speech_synthesis_task(
        OutputFormat="mp3", OutputS3BucketName=s3_bucket, Text="Hello there.", VoiceId="Joanna"
    )["SynthesisTask"]
    r = invoke("tasks", "--max", "100")
    assert r.exit_code == 0 and task["TaskId"] in r.stdout


def test_voices_local():
    r = invoke("voices", "--engine", "local")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) > 20
