"""Writing a report to ``-o FILE``: all or nothing for files, in place for everything else.

A regular file (or a missing one) is written to a temporary file beside it and renamed over
it, so a failed or interrupted run never leaves half a report (the data is not forced to the
disk first: a report can be made again from its capture, and an fsync of the benchmark's
79 MB report took 0.25 s of every run); an existing file keeps its mode, and a symbolic link
keeps pointing where it did (its target is replaced). A device, FIFO or terminal
(``/dev/null``, ``/dev/stdout``, a named pipe) is opened and written as it is: renaming over
it would replace it. Every failure is one :class:`OutputError` line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from ..errors import OutputError
from ..sanitize import printable

__all__ = ["OutputError", "check_target", "write_report"]


def _describe(target: str | os.PathLike) -> str:
    return printable(os.fsdecode(os.fspath(target)))


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "the file name is too long for the file system"
    return exc.strerror or str(exc)


def check_target(output: str | os.PathLike) -> None:
    """Refuse early (before the analysis) what can never be written."""
    name = _describe(output)
    path = Path(output)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {_reason(exc)}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {name}: it is a folder")
    if mode is None or stat.S_ISREG(mode):
        folder = path.resolve().parent if mode is not None else path.parent
        if not folder.is_dir():
            raise OutputError(f"cannot write {name}: folder {_describe(folder)} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {name}: folder {_describe(folder)} is not "
                              "writable")
        if len(os.fsencode(path.name)) > _name_max(folder):
            raise OutputError(f"cannot write {name}: the file name is too long for the file "
                              "system")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not POSIX
        return 255


def write_report(output: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``output`` as described in the module docstring."""
    name = _describe(output)
    data = text.encode("utf-8", "backslashreplace")  # undecodable file-name bytes: \udcff
    path = Path(output)
    try:
        found = path.stat()
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {_reason(exc)}") from None
    mode = found.st_mode if found is not None else None
    if mode is not None and not stat.S_ISREG(mode):
        if stat.S_ISDIR(mode):
            raise OutputError(f"cannot write {name}: it is a folder")
        _write_in_place(path, data, name)
        return
    final = path.resolve() if mode is not None else path  # a symlink: replace its target
    _write_atomically(final, data, found, name)


def _write_in_place(path: Path, data: bytes, name: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {_reason(exc)}") from None
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def _write_atomically(final: Path, data: bytes, found: os.stat_result | None,
                      name: str) -> None:
    folder = final.parent
    try:
        # a short fixed prefix: the temporary name must fit even when the final one barely does
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tls-smtp-report.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {_reason(exc)}") from None
    try:
        if found is None:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # what a new file gets; mkstemp's 0600 is for secrets
        else:
            os.fchmod(fd, stat.S_IMODE(found.st_mode))
            with contextlib.suppress(OSError):  # root replacing a user's report: still theirs
                os.fchown(fd, found.st_uid, found.st_gid)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, final)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {name}: {_reason(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
