"""The house rules that keep the engine seam declared, read from the source itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "audiobook"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _code(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_engine_abilities_are_declared_not_probed(path):
    """The pipeline reads ``engine.capabilities``; it never asks an engine object what
    attributes it happens to have."""
    probes = re.findall(r"\b(?:getattr|hasattr)\(\s*(?:self\.)?_?engine\b", _code(path))
    assert probes == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_signature_inspection_and_no_error_class_name_matching(path):
    code = _code(path)
    assert "inspect.signature" not in code, "engines take typed options, not checked kwargs"
    # Errors are told apart by their type (isinstance), never by their class name.
    assert not re.search(r"\bin\s+type\([^)]*\)\.__name__", code)
    assert not re.search(r"type\([^)]*\)\.__name__\s*(?:==|!=|\.(?:startswith|endswith))", code)


def test_rooms_stay_small():
    """pipeline.py is about the conversion itself; the scheduler, batch, captions and
    the engines have rooms of their own."""
    assert len(_code(PACKAGE / "pipeline.py").splitlines()) < 500
    for room in ("scheduler.py", "batch.py", "captions.py", "engines/__init__.py"):
        assert (PACKAGE / room).is_file(), room


def test_readme_promises_link_to_tests_that_exist():
    """Each test the README names as proof of a promise is there, in the file it names."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\[`(test_\w+)`\]\((tests/\w+\.py)\)", readme)
    assert len(links) >= 10
    for name, path in links:
        assert re.search(rf"^def {name}\(", _code(PACKAGE.parent / path), re.MULTILINE), (
            name,
            path,
        )
