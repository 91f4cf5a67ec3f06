"""Kill -9 at random moments: a conversion on the Polly emulator, killed with SIGKILL
again and again and resumed each time, ends with an M4B identical in audio and chapters
to an uninterrupted stitch of its pieces and to an independent uninterrupted run, and
the emulator's task list shows no chunk synthesized twice.

The number of kills is ``AUDIOBOOK_RESUME_KILLS`` (default 20, as issue 5 asks; fewer
for a quick local run) and the random moments come from ``AUDIOBOOK_RESUME_SEED`` (default 5).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.runs import audio_digest, audiobook_argv, chapter_marks, polly_args, seasons_epub

KILLS = int(os.environ.get("AUDIOBOOK_RESUME_KILLS", "20"))
SEED = int(os.environ.get("AUDIOBOOK_RESUME_SEED", "5"))

pytestmark = [pytest.mark.aws, pytest.mark.ffmpeg]

# More kills need more work in flight: more chapters, each synthesized more slowly.
CHAPTERS = max(8, KILLS)
CHARS_PER_SECOND = 2400.0 / KILLS


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path, aws_env, make_polly_emulator, s3_bucket):
    # The killed runs' tasks take a while (queue wait + characters per second), so kills
    # land while tasks are in flight; the reference run gets a fast emulator.
    fast = make_polly_emulator()
    emu = make_polly_emulator(queue_delay=0.3, chars_per_second=CHARS_PER_SECOND, workers=2)
    env = {**os.environ, **aws_env, "AWS_ENDPOINT_URL_POLLY": emu.url}
    src = seasons_epub(tmp_path / "seasons.epub", CHAPTERS, lambda i: 2 + i % 6)

    polly = polly_args(s3_bucket)

    def command(out: Path, state: Path) -> list[str]:
        return audiobook_argv("convert", src, "-o", out, *polly, "--state-dir", state)

    # The uninterrupted run; it also tells how long a process takes to start working
    # (until its first task appears), so that kills aim at the working time.
    ref = tmp_path / "ref" / "book.m4b"
    ref.parent.mkdir()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        command(ref, tmp_path / "state-ref"),
        env={**env, "AWS_ENDPOINT_URL_POLLY": fast.url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    startup = None
    while proc.poll() is None:
        if startup is None and fast.tasks:
            startup = time.monotonic() - t0
        time.sleep(0.02)
    span = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    startup = startup or 0.0
    print(f"\nresume: uninterrupted run {span:.1f} s, first task after {startup:.1f} s")
    assert len(fast.tasks) == CHAPTERS

    def finished_texts() -> int:
        return len({t.text_sha256 for t in emu.tasks if t.status == "completed"})

    # The same conversion, killed KILLS times at random moments, resumed each time: up
    # to 2 s into the working time (start calls, polling, fetching, stitching).
    out = tmp_path / "out" / "book.m4b"
    out.parent.mkdir()
    state = tmp_path / "state"
    rng = random.Random(SEED)
    kills = 0
    launches = 0
    while kills < KILLS and not out.exists() and launches < 3 * KILLS:
        launches += 1
        moment = startup + rng.uniform(0.0, 2.0)
        proc = subprocess.Popen(
            command(out, state), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            proc.wait(timeout=moment)  # finished before the kill came
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            kills += 1
            print(f"resume: killed at {moment:.2f} s, {finished_texts()}/{CHAPTERS} pieces done")
    final = subprocess.run(
        command(out, state), env=env, capture_output=True, check=False, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr
    assert kills >= 1

    # Exact: the killed-and-resumed output equals an uninterrupted stitch of the same
    # paid-for pieces (a --force run from the same state synthesizes nothing).
    again = tmp_path / "again" / "book.m4b"
    again.parent.mkdir()
    rerun = subprocess.run(
        [*command(again, state), "--force"],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "0 synthesized" in rerun.stdout
    assert chapter_marks(out) == chapter_marks(again)
    assert audio_digest(out) == audio_digest(again)
    # And equal to the independent uninterrupted run, in audio and chapters: the
    # emulator's espeak-ng gives the same samples for the same text in any task.
    assert chapter_marks(out) == chapter_marks(ref)
    assert audio_digest(out) == audio_digest(ref)

    # No chunk synthesized twice: one task per distinct text in the resumed runs.
    emu.wait_idle(timeout=30)
    ours = emu.tasks
    per_text = collections.Counter(t.text_sha256 for t in ours)
    assert len(per_text) == CHAPTERS and max(per_text.values()) == 1, per_text
    assert all(t.status == "completed" for t in ours)
    print(f"resume: {kills} kills in {launches} launches")
