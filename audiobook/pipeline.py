"""The pipeline: a document (or a Book) in, an audiobook out, paying for each chunk once.

    read_book ─> render_book ─> chunk_rendered ─> synthesize ─> stitch ─> captions
    (ingest/)     (ssml.py)       (chunk.py)      (scheduler.py,  (stitch.py) (captions.py)
                                                   state.py, engines/)

The synthesis stage (``synthesis.synthesize``) brings each chunk's audio into the
content-addressed cache: reused, resumed, recovered or submitted (``scheduler.py``
drives the tasks). The book is rendered once and chunked once per conversion
(``synthesis.plan_chunks``).

Runs at once on one store share a book's chunks (claims, ``state.LeaseOwner``): each is
paid for once. Into one output, the later run waits for the earlier one, then finds the
book up to date: two runs never stitch into one output at once.

Library entry points:

``convert(path, out, opts, hooks=None) -> ConvertResult``
    Read a document (a file, or an http(s) URL) and convert it. A book whose source,
    options and output are unchanged since its last successful run does nothing
    (``result.skipped``), decided before any engine is made: for a file, its bytes are
    the source; for a URL, the Book read from the page (fetched into the state folder's
    conditional cache, ``web/``, so an unchanged page is a 304 and costs no download).

``convert_book(book, out, opts, hooks=None) -> ConvertResult``
    Convert a Book already in memory (the podcast command reads articles itself). Chunks
    are looked up in the same content-addressed cache, so re-running with the same text
    synthesizes nothing; the stitch is redone unless the chunk list, options and output
    are unchanged. ``out`` is the audio file (or, for ``fmt="chapters"``, a folder).
    Example::

        from audiobook import ConvertOptions, convert_book
        result = convert_book(book, Path("feed/ep1.m4b"), ConvertOptions(fmt="m4b"))
        result.outputs        # (Path("feed/ep1.m4b"),)
        result.duration       # seconds
        result.chapter_times  # ((title, start_s, end_s), ...)

Both accept keyword-only ``store=`` (a shared state store, ``StateBackend``; else one is opened in
``state_dir``, default the user's), ``limiters=`` (shared ``Limiters``, so books
converted in parallel stay inside one Polly quota) and ``engine=`` (an Engine instance,
e.g. ``FakeEngine`` in tests; not closed by us).

Progress goes through ``Hooks`` (subclass it; every method is optional).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from . import engines
from .captions import caption_kind, write_run_captions
from .config import FORMATS
from .engines.base import Engine
from .errors import ConfigError, InputError, StateError
from .files import sweep_stale
from .hooks import ConvertResult, Hooks, Watchdog, doing, watching
from .ingest import read_book
from .keys import book_sha256, content_key, file_sha256
from .model import Book
from .options import ConvertOptions
from .outputs import check_destination, check_output, claim
from .scheduler import Limiters
from .ssml import billable_chars
from .state import LeaseHolder, LeaseOwner, open_state
from .statebase import StateBackend
from .stitch import ChapterAudio, chapter_filenames, stitch
from .synthesis import plan_chunks, synthesize


def default_output(path: Path, fmt: str) -> Path:
    """Beside the input: book.epub -> book.m4b / book.mp3 / book/ (chapters) /
    book.read-along.epub."""
    if fmt == "epub":
        return path.with_name(f"{path.stem}.read-along.epub")
    return path.with_suffix("" if fmt == "chapters" else f".{fmt}")


def _outputs_fingerprint(outputs: list[Path]) -> tuple[int, float] | None:
    try:
        stats = [p.stat() for p in outputs]
    except OSError:
        return None
    return sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0)


def _up_to_date(
    store: StateBackend, source_id: str, source_hash: str, options_hash: str, out: Path
) -> list[Path] | None:
    """The outputs of the book's last run, if that run was of this source with these
    options into ``out`` and its outputs are still as it left them; else None."""
    row = store.book(source_id)
    if (
        row is None
        or row.status != "done"
        or row.source_hash != source_hash
        or row.options_hash != options_hash
        or row.out_path != os.fspath(out.resolve())
        or not row.outputs
    ):
        return None
    outputs = [Path(p) for p in row.outputs]
    fp = _outputs_fingerprint(outputs)
    if fp is None or fp[0] != row.output_size or abs(fp[1] - (row.output_mtime or 0)) > 1e-6:
        return None
    return outputs


def _sweep(out: Path, store: StateBackend) -> None:
    """Remove what runs that were killed left behind: temp files and folders beside
    the output, in the audio cache and in the temp folder (of processes now gone)."""
    for folder, depth in (
        (out.absolute().parent, 0),
        (out, 0),  # a folder of chapters
        (store.cache_dir, 1),
        (Path(tempfile.gettempdir()), 0),
    ):
        sweep_stale(folder, depth=depth)


@contextmanager
def _store(
    store: StateBackend | None, state_dir: str | os.PathLike[str] | None
) -> Iterator[StateBackend]:
    """The caller's store, or one opened in ``state_dir`` for the call and closed after."""
    if store is not None:
        yield store
        return
    own = open_state(state_dir)
    try:
        yield own
    finally:
        own.close()


