"""Fault runs on the emulator, with their invariants.

1. One 300,000-character book through ``audiobook.pipeline.synthesize`` while the
   emulator throttles 20% of requests, fails 5% of tasks (transiently), answers 2% with
   5xx, loses 10% of notifications and delays S3 writes: every chunk must end with
   audio, and the characters billed may exceed the ideal (each chunk once) only by the
   tasks that failed.
2. The same kind of book converted by the real CLI (``audiobook convert --engine
   polly``) killed with SIGKILL at three moments and resumed each time: the emulator
   must show one completed task per chunk.
3. A book converted by the real CLI (with SNS notifications) stopped once every task
   is started, then resumed after a simulated 73-hour pause (the emulator's clock moved
   on: Polly keeps task records 72 hours), with half of the outputs removed from S3 in
   between: the resume must fetch the outputs still there and start exactly one new
   task for each one removed.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._util import AwsServers, synthetic_book

CHARS = 300_000
FAULTS = dict(
    throttle_rate=0.20,
    fail_rate=0.05,
    error5xx_rate=0.02,
    lost_notification_rate=0.10,
    slow_s3=0.2,
    seed=11,
)


def _fault_run() -> dict:
    from audiobook.engines.options import PollyOptions
    from audiobook.engines.polly import PollyEngine
    from audiobook.options import ConvertOptions
    from audiobook.synthesis import synthesize
    from audiobook.ssml import billable_chars
    from audiobook.state import StateStore

    book = synthetic_book(CHARS, 6, "Fault Book")
    opts = ConvertOptions(engine="polly", engine_options=PollyOptions(polly_engine="standard"))
    with (
        AwsServers(
            audio="silence", queue_delay=0.2, chars_per_second=200_000.0, workers=16, **FAULTS
        ) as servers,
        tempfile.TemporaryDirectory() as tmp,
        StateStore(Path(tmp)) as store,
    ):
        engine = PollyEngine(
            PollyOptions(
                voice="Joanna",
                bucket=servers.bucket,
                polly_engine="standard",
                mode="async",
                sns_topic=servers.topic,
                notification_grace=2.0,
            )
        )
        try:
            t0 = time.perf_counter()
            syn = synthesize(book, opts, store=store, engine=engine)
            wall = time.perf_counter() - t0
        finally:
            engine.close()
        tasks = servers.emulator.tasks
        stats = servers.emulator.stats
        ideal_chars = sum(billable_chars(c.ssml) for c in syn.chunks)
        billed = sum(t.request_characters for t in tasks)
        failed_chars = sum(t.request_characters for t in tasks if t.status == "failed")
        completed = [t for t in tasks if t.status == "completed"]
        all_audio = all(p.exists() for ps in syn.pieces for p in ps)
    injected = {
        k: v
        for k, v in stats.items()
        if "inject" in k or "lost" in k or "throttl" in k or "5xx" in k or "fail" in k
    }
    return {
        "wall s": round(wall, 2),
        "chunks": len(syn.chunks),
        "tasks started": len(tasks),
        "tasks completed": len(completed),
        "faults injected": injected,
        "billed chars": billed,
        "ideal chars": ideal_chars,
        "billed in failed tasks": failed_chars,
        "every chunk has audio": all_audio,
        "ok": all_audio
        and len(completed) == len(syn.chunks)
        and billed - failed_chars == ideal_chars,
    }


def _markdown(book, path: Path) -> Path:  # type: ignore[no-untyped-def]
    path.write_text(
        f"# {book.title}\n\n"
        + "\n\n".join(
            f"## {ch.title}\n\n" + "\n\n".join(b.text for b in ch.blocks) for ch in book.chapters
        )
    )
    return path


def _pause_run() -> dict:
    book = synthetic_book(CHARS, 6, "Pause Book")
    now = [time.time()]
    with (
        AwsServers(
            audio="silence",
            queue_delay=1.0,
            chars_per_second=400_000.0,
            workers=16,
            clock=lambda: now[0],
        ) as servers,
        tempfile.TemporaryDirectory() as tmp,
    ):
        src = _markdown(book, Path(tmp) / "pause-book.md")
        out = Path(tmp) / "pause-book.m4b"
        argv = [
            sys.executable, "-m", "audiobook", "convert", str(src), "-o", str(out),
            "--engine", "polly", "--polly-engine", "standard", "--voice", "Joanna",
            "--bucket", servers.bucket, "--sns-topic", servers.topic, "--mode", "async",
            "--state-dir", str(Path(tmp) / "state"),
        ]  # fmt: skip
        est = subprocess.run(
            [sys.executable, "-m", "audiobook", "estimate", str(src), "--mode", "async",
             "--polly-engine", "standard", "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        pieces = json.loads(est.stdout)["tasks"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while len(servers.emulator.tasks) < pieces and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # stops with every started task recorded
        stopped = proc.wait()
        servers.emulator.wait_idle(timeout=120)
        before = servers.emulator.tasks
        now[0] += 73 * 3600  # the pause: Polly has forgotten every task
        gone = servers.polly.list_speech_synthesis_tasks()["SynthesisTasks"] == []
        removed = before[: len(before) // 2]  # a lifecycle rule took these outputs
        for t in removed:
            servers.s3.delete_object(Bucket=t.bucket, Key=t.key)
        t0 = time.perf_counter()
        final = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        servers.emulator.wait_idle(timeout=60)
        after = servers.emulator.tasks  # the tasks of before were purged
        again = collections.Counter(t.text_sha256 for t in after)
        wanted = collections.Counter(t.text_sha256 for t in removed)
        return {
            "pieces": pieces,
            "tasks before the pause": len(before),
            "first run stopped with": stopped,
            "tasks forgotten after 73 h": gone,
            "outputs removed from S3": len(removed),
            "new tasks after the pause": len(after),
            "pieces paid twice beyond the removed outputs": sum((again - wanted).values()),
            "resume wall s": round(wall, 2),
            "final exit code": final.returncode,
            "output exists": out.exists(),
            "ok": final.returncode == 0
            and gone
            and len(before) == pieces
            and again == wanted
            and out.exists(),
        }


def _kill_run() -> dict:
    book = synthetic_book(CHARS, 6, "Kill Book")
    with (
        AwsServers(
            audio="silence", queue_delay=0.5, chars_per_second=40_000.0, workers=16
        ) as servers,
        tempfile.TemporaryDirectory() as tmp,
    ):
        src = Path(tmp) / "kill-book.md"
        src.write_text(
            "# Kill Book\n\n"
            + "\n\n".join(
                f"## {ch.title}\n\n" + "\n\n".join(b.text for b in ch.blocks)
                for ch in book.chapters
            )
        )
        out = Path(tmp) / "kill-book.m4b"
        argv = [
            sys.executable,
            "-m",
            "audiobook",
            "convert",
            str(src),
            "-o",
            str(out),
            "--engine",
            "polly",
            "--polly-engine",
            "standard",
            "--voice",
            "Joanna",
            "--bucket",
            servers.bucket,
            "--state-dir",
            str(Path(tmp) / "state"),
        ]
        kills = 0
        for delay in (1.0, 2.5, 4.0):
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
        final = subprocess.run(argv, capture_output=True, text=True)
        servers.emulator.wait_idle(timeout=60)
        # a chunk's output key is <prefix><content key>/<task id>.mp3; the same text
        # synthesized twice would show as two completed tasks with one text hash
        by_key = collections.Counter(
            t.text_sha256 for t in servers.emulator.tasks if t.status == "completed"
        )
        dupes = sum(n - 1 for n in by_key.values() if n > 1)
        return {
            "kills": kills,
            "final exit code": final.returncode,
            "completed tasks": sum(by_key.values()),
            "chunks synthesized twice": dupes,
            "output exists": out.exists(),
            "ok": final.returncode == 0 and dupes == 0 and out.exists(),
        }


def run() -> dict:
    os.environ.setdefault("AUDIOBOOK_STATE_DIR", tempfile.mkdtemp(prefix="audiobook-bench-"))
    faults = _fault_run()
    kill = _kill_run()
    pause = _pause_run()
    figures = {f"faults: {k}": v for k, v in faults.items()}
    figures.update({f"kill -9: {k}": v for k, v in kill.items()})
    figures.update({f"73 h pause: {k}": v for k, v in pause.items()})
    return {
        "name": "faults",
        "figures": figures,
        "ratios": {
            "billed / ideal characters (1.0 + failed tasks only)": faults["billed chars"]
            / faults["ideal chars"]
        },
        "notes": "invariants hold"
        if faults["ok"] and kill["ok"] and pause["ok"]
        else "INVARIANT BROKEN",
    }
