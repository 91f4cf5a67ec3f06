"""The offline engine: espeak-ng in a pool of worker processes.

libespeak-ng keeps global state (one text at a time per process), so every core gets
its own process. A chunk's audio is written by the worker straight to a WAV file (PCM
s16le mono at espeak-ng's 22,050 Hz) block by block, so neither the worker nor this
process ever holds a whole chunk in memory; ``fetch`` moves that file into place.

    LocalEngine(LocalOptions(language="fr"))  # follows the book's language
    ref = engine.submit(chunk, key)          # returns at once
    engine.poll(ref).status                  # "scheduled" | "inProgress" | "completed" | "failed"
    engine.fetch(ref, dest)                  # dest.wav, whole or not at all
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from .. import interrupt
from ..config import EngineLimits
from ..errors import ConfigError, EngineError, TaskFailed, one_line
from ..files import temp_dir_prefix
from ..model import Book, Chunk
from .base import AudioFormat, Capabilities, TaskRef, pronunciation_unhonoured
from .options import LocalOptions
from .pool import PoolEngine, leave_with_parent, move_into_place

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
MARKS_EXT = "marks"  # the speech marks beside a piece: dest + ".marks"
# Bigger chunks mean fewer round trips to the workers; 20,000 characters is about
# 20 minutes of speech, small enough to spread a chapter over both cores.
LOCAL_LIMITS = EngineLimits(max_billable=20_000, max_total=40_000)

# Every language code espeak-ng 1.52 lists (espeak_ListVoices), so that mapping a book's
# language to a code needs no library call. Codes that espeak_SetVoiceByName does not
# take as they are ("en-gb", "fr-fr", "zh", "es-mx") are resolved through the voice
# list by ``espeak``.
_ESPEAK_LANGUAGES = frozenset(
    """
af am an ar as az ba be bg bn bpy bs ca ca-ba ca-nw ca-va chr-US-Qaaa-x-west cmn
cmn-latn-pinyin cs cv cy da de el en en-029 en-gb en-gb-scotland en-gb-x-gbclan
en-gb-x-gbcwmd en-gb-x-rp en-shaw en-us en-us-nyc eo es es-419 es-mx et eu fa
fa-latn fi fo fr fr-be fr-ch fr-fr ga gd gn grc gu hak haw hbs he hi hr ht hu hy
hy-arevela hy-arevmda hyw ia id io is it ja jbo ka kaa kk kl kn ko kok ku ky la lb
lfn lt ltg lv mi mk ml mr ms mt mto my nb nci ne nl no nog om or pa pap piqd pl pt
pt-br pt-pt py qdb qu quc qya ro ru ru-cl ru-lv sd shn si sjn sk sl smj sq sr sv sw
ta te th ti tk tn tr tt ug uk ur uz vi vi-vn-x-central vi-vn-x-south xex yue zh
zh-cmn zh-yue
""".lower().split()
)

# Tags that name a language espeak-ng knows under another code.
_ALIASES = {
    "zh": "cmn",
    "zh-cn": "cmn",
    "zh-hans": "cmn",
    "zh-sg": "cmn",
    "zh-tw": "cmn",
    "zh-hant": "cmn",
    "zh-cmn": "cmn",
    "zh-hk": "yue",
    "zh-mo": "yue",
    "zh-yue": "yue",
    "iw": "he",
    "in": "id",
    "nn": "nb",
    "no": "nb",
    "tl": "en",
    "fil": "en",
    "sh": "hbs",
    "cmn-hans": "cmn",
    "cmn-hant": "cmn",
    # Country codes often written for the language (none of them a language code).
    "jp": "ja",
    "cn": "cmn",
    "cz": "cs",
    "dk": "da",
    "gr": "el",
    "ua": "uk",
}
DEFAULT_VOICE = "en"


def voice_for_language(tag: str | None) -> str:
    """The espeak-ng voice for a BCP 47 language tag: "en-US" -> "en-us", "en-GB" ->
    "en-gb", "fr" -> "fr", "zh-Hant" -> "cmn", "pt-BR" -> "pt-br", "de-AT" -> "de",
    "ja-jp" and "jp" -> "ja". Unknown or missing -> "en" (with a warning for an unknown
    tag, or for a language whose voice cannot speak here: its dictionary is missing)."""
    if not tag or not tag.strip():
        return DEFAULT_VOICE
    norm = tag.strip().lower().replace("_", "-")
    parts = norm.split("-")
    while parts:
        cand = "-".join(parts)
        voice = _ALIASES.get(cand) or (cand if cand in _ESPEAK_LANGUAGES else None)
        if voice is not None:
            problem = _voice_problem(voice)
            if problem is None:
                return voice
            log.warning("%s; reading language %r with %r", problem, tag, DEFAULT_VOICE)
            return DEFAULT_VOICE
        parts.pop()
    log.warning("no espeak-ng voice for language %r; reading it with %r", tag, DEFAULT_VOICE)
    return DEFAULT_VOICE


# Before these tags, a newline: espeak-ng reads a full stop that follows a quote or a
# bracket and ends the text or a sentence element as the word "dot" ("'yes'." -> "yes
# dot"); a line break there makes it a clause end again. It adds no pause.
_STRUCTURAL_TAG = re.compile(r"(?<=[^\s>])(?=</?(?:s|p|speak|break)\b)")


def prepare_ssml(ssml: str) -> str:
    """Adapt Polly-style SSML to espeak-ng's reading of it (see _STRUCTURAL_TAG)."""
    return _STRUCTURAL_TAG.sub("\n", ssml)


