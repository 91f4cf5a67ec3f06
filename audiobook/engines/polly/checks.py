"""What Polly accepts, checked locally before anything is billed: engine kinds, output
formats and their sample rates, speech-mark types, bucket/prefix/lexicon names, the SSML
tags each engine takes (POLLY.md sections 9 and 11), and the sync-or-async choice.

Pure: no AWS call, no boto3 import.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Sequence
from typing import Literal

from ...config import POLLY_SYNC_LIMITS
from ...errors import ConfigError

POLLY_ENGINES = ("standard", "neural", "long-form", "generative")
OUTPUT_FORMATS = ("mp3", "ogg_vorbis", "ogg_opus", "pcm")
MARK_TYPES = ("sentence", "word", "ssml", "viseme")
MODES = ("auto", "async", "sync")

# File extension of what ``fetch`` writes, per OutputFormat. pcm is wrapped in WAV.
EXTENSIONS = {"mp3": "mp3", "ogg_vorbis": "ogg", "ogg_opus": "opus", "pcm": "wav"}
# Valid sample rates per output format and path (POLLY.md section 9): SynthesizeSpeech
# (botocore model, SynthesizeSpeechInput.SampleRate) also takes 44100 and 48000 for mp3
# and ogg_vorbis; an asynchronous task (StartSpeechSynthesisTaskInput.SampleRate) takes
# 8000 to 24000 only.
SAMPLE_RATES = {
    "mp3": ("8000", "16000", "22050", "24000", "44100", "48000"),
    "ogg_vorbis": ("8000", "16000", "22050", "24000", "44100", "48000"),
    "ogg_opus": ("48000",),
    "pcm": ("8000", "16000"),
}
TASK_SAMPLE_RATES = {
    "mp3": ("8000", "16000", "22050", "24000"),
    "ogg_vorbis": ("8000", "16000", "22050", "24000"),
    "ogg_opus": ("48000",),
    "pcm": ("8000", "16000"),
}

_LEXICON_NAME = re.compile(r"^[0-9A-Za-z]{1,20}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[0-9a-zA-Z/!\-_.*'():;$@=+,?&]{0,700}$")


def pick_mode(requested: str, billable_chars: int, total_chars: int) -> Literal["sync", "async"]:
    """The path for one job: ``requested`` if it is sync/async; for ``auto``, sync when
    the job's whole text fits one SynthesizeSpeech request, async otherwise."""
    if requested not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, not {requested!r}")
    if requested == "sync":
        return "sync"
    if requested == "async":
        return "async"
    fits = (
        billable_chars <= POLLY_SYNC_LIMITS.max_billable
        and total_chars <= POLLY_SYNC_LIMITS.max_total
    )
    return "sync" if fits else "async"


def default_sample_rate(output_format: str, polly_engine: str) -> str:
    """The SampleRate Polly uses when none is asked for."""
    if output_format == "pcm":
        return "16000"
    if output_format == "ogg_opus":
        return "48000"
    return "22050" if polly_engine == "standard" else "24000"


def check_polly_engine(polly_engine: str) -> None:
    """ConfigError unless ``polly_engine`` is one of POLLY_ENGINES."""
    if polly_engine not in POLLY_ENGINES:
        raise ConfigError(
            f"--polly-engine must be one of {', '.join(POLLY_ENGINES)}, not {polly_engine!r}"
        )


def check_options(
    *,
    bucket: str,
    prefix: str,
    polly_engine: str,
    voice: str,
    output_format: str,
    sample_rate: str | None,
    lexicons: Sequence[str],
    marks: Sequence[str],
    mode: str = "async",
) -> None:
    """The engine's options against what Polly accepts on the ``mode`` path (sync or
    async; no AWS call); ConfigError on one line naming the option at fault."""
    if not bucket:
        raise ConfigError("--bucket is required for --engine polly")
    if not _BUCKET_NAME.match(bucket):
        raise ConfigError(f"--bucket {bucket!r} is not a valid S3 bucket name")
    if not _PREFIX.match(prefix):
        raise ConfigError(f"--prefix {prefix!r} has characters Polly does not accept")
    check_polly_engine(polly_engine)
    if not voice:
        raise ConfigError("--voice is required for --engine polly (see `audiobook voices`)")
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(
            f"output format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}"
        )
    if sample_rate and sample_rate not in SAMPLE_RATES[output_format]:
        raise ConfigError(
            f"--sample-rate {sample_rate} is not valid for {output_format} "
            f"(valid: {', '.join(SAMPLE_RATES[output_format])})"
        )
    task_rates = TASK_SAMPLE_RATES[output_format]
    if sample_rate and mode != "sync" and sample_rate not in task_rates:
        raise ConfigError(
            f"--sample-rate {sample_rate}: Polly's asynchronous tasks take "
            f"{', '.join(task_rates)} for {output_format}; {sample_rate} is for "
            f"SynthesizeSpeech only (--mode sync, up to 3,000 characters)"
        )
    if len(lexicons) > 5:
        raise ConfigError(f"at most 5 lexicons per request, got {len(lexicons)}")
    for name in lexicons:
        if not _LEXICON_NAME.match(name):
            raise ConfigError(f"--lexicon {name!r} is not a valid lexicon name")
    for m in marks:
        if m not in MARK_TYPES:
            raise ConfigError(
                f"--marks: unknown speech mark type {m!r} (use {', '.join(MARK_TYPES)})"
            )
    if marks and polly_engine == "generative":
        raise ConfigError("--marks: the generative engine produces no speech marks")


_SSE_HEADER = "s3:x-amz-server-side-encryption"


