"""Nothing lost, nothing paid for a bad output (issue 19, items 1, 2, 5 and 10a), through
the real CLI (``python -m audiobook`` in a subprocess).

* ``--format chapters`` never deletes what we did not write: a folder that holds files
  and no manifest of ours is refused; in a folder of ours only our files are replaced.
* An output that is the input (however spelled) is refused before anything is read.
* Every check that needs no synthesis runs before the first paid call: the Polly
  emulator shows no task and no SynthesizeSpeech request when the run fails. A full
  disk and a read-only folder are real: a tmpfs mounted in a private user and mount
  namespace (skipped where the system allows none).
* The output's extension decides the format when ``--format`` is not given; a name
  and a format that disagree are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.epubkit import Doc, build_epub
from tests.runs import polly_args

pytestmark = pytest.mark.ffmpeg

MANIFEST = ".audiobook-manifest.json"
AUDIO_SUFFIXES = {".wav", ".mp3", ".ogg", ".pcm", ".marks"}
PARAGRAPH = (
    "The river ran past the mill and under the old stone bridge, where the children "
    "of the village gathered every evening to watch the boats go by. "
)


def cli(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None, wrap=()):
    argv = [*wrap, sys.executable, "-m", "audiobook", *map(str, args)]
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False
    )


def refused(r: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The run failed with ``code`` and one line, an error holding ``words``."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("audiobook: error: "), r.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def epub(path: Path, titles: list[str], title: str = "A Day", repeat: int = 1) -> Path:
    docs = [
        Doc(f"c{i}.xhtml", f"<h1>{t}</h1><p>{t}. {PARAGRAPH * repeat}</p>")
        for i, t in enumerate(titles)
    ]
    toc = [(t, f"c{i}.xhtml", []) for i, t in enumerate(titles)]
    return build_epub(path, docs, toc, title=title)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder``: files with their bytes, folders as None."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def synthesized(state: Path) -> list[Path]:
    """Audio the local engine put into the state store's cache."""
    return [p for p in state.rglob("*") if p.is_file() and p.suffix in AUDIO_SUFFIXES]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(folder: Path) -> list[str]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]


def container(path: Path) -> str:
    import av

    with av.open(str(path)) as f:
        return f.format.name


def nothing_paid(emu: Any) -> None:
    assert emu.tasks == [], "a task was started before the failure"
    assert emu.stats.get("sync_requests", 0) == 0, "a SynthesizeSpeech call was made"


@pytest.fixture
def emulated(aws_env, make_polly_emulator, s3_bucket):
    """(environment for the CLI, a fresh emulator with no task yet, the bucket)."""
    emu = make_polly_emulator()
    return {**os.environ, **aws_env, "AWS_ENDPOINT_URL_POLLY": emu.url}, emu, s3_bucket


# --- item 1: --format chapters never deletes what we did not write -----------------------


def test_chapters_refuses_a_folder_of_files_it_did_not_write(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    src = epub(lib / "titles.epub", ["Morning", "Night"])
    (lib / "notes.txt").write_text("keep")
    (lib / "sub").mkdir()
    (lib / "sub" / "draft.md").write_text("# mine")
    before = snapshot(lib)
    state = tmp_path / "state"

    r = cli("convert", src, "--format", "chapters", "-o", lib, "--state-dir", state)
    refused(r, 2, str(lib), MANIFEST)
    assert snapshot(lib) == before
    assert synthesized(state) == []  # refused before any synthesis


def test_chapters_default_folder_beside_the_book_follows_the_same_rule(tmp_path):
    src = epub(tmp_path / "book.epub", ["Morning", "Night"])
    folder = tmp_path / "book"  # what book.epub's chapters would be written into
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff my holiday")
    before = snapshot(folder)
    state = tmp_path / "state"

    r = cli("convert", src, "--format", "chapters", "--state-dir", state)
    refused(r, 2, "book", MANIFEST)
    assert snapshot(folder) == before
    assert synthesized(state) == []


def test_chapters_rerun_replaces_only_its_own_files(tmp_path):
    from mutagen.mp4 import MP4

    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine
    state = tmp_path / "state"
    src = epub(tmp_path / "day.epub", ["Morning", "Noon", "Night"])
    r = cli("convert", src, "--format", "chapters", "-o", out, "--state-dir", state)
    assert r.returncode == 0, r.stderr
    first = ["001 - Morning.m4b", "002 - Noon.m4b", "003 - Night.m4b"]
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, *first]
    assert manifest(out) == first

    # The user keeps things of their own in the folder.
    (out / "notes.txt").write_text("keep")
    (out / "sub").mkdir()
    (out / "sub" / "001 - Morning.m4b").write_bytes(b"my own copy")
    mine = {
        k: v for k, v in snapshot(out).items() if k in ("notes.txt", "sub", "sub/001 - Morning.m4b")
    }

    # A new version of the book: one chapter renamed, one gone.
    epub(src, ["Dawn", "Noon"])
    r = cli("convert", src, "--format", "chapters", "-o", out, "--state-dir", state)
    assert r.returncode == 0, r.stderr
    second = ["001 - Dawn.m4b", "002 - Noon.m4b"]
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, *second, "notes.txt", "sub"])
    assert manifest(out) == second
    assert {k: v for k, v in snapshot(out).items() if k in mine} == mine
    for name, title in zip(second, ["Dawn", "Noon"]):
        assert MP4(out / name).tags["\xa9nam"] == [title]
        assert MP4(out / name).info.length > 1


