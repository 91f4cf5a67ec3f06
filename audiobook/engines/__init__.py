"""The speech engines, behind one seam (``base.Engine``), and the factory that builds one.

    make_engine("local", LocalOptions(), language="fr")       # espeak-ng, offline
    make_engine("polly", PollyOptions(bucket="b"), voice="Joanna")
    list_voices("local", language="en-GB")

A new engine is a module here with an ``Engine`` subclass (``submit``/``poll``/``fetch``
and its declared ``capabilities``), a frozen options value in ``options.py``, and a
branch in ``make_engine`` and ``list_voices``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, TypeVar

from ..errors import ConfigError
from .base import Engine
from .options import EngineOptions, LocalOptions, PollyOptions

ENGINES = ("local", "polly")
_O = TypeVar("_O", LocalOptions, PollyOptions)


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
    what the engine's default voice follows; ``workers`` is the local engine's process
    count when its options leave it at 0."""
    if kind == "local":
        local = _expect(options, LocalOptions, kind) or LocalOptions()
        local = dataclasses.replace(
            local,
            voice=voice or local.voice,
            language=local.language or language,
            workers=local.workers or workers,
        )
        from .local import LocalEngine

        return LocalEngine(local)
    if kind == "polly":
        polly = _expect(options, PollyOptions, kind) or PollyOptions()
        polly = dataclasses.replace(
            polly, voice=voice or polly.voice, language=polly.language or language
        )
        from .polly import PollyEngine

        return PollyEngine(polly)
    raise ConfigError(f"unknown engine {kind!r} (choose {' or '.join(ENGINES)})")


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
    ``gender`` and ``engines`` (comma-separated engine kinds, for Polly)."""
    if kind == "local":
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
    raise ConfigError(f"unknown engine {kind!r} (choose {' or '.join(ENGINES)})")


def list_tasks(
    *, status: str | None = None, max_items: int | None = None, region: str | None = None
) -> Iterator[dict[str, Any]]:
    """Polly's synthesis tasks of the account, newest first (every page)."""
    from . import polly

    return polly.list_tasks(polly.polly_client(region), status=status, max_items=max_items)


def sweep_polly_queues(*, dry_run: bool = False, region: str | None = None) -> list[str]:
    """Remove the SQS queues (and SNS subscriptions) of Polly notifications that killed
    runs left behind; their names."""
    import boto3

    from . import polly

    try:
        session = boto3.session.Session(region_name=region)
        sqs, sns = session.client("sqs"), session.client("sns")
    except Exception as e:  # NoRegionError and friends, at the edge
        raise polly.map_client_error(e, "AWS clients") from e
    return polly.sweep_queues(sqs, sns, dry_run=dry_run)


__all__ = [
    "ENGINES",
    "Engine",
    "LocalOptions",
    "PollyOptions",
    "list_tasks",
    "list_voices",
    "make_engine",
    "sweep_polly_queues",
]
