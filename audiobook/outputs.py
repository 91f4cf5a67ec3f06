"""Where the output goes: checked before anything is paid for, and never at the cost of
a file we did not write.

    format_of(Path("x.mp3"))                    "mp3" (the format a name asks for, or None)
    check_output(out, fmt, inputs)              the name: its extension agrees with the
                                                format, and it is none of the inputs
    check_destination(out, fmt, names, chars)   the place: its folder exists and takes a
                                                file, a chapters folder is ours (and so
                                                is every file we will replace), room for
                                                the stitch, roughly

A chapters folder holds a manifest, ``.audiobook-manifest.json``, of the files we wrote
there. A folder that is not empty and has no manifest is not ours: it is refused. In a
folder of ours only the files the manifest lists are replaced or removed; the user's
files and subfolders beside them are left as they are.

    install(folder, staged, names)   move the chapter files in; our old ones that are not
                                     among them go; the manifest lists ``names``
    claim(folder, names)             add names to the manifest before writing them
                                     (captions beside the chapter files)
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from .config import FORMATS
from .errors import ConfigError
from .files import write_atomic

MANIFEST = ".audiobook-manifest.json"

# The extensions each format is written under ("chapters": a folder, no extension).
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "m4b": (".m4b", ".m4a", ".mp4"),
    "mp3": (".mp3",),
    "chapters": ("",),
    "epub": (".epub",),
}
# Names that say "some other kind of file": audio we do not write, and documents.
OTHER_EXTENSIONS = frozenset(
    {
        *(".aac", ".flac", ".ogg", ".oga", ".opus", ".wav", ".wma", ".aiff", ".webm", ".mka"),
        *(".pdf", ".html", ".htm", ".xhtml", ".md", ".markdown", ".txt"),
        *(".json", ".vtt"),
    }
)

# A lower bound of the stitched audio per billable character: fast speech (about 25
# characters a second) at the stitch's ~60 kbit/s. Measured: espeak-ng's M4B takes
# ~450 bytes a character. Less free space than this is clearly not enough.
MIN_BYTES_PER_CHAR = 250


def format_of(out: str | os.PathLike[str]) -> str | None:
    """The output format a file name asks for by its extension (``.m4b``, ``.m4a`` and
    ``.mp4`` are M4B, ``.mp3`` is MP3), or None."""
    suffix = Path(out).suffix.lower()
    if not suffix:
        return None
    for fmt, exts in EXTENSIONS.items():
        if suffix in exts:
            return fmt
    return None


def chapters_folder(out: str | os.PathLike[str]) -> Path:
    """The folder ``--format chapters`` writes for ``out``: ``out`` itself, or without
    an audio extension (``book.m4b`` -> ``book``; ``My.Book`` stays ``My.Book``)."""
    p = Path(out)
    return p.with_suffix("") if format_of(p) is not None else p


def _target(out: Path, fmt: str) -> Path:
    return chapters_folder(out) if fmt == "chapters" else out


def _same(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    out: str | os.PathLike[str], fmt: str, inputs: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """Refuse (ConfigError) an output name that disagrees with ``fmt`` or that is one of
    ``inputs`` (however spelled: relative, absolute, through a symlink or a hard link).
    Reads nothing and writes nothing."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    path = Path(out)
    target = _target(path, fmt)
    for src in inputs:
        if _same(target, Path(src)) or _same(path, Path(src)):
            raise ConfigError(f"{path}: is the input {os.fspath(src)}; give another output")
    suffix = path.suffix.lower()
    named = format_of(path)
    if fmt == "chapters":
        if named is not None or suffix in OTHER_EXTENSIONS:
            raise ConfigError(
                f"{path}: --format chapters writes a folder; give a name without {suffix}"
            )
    elif (named is not None and named != fmt) or suffix in OTHER_EXTENSIONS:
        hint = f" (or --format {named})" if named is not None else ""
        raise ConfigError(
            f"{path}: a {suffix} name for {fmt.upper()} audio; "
            f"use {', '.join(EXTENSIONS[fmt])}{hint}"
        )