def test_chapters_never_replaces_a_same_named_file_it_did_not_write(tmp_path):
    out = tmp_path / "out"
    state = tmp_path / "state"
    src = epub(tmp_path / "day.epub", ["Morning"])
    r = cli("convert", src, "--format", "chapters", "-o", out, "--state-dir", state)
    assert r.returncode == 0, r.stderr
    assert manifest(out) == ["001 - Morning.m4b"]
    # The user puts a file where the next version's second chapter would go.
    (out / "002 - Night.m4b").write_bytes(b"the user's recording")
    before = snapshot(out)
    cached = synthesized(state)

    epub(src, ["Morning", "Night"])
    r = cli("convert", src, "--format", "chapters", "-o", out, "--state-dir", state)
    refused(r, 2, "002 - Night.m4b", "not written by audiobook")
    assert snapshot(out) == before
    assert synthesized(state) == cached  # nothing new synthesized


def test_chapters_captions_are_listed_and_replaced_like_the_audio(tmp_path, emulated):
    env, _emu, bucket = emulated
    out = tmp_path / "out"
    src = epub(tmp_path / "day.epub", ["Morning", "Night"])
    args = ["--format", "chapters", "-o", out, *polly_args(bucket), "--marks", "sentence"]
    r = cli("convert", src, *args, "--state-dir", tmp_path / "s", env=env)
    assert r.returncode == 0, r.stderr
    first = ["001 - Morning.m4b", "001 - Morning.vtt", "002 - Night.m4b", "002 - Night.vtt"]
    assert manifest(out) == first
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, *first]
    assert (out / "001 - Morning.vtt").read_text().startswith("WEBVTT")
    (out / "my-notes.vtt").write_text("WEBVTT\n\nmine\n")

    epub(src, ["Dawn"])  # the next version: one chapter, another name
    r = cli("convert", src, *args, "--state-dir", tmp_path / "s", env=env)
    assert r.returncode == 0, r.stderr
    assert manifest(out) == ["001 - Dawn.m4b", "001 - Dawn.vtt"]
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST,
        "001 - Dawn.m4b",
        "001 - Dawn.vtt",
        "my-notes.vtt",
    ]
    assert (out / "my-notes.vtt").read_text() == "WEBVTT\n\nmine\n"


# --- item 2: an output that is the input ---------------------------------------------------


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "absolute", "symlink", "hard-link"])
def test_output_that_is_the_input_is_refused(tmp_path, spelling):
    src = epub(tmp_path / "self.epub", ["Morning", "Night"])
    digest = sha(src)
    if spelling == "symlink":
        (tmp_path / "link.m4b").symlink_to("self.epub")
        out = "link.m4b"
    elif spelling == "hard-link":
        os.link(src, tmp_path / "twin.epub")
        out = "twin.epub"
    else:
        out = {"same": "self.epub", "dot-slash": "./self.epub", "absolute": str(src)}[spelling]
    state = tmp_path / "state"

    r = cli("convert", "self.epub", "-o", out, "--state-dir", state, cwd=tmp_path)
    refused(r, 2, "is the input")
    assert sha(src) == digest
    assert synthesized(state) == []


# --- item 5: every check that needs no synthesis runs before the first paid call ---------


@pytest.mark.parametrize("case", ["no-folder", "format-mismatch", "is-the-input", "not-our-folder"])
def test_a_bad_output_fails_before_any_paid_call(tmp_path, emulated, case):
    env, emu, bucket = emulated
    src = epub(tmp_path / "book.epub", ["Morning", "Night"])
    digest = sha(src)
    extra: list[str | Path] = []
    if case == "no-folder":  # the issue's -o nodir/x.m4b, billed before it failed
        out, words = tmp_path / "nodir" / "x.m4b", ["does not exist"]
    elif case == "format-mismatch":
        out, words, extra = tmp_path / "x.m4b", ["x.m4b"], ["--format", "mp3"]
    elif case == "is-the-input":
        out, words = src, ["is the input"]
    else:
        out, words, extra = tmp_path / "lib", [MANIFEST], ["--format", "chapters"]
        out.mkdir()
        (out / "notes.txt").write_text("keep")
    r = cli(
        "convert",
        src,
        "-o",
        out,
        *extra,
        *polly_args(bucket),
        "--state-dir",
        tmp_path / "s",
        env=env,
    )
    refused(r, 2, *words)
    nothing_paid(emu)
    assert sha(src) == digest
    if case == "not-our-folder":
        assert (out / "notes.txt").read_text() == "keep"