def convert(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    opts: ConvertOptions | None = None,
    hooks: Hooks | None = None,
    *,
    store: StateBackend | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    limiters: Limiters | None = None,
    engine: Engine | None = None,
) -> ConvertResult:
    """Convert the document at ``path`` into ``out`` (default: beside it, with the
    format's extension; for a URL, its title's words in the current folder). Does
    nothing when source, options and output are unchanged."""
    from .fetch import is_url  # httpx only where a URL may come

    opts = opts or ConvertOptions()
    hooks = hooks or Hooks()
    if opts.fmt not in FORMATS:
        raise ConfigError(f"unknown format {opts.fmt!r} (choose {', '.join(FORMATS)})")
    opts.delivery()  # a profile the format cannot take fails before anything is read
    if is_url(path):
        return _convert_url(
            os.fspath(path),
            out,
            opts,
            hooks,
            store=store,
            state_dir=state_dir,
            limiters=limiters,
            engine=engine,
        )
    src = Path(path)
    if not src.exists():
        raise InputError(src, "no such file")
    if src.is_dir():
        raise InputError(src, "is a folder, not a document")
    dest = Path(out) if out is not None else default_output(src, opts.fmt)
    check_output(dest, opts.fmt, [src])  # before reading, before paying
    with _store(store, state_dir) as db, watching(hooks) as hooks:
        t0 = time.monotonic()
        _sweep(dest, db)
        doing(hooks, f"waiting for {src.name} to be read")
        try:
            source_hash = file_sha256(src)
        except OSError as e:
            raise InputError(src, f"cannot read ({e.strerror})") from e
        source_id = os.fspath(src.resolve())
        options_hash = opts.fingerprint()
        if not opts.force:
            outputs = _up_to_date(db, source_id, source_hash, options_hash, dest)
            if outputs is not None:
                row = db.book(source_id)
                result = ConvertResult(
                    source=os.fspath(src),
                    outputs=tuple(outputs),
                    title=row.title if row else "",
                    skipped=True,
                    elapsed=time.monotonic() - t0,
                )
                hooks.on_done(result)
                return result
        check_destination(dest, opts.fmt)
        book = read_book(src, opts.ingest)
        return _convert(
            book,
            dest,
            opts,
            hooks,
            store=db,
            limiters=limiters,
            engine=engine,
            source_id=source_id,
            source_hash=source_hash,
            t0=t0,
            source=os.fspath(src),
        )


def _convert_url(
    url: str,
    out: str | os.PathLike[str] | None,
    opts: ConvertOptions,
    hooks: Hooks,
    *,
    store: StateBackend | None,
    state_dir: str | os.PathLike[str] | None,
    limiters: Limiters | None,
    engine: Engine | None,
) -> ConvertResult:
    """``convert`` of an http(s) URL: the page is the source, up to date as a file is,
    by the hash of the Book read from it (``keys.book_sha256``)."""
    from .fetch import CACHE_FOLDER
    from .readinglist import output_name, read_document

    with _store(store, state_dir) as db, watching(hooks) as watched:
        t0 = time.monotonic()
        doing(watched, f"waiting for {url} to be fetched and read")
        book = read_document(url, opts.ingest, fetch_dir=db.dir / CACHE_FOLDER)
        dest = Path(out) if out is not None else output_name(book, opts.fmt)
        check_output(dest, opts.fmt, [])
        _sweep(dest, db)
        source_id = book.source or url
        source_hash = book_sha256(book)
        if not opts.force:
            outputs = _up_to_date(db, source_id, source_hash, opts.fingerprint(), dest)
            if outputs is not None:
                return _skipped(url, outputs, book, 0, watched, t0)
        check_destination(dest, opts.fmt)
        return _convert(
            book,
            dest,
            opts,
            watched,
            store=db,
            limiters=limiters,
            engine=engine,
            source_id=source_id,
            source_hash=source_hash,
            t0=t0,
            source=url,
        )