def inserted_positions(ssml: str) -> list[int]:
    """Where ``prepare_ssml`` inserts its newlines, as positions in ``ssml``."""
    return [m.start() for m in _STRUCTURAL_TAG.finditer(ssml)]


def _synthesize_file(ssml: str, voice: str, rate_wpm: int | None, dest: str) -> int:
    """Worker process: synthesize ``ssml`` into a WAV file at ``dest`` and its speech
    marks (``timings.espeak_marks``) into ``dest + ".marks"``; return samples.

    Through ``espeak.synthesize_isolated``: the same chunk gives the same samples in any
    worker and any run, so a resumed book is identical to an uninterrupted one."""
    from ..timings import espeak_marks
    from . import espeak

    tmp, events_tmp, marks = dest + ".part", dest + ".events", dest + "." + MARKS_EXT
    try:
        samples = espeak.synthesize_isolated(
            [(prepare_ssml(ssml), True)], voice, tmp, rate_wpm=rate_wpm, events_dest=events_tmp
        )
        jsonl = espeak_marks(
            ssml, inserted_positions(ssml), espeak.read_events(events_tmp), SAMPLE_RATE
        )
        with open(marks + ".part", "w", encoding="utf-8") as f:
            f.write(jsonl)
        os.replace(marks + ".part", marks)
        os.replace(tmp, dest)
    except BaseException:
        for leftover in (tmp, marks + ".part", marks):
            try:
                os.unlink(leftover)
            except OSError:
                pass
        raise
    finally:
        try:
            os.unlink(events_tmp)
        except OSError:
            pass
    return samples


def _warm_up() -> None:
    """Worker initializer: Ctrl-C and SIGTERM are the parent's to handle (it stops the
    workers), so a worker ignores them and prints nothing; it leaves when the parent dies
    (killed, crashed), rather than wait forever for work as an orphan; then it loads
    espeak-ng before the first chunk arrives."""
    interrupt.ignore_signals()
    leave_with_parent()
    from . import espeak

    espeak.sample_rate()


@cache
def _espeak_version() -> str:
    from . import espeak

    try:
        return espeak.version()
    except OSError:
        return "unknown"


