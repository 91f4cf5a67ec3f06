"""The speech engines, behind one seam (``base.Engine``), and the factory that builds one.

    make_engine("local", LocalOptions(), language="en")       # Piper if a voice speaks it
    make_engine("piper", PiperOptions(), language="en")       # Piper, offline
    make_engine("espeak", LocalOptions(), language="fr")      # espeak-ng, offline
    make_engine("polly", PollyOptions(bucket="b"), voice="Joanna")
    list_voices("piper", language="en-GB")
    download_voice("fr_FR-siwis-medium")                      # from Piper's catalogue

``local`` is the best offline engine for the book: Piper where an installed Piper voice
speaks the book's language, espeak-ng otherwise (with a one-line warning saying so).

A new engine is a module here with an ``Engine`` subclass (``submit``/``poll``/``fetch``
and its declared ``capabilities``), a frozen options value in ``options.py``, and a
branch in ``make_engine`` and ``list_voices``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError
from .base import Engine
from .options import EngineOptions, LocalOptions, PiperOptions, PollyOptions

log = logging.getLogger(__name__)

ENGINES = ("local", "piper", "espeak", "polly")
_O = TypeVar("_O", LocalOptions, PiperOptions, PollyOptions)


def make_engine(
    kind: str,
    options: EngineOptions | None = None,
    *,
    voice: str | None = None,
    language: str | None = None,
    workers: int = 0,
) -> Engine:
    """The engine ``kind`` built from ``options`` (None: that engine's defaults).

    ``voice`` (when given) overrides the options' voice; ``language`` (the book's) is
    what the engine's default voice follows; ``workers`` is an offline engine's process
    count when its options leave it at 0."""
    if kind in ("local", "espeak"):
        local = _expect(options, LocalOptions, kind) or LocalOptions()
        local = dataclasses.replace(
            local,
            voice=voice or local.voice,
            language=local.language or language,
            workers=local.workers or workers,
        )
        if kind == "local":
            piper = _piper_for(local)
            if piper is not None:
                from .piper import PiperEngine

                return PiperEngine(piper)
        from .local import LocalEngine

        return LocalEngine(local)
    if kind == "piper":
        piper_opts = _expect(options, PiperOptions, kind) or PiperOptions()
        piper_opts = dataclasses.replace(
            piper_opts,
            voice=voice or piper_opts.voice,
            language=piper_opts.language or language,
            workers=piper_opts.workers or workers,
        )
        from .piper import PiperEngine

        return PiperEngine(piper_opts)
    if kind == "polly":
        polly = _expect(options, PollyOptions, kind) or PollyOptions()
        polly = dataclasses.replace(
            polly, voice=voice or polly.voice, language=polly.language or language
        )
        from .polly import PollyEngine

        return PollyEngine(polly)
    raise ConfigError(f"unknown engine {kind!r} (choose {', '.join(ENGINES)})")


def _piper_for(local: LocalOptions) -> PiperOptions | None:
    """The Piper options ``local`` stands for, or None for espeak-ng: Piper when the
    voice names a Piper voice, or when no voice is named and an installed Piper voice
    speaks the language (else a one-line warning: espeak-ng reads it)."""
    from .piper import voices

    # espeak-ng's words per minute as Piper's speed (175 is espeak-ng's normal rate)
    speed = 1.0 if local.rate_wpm is None else min(2.0, max(0.5, local.rate_wpm / 175))
    if local.voice:
        if not voices.looks_like_path(local.voice) and voices.resolve_voice(local.voice) is None:
            return None  # an espeak-ng voice (LocalEngine checks that it is one)
        return PiperOptions(voice=local.voice, workers=local.workers, speed=speed)
    if voices.voice_for_language(local.language) is None:
        log.warning(
            "no Piper voice speaks %r: reading with espeak-ng (add one with "
            "`audiobook voices --download NAME`)",
            local.language or "en",
        )
        return None
    return PiperOptions(language=local.language, workers=local.workers, speed=speed)


def local_voices_identity() -> str:
    """What ``local`` can choose from: the installed Piper voices (names and model
    sizes). Part of a conversion's fingerprint, so that a book read by espeak-ng is
    converted again once a voice for its language is installed."""
    from .piper import voices

    return ",".join(f"{v.name}:{v.model.stat().st_size}" for v in voices.installed_voices())


def _expect(options: EngineOptions | None, cls: type[_O], kind: str) -> _O | None:
    if options is None or isinstance(options, cls):
        return options
    raise ConfigError(f"engine {kind} takes {cls.__name__}, not {type(options).__name__}")


def list_voices(
    kind: str,
    *,
    language: str | None = None,
    polly_engine: str | None = None,
    region: str | None = None,
) -> list[dict[str, str]]:
    """The voices of engine ``kind``, as dicts with at least ``name``, ``language``,
    ``gender`` and ``engines`` (comma-separated engine kinds, for Polly). ``local``
    lists Piper's installed voices, then espeak-ng's."""
    if kind in ("piper", "local"):
        from . import piper

        found = [{**v, "engines": "piper"} for v in piper.list_voices(language)]
        if kind == "piper":
            return found
        return found + [
            {**v, "engines": "espeak"} for v in list_voices("espeak", language=language)
        ]
    if kind == "espeak":
        from . import local

        return local.list_voices(language)
    if kind == "polly":
        from . import polly

        return [
            {
                "name": str(v.get("Id", "")),
                "language": str(v.get("LanguageCode", "")),
                "gender": str(v.get("Gender", "")),
                "engines": ",".join(v.get("SupportedEngines", [])),
            }
            for v in polly.list_voices(
                polly.polly_client(region), engine=polly_engine, language=language
            )
        ]
    raise ConfigError(f"unknown engine {kind!r} (choose {', '.join(ENGINES)})")


def download_voice(
    name: str, *, catalogue: str | None = None, dest_root: Path | None = None
) -> dict[str, str]:
    """Download Piper voice ``name`` from the catalogue (URL ``catalogue``, default
    ``$AUDIOBOOK_PIPER_CATALOGUE`` or Piper's own) into the voices folder, checked against
    the catalogue's sizes and md5 digests; returns it as ``list_voices`` shows it."""
    from .piper import voices

    v = voices.download_voice(name, catalogue=catalogue, dest_root=dest_root)
    return {"name": v.name, "language": v.language, "quality": v.quality, "file": str(v.model)}


def list_tasks(
    *, status: str | None = None, max_items: int | None = None, region: str | None = None
) -> Iterator[dict[str, Any]]:
    """Polly's synthesis tasks of the account, newest first (every page)."""
    from . import polly

    return polly.list_tasks(polly.polly_client(region), status=status, max_items=max_items)


__all__ = [
    "ENGINES",
    "Engine",
    "LocalOptions",
    "PiperOptions",
    "PollyOptions",
    "download_voice",
    "list_tasks",
    "list_voices",
    "local_voices_identity",
    "make_engine",
]
