"""The tool's errors in one place: which failure means which exit code, and the one line an
unexpected exception becomes.

Bad input is expected and has its own exception (tshark missing, capture unreadable, key
log or trust store unusable, output not writable) and exit code. Anything else is a bug of
ours: the user gets one line naming it, exit code 5, and ``--debug`` for the traceback.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

from .certificates import TrustStoreError
from .keylog import KeylogError
from .sanitize import printable
from .schema import EXIT_TSHARK, EXIT_UNREADABLE, EXIT_USAGE
from .tshark import CaptureError, TsharkError

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "CaptureError",
    "KeylogError",
    "OutputError",
    "TrustStoreError",
    "TsharkError",
    "exit_code_for",
    "internal_error_line",
]

#: An unexpected exception (a bug): one line, the traceback with ``--debug``.
EXIT_INTERNAL = 5
#: Ended by a signal: 128 + the signal's number, as shells report it.
EXIT_INTERRUPTED = 128


class OutputError(Exception):
    """The report cannot be written where ``-o`` points (the message is one line)."""


_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (TsharkError, EXIT_TSHARK),
    (CaptureError, EXIT_UNREADABLE),
    (KeylogError, EXIT_UNREADABLE),
    (TrustStoreError, EXIT_UNREADABLE),
    (OutputError, EXIT_USAGE),
)


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of a failure (EXIT_INTERNAL for anything unexpected)."""
    for kind, code in _EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EXIT_INTERNAL


def _where(exc: BaseException) -> str:
    """The innermost frame of this package in the traceback: ``module.py:line``."""
    package = Path(__file__).resolve().parent
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            path = Path(frame.filename).resolve()
        except (OSError, ValueError):
            continue
        if package in path.parents:
            found = f"{path.relative_to(package.parent)}:{frame.lineno}"
    return found


def internal_error_line(exc: BaseException) -> str:
    """One line for an unexpected exception: what and where, and what to do about it."""
    message = re.sub(r"\s+", " ", str(exc)).strip()
    if len(message) > 200:
        message = message[:200] + "..."
    where = _where(exc)
    at = f" at {where}" if where else ""
    what = f"{type(exc).__name__}: {printable(message)}" if message else type(exc).__name__
    return (f"internal error ({what}{at}); this is a bug: re-run with --debug for the "
            "traceback and report it")