class LocalEngine(PoolEngine[int]):
    """espeak-ng, offline, on every core (``workers=0``: one process per core)."""

    name = "local"
    worker_name = "espeak-ng"
    kill_unfinished = True  # its workers ignore SIGINT and SIGTERM
    limits = LOCAL_LIMITS
    audio_format = AudioFormat("wav", SAMPLE_RATE)
    # espeak-ng's word and sentence events come with every piece, for nothing.
    capabilities = Capabilities(marks=True, marks_included=True)

    def __init__(self, options: LocalOptions | None = None) -> None:
        options = options or LocalOptions()
        voice, language, rate_wpm = options.voice, options.language, options.rate_wpm
        if rate_wpm is not None and not 80 <= rate_wpm <= 450:
            raise ConfigError(f"speaking rate {rate_wpm} words per minute is out of range 80-450")
        if voice:
            _check_voice(voice)
            self.voice = voice
        else:
            self.voice = voice_for_language(language)
        self.language = language
        self.rate_wpm = rate_wpm
        super().__init__(options.workers, temp_dir_prefix("local"), _warm_up)

    # --- Engine -------------------------------------------------------------------------

    def identity(self) -> str:
        return (
            f"local:espeak-ng {_espeak_version()}:voice={self.voice}:"
            f"rate={self.rate_wpm or 'default'}:{SAMPLE_RATE}"
        )

    def pronounce(self, book: Book) -> list[str]:
        """espeak-ng takes neither PLS lexicons nor IPA (its ``<phoneme>`` is read as
        the word inside it): both are reported."""
        return [
            n.replace("the local engine", "espeak-ng (the local engine)")
            for n in pronunciation_unhonoured(book, "local")
        ]

    def use_voices(self, voices: Sequence[str]) -> None:
        for voice in voices:
            _check_voice(voice)

    def submit(self, chunk: Chunk, key: str) -> TaskRef:
        voice = chunk.voice or self.voice
        task_id, dest = self._start(_synthesize_file, chunk.ssml, voice, self.rate_wpm)
        extra = {"voice": voice}
        return TaskRef(task_id=task_id, engine=self.name, output_uri=dest, extra=extra)

    def fetch(self, ref: TaskRef, dest: Path) -> None:
        self._result(ref)
        self._move_audio(ref, dest)

    def fetch_marks(self, ref: TaskRef, dest: Path) -> None:
        """The piece's speech marks, from espeak-ng's events (written beside the audio
        by the worker); called before ``fetch``."""
        fut = self._future(ref)
        try:
            fut.result()
        except Exception as e:
            raise TaskFailed(f"espeak-ng failed: {one_line(e)}", reason=one_line(e)) from e
        src = self._audio_path(ref) + "." + MARKS_EXT
        try:
            move_into_place(Path(src), Path(dest))
        except OSError as e:
            raise EngineError(f"{dest}: cannot write speech marks: {e.strerror or e}") from e

    # --- extras -------------------------------------------------------------------------

    @staticmethod
    def voices() -> list[str]:
        """Every language/voice name espeak-ng takes for ``--voice`` (sorted)."""
        return sorted(_ESPEAK_LANGUAGES)


def list_voices(language: str | None = None) -> list[dict[str, str]]:
    """espeak-ng's voices, for ``audiobook voices --engine local``: ``name`` is what
    ``--voice`` takes, ``language`` espeak-ng's description. With ``language`` (BCP 47),
    only the voices for it. Voices whose dictionary is not installed are left out (they
    cannot speak). ``name`` is a voice's first language code, or its file where another
    voice has the same first code and the file's own name ("sit/yue-Latn-jyutping")."""
    from . import espeak

    want = voice_for_language(language) if language else None
    table = [e for e in espeak.voice_table() if e.codes and espeak.missing_dictionary(e) is None]
    first_codes = [e.codes[0] for e in table]
    out = []
    for entry in table:
        name = entry.codes[0]
        own = entry.identifier.rsplit("/", 1)[-1].lower() == name.lower()
        if first_codes.count(name) > 1 and not own:
            name = entry.identifier
        if want is not None and not any(
            lang == want or lang.startswith(want + "-") for lang in entry.codes
        ):
            continue
        out.append({"name": name, "language": entry.name, "gender": "", "file": entry.identifier})
    return sorted(out, key=lambda v: v["name"])


def _check_voice(voice: str) -> None:
    """ConfigError on one line unless espeak-ng has ``voice`` and it can speak here."""
    if not _voice_exists(voice):
        raise ConfigError(
            f"espeak-ng has no voice {voice!r} (see `audiobook voices --engine local`)"
        )
    problem = _voice_problem(voice)
    if problem is not None:
        raise ConfigError(f"{problem} (see `audiobook voices --engine local`)")


def _voice_problem(voice: str) -> str | None:
    """Why an existing voice cannot speak here (its dictionary is not installed), or
    None."""
    from . import espeak

    try:
        entry = espeak.find_voice(espeak.voice_table(), voice)
    except EngineError:
        return None
    missing = espeak.missing_dictionary(entry) if entry is not None else None
    if missing is None:
        return None
    return (
        f"espeak-ng's voice {voice!r} cannot speak: its dictionary {missing}_dict is not installed"
    )


def _voice_exists(voice: str) -> bool:
    if voice.lower() in _ESPEAK_LANGUAGES:
        return True
    from . import espeak  # a voice name or file ("English (America)", "gmw/en-US")

    try:
        return espeak.has_voice(voice)
    except EngineError:
        return False
