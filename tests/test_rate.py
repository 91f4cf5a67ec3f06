"""--rate: the speaking rate, 0.5-2.0, for both engines within what each documents.

espeak-ng takes 80-450 words per minute (175 its default): the rate maps to 87-350.
Polly takes <prosody rate> from 20% to 200%: the rate wraps each piece in 50%-200%,
and the emulator (which checks prosody as Polly does) completes the tasks.
"""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from audiobook.cli import cli
from audiobook.engines import make_engine
from audiobook.engines.options import (
    LocalOptions,
    PollyOptions,
    local_rate_wpm,
    prosody_rate,
)
from audiobook.engines.polly import PollyEngine, polly_client_config
from audiobook.engines.polly.engine import with_rate
from audiobook.errors import ConfigError
from audiobook.model import Block, Book, Chapter, Chunk
from audiobook.options import ConvertOptions
from audiobook.pipeline import convert_book
from audiobook.state import StateStore

SSML = (
    "<speak><p>It was a bright cold day in April, and the clocks were striking "
    "thirteen. Winston Smith slipped quickly through the glass doors.</p></speak>"
)


def _seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def _local(rate: float | None, tmp_path: Path) -> float:
    opts = LocalOptions(rate_wpm=local_rate_wpm(rate) if rate is not None else None, workers=1)
    with make_engine("espeak", opts) as engine:
        ref = engine.submit(Chunk.make(0, 0, SSML), "k")
        while engine.poll(ref).status not in ("completed", "failed"):
            pass
        dest = tmp_path / f"rate-{rate}.wav"
        engine.fetch(ref, dest)
    return _seconds(dest)


def test_local_rate_changes_the_speed_within_espeaks_range(tmp_path):
    assert (local_rate_wpm(0.5), local_rate_wpm(1.0), local_rate_wpm(2.0)) == (88, 175, 350)
    normal = _local(None, tmp_path)
    assert _local(1.0, tmp_path) == pytest.approx(normal, rel=0.02)
    fast, slow = _local(2.0, tmp_path), _local(0.5, tmp_path)
    assert 0.4 <= fast / normal <= 0.65, (fast, normal)
    assert 1.6 <= slow / normal <= 2.3, (slow, normal)


def test_rate_is_part_of_each_engines_identity():
    a = make_engine("espeak", LocalOptions(rate_wpm=local_rate_wpm(1.5)))
    b = make_engine("espeak", LocalOptions())
    try:
        assert a.identity() != b.identity()
    finally:
        a.close()
        b.close()
    fast = PollyEngine(PollyOptions(bucket="b", voice="Joanna", rate=1.5))
    plain = PollyEngine(PollyOptions(bucket="b", voice="Joanna"))
    assert "rate=150%" in fast.identity()
    assert fast.identity() != plain.identity()
    # the prosody tag is counted against Polly's limit on the whole SSML
    assert fast.limits.max_total == plain.limits.max_total - len('<prosody rate="150%"></prosody>')


def test_polly_rate_wraps_the_text_in_prosody():
    assert prosody_rate(0.5) == "50%" and prosody_rate(2.0) == "200%"
    assert with_rate("<speak><p>Hi.</p></speak>", "125%") == (
        '<speak><prosody rate="125%"><p>Hi.</p></prosody></speak>'
    )
    with pytest.raises(ConfigError, match="out of range 0.5-2"):
        PollyEngine(PollyOptions(bucket="b", voice="Joanna", rate=3.0))


def test_cli_refuses_a_rate_out_of_range(tmp_path):
    book = tmp_path / "b.txt"
    book.write_text("Hello there.\n")
    r = CliRunner().invoke(
        cli, ["convert", str(book), "--rate", "2.5", "--state-dir", str(tmp_path / "s")]
    )
    assert r.exit_code == 2
    assert "2.5" in r.output and "0.5" in r.output


@pytest.mark.aws
def test_polly_tasks_carry_the_rate_and_the_emulator_accepts_it(
    make_polly_emulator, moto_server, s3_bucket, tmp_path
):
    emu = make_polly_emulator()
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    options = PollyOptions(
        voice="Joanna", bucket=s3_bucket, polly_engine="neural", mode="async", rate=1.5
    )
    engine = PollyEngine(
        options,
        polly=session.client("polly", endpoint_url=emu.url, config=polly_client_config()),
        s3=session.client("s3", endpoint_url=moto_server),
    )
    book = Book(
        title="Rate",
        language="en-US",
        chapters=(Chapter("One", blocks=(Block("paragraph", "A quick brown fox."),)),),
    )
    opts = ConvertOptions(engine="polly", engine_options=options, voice="Joanna")
    store = StateStore(tmp_path / "state")
    try:
        with engine:
            convert_book(book, tmp_path / "r.m4b", opts, store=store, engine=engine)
            from audiobook.synthesis import plan_chunks

            chunks = plan_chunks(book, engine, opts.render)
    finally:
        store.close()
    sent = {hashlib.sha256(with_rate(c.ssml, "150%").encode()).hexdigest() for c in chunks}
    tasks = emu.tasks
    assert tasks and all(t.status == "completed" for t in tasks)
    assert {t.text_sha256 for t in tasks} == sent
