"""The emulator's voice table: every voice, its language and the engines it supports.

Drawn from the AWS "Available voices" page as remembered; rows marked ``verified=False``
(UNVERIFIED) are less certain, especially the generative column, which AWS keeps
extending. Ids are the botocore VoiceId enum (ASCII); names keep their accents.
Voices of the enum missing here are answered as unknown to the emulator.
"""

from __future__ import annotations

from dataclasses import dataclass

S, N, L, G = "standard", "neural", "long-form", "generative"


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    name: str
    gender: str  # "Female" | "Male"
    language: str  # a LanguageCode
    language_name: str
    engines: tuple[str, ...]
    additional_languages: tuple[str, ...] = ()
    verified: bool = True


def _v(
    id_: str,
    gender: str,
    lang: str,
    lang_name: str,
    engines: str,
    *,
    name: str | None = None,
    extra: tuple[str, ...] = (),
    ok: bool = True,
) -> VoiceInfo:
    eng = tuple(e for e, flag in zip((S, N, L, G), "SNLG") if flag in engines)
    return VoiceInfo(id_, name or id_, gender, lang, lang_name, eng, extra, ok)


F, M = "Female", "Male"
US, GB = "US English", "British English"

VOICES: tuple[VoiceInfo, ...] = (
    # English (US)
    _v("Danielle", F, "en-US", US, "NLG"),
    _v("Gregory", M, "en-US", US, "NL"),
    _v("Ivy", F, "en-US", US, "SN"),
    _v("Joanna", F, "en-US", US, "SNG", ok=False),  # generative UNVERIFIED
    _v("Kendra", F, "en-US", US, "SN"),
    _v("Kimberly", F, "en-US", US, "SN"),
    _v("Salli", F, "en-US", US, "SNG", ok=False),  # generative UNVERIFIED
    _v("Joey", M, "en-US", US, "SN"),
    _v("Justin", M, "en-US", US, "SN"),
    _v("Kevin", M, "en-US", US, "N"),
    _v("Matthew", M, "en-US", US, "SNG"),
    _v("Ruth", F, "en-US", US, "NLG"),
    _v("Stephen", M, "en-US", US, "NG"),
    _v("Tiffany", F, "en-US", US, "G", ok=False),
    # English (other)
    _v("Amy", F, "en-GB", GB, "SNG"),
    _v("Emma", F, "en-GB", GB, "SN"),
    _v("Brian", M, "en-GB", GB, "SN"),
    _v("Arthur", M, "en-GB", GB, "N"),
    _v("Nicole", F, "en-AU", "Australian English", "S"),
    _v("Olivia", F, "en-AU", "Australian English", "NG"),
    _v("Russell", M, "en-AU", "Australian English", "S"),
    _v("Aditi", F, "en-IN", "Indian English", "S", extra=("hi-IN",)),
    _v("Raveena", F, "en-IN", "Indian English", "S"),
    _v("Kajal", F, "en-IN", "Indian English", "NG", extra=("hi-IN",)),
    _v("Geraint", M, "en-GB-WLS", "Welsh English", "S"),
    _v("Aria", F, "en-NZ", "New Zealand English", "N"),
    _v("Ayanda", F, "en-ZA", "South African English", "NG"),
    _v("Niamh", F, "en-IE", "Irish English", "N"),
    _v("Jasmine", F, "en-SG", "Singaporean English", "N", ok=False),
    # French
    _v("Celine", F, "fr-FR", "French", "S", name="Céline"),
    _v("Lea", F, "fr-FR", "French", "SNG", name="Léa"),
    _v("Mathieu", M, "fr-FR", "French", "S"),
    _v("Remi", M, "fr-FR", "French", "NG", name="Rémi"),
    _v("Ambre", F, "fr-FR", "French", "G", ok=False),
    _v("Florian", M, "fr-FR", "French", "G", ok=False),
    _v("Chantal", F, "fr-CA", "Canadian French", "S"),
    _v("Gabrielle", F, "fr-CA", "Canadian French", "N"),
    _v("Liam", M, "fr-CA", "Canadian French", "N"),
    _v("Isabelle", F, "fr-BE", "Belgian French", "N"),
    # German
    _v("Hans", M, "de-DE", "German", "S"),
    _v("Marlene", F, "de-DE", "German", "S"),
    _v("Vicki", F, "de-DE", "German", "SNG"),
    _v("Daniel", M, "de-DE", "German", "NG"),
    _v("Lennart", M, "de-DE", "German", "G", ok=False),
    _v("Hannah", F, "de-AT", "Austrian German", "N"),
    _v("Sabrina", F, "de-CH", "Swiss German", "N"),
    # Spanish
    _v("Conchita", F, "es-ES", "Castilian Spanish", "S"),
    _v("Enrique", M, "es-ES", "Castilian Spanish", "S"),
    _v("Lucia", F, "es-ES", "Castilian Spanish", "SNG", name="Lucía"),
    _v("Sergio", M, "es-ES", "Castilian Spanish", "NG"),
    _v("Mia", F, "es-MX", "Mexican Spanish", "SNG"),
    _v("Andres", M, "es-MX", "Mexican Spanish", "NG", name="Andrés"),
    _v("Lupe", F, "es-US", "US Spanish", "SNG"),
    _v("Miguel", M, "es-US", "US Spanish", "S"),
    _v("Penelope", F, "es-US", "US Spanish", "S", name="Penélope"),
    _v("Pedro", M, "es-US", "US Spanish", "NG"),
    # Italian
    _v("Carla", F, "it-IT", "Italian", "S"),
    _v("Bianca", F, "it-IT", "Italian", "SNG"),
    _v("Giorgio", M, "it-IT", "Italian", "S"),
    _v("Adriano", M, "it-IT", "Italian", "NG"),
    _v("Beatrice", F, "it-IT", "Italian", "G", ok=False),
    _v("Lorenzo", M, "it-IT", "Italian", "G", ok=False),
    # Portuguese
    _v("Camila", F, "pt-BR", "Brazilian Portuguese", "SN"),
    _v("Vitoria", F, "pt-BR", "Brazilian Portuguese", "SN", name="Vitória"),
    _v("Ricardo", M, "pt-BR", "Brazilian Portuguese", "S"),
    _v("Thiago", M, "pt-BR", "Brazilian Portuguese", "N"),
    _v("Ines", F, "pt-PT", "Portuguese", "SN", name="Inês"),
    _v("Cristiano", M, "pt-PT", "Portuguese", "S"),
    # Asian languages
    _v("Mizuki", F, "ja-JP", "Japanese", "S"),
    _v("Takumi", M, "ja-JP", "Japanese", "SN"),
    _v("Kazuha", F, "ja-JP", "Japanese", "N"),
    _v("Tomoko", F, "ja-JP", "Japanese", "N"),
    _v("Zhiyu", F, "cmn-CN", "Chinese Mandarin", "SN"),
    _v("Hiujin", F, "yue-CN", "Cantonese", "N"),
    _v("Seoyeon", F, "ko-KR", "Korean", "SN"),
    _v("Jihye", F, "ko-KR", "Korean", "N", ok=False),
    # Arabic
    _v("Zeina", F, "arb", "Arabic", "S"),
    _v("Hala", F, "ar-AE", "Gulf Arabic", "N"),
    _v("Zayd", M, "ar-AE", "Gulf Arabic", "N"),
    # Northern and eastern Europe
    _v("Lotte", F, "nl-NL", "Dutch", "S"),
    _v("Ruben", M, "nl-NL", "Dutch", "S"),
    _v("Laura", F, "nl-NL", "Dutch", "N"),
    _v("Lisa", F, "nl-BE", "Belgian Dutch", "N"),
    _v("Tatyana", F, "ru-RU", "Russian", "S"),
    _v("Maxim", M, "ru-RU", "Russian", "S"),
    _v("Ewa", F, "pl-PL", "Polish", "S"),
    _v("Maja", F, "pl-PL", "Polish", "S"),
    _v("Jan", M, "pl-PL", "Polish", "S"),
    _v("Jacek", M, "pl-PL", "Polish", "S"),
    _v("Ola", F, "pl-PL", "Polish", "N"),
    _v("Astrid", F, "sv-SE", "Swedish", "S"),
    _v("Elin", F, "sv-SE", "Swedish", "N"),
    _v("Liv", F, "nb-NO", "Norwegian", "S"),
    _v("Ida", F, "nb-NO", "Norwegian", "N"),
    _v("Naja", F, "da-DK", "Danish", "S"),
    _v("Mads", M, "da-DK", "Danish", "S"),
    _v("Sofie", F, "da-DK", "Danish", "N"),
    _v("Suvi", F, "fi-FI", "Finnish", "N"),
    _v("Filiz", F, "tr-TR", "Turkish", "S"),
    _v("Burcu", F, "tr-TR", "Turkish", "N"),
    _v("Carmen", F, "ro-RO", "Romanian", "S"),
    _v("Gwyneth", F, "cy-GB", "Welsh", "S"),
    _v("Dora", F, "is-IS", "Icelandic", "S", name="Dóra"),
    _v("Karl", M, "is-IS", "Icelandic", "S"),
    _v("Arlet", F, "ca-ES", "Catalan", "N"),
    _v("Jitka", F, "cs-CZ", "Czech", "N"),
)

BY_ID: dict[str, VoiceInfo] = {v.id: v for v in VOICES}

# espeak-ng voice per language (the emulator speaks every Polly voice with espeak-ng);
# languages not listed use their first subtag, then English.
ESPEAK_LANGUAGES: dict[str, str] = {
    "en-US": "en-us",
    "en-GB": "en",
    "en-GB-WLS": "en",
    "en-AU": "en",
    "en-IN": "en",
    "en-NZ": "en",
    "en-ZA": "en",
    "en-IE": "en",
    "en-SG": "en",
    "es-ES": "es",
    "es-MX": "es-419",
    "es-US": "es-419",
    "pt-BR": "pt-br",
    "pt-PT": "pt",
    "cmn-CN": "cmn",
    "yue-CN": "yue",
    "arb": "ar",
    "ar-AE": "ar",
    "nb-NO": "nb",
}


def espeak_voice(voice: VoiceInfo, language: str | None = None) -> str:
    """The espeak-ng voice name for a Polly voice (female voices get espeak's ``+f3``)."""
    lang = language or voice.language
    base = ESPEAK_LANGUAGES.get(lang, lang.split("-")[0].lower())
    return base + ("+f3" if voice.gender == F else "")