def test_batch_refuses_a_chapters_folder_it_did_not_write_before_paying(tmp_path, emulated):
    env, emu, bucket = emulated
    books = tmp_path / "books"
    books.mkdir()
    epub(books / "novel.epub", ["Morning", "Night"])
    out = tmp_path / "out"
    (out / "novel").mkdir(parents=True)
    (out / "novel" / "cover-art.png").write_bytes(b"\x89PNG mine")
    r = cli(
        "batch", books, "-o", out, "--format", "chapters", *polly_args(bucket),
        "--state-dir", tmp_path / "s", env=env,
    )  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "FAILED  novel.epub" in r.stdout and MANIFEST in r.stdout
    nothing_paid(emu)
    assert sorted(p.name for p in (out / "novel").iterdir()) == ["cover-art.png"]


# A tmpfs of our own, in a private user and mount namespace: a real full or read-only
# disk for one process, without privileges and without touching the machine's mounts.
MOUNT = 'mount -t tmpfs -o "$1" tmpfs "$2" && shift 2 && exec "$@"'


def in_tmpfs(options: str, mountpoint: Path) -> list[str]:
    return [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        MOUNT,
        "sh",
        options,
        str(mountpoint),
    ]


@pytest.fixture(scope="module")
def namespaces(tmp_path_factory) -> None:
    probe = tmp_path_factory.mktemp("ns")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) here")
    r = subprocess.run([*in_tmpfs("size=64k", probe), "true"], capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"no user and mount namespaces here: {r.stderr.decode().strip()}")


def test_a_read_only_output_folder_fails_before_any_paid_call(tmp_path, emulated, namespaces):
    env, emu, bucket = emulated
    src = epub(tmp_path / "book.epub", ["Morning", "Night"])
    disk = tmp_path / "disk"
    disk.mkdir()
    r = cli(
        "convert", src, "-o", disk / "book.m4b", *polly_args(bucket), "--state-dir", tmp_path / "s",
        env=env, wrap=in_tmpfs("ro,size=1m", disk),
    )  # fmt: skip
    refused(r, 2, "book.m4b", "cannot write", "Read-only")
    nothing_paid(emu)


def test_a_disk_too_small_for_the_book_fails_before_any_paid_call(tmp_path, emulated, namespaces):
    env, emu, bucket = emulated
    # About 7,000 billable characters: some 3 MB of M4B, on a 256 kB disk.
    src = epub(tmp_path / "book.epub", ["Spring", "Summer", "Autumn", "Winter"], repeat=12)
    disk = tmp_path / "disk"
    disk.mkdir()
    r = cli(
        "convert", src, "-o", disk / "book.m4b", *polly_args(bucket), "--state-dir", tmp_path / "s",
        env=env, wrap=in_tmpfs("size=256k", disk),
    )  # fmt: skip
    refused(r, 2, "book.m4b", "not enough disk space")
    nothing_paid(emu)


def test_podcast_gets_the_same_checks(tmp_path, emulated, namespaces):
    env, emu, bucket = emulated
    article = tmp_path / "article.md"
    article.write_text("# A long read\n\n" + "\n\n".join([PARAGRAPH * 4] * 12), encoding="utf-8")
    feed = tmp_path / "feed"
    feed.mkdir()
    r = cli(
        "podcast", article, "--feed", feed, *polly_args(bucket), "--state-dir", tmp_path / "s",
        env=env, wrap=in_tmpfs("size=256k", feed),
    )  # fmt: skip
    refused(r, 2, "not enough disk space")
    nothing_paid(emu)


# --- item 10a: the extension decides the format, a disagreement is refused ---------------


def test_the_extension_decides_the_format_when_none_is_given(tmp_path):
    src = epub(tmp_path / "day.epub", ["Morning", "Night"])
    state = tmp_path / "state"
    for name, kind in (("day.mp3", "mp3"), ("day.m4b", "mov,mp4,m4a,3gp,3g2,mj2")):
        r = cli("convert", src, "-o", tmp_path / name, "--state-dir", state)
        assert r.returncode == 0, r.stderr
        assert container(tmp_path / name) == kind


@pytest.mark.parametrize(
    "fmt, name",
    [("mp3", "x.m4b"), ("m4b", "x.mp3"), ("chapters", "x.m4b"), ("m4b", "x.txt")],
)
def test_a_format_and_a_name_that_disagree_are_refused(tmp_path, fmt, name):
    src = epub(tmp_path / "day.epub", ["Morning", "Night"])
    state = tmp_path / "state"
    before = set(tmp_path.iterdir())
    r = cli("convert", src, "--format", fmt, "-o", tmp_path / name, "--state-dir", state)
    refused(r, 2, name)
    assert set(tmp_path.iterdir()) - before <= {state}
    assert synthesized(state) == []
