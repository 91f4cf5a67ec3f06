"""``polly_client``: the one place a Polly client for the CLI is built. No server, no
credentials."""

from __future__ import annotations

import pytest

from audiobook.engines.polly import polly_client
from audiobook.errors import ConfigError


def test_polly_client_makes_one_attempt():
    client = polly_client("us-east-1")
    assert client.meta.region_name == "us-east-1"
    assert client.meta.config.retries["total_max_attempts"] == 1


def test_polly_client_without_a_region_is_a_config_error(monkeypatch, tmp_path):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"^cannot reach Polly: .*\(set --region") as info:
        polly_client(None)
    assert "\n" not in str(info.value)
