"""Helpers shared by the benchmarks: run a step in a child process and measure it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "scratch"
CORPUS = ROOT.parent / "shared" / "corpus"

_CHILD = r"""
import json, resource, sys, time
ns = {}
t0 = time.perf_counter()
exec(compile(sys.argv[1], "<bench step>", "exec"), ns)
wall = time.perf_counter() - t0
# VmHWM is the peak of this address space; ru_maxrss would also count what the parent
# held when it forked us (it survives exec), which says nothing about this step.
self_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM:"))
kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("\n@@BENCH@@" + json.dumps({"wall": wall, "self_mb": self_kb / 1024,
      "children_mb": kids_kb / 1024, "result": ns.get("RESULT")}))
"""


def measure(code: str, env: dict[str, str] | None = None, timeout: float = 900) -> dict:
    """Run ``code`` in a fresh Python; return wall seconds (of the code alone), the peak
    RSS of that process and the largest peak RSS among its children (ffmpeg), in MB,
    and whatever the code left in ``RESULT``."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"bench step failed: {' | '.join(tail)}")
    line = proc.stdout.rsplit("@@BENCH@@", 1)[1]
    return json.loads(line)


def work_dir(name: str) -> Path:
    path = WORK / name
    path.mkdir(parents=True, exist_ok=True)
    return path


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


class AwsServers:
    """moto (S3, SNS, SQS) and the Polly emulator on 127.0.0.1, port 0, with a bucket,
    a topic and the environment boto3 needs to reach them (never real AWS)."""

    def __init__(self, **emulator_options: object) -> None:
        self.emulator_options = emulator_options

    def __enter__(self) -> AwsServers:
        import boto3
        from moto.server import ThreadedMotoServer

        from audiobook.emulator import serve

        self._saved = dict(os.environ)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            }
        )
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self.emulator = serve(s3_endpoint=self.moto_url, **self.emulator_options)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL_S3": self.moto_url,
                "AWS_ENDPOINT_URL_SNS": self.moto_url,
                "AWS_ENDPOINT_URL_SQS": self.moto_url,
                "AWS_ENDPOINT_URL_POLLY": self.emulator.url,
            }
        )
        self.s3 = boto3.client("s3")
        self.bucket = "audiobook-bench"
        self.s3.create_bucket(Bucket=self.bucket)
        self.topic = boto3.client("sns").create_topic(Name="audiobook-bench")["TopicArn"]
        self.polly = boto3.client("polly")
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.shutdown()
        self.moto.stop()
        os.environ.clear()
        os.environ.update(self._saved)


def synthetic_book(total_chars: int, chapters: int, title: str = "Bench Book"):
    """A book of plain English sentences, ``chapters`` chapters of equal length."""
    from audiobook.model import Block, Book, Chapter

    sentence = (
        "The river ran past the mill and the miller counted the sacks of grain "
        "before the evening bell. "
    )
    per = total_chars // chapters
    paragraphs_per = max(1, per // 1200)
    para = sentence * (1200 // len(sentence))
    chs = []
    for i in range(chapters):
        blocks = tuple(
            Block("paragraph", f"Part {i + 1}.{j + 1}. {para}") for j in range(paragraphs_per)
        )
        chs.append(Chapter(f"Chapter {i + 1}", 1, blocks))
    return Book(title=title, authors=("Bench",), language="en", chapters=tuple(chs))
