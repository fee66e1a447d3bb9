"""Finding and running tshark: the only place that starts it.

Everything else receives rows of fields; this module knows command lines, versions and how
tshark reports a damaged file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIN_VERSION = (3, 6)
#: Joins several occurrences of one field inside a row; never appears in tshark's text.
AGGREGATOR = "\x1f"

INSTALL_HINT = (
    "install it with 'sudo apt-get install tshark' (Debian/Ubuntu), 'brew install wireshark' "
    "(macOS) or the Wireshark installer (Windows), or point TSHARK at it"
)


class TsharkError(Exception):
    """tshark is missing, too old, or failed in a way no capture explains."""


class CaptureError(Exception):
    """The capture (or a file tshark reads with it) cannot be read at all."""


@dataclass(frozen=True)
class Tshark:
    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


#: tshark found so far: (path, size, mtime) -> its version (asked once per process)
_FOUND: dict[tuple[str, int, int], Tshark] = {}


def find_tshark(explicit: str | None = None) -> Tshark:
    """Locate tshark (``$TSHARK`` or PATH) and check that it is new enough; its version is
    asked once per process (again if the file changes)."""
    candidate = explicit or os.environ.get("TSHARK") or shutil.which("tshark") or _pyshark_path()
    if not candidate or not (Path(candidate).is_file() or shutil.which(candidate)):
        raise TsharkError(f"tshark was not found: {INSTALL_HINT}")
    try:
        found = Path(shutil.which(candidate) or candidate).stat()
        key = (candidate, found.st_size, found.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _FOUND:
        return _FOUND[key]
    tshark = _ask_version(candidate)
    if key is not None:
        _FOUND[key] = tshark
    return tshark


def _ask_version(candidate: str) -> Tshark:
    try:
        done = subprocess.run(
            [candidate, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise TsharkError(f"tshark at {candidate} cannot be run ({exc}): {INSTALL_HINT}") from exc
    match = re.search(r"TShark \(Wireshark\) (\d+)\.(\d+)\.(\d+)", done.stdout)
    if not match:
        raise TsharkError(f"{candidate} does not look like tshark: {INSTALL_HINT}")
    version = (int(match[1]), int(match[2]), int(match[3]))
    if version[:2] < MIN_VERSION:
        raise TsharkError(
            f"tshark {'.'.join(map(str, version))} is too old (need "
            f"{'.'.join(map(str, MIN_VERSION))} or newer): {INSTALL_HINT}"
        )
    return Tshark(path=candidate, version=version)


def _pyshark_path() -> str | None:
    """pyshark also knows the usual install folders (Wireshark on Windows and macOS)."""
    try:
        from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path
    except ImportError:  # pragma: no cover - pyshark is a declared dependency
        return None
    try:
        found = get_process_path()
    except TSharkNotFoundException:
        return None
    return found if found and Path(found).is_file() else None


@dataclass
class FieldRun:
    """The outcome of one ``tshark -T fields`` pass besides its rows."""

    warnings: list[str] = field(default_factory=list)
    truncated: bool = False  # the file ends inside a packet record
    returncode: int | None = None


_CUT_SHORT = re.compile(r"cut short in the middle of a packet|appears to be damaged or corrupt")
_UNREADABLE = re.compile(
    r"isn't a capture file in a format TShark understands|"
    r"unknown file format|The file \".*\" doesn't exist|Permission denied|"
    r"isn't a capture file|is a directory|couldn't be opened|"
    r"appears to have been cut short in the middle of a packet|"
    r"doesn't have any packets|"
    r"contains record data that TShark doesn't support"
)


def field_command(
    tshark: Tshark,
    capture: str | os.PathLike,
    fields: Sequence[str],
    *,
    display_filter: str | None = None,
    decode_as: Sequence[str] = (),
    options: Sequence[str] = (),
    two_pass: bool = False,
) -> list[str]:
    """The argument list for a fields pass (no shell is ever involved)."""
    cmd = [tshark.path, "-n", "-r", os.fspath(capture)]
    if two_pass:
        cmd.append("-2")
    for rule in decode_as:
        cmd += ["-d", rule]
    for opt in options:
        cmd += ["-o", opt]
    if display_filter:
        cmd += ["-Y", display_filter]
    cmd += ["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "quote=n"]
    cmd += ["-E", f"aggregator={AGGREGATOR}"]
    for name in fields:
        cmd += ["-e", name]
    return cmd


def iter_fields(
    cmd: Sequence[str], fields: Sequence[str], run: FieldRun
) -> Iterator[dict[str, str]]:
    """Stream the rows of a fields pass as dicts; record damage and errors in ``run``.

    Rows are yielded as tshark prints them, so memory stays flat however large the capture.
    """
    env = dict(os.environ)
    env.setdefault("LC_ALL", "C.UTF-8")
    try:
        proc = subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1 << 20,
        )
    except OSError as exc:
        raise TsharkError(f"tshark could not be started: {exc}") from exc
    width = len(fields)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        for line in proc.stdout:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < width:
                parts += [""] * (width - len(parts))
            yield dict(zip(fields, parts, strict=False))
    finally:
        if proc.poll() is None:
            proc.stdout.close()
        stderr = proc.stderr.read()
        proc.wait()
        run.returncode = proc.returncode
    messages = [
        m.strip()
        for m in stderr.splitlines()
        if m.strip() and "Running as user" not in m and "could be dangerous" not in m
    ]
    text = " ".join(messages)
    if _CUT_SHORT.search(text):
        run.truncated = True
        run.warnings.append(
            "the capture file ends in the middle of a packet: analysed up to the cut"
        )
        return
    if proc.returncode not in (0, None) and (_UNREADABLE.search(text) or not messages):
        raise CaptureError(_one_line(text) or f"tshark failed with exit code {proc.returncode}")
    if proc.returncode not in (0, None):
        raise TsharkError(_one_line(text))
    run.warnings.extend(_one_line(m) for m in messages)


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = text.replace("tshark: ", "")
    return text[:300]
