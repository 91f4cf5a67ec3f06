"""Shared fixtures. Server fixtures (moto, the Polly emulator) live in tests/servers.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The suite speaks with espeak-ng unless a test asks for another engine: its tests are
# about the pipeline, and espeak-ng is a few hundred times faster than Piper here.
# tests/test_piper.py picks Piper (and `local`) explicitly.
os.environ.setdefault("AUDIOBOOK_ENGINE", "espeak")
# onnxruntime's telemetry off in tests that load it directly (the engine sets it too)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"

pytest_plugins = ["tests.servers", "tests.webserver"]


def corpus_path(*parts: str) -> Path:
    """A file of the shared corpus. Skips where the corpus is absent (a user's clone),
    but fails under CI=true, so that a wrong path never turns into silent skips."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"corpus file missing under CI: {path}")
        pytest.skip(f"shared corpus not present ({path}); it sits beside the repo in CI")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long end-to-end runs (marked ``slow``) first: with ``make test``'s workers
    (pytest-xdist) they start at once, and the short tests fill the other cores."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def corpus():
    """Call ``corpus("epub", "name.epub")`` to get a corpus file (see corpus_path)."""
    return corpus_path


@pytest.fixture
def temp_copy(tmp_path):
    """Copy a fixture into tmp_path so a test can change it freely."""

    def copy(src: Path) -> Path:
        dest = tmp_path / Path(src).name
        shutil.copyfile(src, dest)
        return dest

    return copy
