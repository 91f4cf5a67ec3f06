"""audiobook: EPUB, PDF, HTML, Markdown and text into chapterized audiobooks.

The public API, importable from here (loaded on first use, so that ``import audiobook``
stays cheap)::

    from audiobook import convert, ConvertOptions
    result = convert("novel.epub", "novel.m4b", ConvertOptions(fmt="m4b"))

Stages: ``read_book`` (ingest) -> ``render_chapter`` / ``chunk_book`` (SSML) ->
``synthesize`` (engines, state store, cache) -> ``stitch`` (ffmpeg).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # document model
    "Book": "model",
    "Chapter": "model",
    "Block": "model",
    "Chunk": "model",
    "Cover": "model",
    # configuration
    "PipelineConfig": "config",
    "RenderOptions": "config",
    "EngineLimits": "config",
    "IngestOptions": "ingest",
    # errors
    "AudiobookError": "errors",
    "InputError": "errors",
    "UnsupportedFormat": "errors",
    "CorruptDocument": "errors",
    "EncryptedDocument": "errors",
    "NoTextError": "errors",
    "ConfigError": "errors",
    "EngineError": "errors",
    "Throttled": "errors",
    "TransientEngineError": "errors",
    "TaskFailed": "errors",
    "RetriesExceeded": "errors",
    "StateError": "errors",
    "FFmpegError": "errors",
    "FetchError": "errors",
    "FeedCheckFailed": "errors",
    # the web and podcasts
    "Fetcher": "fetch",
    "FetchConfig": "fetch",
    "read_document": "readinglist",
    "build_episodes": "podcast",
    "PodcastOptions": "podcast",
    "check_feed": "feedcheck",
    # stages
    "read_book": "ingest",
    "render_chapter": "ssml",
    "chunk_book": "chunk",
    "stitch": "stitch",
    "ChapterAudio": "stitch",
    "StitchResult": "stitch",
    "estimate": "estimate",
    # pipeline
    "convert": "pipeline",
    "convert_book": "pipeline",
    "preview": "synthesis",
    "RunPlan": "synthesis",
    "synthesize": "synthesis",
    "batch": "batch",
    "ConvertOptions": "options",
    "ConvertResult": "hooks",
    "Hooks": "hooks",
    "Limiters": "scheduler",
    "make_engine": "engines",
    "LocalOptions": "engines.options",
    "PollyOptions": "engines.options",
    # state
    "StateStore": "state",
    "StateBackend": "statebase",
    "open_state": "state",
    "default_state_dir": "state",
    # engines
    "Engine": "engines.base",
    "TaskRef": "engines.base",
    "TaskState": "engines.base",
    "LocalEngine": "engines.local",
    "PollyEngine": "engines.polly",
    "FakeEngine": "engines.fake",
    "TokenBucket": "ratelimit",
}

__all__ = [
    "AudiobookError",
    "Block",
    "Book",
    "Chapter",
    "ChapterAudio",
    "Chunk",
    "ConfigError",
    "ConvertOptions",
    "ConvertResult",
    "CorruptDocument",
    "Cover",
    "EncryptedDocument",
    "Engine",
    "EngineError",
    "EngineLimits",
    "FFmpegError",
    "FakeEngine",
    "FeedCheckFailed",
    "FetchConfig",
    "FetchError",
    "Fetcher",
    "Hooks",
    "IngestOptions",
    "InputError",
    "Limiters",
    "LocalEngine",
    "LocalOptions",
    "NoTextError",
    "PipelineConfig",
    "PodcastOptions",
    "PollyEngine",
    "PollyOptions",
    "RenderOptions",
    "RetriesExceeded",
    "RunPlan",
    "StateBackend",
    "StateError",
    "StateStore",
    "StitchResult",
    "TaskFailed",
    "TaskRef",
    "TaskState",
    "Throttled",
    "TokenBucket",
    "TransientEngineError",
    "UnsupportedFormat",
    "batch",
    "build_episodes",
    "check_feed",
    "chunk_book",
    "convert",
    "convert_book",
    "default_state_dir",
    "estimate",
    "make_engine",
    "open_state",
    "preview",
    "read_book",
    "read_document",
    "render_chapter",
    "stitch",
    "synthesize",
]


assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'audiobook' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
