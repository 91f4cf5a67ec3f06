"""Two runs of one book at once, with one state store: every piece is synthesized (and,
on Polly, paid for) once in all, and every output ends up whole.

Each test starts two ``audiobook convert`` processes at the same moment through the
real CLI, on one book and one ``--state-dir``: into two outputs (the second run follows
the first one's work and stitches its own output) or into one output (the second run
waits for the first and then finds the book up to date). Checked against the Polly
emulator's own task list (one task per piece, the bill equal to ``estimate``), against
the runs' summary lines and the store's ``runs`` table (each piece synthesized once),
and with PyAV: each output's audio packets equal those of a single uninterrupted run.
A run killed while the other follows it is taken over without a task started twice;
below, the store's claims themselves (held, renewed, expired, taken over).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runs import audio_digest, audiobook_argv, chapter_marks, polly_args, seasons_epub

pytestmark = [pytest.mark.ffmpeg]

CHAPTERS = 10
TIMEOUT = 300


def book(path: Path, repeat: int = 2) -> Path:
    """Ten chapters of different lengths: ten pieces, each with its own text."""
    return seasons_epub(path, CHAPTERS, lambda i: repeat + i % 4)


class Run:
    """A CLI process whose output goes to files (a pipe nobody reads could stall it)."""

    def __init__(self, cmd: list[str], env: dict[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        n = len(list(logs.glob("*.out")))
        self.stdout = logs / f"{n}.out"
        self.stderr = logs / f"{n}.err"
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)

    def finish(self) -> tuple[str, str]:
        """Wait for the run; it must succeed. Returns (stdout, stderr)."""
        self.proc.wait(timeout=TIMEOUT)
        out, err = self.stdout.read_text(), self.stderr.read_text()
        assert self.proc.returncode == 0, err
        return out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def synthesized(summary: str) -> int:
    """Pieces a run synthesized, from its summary line (0 for "up to date")."""
    m = re.search(r"(\d+) synthesized", summary)
    return int(m.group(1)) if m else 0


def runs_table(state: Path) -> list[tuple[str, int, int]]:
    """(status, chunks_submitted, billed_chars) of every run the store recorded."""
    with contextlib.closing(sqlite3.connect(state / "state.sqlite")) as db:
        return db.execute(
            "SELECT status, chunks_submitted, billed_chars FROM runs ORDER BY id"
        ).fetchall()


def both_at_once(cmds: list[list[str]], env: dict[str, str], logs: Path) -> list[tuple[str, str]]:
    runs = [Run(c, env, logs) for c in cmds]
    try:
        return [r.finish() for r in runs]
    finally:
        for r in runs:
            r.kill()


OUTPUTS = {
    "two outputs": ("a/book.m4b", "b/book.m4b"),
    "one output": ("a/book.m4b", "a/book.m4b"),
}


# --- Polly, on the emulator and moto ---------------------------------------------------


def polly_reference(tmp_path, env, make_polly_emulator, src, s3_bucket) -> Path:
    """A single uninterrupted run on its own emulator and state."""
    fast = make_polly_emulator()
    ref = tmp_path / "ref" / "book.m4b"
    ref.parent.mkdir()
    r = subprocess.run(
        audiobook_argv(
            "convert", src, "-o", ref, *polly_args(s3_bucket), "--state-dir", tmp_path / "sref"
        ),
        env={**env, "AWS_ENDPOINT_URL_POLLY": fast.url},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return ref


def estimated_billable(src: Path, env: dict[str, str]) -> int:
    r = subprocess.run(
        audiobook_argv("estimate", src, "--polly-engine", "neural", "--mode", "async", "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return int(json.loads(r.stdout)["billable_chars"])


def status_billed(state: Path, env: dict[str, str]) -> int:
    r = subprocess.run(
        audiobook_argv("status", "--state-dir", state),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    m = re.search(r"characters billed: ([\d,]+)", r.stdout)
    assert m, r.stdout
    return int(m.group(1).replace(",", ""))


@pytest.mark.parametrize("outputs", list(OUTPUTS), ids=list(OUTPUTS))
def test_two_polly_runs_at_once_pay_for_each_piece_once(
    outputs, tmp_path, aws_env, make_polly_emulator, s3_bucket
):
    env = {**os.environ, **aws_env}
    src = book(tmp_path / "seasons.epub")
    ref = polly_reference(tmp_path, env, make_polly_emulator, src, s3_bucket)
    # Tasks that take a while (queue wait, then about a second of synthesis each): the
    # two runs are at work at the same time.
    emu = make_polly_emulator(queue_delay=0.5, chars_per_second=400.0, workers=4)
    env["AWS_ENDPOINT_URL_POLLY"] = emu.url
    state = tmp_path / "state"
    outs = [tmp_path / o for o in OUTPUTS[outputs]]
    for o in outs:
        o.parent.mkdir(exist_ok=True)
    cmds = [
        audiobook_argv("convert", src, "-o", o, *polly_args(s3_bucket), "--state-dir", state)
        for o in outs
    ]
    results = both_at_once(cmds, env, tmp_path / "logs")

    # One task per piece in all: no piece's text was sent twice.
    emu.wait_idle(timeout=60)
    tasks = emu.tasks
    per_text = collections.Counter(t.text_sha256 for t in tasks)
    assert len(per_text) == CHAPTERS and max(per_text.values()) == 1, per_text
    assert all(t.status == "completed" for t in tasks)
    # Billed as estimated, by the emulator's count and by `status`.
    billable = estimated_billable(src, env)
    assert sum(t.request_characters for t in tasks) == billable
    assert status_billed(state, env) == billable
    assert sum(billed for _, _, billed in runs_table(state)) == billable
    # The second run said so, in one line.
    notes = [ln for _, err in results for ln in err.splitlines() if "another run" in ln]
    assert len(notes) == 1, [err for _, err in results]
    assert "following its work" in notes[0] or "waiting for it" in notes[0]
    # Every output whole, and equal to the single run's audio and chapters.
    for o in set(outs):
        assert chapter_marks(o) == chapter_marks(ref)
        assert audio_digest(o) == audio_digest(ref)


def test_a_run_that_dies_is_taken_over_without_paying_twice(
    tmp_path, aws_env, make_polly_emulator, s3_bucket
):
    """Both runs start at once; the first is killed (SIGKILL) while tasks are in flight.
    The second takes over the pieces the dead run held: their tasks are polled by their
    recorded ids or found again (recover), never started a second time."""
    env = {**os.environ, **aws_env}
    src = book(tmp_path / "seasons.epub")
    ref = polly_reference(tmp_path, env, make_polly_emulator, src, s3_bucket)
    emu = make_polly_emulator(queue_delay=0.5, chars_per_second=300.0, workers=2)
    env["AWS_ENDPOINT_URL_POLLY"] = emu.url
    state = tmp_path / "state"
    outs = [tmp_path / "a" / "book.m4b", tmp_path / "b" / "book.m4b"]
    for o in outs:
        o.parent.mkdir()
    first, second = (
        Run(
            audiobook_argv("convert", src, "-o", o, *polly_args(s3_bucket), "--state-dir", state),
            env,
            tmp_path / "logs",
        )
        for o in outs
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(emu.tasks) < 2 and first.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(emu.tasks) >= 2, "no task was started"
        time.sleep(0.3)
        assert first.proc.poll() is None, "the first run ended before it could be killed"
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=60)
        out, _ = second.finish()
    finally:
        first.kill()
        second.kill()
    print(f"\nthe run that took over: {out.strip()}")
    emu.wait_idle(timeout=60)
    per_text = collections.Counter(t.text_sha256 for t in emu.tasks)
    assert len(per_text) == CHAPTERS and max(per_text.values()) == 1, per_text
    assert audio_digest(outs[1]) == audio_digest(ref)
    assert chapter_marks(outs[1]) == chapter_marks(ref)


# --- the local engine -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("outputs", list(OUTPUTS), ids=list(OUTPUTS))
def test_two_local_runs_at_once_synthesize_each_piece_once(outputs, tmp_path):
    src = book(tmp_path / "seasons.epub", repeat=3)
    env = dict(os.environ)
    local = ["--engine", "local", "--workers", "1"]
    ref = tmp_path / "ref" / "book.m4b"
    ref.parent.mkdir()
    r = subprocess.run(
        audiobook_argv("convert", src, "-o", ref, *local, "--state-dir", tmp_path / "sref"),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert synthesized(r.stdout) == CHAPTERS

    state = tmp_path / "state"
    outs = [tmp_path / o for o in OUTPUTS[outputs]]
    for o in outs:
        o.parent.mkdir(exist_ok=True)
    results = both_at_once(
        [audiobook_argv("convert", src, "-o", o, *local, "--state-dir", state) for o in outs],
        env,
        tmp_path / "logs",
    )
    # Each piece synthesized once in all: by the summaries and by the store's runs.
    counts = [synthesized(out) for out, _ in results]
    assert sum(counts) == CHAPTERS, [out for out, _ in results]
    runs = runs_table(state)
    assert sum(n for _, n, _ in runs) == CHAPTERS, runs
    for o in set(outs):
        assert chapter_marks(o) == chapter_marks(ref)
        assert audio_digest(o) == audio_digest(ref)


# --- the store's claims, with a real second process ------------------------------------


def dead_pid() -> int:
    """The id of a process of this host that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def raw(state: Path) -> sqlite3.Connection:
    """A connection of the test's own to the store, to plant claims of other runs."""
    return sqlite3.connect(state / "state.sqlite", isolation_level=None)


