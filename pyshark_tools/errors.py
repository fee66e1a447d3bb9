"""The tool's errors in one place: which failure means which exit code, and the one line an
unexpected exception becomes.

Bad input is expected and has its own exception (tshark missing, capture unreadable, key
log or trust store unusable, output not writable) and exit code. Anything else is a bug of
ours: the user gets one line naming it, exit code 5, and ``--debug`` for the traceback.
"""

from __future__ import annotations

import re
import signal
import traceback
from pathlib import Path

from .core.schema import EXIT_TSHARK, EXIT_UNREADABLE, EXIT_USAGE
from .sanitize import printable

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "CaptureError",
    "CaptureWriteError",
    "CertificateParseError",
    "ConnectError",
    "CredentialsError",
    "Interrupted",
    "KeylogError",
    "LogsUnreadable",
    "MissingExtra",
    "OutputError",
    "PacketReadError",
    "TrustStoreError",
    "TsharkError",
    "WiresharkInstallError",
    "WouldOverwrite",
    "exit_code_for",
    "internal_error_line",
]

#: An unexpected exception (a bug): one line, the traceback with ``--debug``.
EXIT_INTERNAL = 5
#: Ended by a signal: 128 + the signal's number, as shells report it.
EXIT_INTERRUPTED = 128


class TsharkError(Exception):
    """tshark is missing, too old, or failed in a way no capture explains."""


class CaptureError(Exception):
    """The capture (or a file tshark reads with it) cannot be read at all."""


class KeylogError(Exception):
    """The key log cannot be used; the message never contains key material."""


class CertificateParseError(ValueError):
    """The bytes are not a DER certificate cryptography can read (one-line message)."""


class TrustStoreError(ValueError):
    """The trust store file is unreadable, empty or not a PEM bundle."""


class WiresharkInstallError(Exception):
    """Something the installer cannot do (changed files without --force, bad folders)."""


class WouldOverwrite(WiresharkInstallError):
    """Installed files differ from the shipped ones and --force was not given."""


class LogsUnreadable(Exception):
    """No input held anything this tool can read (exit code 4 on the command line)."""


class CredentialsError(Exception):
    """The certificate or key cannot be read (missing, wrong password, not matching)."""


class ConnectError(Exception):
    """The probe could not open the TCP connection (exit code 6)."""


class CaptureWriteError(Exception):
    """The probe's pcapng cannot be written where asked (-o)."""


class PacketReadError(RuntimeError):
    """pyshark/tshark could not read the packets."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class Interrupted(BaseException):
    """A signal ended the run (BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        try:
            name = signal.Signals(signum).name
        except ValueError:  # pragma: no cover
            name = f"signal {signum}"
        super().__init__(name)
        self.name = name


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
