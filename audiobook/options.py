"""A conversion's options: everything the output depends on, as one frozen value.

    ConvertOptions(fmt="m4b", engine="polly", engine_options=PollyOptions(bucket="b"))

``fingerprint()`` hashes what changes the output, so an unchanged book with unchanged
options is "up to date". Where state lives and how hard to push the service
(``PipelineConfig``) are not part of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .casting import Casting, resolve_voice_map
from .config import PROFILES, DeliveryProfile, PipelineConfig, RenderOptions
from .engines.options import EngineOptions
from .errors import ConfigError
from .ingest.base import IngestOptions
from .keys import template_identity
from .model import Book


@dataclass(frozen=True)
class ConvertOptions:
    """Everything a conversion depends on.

    fmt:            "m4b" | "mp3" | "chapters" (one file per chapter, in a folder)
    engine:         "local" | "piper" | "espeak" | "polly" (ignored when an Engine
                    instance is passed); "local" is Piper where an installed voice speaks
                    the book's language, else espeak-ng
    engine_options: the engine's typed options (``LocalOptions`` / ``PiperOptions`` /
                    ``PollyOptions``); None = that engine's defaults
    voice:          voice name; None follows the book's language
    render:         SSML rendering (template, pauses, footnotes)
    ingest:         reading (password, split_by, skip_matter, footnotes)
    config:         limits (in-flight tasks, rates, attempts, backoff)
    profile:        delivery profile (``config.PROFILES``): "default" (one loudness for
                    the whole book), "podcast" (-16 LUFS), "acx" (ACX's rules: MP3
                    chapter files), "none" (the engine's own level)
    captions:       "" | "vtt" | "srt": captions from the speech marks beside the audio
                    (one file per chapter file, else one for the book); "" writes them
                    only where marks were paid for (Polly's ``marks``), as WebVTT per
                    chapter
    words:          the read-along EPUB's overlay has an entry per word, not per sentence
    force:          convert even when the output is up to date
    synchronous:    run submits and fetches inline, one at a time (deterministic tests)
    """

    fmt: str = "m4b"
    engine: str = "local"
    engine_options: EngineOptions | None = None
    voice: str | None = None
    render: RenderOptions = field(default_factory=RenderOptions)
    ingest: IngestOptions = field(default_factory=IngestOptions)
    config: PipelineConfig = field(default_factory=PipelineConfig)
    profile: str = "default"
    voice_map: tuple[tuple[str, str], ...] = ()
    dialogue_voice: str | None = None
    force: bool = False
    synchronous: bool = False
    captions: str = ""
    words: bool = False

    def casting(self, book: Book) -> Casting | None:
        """Who reads what in ``book``: the voice map resolved against its chapters
        (ConfigError for a chapter it does not have) and the dialogue voice."""
        if not self.voice_map and not self.dialogue_voice:
            return None
        return Casting(resolve_voice_map(self.voice_map, book), self.dialogue_voice, book.language)

    def delivery(self) -> DeliveryProfile:
        """The delivery profile, checked against the format (ConfigError on one line)."""
        profile = PROFILES.get(self.profile)
        if profile is None:
            names = ", ".join(PROFILES)
            raise ConfigError(f"--profile {self.profile!r}: no such profile (choose {names})")
        if profile.fmt and self.fmt != profile.fmt:
            raise ConfigError(
                f"--profile {profile.name} writes --format {profile.fmt}, not {self.fmt}"
            )
        return profile

    def fingerprint(self) -> str:
        """Hash of every option that changes the output (not where state lives)."""
        d = {
            "fmt": self.fmt,
            "profile": self.profile,
            "voice_map": [list(p) for p in self.voice_map],
            "dialogue_voice": self.dialogue_voice,
            "engine": self.engine,
            "engine_options": _engine_options_identity(self.engine_options),
            "voice": self.voice,
            "render": _jsonable(dataclasses.asdict(self.render)),
            "ingest": _jsonable(dataclasses.asdict(self.ingest)),
            "template": template_identity(self.render.template),  # edits to a user's file
        }
        if self.captions:
            d["captions"] = self.captions
        if self.words:
            d["words"] = True
        if self.engine == "local":
            # What "local" chooses from: a voice installed for the book's language
            # makes its next conversion use it.
            from .engines import local_voices_identity

            d["local_voices"] = local_voices_identity()
        d["ingest"].pop("password", None)  # never store a secret, even hashed
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _engine_options_identity(options: EngineOptions | None) -> dict[str, Any]:
    """The engine options that change the output (not how long to wait for what)."""
    if options is None:
        return {}
    d = dataclasses.asdict(options)
    d.pop("notification_grace", None)
    d.pop("keep_outputs", None)  # what is left in the bucket, not what is heard
    d.pop("language", None)  # the book's, already part of the source
    d.pop("workers", None)  # how many processes, not what they say
    d.pop("threads", None)
    return {k: _jsonable(v) for k, v in sorted(d.items()) if v not in (None, (), "")}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in (sorted(v) if isinstance(v, (set, frozenset)) else v)]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)