def test_a_claim_is_held_while_its_run_lives_and_taken_over_when_it_died(tmp_path):
    from audiobook.state import LeaseOwner, PieceBusy, StateStore

    with StateStore(tmp_path) as store, contextlib.closing(raw(tmp_path)) as db:
        first, second = LeaseOwner(store), LeaseOwner(store)
        assert store.claim_piece("k", first) is None
        # The intent and the claim in one transaction: the second run writes nothing.
        store.mark_starting("k", "polly", 10, "neural", owner=first)
        with pytest.raises(PieceBusy) as busy:
            store.mark_starting("k", "polly", 10, "neural", owner=second)
        assert busy.value.holder is not None and busy.value.holder.pid == os.getpid()
        assert store.claim_piece("k", second) is not None
        assert store.chunk("k").attempts == 1
        assert store.piece_holders(["k", "other"], second).keys() == {"k"}
        # The first run's process is gone: its claim can be taken over, and the start
        # it recorded is for the taker to recover, not to pay for again.
        db.execute("UPDATE piece_leases SET pid = ? WHERE key = 'k'", (dead_pid(),))
        with pytest.raises(PieceBusy) as busy:
            store.mark_starting("k", "polly", 10, "neural", owner=second)
        assert busy.value.holder is None
        assert store.claim_piece("k", second) is None
        assert store.mark_starting("k", "polly", 10, "neural", owner=second)
        assert store.chunk("k").attempts == 2
        # A claim in this process's own id by a run this process does not know (a dead
        # run of an earlier container that had the same process id) is taken over too.
        db.execute(
            "INSERT INTO piece_leases VALUES ('j', 'unknown', ?, ?, ?, ?)",
            (first.host, os.getpid(), store.clock(), store.clock() + 60),
        )
        assert store.claim_piece("j", second) is None
        # Done: the claim ends with it.
        audio = tmp_path / "k.wav"
        audio.write_bytes(b"x")
        store.mark_done("k", audio, owner=second)
        assert store.piece_holders(["k"], first) == {}


