"""The offline espeak-ng engine, the fake engine, and the WAV helpers."""

from __future__ import annotations

import time

import av
import pytest

from audiobook.audio import read_wav_info, tone_pcm, wav_bytes
from audiobook.engines import espeak
from audiobook.engines.base import Engine
from audiobook.engines.fake import FakeEngine, tone_wav
from audiobook.engines.local import LocalEngine, prepare_ssml, voice_for_language
from audiobook.engines.options import LocalOptions
from audiobook.errors import ConfigError, TaskFailed, Throttled, TransientEngineError
from audiobook.model import Chunk


@pytest.mark.parametrize(
    ("tag", "voice"),
    [
        ("en-US", "en-us"),
        ("en", "en"),
        ("en_GB", "en-gb"),
        ("fr", "fr"),
        ("fr-CA", "fr"),
        ("zh", "cmn"),
        ("zh-Hant-TW", "cmn"),
        ("zh-HK", "yue"),
        ("ja", "ja"),
        ("ja-JP", "ja"),
        ("ar", "ar"),
        ("pt-BR", "pt-br"),
        ("de-AT", "de"),
        ("no", "nb"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_voice_for_language(tag, voice):
    assert voice_for_language(tag) == voice


def test_unknown_language_falls_back_to_english_with_a_warning(caplog):
    assert voice_for_language("tlh-Klingon") == "en"
    assert "tlh-Klingon" in caplog.text


def test_unknown_voice_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        LocalEngine(LocalOptions(voice="no-such-voice"))
    assert "no-such-voice" in str(err.value)
    assert "\n" not in str(err.value)
    assert err.value.exit_code == 2


def test_voice_names_and_table_agree_with_espeak():
    names = LocalEngine.voices()
    assert {"en-us", "fr", "cmn", "ja", "ar"} <= set(names)
    installed = {lang for _n, _i, langs in espeak.voices() for lang in langs}
    assert set(names) == {v.lower() for v in installed}
    assert LocalEngine(LocalOptions(voice="English (America)")).voice == "English (America)"


def test_prepare_ssml_golden():
    assert prepare_ssml(
        '<speak><p><s>He said &apos;yes&apos;.</s></p><break time="600ms"/>'
        "<p><s>A <emphasis>b</emphasis>.</s>\n</p></speak>"
    ) == (
        '<speak><p><s>He said &apos;yes&apos;.\n</s></p><break time="600ms"/>'
        "<p><s>A <emphasis>b</emphasis>.\n</s>\n</p></speak>"
    )


def _plain(text: str) -> str:
    return " ".join(espeak.phonemes(text, "en-us", ssml=False).split())


def _ssml(text: str) -> str:
    return " ".join(espeak.phonemes(prepare_ssml(text), "en-us").split())


def test_espeak_reads_polly_style_ssml_without_speaking_markup():
    ssml = (
        "<speak><p><s>Hello there.</s><s>It is &quot;fine&quot; &amp; good.</s></p>"
        '<break time="600ms"/><p><s>He said &apos;yes&apos;.</s></p></speak>'
    )
    spoken = _ssml(ssml)
    assert spoken == _plain("Hello there. It is \"fine\" & good. He said 'yes'.")
    for word in ("speak", "break", "time", "dot", "d'0t"):
        assert word not in spoken
    # Escaped markup in the text is spoken as text, never obeyed.
    assert "br'eIk" in _ssml('<speak><s>a &lt;break time="3s"/&gt; b</s></speak>')


def _chunk(i: int, text: str) -> Chunk:
    return Chunk.make(0, i, f"<speak><p><s>{text}</s></p></speak>")


def test_local_engine_synthesizes_chunks_in_parallel_into_real_wavs(tmp_path):
    with LocalEngine(LocalOptions(language="en-US", workers=2)) as engine:
        assert isinstance(engine, Engine)
        assert engine.audio_format.ext == "wav" and engine.audio_format.sample_rate == 22050
        assert "voice=en-us" in engine.identity() and "espeak-ng" in engine.identity()
        refs = [
            engine.submit(_chunk(i, f"Piece number {i}. A short sentence."), f"k{i}")
            for i in range(3)
        ]
        deadline = time.monotonic() + 60
        while not all(engine.poll(r).status == "completed" for r in refs):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for i, ref in enumerate(refs):
            dest = tmp_path / f"{i}.wav"
            engine.fetch(ref, dest)
            info = read_wav_info(dest)
            assert info is not None and info.sample_rate == 22050 and info.channels == 1
            with av.open(str(dest)) as c:
                assert c.streams.audio[0].rate == 22050
                assert c.duration / 1e6 > 0.5
                assert abs(c.duration / 1e6 - info.duration) < 0.01
        pool = engine._pool
        assert pool is not None
        procs = list(pool._processes.values())
    assert all(not p.is_alive() for p in procs)  # no worker left behind
    assert not list(tmp_path.glob("*.part"))


def test_local_engine_rate_changes_length(tmp_path):
    with (
        LocalEngine(LocalOptions(voice="en-us", workers=1, rate_wpm=350)) as fast,
        LocalEngine(LocalOptions(voice="en-us", workers=1)) as normal,
    ):
        assert fast.identity() != normal.identity()
        chunk = _chunk(0, "The quick brown fox jumps over the lazy dog.")
        for eng, name in ((fast, "fast"), (normal, "normal")):
            ref = eng.submit(chunk, "k")
            eng.fetch(ref, tmp_path / f"{name}.wav")
        fast_info = read_wav_info(tmp_path / "fast.wav")
        normal_info = read_wav_info(tmp_path / "normal.wav")
        assert fast_info and normal_info and fast_info.frames < normal_info.frames * 0.75


def test_local_engine_rejects_silly_rates():
    with pytest.raises(ConfigError):
        LocalEngine(LocalOptions(rate_wpm=5))


# --- the fake engine ------------------------------------------------------------------


def test_fake_engine_makes_real_wavs_proportional_to_text(tmp_path):
    engine = FakeEngine()
    short, long_ = _chunk(0, "Hi."), _chunk(1, "A much longer sentence, " * 20)
    refs = [engine.submit(short, "a"), engine.submit(long_, "b")]
    for r, name in zip(refs, ("a", "b")):
        assert engine.poll(r).status == "completed"
        engine.fetch(r, tmp_path / f"{name}.wav")
    a, b = read_wav_info(tmp_path / "a.wav"), read_wav_info(tmp_path / "b.wav")
    assert a and b and b.frames > 10 * a.frames
    assert (tmp_path / "a.wav").read_bytes() == tone_wav(short)  # deterministic
    assert engine.submitted == [short, long_]


def test_fake_engine_reports_failures_and_raises_throttling(tmp_path):
    def handler(chunk: Chunk) -> bytes:
        if chunk.seq == 0:
            raise Throttled("slow down")
        if chunk.seq == 1:
            raise TransientEngineError("503")
        if chunk.seq == 2:
            raise TaskFailed("bad SSML", reason="InvalidSsml")
        return b"RIFF"

    engine = FakeEngine(handler, polls_until_done=1)
    with pytest.raises(Throttled):
        engine.submit(_chunk(0, "x"), "k0")
    transient = engine.submit(_chunk(1, "x"), "k1")
    permanent = engine.submit(_chunk(2, "x"), "k2")
    fine = engine.submit(_chunk(3, "x"), "k3")
    assert engine.poll(fine).status == "inProgress"
    assert engine.poll(fine).status == "completed"
    engine.poll(transient)
    assert engine.poll(transient).transient
    engine.poll(permanent)
    state = engine.poll(permanent)
    assert state.status == "failed" and not state.transient and "bad SSML" in state.reason
    with pytest.raises(TaskFailed):
        engine.fetch(permanent, tmp_path / "p.wav")
    assert not (tmp_path / "p.wav").exists()
    engine.fetch(fine, tmp_path / "f.wav")
    assert (tmp_path / "f.wav").read_bytes() == b"RIFF"


def test_wav_info_reads_header_only(tmp_path):
    p = tmp_path / "t.wav"
    p.write_bytes(wav_bytes(tone_pcm(0.5, 16000), 16000))
    info = read_wav_info(p)
    assert info == read_wav_info(p) and info is not None
    assert (info.sample_rate, info.channels, info.sample_width, info.frames) == (16000, 1, 2, 8000)
    assert info.data_offset == 44
    (tmp_path / "x.wav").write_bytes(b"ID3 not a wav")
    assert read_wav_info(tmp_path / "x.wav") is None


def test_list_voices_filters_by_language():
    from audiobook.engines.local import list_voices

    names = [v["name"] for v in list_voices("fr-CA")]
    assert names and all(n.startswith("fr") for n in names)
    assert "en-us" in [v["name"] for v in list_voices()]
    for v in list_voices("en"):
        LocalEngine(LocalOptions(voice=v["name"]))  # every listed name is accepted by --voice


_ORPHAN_SCRIPT = """
import os, pathlib, sys
from audiobook.engines.local import LocalEngine
from audiobook.engines.options import LocalOptions
from audiobook.model import Chunk
if __name__ == "__main__":
    engine = LocalEngine(LocalOptions(voice="en-us", workers=1))
    ref = engine.submit(Chunk.make(0, 0, "<speak>hello</speak>"), "k")
    engine.fetch(ref, pathlib.Path(sys.argv[1]))
    print(" ".join(str(p) for p in engine._pool._processes), flush=True)
    os._exit(0)  # killed without closing the engine
"""


def test_workers_leave_when_their_parent_dies(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "x.wav")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    deadline = time.monotonic() + 20
    for pid in pids:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, f"worker {pid} outlived its parent"
            time.sleep(0.05)
