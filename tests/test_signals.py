"""Signals, temp files and the watchdog (issue #19, items 8, 9 and 11), through the real
CLI in a subprocess of its own session (so that a signal can go to the whole process
group, as Ctrl-C in a terminal does).

* SIGTERM ends a run like Ctrl-C: exit 143 and one line, temp files and folders
  removed (beside the output and in TMPDIR, which every test points at a folder of its
  own), and the next run resumes.
* Ctrl-C (SIGINT to the process group) prints one line and nothing from the local
  engine's worker processes, at their start-up, while they synthesize, while they idle
  during the stitch.
* What a run killed with SIGKILL leaves behind is swept by the next run.
* A run that waits says what it waits for (``AUDIOBOOK_WATCHDOG_S`` seconds, 1 here).
* The property: any sequence of SIGKILL, SIGTERM and SIGINT at random moments, then one
  clean run, gives the output of an uninterrupted run, no temp file anywhere, and (on
  Polly) no piece's task started twice. ``AUDIOBOOK_SIGNALS_EXAMPLES`` (default 3) sets
  the random examples per engine, besides the fixed ones.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st

from tests.runs import PARAGRAPH, audio_digest, audiobook_argv, chapter_marks

pytestmark = pytest.mark.ffmpeg

EXAMPLES = int(os.environ.get("AUDIOBOOK_SIGNALS_EXAMPLES", "3"))
INTERRUPTED = (
    "audiobook: error: interrupted; progress is saved, run the same command again to resume"
)
TERMINATED = "audiobook: error: terminated; progress is saved, run the same command again to resume"
LINES = {signal.SIGINT: (130, INTERRUPTED), signal.SIGTERM: (143, TERMINATED)}


def write_book(path: Path, chapters: int, paragraphs: Callable[[int], int]) -> Path:
    path.write_text(
        "".join(
            f"# Chapter {i + 1}\n\nChapter {i + 1}. {PARAGRAPH * paragraphs(i)}\n\n"
            for i in range(chapters)
        ),
        encoding="utf-8",
    )
    return path


class Setup:
    """One conversion's command, environment and folders."""

    def __init__(self, root: Path, src: Path, engine_args: list[str], env: dict[str, str]):
        self.root = root
        self.out_dir = root / "out"
        self.out = self.out_dir / "book.m4b"
        self.state = root / "state"
        self.tmp = root / "tmp"
        for d in (self.out_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.src = src
        self.engine_args = engine_args
        self.env = {**env, "TMPDIR": str(self.tmp)}

    def command(self) -> list[str]:
        return audiobook_argv(
            "convert", self.src, "-o", self.out, "--state-dir", self.state, *self.engine_args
        )

    def launch(self, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(),
            env={**self.env, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's job
        )

    def run(self, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(),
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def leftovers(self) -> list[str]:
        """Everything that is not a finished output or the state store's own: temp
        files and folders beside the output, in the state dir, in TMPDIR."""
        left = [f"out/{p.name}" for p in self.out_dir.iterdir() if p != self.out]
        left += [f"tmp/{p.name}" for p in self.tmp.iterdir()]
        ours = re.compile(r"^(state\.sqlite(-wal|-shm)?|cache/[0-9a-f]{2}/[0-9a-f]{64}\.\w+)$")
        if self.state.is_dir():
            for p in self.state.rglob("*"):
                rel = p.relative_to(self.state).as_posix()
                if p.is_file() and not ours.match(rel):
                    left.append(f"state/{rel}")
        return sorted(left)


def send(proc: subprocess.Popen[str], sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


def wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 120) -> bool:
    """Poll until ``ready()``; False when the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError("the moment to signal never came")


def cli_up(proc: subprocess.Popen[str], grace: float = 1.5) -> Callable[[], bool]:
    """True once the CLI handles signals: it has a SIGTERM handler (Linux: SigCgt in
    /proc), or (a CLI that never sets one) the interpreter has been up, catching SIGINT,
    for ``grace`` seconds. Before that, a signal meets Python's own start."""
    status = Path(f"/proc/{proc.pid}/status")
    since: list[float] = []

    def caught() -> int:
        try:
            m = re.search(r"^SigCgt:\s*([0-9a-f]+)$", status.read_text(), re.MULTILINE)
        except OSError:
            return 0
        return int(m.group(1), 16) if m else 0

    def ready() -> bool:
        mask = caught()
        if mask & (1 << (signal.SIGTERM - 1)):
            return True
        if mask & (1 << (signal.SIGINT - 1)) and not since:
            since.append(time.monotonic())
        return bool(since) and time.monotonic() - since[0] > grace

    return ready


def finish(proc: subprocess.Popen[str]) -> tuple[int, list[str]]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.splitlines()


def local_parts(setup: Setup, proc: subprocess.Popen[str]) -> bool:
    """A worker writes a piece (espeak-ng's or Piper's)."""
    return any(setup.tmp.glob("audiobook-local-*/*.part")) or any(
        setup.tmp.glob("audiobook-piper-*/*.part")
    )


def stitch_dirs(setup: Setup, proc: subprocess.Popen[str]) -> bool:
    """The stitch has begun."""
    return any(p.is_dir() for p in setup.out_dir.glob(f".{setup.out.name}.*.tmp"))


def proc_masks(pid: int | str) -> dict[str, int]:
    """A process's signal masks (Linux /proc): SigBlk, SigIgn, SigCgt."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v, 16) for k, v in re.findall(r"^(Sig\w+):\s*([0-9a-f]+)$", text, re.MULTILINE)}


def workers(proc: subprocess.Popen[str]) -> list[str]:
    """The local engine's worker processes (Linux /proc; a child is listed under the
    thread that started it)."""
    children = []
    for task in Path(f"/proc/{proc.pid}/task").glob("*"):
        try:
            children += (task / "children").read_text().split()
        except OSError:
            continue
    found = []
    for pid in children:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def shielded(pid: str) -> bool:
    """Whether Ctrl-C and SIGTERM cannot reach the Python code of a process: blocked or
    ignored, never caught. (True for a process gone meanwhile.)"""
    try:
        m = proc_masks(pid)
    except OSError:
        return True
    both = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    return (m["SigBlk"] | m["SigIgn"]) & both == both


def workers_starting(setup: Setup, proc: subprocess.Popen[str]) -> bool:
    """The first worker process exists: it is starting up."""
    return bool(workers(proc))


# --- the local engine ---------------------------------------------------------------------


@pytest.fixture
def local_book(tmp_path: Path) -> Path:
    # Four chapters of about two minutes each: a few seconds of synthesis on two
    # workers, and a stitch in two parts.
    return write_book(tmp_path / "book.md", 4, lambda i: 12 + i)


def local_setup(root: Path, src: Path, engine: str = "espeak") -> Setup:
    return Setup(root, src, ["--engine", engine, "--workers", "2"], dict(os.environ))


MOMENTS: dict[str, Callable[[Setup, subprocess.Popen[str]], bool]] = {
    "workers-starting": workers_starting,
    "synthesizing": local_parts,
    "stitching": stitch_dirs,
}


@pytest.mark.parametrize(
    ("engine", "moment"),
    [("espeak", m) for m in MOMENTS] + [("piper", "workers-starting"), ("piper", "synthesizing")],
)
def test_ctrl_c_prints_one_line_and_nothing_from_the_workers(tmp_path, local_book, engine, moment):
    if engine == "piper":  # a neural voice is slower: a shorter book, same moments
        local_book = write_book(tmp_path / "short.md", 2, lambda i: 3)
    setup = local_setup(tmp_path / "run", local_book, engine)
    proc = setup.launch()
    assert wait_for(proc, lambda: MOMENTS[moment](setup, proc)), finish(proc)
    # From its first moment to its last, a worker leaves both signals to the parent.
    assert [pid for pid in workers(proc) if not shielded(pid)] == []
    send(proc, signal.SIGINT, group=True)  # Ctrl-C: the terminal signals the whole group
    code, err = finish(proc)
    assert (code, err) == (130, [INTERRUPTED])
    assert setup.leftovers() == []
    again = setup.run()
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert setup.leftovers() == []


@pytest.mark.parametrize("moment", ["synthesizing", "stitching"])
@pytest.mark.parametrize("group", [False, True], ids=["process", "group"])
def test_sigterm_exits_143_with_one_line_and_removes_temp_files(
    tmp_path, local_book, moment, group
):
    setup = local_setup(tmp_path / "run", local_book)
    proc = setup.launch()
    assert wait_for(proc, lambda: MOMENTS[moment](setup, proc)), finish(proc)
    send(proc, signal.SIGTERM, group=group)
    code, err = finish(proc)
    # one line: also no "leaked semaphore objects" from multiprocessing's tracker
    assert (code, err) == (143, [TERMINATED])
    assert setup.leftovers() == []
    again = setup.run()  # resumes
    assert again.returncode == 0, again.stderr
    assert setup.leftovers() == []
    assert chapter_marks(setup.out)[0][0] == "Chapter 1"


@pytest.mark.parametrize("moment", ["synthesizing", "stitching"])
def test_what_a_killed_run_left_is_swept_by_the_next(tmp_path, local_book, moment):
    setup = local_setup(tmp_path / "run", local_book)
    proc = setup.launch()
    assert wait_for(proc, lambda: MOMENTS[moment](setup, proc)), finish(proc)
    send(proc, signal.SIGKILL, group=False)
    proc.communicate(timeout=60)
    time.sleep(0.5)  # the workers notice their parent is gone
    assert setup.leftovers() != []  # what SIGKILL leaves: the stitch folder, the engine's
    again = setup.run()
    assert again.returncode == 0, again.stderr
    assert setup.leftovers() == []


def test_the_sweep_keeps_what_is_not_a_dead_runs(tmp_path, local_book):
    setup = local_setup(tmp_path / "run", local_book)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pid, alive = gone.pid, os.getpid()  # a process that ended, and this one
    folders = [  # (path, a folder?)
        (setup.out_dir / f".book.m4b.audiobook-{pid}-abcd1234.tmp", True),  # a stitch
        (setup.out_dir / f".book.vtt.audiobook-{pid}-abcd1234.tmp", False),  # a whole write
        (setup.tmp / f"audiobook-local-{pid}-abcd1234", True),
        (setup.tmp / f"audiobook-polly-{pid}-abcd1234", True),
        (setup.tmp / "audiobook-local-abcd1234", True),  # an older version's, two days old
        (setup.state / "cache" / "ab" / f"{'ab' * 32}.tmp{pid}-1234.wav", False),
    ]
    kept_folders = [
        (setup.out_dir / f".book.m4b.audiobook-{alive}-abcd1234.tmp", True),  # still going
        (setup.tmp / f"audiobook-local-{alive}-abcd1234", True),
        (setup.tmp / "audiobook-local-efgh5678", True),  # an older version's, fresh
        (setup.out_dir / ".notes.tmp", False),  # the user's
        (setup.out_dir / "notes.txt", False),
        (setup.tmp / "somebody-else", True),
    ]
    for p, folder in folders + kept_folders:
        p.parent.mkdir(parents=True, exist_ok=True)
        if folder:
            p.mkdir()
            (p / "inside.wav.part").write_bytes(b"x")
        else:
            p.write_bytes(b"x")
    mine = [p for p, _ in folders]
    kept = [p for p, _ in kept_folders]
    two_days = time.time() - 2 * 86400
    os.utime(setup.tmp / "audiobook-local-abcd1234", (two_days, two_days))
    result = setup.run()
    assert result.returncode == 0, result.stderr
    assert [p.name for p in mine if p.exists()] == []
    assert [p.name for p in kept if not p.exists()] == []


# --- the watchdog, on Polly ----------------------------------------------------------------

WAITING = re.compile(r"^audiobook: waiting for .+; no progress for \d+ s$")


def polly_args(bucket: str) -> list[str]:
    return ["--engine", "polly", "--bucket", bucket, "--voice", "Joanna", "--mode", "async"]


@pytest.mark.slow
@pytest.mark.aws
def test_a_resume_says_what_it_waits_for(tmp_path, aws_env, make_polly_emulator, s3_bucket):
    """Interrupted at many points of a Polly run (SIGINT and SIGTERM in turn), each
    resume completes and, while Polly's tasks are outstanding, says so every second."""
    src = write_book(tmp_path / "book.md", 3, lambda i: 2 + i)
    watch = {"AUDIOBOOK_WATCHDOG_S": "1"}
    points = 4
    said: list[str] = []
    for i in range(points):
        # Every task takes seconds (100 characters per second), so a resume has tasks
        # to wait for, whenever the interrupted run was stopped.
        emu = make_polly_emulator(queue_delay=0.5, chars_per_second=100.0, workers=3)
        env = {**os.environ, **aws_env, "AWS_ENDPOINT_URL_POLLY": emu.url}
        setup = Setup(tmp_path / f"point{i}", src, polly_args(s3_bucket), env)
        sig = signal.SIGINT if i % 2 == 0 else signal.SIGTERM
        proc = setup.launch(watch)
        assert wait_for(proc, cli_up(proc)), finish(proc)
        time.sleep(0.7 * i)  # from before the first start call to tasks in progress
        send(proc, sig, group=sig == signal.SIGINT)
        code, err = finish(proc)
        expected_code, line = LINES[sig]
        assert code in (expected_code, 0), err
        if code == expected_code:
            assert err[-1] == line, err
            assert all(WAITING.match(x) for x in err[:-1]), err
        resume = setup.run(watch)  # bounded by run()'s timeout, not timed
        assert resume.returncode == 0, resume.stderr
        lines = resume.stderr.splitlines()
        assert lines and all(WAITING.match(x) for x in lines), lines
        said.extend(lines)
        assert len(chapter_marks(setup.out)) == 3
        assert setup.leftovers() == []
        emu.wait_idle(timeout=30)
        per_text = collections.Counter(t.text_sha256 for t in emu.tasks)
        assert len(per_text) == 3 and max(per_text.values()) == 1, per_text
    # What they wait for, named: Polly's tasks, with the piece and the task id.
    assert any(re.search(r"polly task\(s\) to finish \(the oldest: chapter \d", x) for x in said)


def test_the_watchdog_interval_is_checked(tmp_path, local_book):
    setup = local_setup(tmp_path / "run", local_book)
    result = setup.run({"AUDIOBOOK_WATCHDOG_S": "soon"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "audiobook: error: AUDIOBOOK_WATCHDOG_S='soon': expected a number of seconds (0 = off)"
    ]


# --- the property ---------------------------------------------------------------------------

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}
_reference: dict[str, tuple[str, list[tuple[str, float]], float]] = {}

# One interruption: the signal, to the process or its whole group, and when (a fraction
# of an uninterrupted run's length after the CLI is up).
interruption = st.tuples(st.sampled_from(sorted(SIGNALS)), st.booleans(), st.floats(0.0, 1.0))
sequences = st.lists(interruption, min_size=1, max_size=4)
property_settings = settings(
    max_examples=max(1, EXAMPLES),
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate) if EXAMPLES else (Phase.explicit,),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def reference(engine: str, make: Callable[[], Setup]) -> tuple[str, list[tuple[str, float]], float]:
    """The uninterrupted run of an engine (made once): its audio, chapters and length."""
    if engine not in _reference:
        ref = make()
        t0 = time.monotonic()
        done = ref.run()
        span = time.monotonic() - t0
        assert done.returncode == 0, done.stderr
        _reference[engine] = (audio_digest(ref.out), chapter_marks(ref.out), span)
    return _reference[engine]


def check_interrupted_runs(
    setup: Setup,
    ref: tuple[str, list[tuple[str, float]], float],
    plan: list[tuple[str, bool, float]],
) -> None:
    """Run the plan's interruptions, then one clean run; check every exit on the way
    and the result against the uninterrupted run's."""
    digest, marks, span = ref
    for name, group, at in plan:
        if setup.out.exists():
            break  # a run finished before its signal: nothing more to interrupt
        sig = SIGNALS[name]
        proc = setup.launch()
        wait_for(proc, cli_up(proc))
        try:
            proc.wait(timeout=at * span)
        except subprocess.TimeoutExpired:
            send(proc, sig, group)
        code, err = finish(proc)
        print(f"signals: {name} to the {'group' if group else 'process'} at {at:.2f}: exit {code}")
        if sig == signal.SIGKILL or code == 0:
            continue
        expected_code, line = LINES[sig]
        assert (code, err) == (expected_code, [line]), (name, group, at)
    final = setup.run()
    assert final.returncode == 0, final.stderr
    assert final.stderr == ""
    assert setup.leftovers() == []
    assert chapter_marks(setup.out) == marks
    assert audio_digest(setup.out) == digest


@pytest.mark.slow
@pytest.mark.aws
@seed(19)
@property_settings
@example(plan=[("TERM", False, 0.05), ("INT", True, 0.1), ("TERM", True, 0.2)])
@example(plan=[("TERM", False, 0.3), ("INT", True, 0.5), ("KILL", False, 0.4)])
@example(plan=[("KILL", True, 0.2), ("TERM", True, 0.85), ("INT", False, 0.7)])
@given(plan=sequences)
def test_any_signals_then_one_clean_run_on_polly(
    tmp_path_factory, aws_env, make_polly_emulator, s3_bucket, plan
):
    root = tmp_path_factory.mktemp("polly")
    src = write_book(root / "book.md", 6, lambda i: 2 + i % 3)

    def setup(name: str) -> tuple[Setup, Any]:
        # Tasks of about a second, two at a time: signals land among them.
        emu = make_polly_emulator(queue_delay=0.3, chars_per_second=600.0, workers=2)
        env = {**os.environ, **aws_env, "AWS_ENDPOINT_URL_POLLY": emu.url}
        return Setup(root / name, src, polly_args(s3_bucket), env), emu

    ref = reference("polly", lambda: setup("reference")[0])
    run, emu = setup("runs")
    check_interrupted_runs(run, ref, plan)
    # Each piece's task started at most once over all the runs (their emulator's own).
    emu.wait_idle(timeout=30)
    per_text = collections.Counter(t.text_sha256 for t in emu.tasks)
    assert len(per_text) == 6 and max(per_text.values()) == 1, per_text


@pytest.mark.slow
@seed(19)
@property_settings
@example(plan=[("TERM", False, 0.05), ("INT", True, 0.1), ("TERM", True, 0.2)])
@example(plan=[("INT", True, 0.3), ("TERM", False, 0.6), ("KILL", True, 0.5)])
@example(plan=[("KILL", False, 0.25), ("TERM", True, 0.8), ("INT", True, 0.9)])
@given(plan=sequences)
def test_any_signals_then_one_clean_run_on_the_local_engine(tmp_path_factory, plan):
    root = tmp_path_factory.mktemp("local")
    src = write_book(root / "book.md", 4, lambda i: 12 + i)
    ref = reference("local", lambda: local_setup(root / "reference", src))
    check_interrupted_runs(local_setup(root / "runs", src), ref, plan)


def test_a_signal_during_blocked_signals_is_handled_when_the_block_ends():
    """Another thread receives the Ctrl-C that the main thread blocks (the kernel picks
    a thread that does not block it); Python would still run the handler in the main
    thread, inside the block, where a child process is being started. It waits."""
    code = """
import os, signal, threading, time
from audiobook import interrupt
threading.Thread(target=time.sleep, args=(5,), daemon=True).start()  # not blocking
steps = []
with interrupt.handle_signals():
    try:
        with interrupt.blocked_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)  # the other thread has taken it by now
            steps.append("block ran to its end")
        steps.append("after the block")
    except KeyboardInterrupt:
        steps.append("interrupted")
print(steps)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['block ran to its end', 'interrupted']"