def test_a_machine_is_known_by_hostname_boot_id_and_pid_namespace(tmp_path):
    from audiobook.state import HOST, MACHINE, LeaseOwner, StateStore, machine_identity

    proc = tmp_path / "proc"
    (proc / "sys" / "kernel" / "random").mkdir(parents=True)
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text("b00t\n")
    (proc / "self" / "ns").mkdir(parents=True)
    os.symlink("pid:[4026531836]", proc / "self" / "ns" / "pid")
    assert machine_identity("box", proc) == "box b00t pid:[4026531836]"
    assert machine_identity("box", tmp_path / "none") == "box"  # no /proc: the name
    assert MACHINE.split(" ", 1)[0] == HOST

    state = tmp_path / "state"
    with StateStore(state) as store, contextlib.closing(raw(state)) as db:
        mine = LeaseOwner(store)
        assert mine.host == MACHINE
        # A container elsewhere with this hostname, whose process ids are not ours to
        # look up: our own pid, alive here, does not keep its claim alive, and a pid
        # dead here does not end it either; only its expiry does.
        for key, pid in (("k", os.getpid()), ("j", dead_pid())):
            db.execute(
                "INSERT INTO piece_leases VALUES (?, 'theirs', ?, ?, ?, ?)",
                (key, f"{HOST} another-boot", pid, store.clock(), store.clock() + 60),
            )
            holder = store.claim_piece(key, mine)
            assert holder is not None and holder.where() == f"pid {pid} on {HOST}"
            db.execute("UPDATE piece_leases SET expires_at = 0 WHERE key = ?", (key,))
            assert store.claim_piece(key, mine) is None


def test_a_claim_not_renewed_expires_and_a_renewed_one_does_not(tmp_path):
    from audiobook.state import LeaseOwner, StateStore

    now = [1_000_000.0]  # the store's clock, moved by hand
    with (
        StateStore(tmp_path, clock=lambda: now[0]) as store,
        contextlib.closing(raw(tmp_path)) as db,
    ):
        gone = LeaseOwner(store)
        other = LeaseOwner(store)
        # A run on another host: its process cannot be looked for, only its expiry.
        db.execute(
            "INSERT INTO piece_leases VALUES ('k', ?, 'elsewhere', 1, ?, ?)",
            (gone.id, now[0], now[0] + gone.ttl),
        )
        assert store.claim_piece("k", other) is not None
        now[0] += gone.ttl + 1  # never renewed: it died
        assert store.claim_piece("k", other) is None

        with LeaseOwner(store, ttl=0.2) as working:  # renews every 0.05 s while it works
            assert store.claim_piece("j", working) is None
            now[0] += 10  # past its expiry, unless renewed since
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                (expires,) = db.execute(
                    "SELECT expires_at FROM piece_leases WHERE key = 'j'"
                ).fetchone()
                if expires > now[0]:
                    break
                time.sleep(0.01)
            assert store.claim_piece("j", other) is not None
        assert store.claim_piece("j", other) is None  # given up at the end
