"""The Polly voice a book is read with when no ``--voice`` is given: one per language and
engine kind, so that a default voice always supports the engine it is sent to.

    polly_voice_for("en-US", "long-form")   # "Danielle"
    polly_voice_for("fr", "standard")       # "Lea"

Sources, from the Amazon Polly Developer Guide and product pages:
- standard: "Standard voices" (docs.aws.amazon.com/polly/latest/dg/standard-voices.html);
- neural: "Available voices" (.../available-voices.html, neural column);
- long-form: the Polly features page (aws.amazon.com/polly/features: Danielle, Gregory
  and Ruth are US English voices in long-form and neural variants);
- generative: "Generative voices" (.../generative-voices.html: Olivia, Amy, Kajal) and
  the features page (Ruth, Matthew and Amy); the other languages' generative voices as
  the emulator's table (``audiobook/emulator/voices.py``, drawn from "Available voices")
  marks them.
A test checks every row against the emulator's table.
"""

from __future__ import annotations

from ...errors import ConfigError
from .checks import check_polly_engine

# Per engine kind: a BCP 47 tag (lower case) -> a voice that supports that engine for that
# language. A tag not listed falls back to its first subtag ("en-CA" -> "en").
DEFAULT_VOICES: dict[str, dict[str, str]] = {
    "standard": {
        "en": "Joanna",
        "en-gb": "Amy",
        "en-au": "Nicole",
        "en-in": "Raveena",
        "fr": "Lea",
        "fr-ca": "Chantal",
        "de": "Vicki",
        "es": "Lucia",
        "es-us": "Lupe",
        "es-mx": "Mia",
        "it": "Bianca",
        "pt": "Ines",
        "pt-br": "Camila",
        "nl": "Lotte",
        "ja": "Takumi",
        "zh": "Zhiyu",
        "ko": "Seoyeon",
        "ar": "Zeina",
        "pl": "Ewa",
        "sv": "Astrid",
        "da": "Naja",
        "nb": "Liv",
        "no": "Liv",
        "tr": "Filiz",
    },
    "neural": {
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
    },
    # Long-form voices are US English only among the languages here.
    "long-form": {
        "en": "Danielle",
    },
    "generative": {
        "en": "Ruth",
        "en-gb": "Amy",
        "en-au": "Olivia",
        "en-in": "Kajal",
        "fr": "Lea",
        "de": "Vicki",
        "es": "Lucia",
        "es-us": "Lupe",
        "es-mx": "Mia",
        "it": "Bianca",
    },
}


def polly_voice_for(language: str | None, polly_engine: str) -> str:
    """A default Polly voice for a BCP 47 language tag (None: English) that supports the
    engine kind ``polly_engine``; ConfigError naming both when none is known."""
    check_polly_engine(polly_engine)
    table = DEFAULT_VOICES[polly_engine]
    tag = (language or "en").lower().replace("_", "-")
    voice = table.get(tag) or table.get(tag.split("-")[0])
    if voice is None:
        raise ConfigError(
            f"no default Polly voice for language {language!r} with the {polly_engine} "
            "engine; choose one with --voice (see `audiobook voices`)"
        )
    return voice
