"""SIGTERM, SIGHUP and SIGINT end the whole run: every tshark and worker, every temporary file.

The command line installs the handlers (a library must not). In the main process a signal
kills the tshark processes it runs, asks its worker processes to stop, and raises
:class:`Interrupted` so that every ``with`` block unwinds and removes its temporary folder.
A forked worker inherits the handler; there it kills its own tshark and exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType

from ..errors import Interrupted
from .tshark import terminate_children

__all__ = ["HANDLED", "Interrupted", "install"]

HANDLED = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None),
                            signal.SIGINT) if s is not None)

_MAIN_PID: int | None = None


def _handle(signum: int, _frame: FrameType | None) -> None:
    terminate_children()
    if os.getpid() != _MAIN_PID:
        os._exit(128 + signum)  # a forked worker: its parent reports and cleans up
    # (imported only by whoever starts worker processes: none were started without it)
    multiprocessing = sys.modules.get("multiprocessing")
    for child in multiprocessing.active_children() if multiprocessing is not None else ():
        with contextlib.suppress(OSError):  # already gone
            child.terminate()
    raise Interrupted(signum)


def install() -> None:
    """Handle HANDLED in this (the main) process and the workers it will fork."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    for signum in HANDLED:
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(signum, _handle)
