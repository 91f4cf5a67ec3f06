"""In-process binding to libespeak-ng, shipped as a pip wheel by espeakng-loader.

libespeak-ng keeps global state, so one process synthesizes one text at a time; the
local engine runs a pool of processes to use every core. The emulator uses the same
function to make real audio.
"""

from __future__ import annotations

import ctypes
import threading

import espeakng_loader

from ..errors import ConfigError, EngineError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_espeakCHARS_UTF8 = 1
_espeakSSML = 0x10
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Espeak:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise EngineError("espeak-ng failed to initialise", expected=False)
        self.sample_rate = rate
        self._buf = bytearray()
        self._cb = _SynthCallback(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._cb)
        self.voice: str | None = None
        self.lock = threading.Lock()

    def _on_audio(self, wav, n, events) -> int:  # noqa: ANN001
        if n > 0:
            self._buf.extend(ctypes.string_at(wav, n * 2))
        return 0  # 0 = go on

    def set_voice(self, voice: str) -> None:
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ConfigError(f"espeak-ng has no voice {voice!r}")
            self.voice = voice

    def synth(self, text: str, voice: str, ssml: bool, rate_wpm: int | None) -> bytes:
        with self.lock:
            self.set_voice(voice)
            if rate_wpm:
                self.lib.espeak_SetParameter(1, rate_wpm, 0)  # espeakRATE
            self._buf = bytearray()
            data = text.encode("utf-8")
            flags = _espeakCHARS_UTF8 | (_espeakSSML if ssml else 0)
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, flags, None, None)
            if err != _EE_OK:
                raise EngineError(f"espeak-ng synthesis failed (error {err})", expected=False)
            out, self._buf = bytes(self._buf), bytearray()
            return out


_instance: _Espeak | None = None
_instance_lock = threading.Lock()


def _espeak() -> _Espeak:
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = _Espeak()
        return _instance


def sample_rate() -> int:
    return _espeak().sample_rate


def synthesize(text: str, voice: str = "en", *, ssml: bool = True,
               rate_wpm: int | None = None) -> tuple[bytes, int]:
    """Synthesize ``text`` (SSML by default) and return (PCM s16le mono, sample rate)."""
    eng = _espeak()
    return eng.synth(text, voice, ssml, rate_wpm), eng.sample_rate


def has_voice(voice: str) -> bool:
    try:
        synthesize("", voice, ssml=False)
    except ConfigError:
        return False
    return True
