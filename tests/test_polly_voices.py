"""The default Polly voice follows the engine kind: every default is a voice that supports
the engine it is sent to. Pure: no server, no credentials."""

from __future__ import annotations

import pytest

from audiobook.emulator.voices import BY_ID
from audiobook.engines.options import PollyOptions
from audiobook.engines.polly import (
    DEFAULT_VOICES,
    POLLY_ENGINES,
    PollyEngine,
    polly_voice_for,
)
from audiobook.errors import ConfigError


@pytest.mark.parametrize("polly_engine", POLLY_ENGINES)
@pytest.mark.parametrize("language", ["en", "en-US", "en_US", None])
def test_english_default_voice_supports_the_engine(polly_engine, language):
    voice = polly_voice_for(language, polly_engine)
    info = BY_ID[voice]
    assert polly_engine in info.engines
    assert info.language == "en-US"


def test_every_default_voice_supports_its_engine_in_the_emulator_table():
    assert set(DEFAULT_VOICES) == set(POLLY_ENGINES)
    for polly_engine, table in DEFAULT_VOICES.items():
        for tag, voice in table.items():
            assert voice in BY_ID, (tag, voice)
            assert polly_engine in BY_ID[voice].engines, (polly_engine, tag, voice)


def test_engine_built_for_long_form_picks_a_long_form_voice():
    engine = PollyEngine(PollyOptions(bucket="b", polly_engine="long-form", language="en-US"))
    assert "long-form" in BY_ID[engine.voice].engines
    assert engine.voice != polly_voice_for("en-US", "neural")  # Joanna has no long-form


def test_engine_kinds_get_different_voices_where_they_must():
    assert polly_voice_for("en-AU", "neural") == "Olivia"
    assert polly_voice_for("en-AU", "standard") == "Nicole"  # Olivia is not standard
    assert polly_voice_for("nl", "standard") == "Lotte"
    assert polly_voice_for("fr", "neural") == polly_voice_for("fr", "standard") == "Lea"


@pytest.mark.parametrize(
    ("language", "polly_engine"),
    [("fr-FR", "long-form"), ("fi", "standard"), ("xx", "neural"), ("ja", "generative")],
)
def test_no_known_voice_names_language_and_engine(language, polly_engine):
    with pytest.raises(ConfigError) as info:
        polly_voice_for(language, polly_engine)
    text = str(info.value)
    assert repr(language) in text and polly_engine in text and "--voice" in text
    with pytest.raises(ConfigError, match=polly_engine):
        PollyEngine(PollyOptions(bucket="b", polly_engine=polly_engine, language=language))


def test_unknown_engine_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="--polly-engine"):
        polly_voice_for("en", "turbo")


def test_an_explicit_voice_is_kept():
    engine = PollyEngine(PollyOptions(bucket="b", polly_engine="long-form", voice="Ruth"))
    assert engine.voice == "Ruth"