def denies_plain_put(policy: str, bucket: str, key: str) -> str | None:
    """The Sid ("" when it has none) of the first Deny statement of a bucket policy
    (JSON) that refuses ``s3:PutObject`` of ``key`` to a request without an
    ``x-amz-server-side-encryption`` header, as Polly's writes are; None if none does.
    That is a ``Null`` condition on the header (a ``StringNotEquals`` one does not match
    a request without it)."""
    try:
        doc = json.loads(policy)
    except ValueError:
        return None
    stmts = doc.get("Statement", []) if isinstance(doc, dict) else []
    for st in stmts if isinstance(stmts, list) else [stmts]:
        if not isinstance(st, dict) or st.get("Effect") != "Deny":
            continue
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(fnmatch.fnmatchcase("s3:PutObject", str(a)) for a in actions):
            continue
        res = st.get("Resource", [])
        res = [res] if isinstance(res, str) else res
        if not any(fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}/{key}", str(r)) for r in res):
            continue
        cond = st.get("Condition") or {}
        null = {k.lower(): v for k, v in (cond.get("Null") or {}).items()}
        if str(null.get(_SSE_HEADER, "")).lower() == "true":
            return str(st.get("Sid") or "")
    return None


def same_kms_key(have: str, want: str) -> bool:
    """KMS key ids match by full ARN, key id, or alias."""
    if not have or not want:
        return False
    if have == want:
        return True

    def tail(s: str) -> str:
        return s.split(":key/")[-1].split(":")[-1]

    return tail(have) == tail(want)


# --------------------------------------------------------------------------- SSML

# SSML tags (and attributes) Polly rejects, per engine (POLLY.md section 11).
_NEVER = {"audio", "lexicon", "lookup", "voice"}
_KNOWN = {
    "speak",
    "break",
    "lang",
    "p",
    "s",
    "sub",
    "w",
    "emphasis",
    "prosody",
    "mark",
    "phoneme",
    "say-as",
    "amazon:effect",
    "amazon:auto-breaths",
    "amazon:domain",
    "amazon:breath",
    "amazon:max-duration",
}
_NOT_NEURAL_LIKE = {"emphasis", "amazon:auto-breaths", "amazon:breath", "amazon:max-duration"}
_TAG = re.compile(r"<\s*([A-Za-z_][\w:.\-]*)((?:\s+[^<>]*?)?)\s*/?\s*>")
_ATTR = re.compile(r"([\w:.\-]+)\s*=\s*(\"[^\"]*\"|'[^']*')")


# The newscaster style: Matthew, Joanna, Lupe and Amy, neural only [D newscaster-tag.html].
NEWS_VOICES = ("Matthew", "Joanna", "Lupe", "Amy")


def unsupported_ssml(ssml: str, polly_engine: str, voice: str | None = None) -> str | None:
    """The first tag (with the attribute at fault, if any) that the given Polly engine
    (and ``voice``, when given) rejects, as it would be written; None when everything
    is supported. Comments and CDATA are not expected (the renderer escapes all text)."""
    problem = ssml_problem(ssml, polly_engine, voice)
    return problem[0] if problem else None


def ssml_problem(ssml: str, polly_engine: str, voice: str | None = None) -> tuple[str, str] | None:
    """``(shown, needle)`` for the first tag the engine rejects: the tag as written
    (with the attribute at fault) and what to look for in a template's source to find
    the line that wrote it. The rules are AWS's table of supported tags per engine
    (supportedtags.html; POLLY.md section 11): <prosody pitch> on none but standard
    (prosody-tag.html), emphasis, breaths and max-duration on standard only, drc not on
    generative, the news style on neural only and for NEWS_VOICES; plus limits.md
    (<break> at most 10 s, prosody rate at least -80%)."""
    for m in _TAG.finditer(ssml):
        tag = m.group(1).lower()
        attrs = {a.lower(): v[1:-1] for a, v in _ATTR.findall(m.group(2) or "")}
        shown = f"<{m.group(1)}>"
        needle = f"<{m.group(1)}"
        if tag in _NEVER or tag not in _KNOWN:
            return shown, needle
        if tag == "break":
            t = attrs.get("time", "")
            mt = re.fullmatch(r"\s*([\d.]+)\s*(ms|s)\s*", t)
            if mt and float(mt.group(1)) * (0.001 if mt.group(2) == "ms" else 1.0) > 10.0:
                return f'<break time="{t}"> (over 10 seconds)', "<break"
        if tag == "prosody":
            rate = attrs.get("rate", "").strip()
            mr = re.fullmatch(r"([+-]?)([\d.]+)%", rate)
            if mr:
                pct = float(mr.group(2))
                if (mr.group(1) == "-" and pct > 80) or (not mr.group(1) and pct < 20):
                    return f'<prosody rate="{rate}"> (slower than -80%)', "rate="
            if polly_engine != "standard" and "amazon:max-duration" in attrs:
                return "<prosody amazon:max-duration>", "amazon:max-duration"
            if polly_engine != "standard" and "pitch" in attrs:
                return f'<prosody pitch="{attrs["pitch"]}">', "pitch="
        if polly_engine == "standard":
            if tag == "amazon:domain":
                return f'<amazon:domain name="{attrs.get("name", "")}">', "<amazon:domain"
            continue
        if tag in _NOT_NEURAL_LIKE:
            return shown, needle
        if tag == "amazon:effect":
            name = attrs.get("name", "")
            if name != "drc" or polly_engine == "generative" or len(attrs) > 1:
                extra = "".join(f' {a}="{v}"' for a, v in attrs.items())
                return f"<amazon:effect{extra}>", "<amazon:effect"
        if tag == "amazon:domain":
            name = attrs.get("name", "")
            if polly_engine != "neural" or (voice is not None and voice not in NEWS_VOICES):
                return f'<amazon:domain name="{name}">', "<amazon:domain"
    return None
