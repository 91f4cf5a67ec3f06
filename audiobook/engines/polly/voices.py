"""The Polly voice a book is read with when no ``--voice`` is given."""

from __future__ import annotations

from ...errors import ConfigError

# A Polly voice per language for books converted without --voice (all neural-capable
# except where none is).
POLLY_DEFAULT_VOICES = {
    "en": "Joanna",
    "en-gb": "Amy",
    "en-au": "Olivia",
    "en-in": "Kajal",
    "fr": "Lea",
    "fr-ca": "Gabrielle",
    "de": "Vicki",
    "es": "Lucia",
    "es-us": "Lupe",
    "es-mx": "Mia",
    "it": "Bianca",
    "pt": "Ines",
    "pt-br": "Camila",
    "nl": "Laura",
    "ja": "Takumi",
    "zh": "Zhiyu",
    "ko": "Seoyeon",
    "ar": "Hala",
    "pl": "Ola",
    "sv": "Elin",
    "da": "Sofie",
    "nb": "Ida",
    "no": "Ida",
    "fi": "Suvi",
    "tr": "Burcu",
}


def polly_voice_for(language: str | None) -> str:
    """A default Polly voice for a BCP 47 language tag; ConfigError when none is known."""
    tag = (language or "en").lower().replace("_", "-")
    voice = POLLY_DEFAULT_VOICES.get(tag) or POLLY_DEFAULT_VOICES.get(tag.split("-")[0])
    if voice is None:
        raise ConfigError(
            f"no default Polly voice for language {language!r}; "
            "choose one with --voice (see `audiobook voices`)"
        )
    return voice
