"""In-process binding to libespeak-ng, shipped as a pip wheel by espeakng-loader.

libespeak-ng keeps global state, so one process synthesizes one text at a time; the
local engine runs a pool of processes to use every core. The emulator uses the same
function to make real audio.

That state also carries from one call to the next: the same text synthesized twice in
one process comes out a few samples apart (and the first call of a process starts with
half a second of silence). ``synthesize_isolated`` gives the same samples for the same
text whatever ran before: it warms the library up once, then synthesizes each text in
a child forked from that warm state.
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
import threading
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import espeakng_loader

from ..errors import ConfigError, EngineError
from .forked import run_forked

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_espeakCHARS_UTF8 = 1
_espeakSSML = 0x10
_EE_OK = 0
_espeakRATE = 1
RATE_NORMAL = 175  # espeak-ng's default speaking rate, words per minute

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT (speak_lib.h): what happened at which sample of the output."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position in the input
        ("length", ctypes.c_int),  # word length in characters (word events)
        ("audio_position", ctypes.c_int),  # ms from the start of this synthesis
        ("sample", ctypes.c_int),  # sample from the start of this synthesis
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_EVENT_END_OF_LIST = 0
EVENT_WORD = 1
EVENT_SENTENCE = 2


@dataclass(frozen=True)
class Event:
    """A word or sentence start: ``kind`` EVENT_WORD or EVENT_SENTENCE, ``position`` the
    0-based character index in the synthesized text, ``length`` the word's characters
    (0 for a sentence), ``sample`` where it starts in the audio of that text."""

    kind: int
    position: int
    length: int
    sample: int


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated language)*, 0
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


@dataclass(frozen=True)
class VoiceEntry:
    """One installed voice as espeak_ListVoices gives it: ``identifier`` is its file
    under espeak-ng-data/lang ("gmw/en"), ``languages`` its (priority, code) pairs, a
    lower priority fitting the code better ("gmw/en": (2, "en-gb"), (2, "en"))."""

    name: str
    identifier: str
    languages: tuple[tuple[int, str], ...]

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(code for _priority, code in self.languages)


class _Espeak:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise EngineError("espeak-ng failed to initialise", expected=False)
        self.sample_rate = int(rate)
        self._buf = bytearray()
        self._sink: Callable[[bytes], object] | None = None
        self._samples = 0
        self._events: list[Event] | None = None
        self._cb = _SynthCallback(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._cb)
        self.voice: str | None = None
        self.lock = threading.RLock()  # re-entered by synthesize_to and phonemes
        self._table: tuple[VoiceEntry, ...] | None = None

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], n: int, events: int | None) -> int:
        if self._events is not None and events:
            ev = ctypes.cast(events, ctypes.POINTER(_Event))
            i = 0
            while ev[i].type != _EVENT_END_OF_LIST:
                e = ev[i]
                if e.type in (EVENT_WORD, EVENT_SENTENCE):
                    self._events.append(
                        Event(e.type, e.text_position - 1, e.length, max(0, e.sample))
                    )
                i += 1
        if n > 0:
            self._samples += n
            if self._sink is not None:
                self._sink(ctypes.string_at(wav, n * 2))
            else:
                self._buf.extend(ctypes.string_at(wav, n * 2))
        return 0  # 0 = go on

    def set_voice(self, voice: str) -> None:
        """Select ``voice``: a voice file ("gmw/en"), a voice name ("English (Great
        Britain)") or any language code the voice list shows ("en-gb", "fr-fr", "zh"),
        with an optional variant ("en-gb+f3"). espeak_SetVoiceByName itself finds files
        and names but not every listed language code, so those go through the list."""
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                entry = find_voice(self.voice_table(), voice)
                variant = voice.partition("+")[2]
                chosen = entry.identifier + (f"+{variant}" if variant else "") if entry else None
                if chosen is None or self.lib.espeak_SetVoiceByName(chosen.encode()) != _EE_OK:
                    raise ConfigError(f"espeak-ng has no voice {voice!r}")
            self.voice = voice

    def synth(
        self,
        text: str,
        voice: str,
        ssml: bool,
        rate_wpm: int | None,
        sink: Callable[[bytes], object] | None = None,
        events: list[Event] | None = None,
    ) -> bytes:
        """Synthesize ``text``; with ``sink`` the audio goes to it block by block (as
        espeak-ng makes it, so memory stays flat) and b"" is returned. ``events`` gets
        every word and sentence start, with its sample in this text's audio."""
        with self.lock:
            self.set_voice(voice)
            # Always set the rate: it persists between calls otherwise.
            self.lib.espeak_SetParameter(_espeakRATE, rate_wpm or RATE_NORMAL, 0)
            self._buf = bytearray()
            self._sink = sink
            self._samples = 0
            self._events = events
            data = text.encode("utf-8")
            flags = _espeakCHARS_UTF8 | (_espeakSSML if ssml else 0)
            try:
                err = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, flags, None, None)
            finally:
                self._sink = None
                self._events = None
            if err != _EE_OK:
                raise EngineError(f"espeak-ng synthesis failed (error {err})", expected=False)
            out, self._buf = bytes(self._buf), bytearray()
            return out

    def voice_table(self) -> tuple[VoiceEntry, ...]:
        """Every installed voice, in espeak_ListVoices' order (read once: the data
        folder does not change while we run)."""
        with self.lock:
            if self._table is None:
                self._table = self._list_voices()
            return self._table

    def _list_voices(self) -> tuple[VoiceEntry, ...]:
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        arr = self.lib.espeak_ListVoices(None)
        out = []
        i = 0
        while arr[i]:
            v = arr[i].contents
            langs = []
            p = v.languages
            while p and ctypes.c_ubyte.from_address(p).value:
                priority = ctypes.c_ubyte.from_address(p).value
                lang = ctypes.string_at(p + 1)
                langs.append((priority, lang.decode("utf-8", "replace")))
                p += 2 + len(lang)
            out.append(
                VoiceEntry(
                    (v.name or b"").decode("utf-8", "replace"),
                    (v.identifier or b"").decode("utf-8", "replace"),
                    tuple(langs),
                )
            )
            i += 1
        return tuple(out)

    def voices(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(name, identifier, languages) of every installed voice."""
        return [(v.name, v.identifier, v.codes) for v in self.voice_table()]


_instance: _Espeak | None = None
_instance_lock = threading.Lock()


_WARM_TEXT = "Ready."


def _espeak() -> _Espeak:
    """The process's library, initialised and warmed up by one fixed utterance, so that
    every process starts ``synthesize_isolated`` children from the same state."""
    global _instance
    with _instance_lock:
        if _instance is None:
            eng = _Espeak()
            eng.synth(_WARM_TEXT, "en", False, None, lambda _b: None)
            _instance = eng
        return _instance


def sample_rate() -> int:
    return _espeak().sample_rate


def synthesize(
    text: str, voice: str = "en", *, ssml: bool = True, rate_wpm: int | None = None
) -> tuple[bytes, int]:
    """Synthesize ``text`` (SSML by default) and return (PCM s16le mono, sample rate)."""
    eng = _espeak()
    return eng.synth(text, voice, ssml, rate_wpm), eng.sample_rate


def synthesize_to(
    sink: Callable[[bytes], object],
    text: str,
    voice: str = "en",
    *,
    ssml: bool = True,
    rate_wpm: int | None = None,
) -> tuple[int, int]:
    """Synthesize ``text`` block by block into ``sink`` (PCM s16le mono) without holding
    it in memory; returns (samples written, sample rate)."""
    eng = _espeak()
    with eng.lock:
        eng.synth(text, voice, ssml, rate_wpm, sink)
        return eng._samples, eng.sample_rate


def version() -> str:
    """The library's version string ("1.52.0"); needs no initialisation."""
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    raw = lib.espeak_Info(None)
    return raw.decode("ascii", "replace") if raw else "unknown"


def voices() -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, identifier, languages) of every voice espeak-ng has."""
    return _espeak().voices()


def voice_table() -> tuple[VoiceEntry, ...]:
    """Every installed voice with its language codes and their priorities."""
    return _espeak().voice_table()


def find_voice(table: Sequence[VoiceEntry], voice: str) -> VoiceEntry | None:
    """The voice of ``table`` that ``voice`` means (any variant after "+" ignored): the
    one with that file identifier or name, else the one listing that language code at
    the best priority (ties: earlier in its own list, then the shorter identifier, so
    "en-gb" is gmw/en, "zh" sit/cmn, "es-mx" roa/es-419). Case does not matter."""
    want = voice.partition("+")[0].strip().lower()
    if not want:
        return None
    for entry in table:
        if want in (entry.identifier.lower(), entry.name.strip().lower()):
            return entry
    best: tuple[int, int, int, str] | None = None
    found = None
    for entry in table:
        for position, (priority, code) in enumerate(entry.languages):
            if code.lower() == want:
                rank = (priority, position, len(entry.identifier), entry.identifier)
                if best is None or rank < best:
                    best, found = rank, entry
    return found


def missing_dictionary(entry: VoiceEntry) -> str | None:
    """The pronunciation dictionary ``entry`` reads words with, when the installed data
    lacks it (then espeak-ng speaks a fraction of a second of noise for any text), else
    None. As espeak-ng decides: the voice file's ``dictionary`` line, else its first
    language code up to the first "-"."""
    data = espeakng_loader.get_data_path()
    try:
        with open(os.path.join(data, "lang", entry.identifier), encoding="utf-8") as f:
            lines = [line.split() for line in f]
    except (OSError, UnicodeDecodeError):
        return None  # not a file we can read: espeak-ng's business, not a known gap
    dictionary = next((w[1] for w in lines if len(w) >= 2 and w[0] == "dictionary"), None)
    if dictionary is None:
        first = next((w[1] for w in lines if len(w) >= 2 and w[0] == "language"), None)
        dictionary = first.split("-")[0] if first else None
    if dictionary is None or os.path.exists(os.path.join(data, f"{dictionary}_dict")):
        return None
    return dictionary


def phonemes(text: str, voice: str = "en", *, ssml: bool = True) -> str:
    """The phonemes espeak-ng speaks for ``text`` (its phoneme trace), to check what a
    piece of SSML is read as: tag names or stray words show up here."""
    libc = ctypes.CDLL(None)
    libc.fdopen.restype = ctypes.c_void_p
    libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    eng = _espeak()
    eng.lib.espeak_SetPhonemeTrace.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.TemporaryFile() as f, eng.lock:
        fp = libc.fdopen(os.dup(f.fileno()), b"w")
        if not fp:
            raise EngineError("cannot open a phoneme trace", expected=False)
        eng.lib.espeak_SetPhonemeTrace(1, fp)
        try:
            eng.synth(text, voice, ssml, None, lambda _b: None)
        finally:
            eng.lib.espeak_SetPhonemeTrace(0, None)
            libc.fclose(fp)
        f.seek(0)
        return f.read().decode("utf-8", "replace")


def has_voice(voice: str) -> bool:
    """Whether espeak-ng has ``voice`` (selects it; synthesizes nothing, which would
    change the state ``synthesize_isolated`` children start from)."""
    eng = _espeak()
    with eng.lock:
        try:
            eng.set_voice(voice)
        except ConfigError:
            return False
    return True


def _write_pieces(
    eng: _Espeak,
    pieces: Sequence[tuple[str, bool]],
    voice: str,
    dest: str,
    rate_wpm: int | None,
    as_wav: bool,
    owner: int,
    events: list[Event] | None = None,
) -> int:
    samples = 0

    def sink(write: Callable[[bytes], object]) -> Callable[[bytes], object]:
        def checked(block: bytes) -> object:
            _leave_if_orphaned(owner)
            return write(block)

        return checked

    if as_wav:
        with wave.open(dest, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(eng.sample_rate)
            for text, ssml in pieces:
                found: list[Event] | None = [] if events is not None else None
                eng.synth(text, voice, ssml, rate_wpm, sink(w.writeframesraw), found)
                _shifted(events, found, samples)
                samples += eng._samples
    else:
        with open(dest, "wb") as f:
            for text, ssml in pieces:
                found = [] if events is not None else None
                eng.synth(text, voice, ssml, rate_wpm, sink(f.write), found)
                _shifted(events, found, samples)
                samples += eng._samples
    return samples


def _shifted(into: list[Event] | None, found: list[Event] | None, by: int) -> None:
    if into is not None and found is not None:
        into += [Event(e.kind, e.position, e.length, e.sample + by) for e in found]


def write_events(dest: str, events: Sequence[Event]) -> None:
    """Events as JSON lines (kind, position, length, sample), for ``read_events``."""
    with open(dest, "w", encoding="utf-8") as f:
        f.writelines(json.dumps([e.kind, e.position, e.length, e.sample]) + "\n" for e in events)


def read_events(path: str) -> list[Event]:
    with open(path, encoding="utf-8") as f:
        return [Event(*json.loads(line)) for line in f if line.strip()]


def _leave_if_orphaned(owner: int) -> None:
    """In a synthesis child: stop at once when the process that forked it is gone
    (killed: nobody waits for this audio, and its temp folder is being removed)."""
    if os.getppid() != owner:
        os._exit(1)


def synthesize_isolated(
    pieces: Sequence[tuple[str, bool]],
    voice: str,
    dest: str | os.PathLike[str],
    *,
    rate_wpm: int | None = None,
    wav: bool = True,
    events_dest: str | None = None,
) -> int:
    """Synthesize ``pieces`` ((text, is_ssml), in order) into ``dest`` (a WAV file, or
    raw PCM s16le mono with ``wav=False``) and return the number of samples.
    ``events_dest``: where to write the word and sentence events (``read_events``), with
    samples counted from the start of ``dest`` and positions in each piece's text.

    Deterministic: the work runs in a child forked from a warmed-up library, so the same
    pieces give the same samples whatever this process synthesized before. The calling
    process itself synthesizes nothing after its warm-up. Safe to call from several
    threads (the children run at once, one per call)."""
    dest = os.fspath(dest)
    eng = _espeak()
    owner = os.getpid()

    def work() -> str:
        events: list[Event] | None = [] if events_dest is not None else None
        n = _write_pieces(eng, pieces, voice, dest, rate_wpm, wav, owner, events)
        if events_dest is not None and events is not None:
            write_events(events_dest, events)
        return str(n)

    # Under the lock: no thread of ours is inside the library while we fork.
    out = run_forked(work, lock=eng.lock, classify=_config_or_error)
    if out.ok:
        return int(out.text)
    if out.kind == "config":
        raise ConfigError(out.text)
    if out.kind == "error":
        raise EngineError(f"espeak-ng synthesis failed: {out.text}", expected=False)
    raise EngineError(
        f"espeak-ng synthesis process died (wait status {out.status})", expected=False
    )


def _config_or_error(e: BaseException) -> str:
    return "config" if isinstance(e, ConfigError) else "error"
