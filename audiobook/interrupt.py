"""Stopping on a signal: Ctrl-C (SIGINT) and SIGTERM end a run the same way.

The main thread turns the first signal into an exception (``KeyboardInterrupt`` for
SIGINT, ``errors.Terminated`` for SIGTERM), so that every ``finally`` runs: temp files
and folders are removed, worker processes stopped, the state store closed. What was
paid for is already recorded (intents and task ids are written as they happen), so
the next run of the same command resumes. Signals that come while that cleanup runs
are held off; a third one leaves at once.

Child processes never decide: the local engine's workers start with SIGINT and SIGTERM
blocked (``blocked_signals`` around their start) and ignore both from their first line
of our code on (``ignore_signals``), so a Ctrl-C in a terminal, which reaches the whole
process group, prints nothing from them; the parent stops them.

    with handle_signals():     # main thread; a no-op in any other thread
        run()                  # SIGINT -> KeyboardInterrupt, SIGTERM -> Terminated
    exit_code(exc)             # 130 or 143
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import Terminated

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
MESSAGES: dict[int, str] = {
    signal.SIGINT: "interrupted; progress is saved, run the same command again to resume",
    signal.SIGTERM: "terminated; progress is saved, run the same command again to resume",
}
_HAVE_SIGMASK = hasattr(signal, "pthread_sigmask")


class _State:
    first: int | None = None  # the signal being handled (0: the process is leaving)
    repeats = 0  # signals that came while it was handled
    deferring = 0  # blocked_signals blocks open in the main thread
    pending: int | None = None  # a signal that came during them, handled at their end


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _State.deferring and _State.first is None:
        if _State.pending is None:
            _State.pending = signum
        return
    if _State.first is not None:
        _State.repeats += 1
        if _State.repeats >= 2:  # asked three times: leave now, the next run sweeps up
            sys.stderr.write(f"audiobook: error: {MESSAGES[signum]}\n")
            sys.stderr.flush()
            os._exit(EXIT_CODES[signum])
        return
    _State.first = signum
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextmanager
def handle_signals() -> Iterator[None]:
    """SIGINT and SIGTERM as exceptions in the main thread while the block runs (the
    handlers before it are put back after it). Elsewhere than in the main thread,
    nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in STOP_SIGNALS}
    _State.first, _State.repeats, _State.pending = None, 0, None
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def install() -> None:
    """Handle SIGINT and SIGTERM for the rest of the process (the command line's entry
    point, before anything slow happens)."""
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, _on_signal)


def hold_off() -> None:
    """The process is on its way out (its command done, or its line printed): SIGINT
    and SIGTERM are ignored from now on. (The interpreter's own exit puts the default
    action back for handled signals, which would end a finished run as killed.)"""
    if _State.first is None:
        _State.first = 0
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def exit_code(exc: BaseException) -> int:
    """The exit status of a run stopped by ``exc``: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if isinstance(exc, Terminated) else 130


def message(exc: BaseException) -> str:
    return MESSAGES[signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT]


@contextmanager
def blocked_signals() -> Iterator[None]:
    """SIGINT and SIGTERM blocked in the calling thread for the block: a process
    started in it inherits the mask, so a signal that comes before the child sets up
    its own handling waits (and is dropped by ``ignore_signals``).

    In the main thread the signals' handling also waits for the end of the block: the
    kernel gives a signal this thread blocks to another thread, and Python would still
    run its handler here, in the middle of the block (a child's start-up data half
    written, and the child's traceback on the terminal)."""
    main = threading.current_thread() is threading.main_thread()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS) if _HAVE_SIGMASK else None
    if main:
        _State.deferring += 1
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if main:
            _State.deferring -= 1
            if not _State.deferring and _State.pending is not None:
                signum, _State.pending = _State.pending, None
                _on_signal(signum, None)


def ignore_signals() -> None:
    """In a child process: SIGINT and SIGTERM ignored (the parent decides when the
    child stops), then unblocked (a pending one is dropped)."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if _HAVE_SIGMASK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
