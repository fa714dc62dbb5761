"""SIGINT and SIGTERM as an exception every command's cleanup sees, and stretches of work no signal may cut.

``rwku`` turns both signals into :class:`Interrupted`, raised in the main thread wherever it is. It is not a
``KeyboardInterrupt`` on purpose: typer turns a ``KeyboardInterrupt`` into a silent return value (the command
would exit 0 and say nothing), while an exception of its own reaches ``cli.main`` untouched, through every
``finally`` and ``except BaseException`` on the way (temporary files and folders removed, Ray tasks cancelled,
the cluster shut down). ``cli.main`` prints one line and exits ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).

A signal that arrives inside :func:`deferred` (the driver writing a finished unit's files) waits until that
stretch ends, so a unit is either wholly stored or not at all. A signal whose disposition was "ignore" when the
handlers were installed (``nohup``, a background job of a script for SIGINT) stays ignored.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

#: The signals turned into :class:`Interrupted`.
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_STATE: dict[str, Any] = {"depth": 0, "pending": None, "native": 0, "signum": None}


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. ``detail`` says what was kept and ``again`` what the same command does when run
    again; whoever knows sets them on the way up."""

    def __init__(self, signum: int, detail: str = "", again: str = "starts over") -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.detail = detail
        self.again = again

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


def _handler(signum: int, frame: Any) -> None:
    _STATE["signum"] = signum
    if _STATE["depth"]:
        _STATE["pending"] = _STATE["pending"] or signum
        return
    if _STATE["native"]:
        raise KeyboardInterrupt  # what native code that checks for signals expects (see native_calls)
    raise Interrupted(signum)


@contextmanager
def handled() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (in the main thread); the handlers found
    before are put back after it. A signal ignored before stays ignored."""
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _STATE["signum"] = None
    for sig, before in previous.items():
        if before is not signal.SIG_IGN:
            signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before if before is not None else signal.SIG_DFL)
        _STATE["signum"] = None


@contextmanager
def deferred() -> Iterator[None]:
    """A stretch no signal cuts: one that arrives meanwhile raises :class:`Interrupted` when the block ends."""
    _STATE["depth"] += 1
    try:
        yield
    finally:
        _STATE["depth"] -= 1
    if not _STATE["depth"] and _STATE["pending"]:
        signum, _STATE["pending"] = _STATE["pending"], None
        raise Interrupted(signum)


@contextmanager
def native_calls() -> Iterator[None]:
    """Around calls into native code that turns only a ``KeyboardInterrupt`` from a signal handler into its own
    error (Ray's ``wait`` and ``get``; anything else there becomes a ``SystemError``): within the block a signal raises
    ``KeyboardInterrupt``, turned back into :class:`Interrupted` as it leaves the block. Without rwku's handlers
    (the Python API) a Ctrl-C stays the ``KeyboardInterrupt`` it always was."""
    _STATE["native"] += 1
    try:
        yield
    except KeyboardInterrupt:
        if _STATE["signum"] is None:
            raise
        raise Interrupted(_STATE["signum"]) from None
    finally:
        _STATE["native"] -= 1


@contextmanager
def handlers_kept() -> Iterator[None]:
    """Put back the SIGINT and SIGTERM handlers after the block (``ray.init`` installs a SIGTERM handler of its own
    that exits with status 15 and skips rwku's message)."""
    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread only
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, before in previous.items():
            if before is not None and signal.getsignal(sig) is not before:
                signal.signal(sig, before)
