"""Piper: a neural voice, offline (onnxruntime, with its own espeak-ng phonemizer).

engine.py   the Engine: SSML read once per piece, synthesis in a pool of processes
worker.py   the process side: the voice loaded once, each piece in a forked child
ssml.py     our SSML as Piper's segments (sentences, pauses, rates, phonemes)
voices.py   voices from voice wheels, the voices folder or a path; the catalogue
"""

from __future__ import annotations

import os

# onnxruntime (1.29 and newer) sends usage telemetry from Linux too, and leaves a session
# file in TMPDIR and a database under ~/.cache. This package speaks offline: opt out
# before onnxruntime is first imported here or in a worker process (which inherits the
# environment). A user who sets the variable keeps their choice.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .engine import PIPER_LIMITS, PiperEngine, choose_voice, list_voices
from .voices import (
    DEFAULT_CATALOGUE,
    VoiceInfo,
    download_voice,
    installed_voices,
    voice_for_language,
)

__all__ = [
    "DEFAULT_CATALOGUE",
    "PIPER_LIMITS",
    "PiperEngine",
    "VoiceInfo",
    "choose_voice",
    "download_voice",
    "installed_voices",
    "list_voices",
    "voice_for_language",
]
