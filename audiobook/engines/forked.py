"""One piece of synthesis in a forked child, for the offline engines' determinism: the
child starts from its parent's warmed-up state, whatever the parent did before.

    outcome = run_forked(lambda: str(synthesize()), lock=engine_lock)
    if outcome.ok:
        samples = int(outcome.text)

The child reports through a pipe ("ok" and what the work returned, or the error on one
line), dies with the process that forked it (PR_SET_PDEATHSIG on Linux) and is waited
for; it leaves without running the parent's exit handlers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What a forked child reported: ``kind`` is "ok" (``text`` is what the work
    returned), a word of ``classify``'s for an error (``text`` the message on one line,
    ``error`` the error's class name), or "" when it died without a word (``status``,
    the wait status, says how)."""

    kind: str
    text: str
    error: str
    status: int

    @property
    def ok(self) -> bool:
        return self.kind == "ok" and self.status == 0


def run_forked(
    work: Callable[[], str],
    *,
    lock: AbstractContextManager[object] | None = None,
    classify: Callable[[BaseException], str] = lambda e: "error",
) -> Outcome:
    """Run ``work`` in a child forked (under ``lock``, when given) from this process and
    wait for it. An error in the child is reported as ``classify(error)`` (one word)."""
    r, w = os.pipe()
    owner = os.getpid()
    with lock if lock is not None else nullcontext():
        pid = os.fork()
        if pid == 0:  # child: work, report, leave without running the parent's exits
            code = 1
            try:
                os.close(r)
                die_with_parent(owner)
                _write_all(w, ("ok " + work()).encode("utf-8"))
                code = 0
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                msg = " ".join(str(e).split())[:2000] or type(e).__name__
                report = f"{classify(e)} {type(e).__name__} {msg}"
                try:
                    _write_all(w, report.encode("utf-8", "replace"))
                except OSError:
                    pass
            finally:
                os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        raw = f.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    kind, _, rest = raw.partition(" ")
    if kind == "ok":
        return Outcome(kind, rest, "", status)
    error, _, msg = rest.partition(" ")
    return Outcome(kind, msg, error, status)


def die_with_parent(parent: int) -> None:
    """Linux: this child is killed when the process that forked it dies, rather than
    finishing a piece nobody will read."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