def read_manifest(folder: Path) -> set[str] | None:
    """The names our manifest in ``folder`` lists, or None when there is none (or it is
    not one of ours). Only plain names in the folder itself count."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "audiobook":
        return None
    files = data.get("files")
    if not isinstance(files, list):
        return None
    return {n for n in files if isinstance(n, str) and _plain(n)}


def _plain(name: str) -> bool:
    return (
        name not in ("", ".", "..", MANIFEST)
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )


def _write_manifest(folder: Path, names: Iterable[str]) -> None:
    data = {"written_by": "audiobook", "version": 1, "files": sorted(names)}
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    write_atomic(folder / MANIFEST, text.encode("utf-8"), mode=0o644)


def owned_files(folder: Path) -> set[str]:
    """Our files in ``folder`` (the manifest's names; none for a missing or empty
    folder). ConfigError for a folder that holds anything and has no manifest of ours."""
    if not folder.exists():
        return set()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder")
    names = read_manifest(folder)
    if names is not None:
        return names
    try:
        empty = next(os.scandir(folder), None) is None
    except OSError as e:
        raise ConfigError(f"{folder}: cannot read the folder ({e.strerror or e})") from e
    if not empty:
        raise ConfigError(
            f"{folder}: the folder holds files audiobook did not write (no {MANIFEST}); "
            "give a new or empty folder"
        )
    return set()


def check_folder(folder: Path, names: Iterable[str] = ()) -> set[str]:
    """Our files in ``folder`` (``owned_files``), refusing (ConfigError) when one of
    ``names``, the files about to be written there, is a file we did not write."""
    ours = owned_files(folder)
    _refuse_foreign(folder, names, ours)
    return ours


def _refuse_foreign(folder: Path, names: Iterable[str], ours: set[str]) -> None:
    for name in names:
        if name not in ours and os.path.lexists(folder / name):
            raise ConfigError(
                f"{folder / name}: exists and was not written by audiobook; "
                "move it away or give another folder"
            )


def _probe(folder: Path, out: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".audiobook-probe.", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise ConfigError(f"{out}: cannot write in {folder} ({e.strerror or e})") from e


def check_destination(
    out: str | os.PathLike[str],
    fmt: str,
    names: Sequence[str] = (),
    billable_chars: int = 0,
) -> None:
    """Refuse (ConfigError) an output that cannot be written, before anything is paid:
    its folder is missing or takes no file; a file format's name is a folder; a chapters
    folder is not ours, or ``names`` (the files it will hold) would replace files we
    did not write; or the disk clearly lacks room for ``billable_chars`` of audio."""
    path = Path(out)
    target = _target(path, fmt)
    parent = target.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"{path}: folder {parent} does not exist")
    if fmt == "chapters":
        check_folder(target, names)
        if target.is_dir():
            _probe(target, path)
    elif target.is_dir():
        raise ConfigError(f"{path}: is a folder; give a file name for --format {fmt}")
    _probe(parent, path)  # the stitch writes its temp files beside the output
    need = billable_chars * MIN_BYTES_PER_CHAR
    if need:
        try:
            free = shutil.disk_usage(parent).free
        except OSError:
            return
        if free < need:
            raise ConfigError(
                f"{path}: not enough disk space in {parent} ({_mb(free)} free, the "
                f"audiobook needs about {_mb(need)} or more)"
            )


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def claim(folder: Path, names: Iterable[str]) -> None:
    """Add ``names`` to the manifest of ``folder`` (ours, existing) before writing
    them; ConfigError if one of them is a file we did not write."""
    wanted = [n for n in names if _plain(n)]
    ours = check_folder(folder, wanted)
    if not set(wanted) <= ours:
        _write_manifest(folder, ours | set(wanted))


def install(folder: Path, staged: Path, names: Sequence[str]) -> None:
    """Move the files ``names`` from the folder ``staged`` into ``folder``. A new folder
    arrives whole (``staged`` renamed, with its manifest). In a folder of ours, the
    manifest first lists old and new names (so that a crash leaves nothing of ours
    unlisted), the files move in one by one, our old files not among ``names`` are
    removed, and the manifest then lists ``names``. Nothing else is touched."""
    if not os.path.lexists(folder):
        _write_manifest(staged, names)
        os.replace(staged, folder)
        return
    ours = check_folder(folder, names)
    _write_manifest(folder, ours | set(names))
    for name in names:
        os.replace(staged / name, folder / name)
    for name in sorted(ours - set(names)):
        p = folder / name
        try:
            if stat.S_ISREG(p.lstat().st_mode):  # never a folder, never through a link
                p.unlink()
        except FileNotFoundError:
            pass
    _write_manifest(folder, names)
