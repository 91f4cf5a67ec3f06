"""The CLI only parses, calls the library and prints: it reaches the engines through the
``audiobook.engines`` package (and its ``options`` values), never an engine's module,
and it calls functions instead of probing for them."""

from __future__ import annotations

import ast
import pkgutil
import re
from pathlib import Path

import audiobook.engines

CLI = Path(__file__).resolve().parent.parent / "audiobook" / "cli.py"
ALLOWED = {"audiobook.engines", "audiobook.engines.options"}
ENGINE_MODULES = {
    f"audiobook.engines.{m.name}" for m in pkgutil.iter_modules(audiobook.engines.__path__)
}


def _imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) for every module ``source`` imports, relative imports resolved, and
    ``from package import submodule`` counted as importing the submodule."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the audiobook package, where cli.py lives
                base = f"audiobook.{base}" if base else "audiobook"
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _engine_internals(source: str) -> list[tuple[int, str]]:
    """The imports of ``source`` that reach into an engine module (``polly``, ``local``,
    ...) other than ``audiobook.engines.options``."""
    forbidden = ENGINE_MODULES - ALLOWED
    return [
        (line, module)
        for line, module in _imported_modules(source)
        if ".".join(module.split(".")[:3]) in forbidden
    ]


def test_cli_imports_no_engine_internals():
    assert _engine_internals(CLI.read_text(encoding="utf-8")) == []


def test_the_check_sees_engine_imports():
    assert {"audiobook.engines.polly", "audiobook.engines.local"} <= ENGINE_MODULES
    for src in (
        "from .engines.polly import list_voices",
        "from .engines import local",
        "from .engines import list_voices, polly",
        "import audiobook.engines.polly",
        "from audiobook.engines.local import LocalEngine",
    ):
        assert _engine_internals(src), src
    for src in (
        "from .engines import list_tasks, list_voices",
        "from .engines.options import PollyOptions",
        "from . import engines",
        "from .estimate import estimate_book",
    ):
        assert _engine_internals(src) == [], src


def test_cli_does_not_probe_with_getattr_or_hasattr():
    source = CLI.read_text(encoding="utf-8")
    assert re.findall(r"\b(?:getattr|hasattr)\s*\(", source) == []
