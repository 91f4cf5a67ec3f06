"""The errors of audiobook, as a tree.

    AudiobookError                 base; ``expected=True`` means a user's mistake or bad input
     ├── InputError                a document we cannot read (names the file)
     │    ├── UnsupportedFormat    no ingestor takes this file
     │    ├── CorruptDocument      not a zip / not a PDF / broken beyond recovery
     │    ├── EncryptedDocument    wrong or missing password
     │    ├── NoTextError          nothing to speak (image-only, empty article)
     │    ├── FetchError           a URL that could not be fetched (HTTP error, timeout,
     │    │                        too large, too many redirects, not http/https)
     │    └── FeedCheckFailed      a podcast feed the directories would refuse (--check)
     ├── ConfigError               bad options (unknown voice, missing bucket, bad template)
     ├── EngineError               a speech engine failed
     │    ├── Throttled            over a rate quota (retryable)
     │    ├── TransientEngineError 5xx, lost connection, transient task failure (retryable)
     │    ├── TaskFailed           a synthesis task ended "failed" for a permanent reason
     │    └── RetriesExceeded      a retryable error kept happening
     ├── StateError                state store corrupt (use --reset-state) or locked,
     │                             its folder full, read-only or not writable, or no
     │                             store there for a read-only command (status, gc)
     └── FFmpegError               ffmpeg exited non-zero (carries its last stderr line)

    Terminated                     SIGTERM, raised like KeyboardInterrupt (not an
                                   AudiobookError: nothing may catch it on the way out)

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; after
Ctrl-C it exits 130, after SIGTERM 143 (see ``interrupt.py``).
"""

from __future__ import annotations

import os


class AudiobookError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, expected: bool = True) -> None:
        super().__init__(message)
        self.expected = expected


class InputError(AudiobookError):
    exit_code = 3

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnsupportedFormat(InputError):
    exit_code = 4


class CorruptDocument(InputError):
    exit_code = 5


class EncryptedDocument(InputError):
    exit_code = 6


class NoTextError(InputError):
    exit_code = 7


class FetchError(InputError):
    """A URL that could not be fetched; ``path`` is the URL."""

    exit_code = 11


class FeedCheckFailed(InputError):
    """``podcast --check``: the feed has problems (each printed on its own line)."""

    exit_code = 12


class ConfigError(AudiobookError):
    exit_code = 2


class EngineError(AudiobookError):
    exit_code = 8


class Throttled(EngineError):
    pass


class TransientEngineError(EngineError):
    pass


class TaskFailed(EngineError):
    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class RetriesExceeded(EngineError):
    def __init__(self, last: BaseException, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last}")
        self.last = last
        self.attempts = attempts


class StateError(AudiobookError):
    exit_code = 9


class FFmpegError(AudiobookError):
    exit_code = 10

    def __init__(self, message: str) -> None:
        super().__init__(message, expected=False)


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM): unwinds like ``KeyboardInterrupt``, so
    that every ``finally`` cleans up, and ends in exit status 143."""


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` (a message, or an exception) on one line: whitespace runs folded to one
    space; an exception with no message is named by its type; at most ``limit``
    characters."""
    line = " ".join(str(text).split())
    if not line:
        line = type(text).__name__ if isinstance(text, BaseException) else "unknown error"
    return line if limit is None else line[:limit]


# Errors worth another attempt; everything else is raised at once.
RETRYABLE: tuple[type[BaseException], ...] = (Throttled, TransientEngineError)