def convert_book(
    book: Book,
    out: str | os.PathLike[str],
    opts: ConvertOptions | None = None,
    hooks: Hooks | None = None,
    *,
    store: StateBackend | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    limiters: Limiters | None = None,
    engine: Engine | None = None,
) -> ConvertResult:
    """Convert a Book in memory into ``out`` (see the module docstring). The book is
    known to the state store by ``book.source`` (or its title when that is empty)."""
    opts = opts or ConvertOptions()
    hooks = hooks or Hooks()
    if opts.fmt not in FORMATS:
        raise ConfigError(f"unknown format {opts.fmt!r} (choose {', '.join(FORMATS)})")
    opts.delivery()
    check_output(out, opts.fmt, [book.source] if book.source else [])
    with _store(store, state_dir) as db, watching(hooks) as hooks:
        _sweep(Path(out), db)
        source_id = book.source or f"book:{book.title}"
        return _convert(
            book,
            Path(out),
            opts,
            hooks,
            store=db,
            limiters=limiters,
            engine=engine,
            source_id=source_id,
            source_hash=None,
            t0=time.monotonic(),
            source=source_id,
        )


def _stitched(hooks: Hooks) -> str:
    done = hooks.stitched if isinstance(hooks, Watchdog) else 0.0
    if done == 0:
        return "measuring the pieces"
    return f"{done:.0%} encoded" if done < 0.97 else "joining the parts"


