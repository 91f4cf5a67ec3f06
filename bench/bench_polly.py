"""Polly path: makespan of a 1,000,000-character book on the emulator.

The emulator runs Polly's quotas as published (StartSpeechSynthesisTask 10 tps with a
burst of 12 on the standard engine; Get + List 10 tps) and a latency model: a task waits
QUEUE_S in the queue, then takes billable characters / CHARS_PER_S in progress. Audio is
silent (``audio="silence"``) so espeak-ng's speed does not blur the orchestration figure.

* ideal: the least time the quotas and the latency model allow: every task started as
  early as the start-rate bucket lets it, and done queue + characters / rate later.
* ours: ``audiobook.pipeline.synthesize`` (submit, follow, fetch into the cache), once
  with completion learned from SNS through SQS, once by GetSpeechSynthesisTask polling.
* naive: start one task, poll it every 0.2 s until done, download it, then the next.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from ._util import AwsServers, synthetic_book

TOTAL_CHARS = 1_000_000
CHAPTERS = 10
QUEUE_S = 1.0
CHARS_PER_S = 20_000.0
START_RATE, START_BURST = 10.0, 12


def ideal_makespan(task_chars: list[int]) -> float:
    """Starts as early as a (rate, burst) token bucket allows, from a full bucket."""
    end = 0.0
    for i, chars in enumerate(task_chars):
        start = 0.0 if i < START_BURST else (i - START_BURST + 1) / START_RATE
        end = max(end, start + QUEUE_S + chars / CHARS_PER_S)
    return end


def _ours(servers: AwsServers, book, sns: bool) -> tuple[float, int, list[int]]:
    from audiobook.engines.options import PollyOptions
    from audiobook.engines.polly import PollyEngine
    from audiobook.options import ConvertOptions
    from audiobook.synthesis import synthesize
    from audiobook.state import StateStore

    opts = ConvertOptions(engine="polly", engine_options=PollyOptions(polly_engine="standard"))
    with tempfile.TemporaryDirectory() as tmp, StateStore(Path(tmp)) as store:
        engine = PollyEngine(
            PollyOptions(
                voice="Joanna",
                bucket=servers.bucket,
                polly_engine="standard",
                mode="async",
                sns_topic=servers.topic if sns else None,
                prefix="ours-sns/" if sns else "ours-poll/",
            )
        )
        try:
            t0 = time.perf_counter()
            syn = synthesize(book, opts, store=store, engine=engine)
            wall = time.perf_counter() - t0
        finally:
            engine.close()
        from audiobook.ssml import billable_chars

        chars = [billable_chars(c.ssml) for c in syn.chunks]
        return wall, syn.submitted, chars


def _naive(servers: AwsServers, chunks) -> float:
    t0 = time.perf_counter()
    for i, chunk in enumerate(chunks):
        task = servers.polly.start_speech_synthesis_task(
            Engine="standard",
            OutputFormat="mp3",
            OutputS3BucketName=servers.bucket,
            OutputS3KeyPrefix=f"naive/{i}/",
            Text=chunk.ssml,
            TextType="ssml",
            VoiceId="Joanna",
        )["SynthesisTask"]
        while task["TaskStatus"] not in ("completed", "failed"):
            time.sleep(0.2)
            task = servers.polly.get_speech_synthesis_task(TaskId=task["TaskId"])["SynthesisTask"]
        key = task["OutputUri"].split(f"/{servers.bucket}/", 1)[1]
        with tempfile.TemporaryFile() as f:
            servers.s3.download_fileobj(servers.bucket, key, f)
    return time.perf_counter() - t0


def run() -> dict:
    from audiobook.chunk import chunk_book
    from audiobook.config import POLLY_TASK_LIMITS

    book = synthetic_book(TOTAL_CHARS, CHAPTERS)
    chunks = chunk_book(book, POLLY_TASK_LIMITS)
    with AwsServers(
        audio="silence",
        queue_delay=QUEUE_S,
        chars_per_second=CHARS_PER_S,
        workers=max(16, len(chunks)),
        quota_scale=1.0,
    ) as servers:
        sns_wall, submitted, chars = _ours(servers, book, sns=True)
        poll_wall, _, _ = _ours(servers, book, sns=False)
        naive_wall = _naive(servers, chunks)
    ideal = ideal_makespan(chars)
    return {
        "name": "polly makespan",
        "figures": {
            "billable characters": sum(chars),
            "tasks": len(chunks),
            "tasks started by ours (each run)": submitted,
            "latency model": f"queue {QUEUE_S} s + chars / {CHARS_PER_S:.0f} per s",
            "ideal (quota-bound) s": round(ideal, 2),
            "ours, SNS/SQS completion s": round(sns_wall, 2),
            "ours, Get polling s": round(poll_wall, 2),
            "naive one-at-a-time s": round(naive_wall, 2),
        },
        "ratios": {
            "ours SNS / ideal (goal <= 1.05)": sns_wall / ideal,
            "ours polling / ideal": poll_wall / ideal,
            "naive / ideal": naive_wall / ideal,
            "naive / ours SNS": naive_wall / sns_wall,
        },
        "notes": f"{math.ceil(sum(chars) / 100_000)} tasks is the fewest the 100,000-character "
        "task limit allows; chunks never span chapters",
    }