def _convert(
    book: Book,
    out: Path,
    opts: ConvertOptions,
    hooks: Hooks,
    *,
    store: StateBackend,
    limiters: Limiters | None,
    engine: Engine | None,
    source_id: str,
    source_hash: str | None,
    t0: float,
    source: str,
) -> ConvertResult:
    hooks.on_book(book)
    for w in book.warnings:
        hooks.on_warning(w)
    doing(hooks, f"waiting for {book.title or source!r} to be cut into pieces")
    own_engine = engine is None
    engine = engine or engines.make_engine(
        opts.engine,
        opts.engine_options,
        voice=opts.voice,
        language=book.language,
        workers=opts.config.workers,
    )
    claims = ExitStack()
    try:
        options_hash = opts.fingerprint()
        chunks = plan_chunks(book, engine, opts.render, hooks, opts.casting(book))
        if source_hash is None:  # a Book from memory: its content is its chunk keys
            keys = [content_key(c, engine, opts.render.template) for c in chunks]
            source_hash = hashlib.sha256("\n".join(keys).encode()).hexdigest()
            if not opts.force:
                outputs = _up_to_date(store, source_id, source_hash, options_hash, out)
                if outputs is not None:
                    return _skipped(source, outputs, book, len(keys), hooks, t0)
        # Everything about the output that needs no synthesis, before the first paid call.
        profile = opts.delivery()
        names = chapter_filenames([ch.title for ch in book.chapters], profile.chapter_ext)
        caps = engine.capabilities
        if opts.fmt == "epub" and not caps.marks:
            raise ConfigError(
                f"--format epub needs the {engine.name} engine's timings: "
                "ask for speech marks (--marks sentence, or sentence,word)"
            )
        kind = caption_kind(opts.captions, caps.marks, caps.marks_included)
        if kind:
            names += [str(Path(n).with_suffix(f".{kind}")) for n in names]
        chars = sum(billable_chars(c.ssml) for c in chunks)
        check_destination(out, opts.fmt, names if opts.fmt == "chapters" else (), chars)
        owner = claims.enter_context(LeaseOwner(store))

        def note(holder: LeaseHolder, what: str) -> None:
            hooks.on_warning(f"another run is converting {source} ({holder.where()}){what}")

        if owner.claim_output(
            out.resolve(), source_id, lambda h: note(h, f" into {out}; waiting for it")
        ):
            outputs = _up_to_date(store, source_id, source_hash, options_hash, out)
            if outputs is not None and not opts.force:  # it made the output meanwhile
                return _skipped(source, outputs, book, len(chunks), hooks, t0)
        elif others := store.book_holders(source_id, owner):
            note(others[0], "; following its work")
        book_id = store.upsert_book(
            source_id, source_hash="", options_hash="", title=book.title, status="running"
        )
        run_id = store.start_run(book_id)
        try:
            syn = synthesize(
                book,
                opts,
                hooks,
                store=store,
                engine=engine,
                limiters=limiters,
                book_id=book_id,
                chunks=chunks,
                owner=owner,
            )
            if own_engine:  # its workers' memory is the stitch's now
                engine.close()
            chapters = [
                ChapterAudio(ch.title, tuple(ps)) for ch, ps in zip(book.chapters, syn.pieces)
            ]
            doing(hooks, lambda: f"waiting for the stitch of {out.name} ({_stitched(hooks)})")
            stitched = stitch(
                book,
                chapters,
                out,
                fmt=opts.fmt,
                on_progress=hooks.on_stitch,
                marks=syn.marks,
                words=opts.words,
                profile=profile,
            )
            if opts.fmt == "chapters" and kind and syn.marks is not None:  # captions: ours
                files = [Path(p) for p in stitched.outputs]
                claim(files[0].parent, [p.with_suffix(f".{kind}").name for p in files])
            doing(hooks, f"waiting for the captions of {out.name}")
            files = [Path(p) for p in stitched.outputs]
            captions = write_run_captions(
                syn.pieces,
                syn.marks if kind else None,
                files,
                out,
                opts.fmt,
                opts.captions,
                stitched.chapters,
                stitched.piece_starts,
                profile.lead_in,
            )
        except BaseException as e:
            # What was paid for is in the chunk rows; the run keeps only why it stopped.
            # A store that cannot take these writes (full, read-only) does not hide why.
            with contextlib.suppress(StateError):
                store.finish_book(book_id, status="failed")
                store.finish_run(run_id, status="failed", error=str(e)[:500] or type(e).__name__)
            raise
        outputs = [Path(p) for p in stitched.outputs] + captions
        fp = _outputs_fingerprint(outputs) or (0, 0.0)
        store.finish_book(
            book_id,
            status="done",
            out_path=out.resolve(),
            outputs=[p.resolve() for p in outputs],
            output_size=fp[0],
            output_mtime=fp[1],
            source_hash=source_hash,
            options_hash=options_hash,
        )
        store.finish_run(
            run_id,
            status="done",
            chunks_total=len(syn.chunks),
            chunks_cached=syn.cached,
            chunks_submitted=syn.submitted,
            billed_chars=syn.billed_chars,
        )
        result = ConvertResult(
            source=source,
            outputs=tuple(outputs),
            title=book.title,
            chapters=len(book.chapters),
            duration=float(stitched.duration),
            chapter_times=stitched.chapters,
            chunks_total=len(syn.chunks),
            chunks_cached=syn.cached,
            chunks_resumed=syn.resumed,
            chunks_submitted=syn.submitted,
            billed_chars=syn.billed_chars,
            warnings=book.warnings,
            elapsed=time.monotonic() - t0,
        )
        hooks.on_done(result)
        return result
    finally:
        claims.close()
        if own_engine:
            engine.close()


def _skipped(
    source: str, outputs: list[Path], book: Book, n_chunks: int, hooks: Hooks, t0: float
) -> ConvertResult:
    """The result of a conversion found up to date."""
    result = ConvertResult(
        source=source,
        outputs=tuple(outputs),
        title=book.title,
        chapters=len(book.chapters),
        chunks_total=n_chunks,
        chunks_cached=n_chunks,
        skipped=True,
        warnings=book.warnings,
        elapsed=time.monotonic() - t0,
    )
    hooks.on_done(result)
    return result
