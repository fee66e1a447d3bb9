"""Finding and running tshark: the only place that starts it.

Everything else receives rows of fields; this module knows command lines, versions and how
tshark reports a damaged file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CaptureError, TsharkError

MIN_VERSION = (3, 6)
#: Joins several occurrences of one field inside a row; never appears in tshark's text.
AGGREGATOR = "\x1f"

INSTALL_HINT = (
    "install it with 'sudo apt-get install tshark' (Debian/Ubuntu), 'brew install wireshark' "
    "(macOS) or the Wireshark installer (Windows), or point TSHARK at it"
)


#: Seconds every tshark pass may take at least (``--tshark-timeout``; 0: no limit) ...
DEFAULT_TIME_LIMIT = 300.0
#: ... plus this many seconds per MiB of the file it reads (tshark reads 10-50 MiB/s).
SECONDS_PER_MIB = 2.0

#: Preferences that change what tshark reassembles or decodes, set to the defaults the
#: analysis was written against, whatever a global preferences file says. (Personal
#: preferences, profiles, disabled protocols and Decode As entries never apply: every run
#: gets an empty private configuration folder.)
CLEAN_PREFERENCES: tuple[str, ...] = (
    "tcp.desegment_tcp_streams:TRUE",
    "tcp.reassemble_out_of_order:FALSE",
    "tcp.analyze_sequence_numbers:TRUE",
    "tcp.check_checksum:FALSE",
    "tcp.try_heuristic_first:FALSE",
    "tcp.no_subdissector_on_error:TRUE",
    "tls.desegment_ssl_records:TRUE",
    "tls.desegment_ssl_application_data:TRUE",
    "tls.ignore_ssl_mac_failed:FALSE",
    "smtp.desegment_lines:TRUE",
    "smtp.desegment_data:TRUE",
    "ip.defragment:TRUE",
    "ipv6.defragment:TRUE",
)


#: Dissectors whose output the report never reads: tshark would build a tree of every
#: certificate's fields; the raw DER (``tls.handshake.certificate``) stays. ~20 % less tshark
#: time, and exact: with them, one malformed certificate ends the dissection of the rest of
#: its Certificate message (its other certificates vanish). Every fields pass (reference
#: engine and shards alike) runs without them; TLS_SMTP_REPORT_ALL_DISSECTORS=1 keeps them
#: (the benchmark measures both).
DISABLED_PROTOCOLS = ("x509af", "x509ce", "x509if", "x509sat", "pkix1implicit",
                      "pkix1explicit")


@dataclass(frozen=True)
class Tshark:
    path: str
    version: tuple[int, int, int]
    #: the floor of every pass's time limit in seconds (0: no limit); see ``limit_for``
    time_limit: float = DEFAULT_TIME_LIMIT

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    def limit_for(self, capture: str | os.PathLike | None) -> float | None:
        """The time limit of one pass over ``capture``: the floor plus a share per MiB."""
        if not self.time_limit or self.time_limit <= 0:
            return None
        try:
            size = Path(capture).stat().st_size if capture not in (None, "-") else 0
        except (OSError, TypeError, ValueError):
            size = 0
        return self.time_limit + SECONDS_PER_MIB * size / (1 << 20)

#: tshark found so far: (path, size, mtime) -> its version (asked once per process)
_FOUND: dict[tuple[str, int, int], Tshark] = {}


def find_tshark(explicit: str | None = None, *, time_limit: float | None = None) -> Tshark:
    """Locate tshark (``$TSHARK`` or PATH) and check that it is new enough; its version is
    asked once per process (again if the file changes).

    ``time_limit``: the floor of every pass's time limit in seconds (0: none; default
    ``DEFAULT_TIME_LIMIT``)."""
    candidate = explicit or os.environ.get("TSHARK") or shutil.which("tshark") or _pyshark_path()
    if not candidate or not (Path(candidate).is_file() or shutil.which(candidate)):
        raise TsharkError(f"tshark was not found: {INSTALL_HINT}")
    try:
        found = Path(shutil.which(candidate) or candidate).stat()
        key = (candidate, found.st_size, found.st_mtime_ns)
    except OSError:
        key = None
    tshark = _FOUND.get(key) if key is not None else None
    if tshark is None:
        tshark = _ask_version(candidate)
        if key is not None:
            _FOUND[key] = tshark
    limit = DEFAULT_TIME_LIMIT if time_limit is None else float(time_limit)
    return dataclasses.replace(tshark, time_limit=limit)


#: ``tshark --version`` started ahead (:func:`ask_version_early`): candidate -> process
_EARLY: dict[str, subprocess.Popen] = {}


def ask_version_early() -> None:
    """Start asking the tshark a report will use for its version now, while the caller
    imports the analysis (its answer is read by :func:`find_tshark`; nothing if not found)."""
    candidate = os.environ.get("TSHARK") or shutil.which("tshark")
    if not candidate or candidate in _EARLY:
        return
    with contextlib.suppress(OSError):
        _EARLY[candidate] = early = subprocess.Popen(
            [candidate, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True, errors="replace")
        track_child(early)  # a signal before its answer is read ends it too


def forget_early_versions() -> None:
    """End every early ``--version`` nobody read (the run stopped before it needed tshark, or
    used another one): none is left running or tracked after the command."""
    while _EARLY:
        _candidate, early = _EARLY.popitem()
        with contextlib.suppress(OSError):
            early.kill()
        with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
            early.communicate(timeout=5)
        untrack_child(early)


def _ask_version(candidate: str) -> Tshark:
    try:
        early = _EARLY.pop(candidate, None)
        if early is not None:
            try:
                out, _err = early.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                early.kill()
                early.communicate()
                raise
            finally:
                untrack_child(early)
            done = subprocess.CompletedProcess(early.args, early.returncode, out, _err)
        else:
            done = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, timeout=60,
                check=False, errors="replace", stdin=subprocess.DEVNULL,
            )
    except subprocess.TimeoutExpired:
        raise TsharkError(f"{candidate} --version did not answer within 60 s") from None
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
    #: False when tshark stopped before the end (killed, crashed, timed out, damaged file):
    #: the rows cover only what it read until then (a warning says so)
    complete: bool = True
    #: seconds the pass may take (None: no limit); ``Tshark.limit_for`` computes it
    time_limit: float | None = None
    rows: int = 0  # rows of fields read
    garbage_lines: int = 0  # lines that were not rows of fields (skipped)


_CUT_SHORT = re.compile(r"cut short in the middle of a packet")
_DAMAGED = re.compile(r"appears to be damaged or corrupt")
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
    if not os.environ.get("TLS_SMTP_REPORT_ALL_DISSECTORS"):
        cmd += [arg for proto in DISABLED_PROTOCOLS for arg in ("--disable-protocol", proto)]
    if two_pass:
        cmd.append("-2")
    for rule in decode_as:
        cmd += ["-d", rule]
    for opt in (*CLEAN_PREFERENCES, *options):
        cmd += ["-o", opt]
    if display_filter:
        cmd += ["-Y", display_filter]
    cmd += ["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "quote=n"]
    cmd += ["-E", f"aggregator={AGGREGATOR}"]
    for name in fields:
        cmd += ["-e", name]
    return cmd


#: The most stderr text kept from one tshark run (a tshark writing without end must neither
#: fill a pipe nor the memory).
STDERR_KEEP = 64 << 10

_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.RLock()  # re-entered by a signal handler interrupting a holder


def live_children() -> list[subprocess.Popen]:
    """The tshark processes this process is running now (for the signal handlers). One that
    has ended unnoticed (an early ``--version`` nobody came to read) is reaped and dropped."""
    with _LIVE_LOCK:
        for proc in list(_LIVE):
            poll = getattr(proc, "poll", None)  # an ``asyncio`` process has none
            ended = poll() if poll is not None else getattr(proc, "returncode", None)
            if ended is not None:
                _LIVE.discard(proc)
        return list(_LIVE)


_LIVE_DIRS: set[str] = set()


def track_child(proc: Any) -> None:
    """Count a tshark that other code started (pyshark's, an ``asyncio`` process) among this
    process's children: a signal ending the run kills it too (``terminate_children``)."""
    with _LIVE_LOCK:
        _LIVE.add(proc)


def untrack_child(proc: Any) -> None:
    """The child of :func:`track_child` has ended (or was killed)."""
    with _LIVE_LOCK:
        _LIVE.discard(proc)


def terminate_children() -> None:
    """Kill every tshark this process started and remove their configuration folders (a
    signal ends the run)."""
    for proc in live_children():
        with contextlib.suppress(OSError):
            proc.kill()
    with _LIVE_LOCK:
        folders = list(_LIVE_DIRS)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def private_config_folder() -> Iterator[str]:
    """An empty Wireshark configuration folder for a tshark that other code starts
    (pyshark's): removed when the run ends, and by the signals that end a run."""
    with tempfile.TemporaryDirectory(prefix="tls-smtp-report-tshark-",
                                     ignore_cleanup_errors=True) as config_dir:
        with _LIVE_LOCK:
            _LIVE_DIRS.add(config_dir)
        try:
            yield config_dir
        finally:
            with _LIVE_LOCK:
                _LIVE_DIRS.discard(config_dir)


def clean_environment(config_dir: str) -> dict[str, str]:
    """tshark's environment: UTF-8 text and an empty configuration folder of our own, so
    no personal preference, profile, disabled protocol or Decode As entry applies."""
    env = dict(os.environ)
    env.setdefault("LC_ALL", "C.UTF-8")
    env["WIRESHARK_CONFIG_DIR"] = config_dir
    env.pop("WIRESHARK_RUN_FROM_BUILD_DIRECTORY", None)
    return env


def _drain(stream, keep: list[str]) -> None:
    """Read a pipe to its end, keeping its first STDERR_KEEP characters."""
    kept = 0
    for chunk in iter(lambda: stream.read(8192), ""):
        if kept < STDERR_KEEP:
            keep.append(chunk[: STDERR_KEEP - kept])
            kept += len(keep[-1])


def _is_row(parts: list[str], width: int) -> bool:
    return len(parts) == width and parts[0].isdigit()


# long: one generator owns the child's whole life (start, time limit, stderr drain, clean-up in
#   finally), so no path leaves a tshark or its folder behind
def iter_fields(
    cmd: Sequence[str], fields: Sequence[str], run: FieldRun
) -> Iterator[dict[str, str]]:
    """Stream the rows of a fields pass as dicts; record damage and errors in ``run``.

    Rows are yielded as tshark prints them, so memory stays flat however large the capture.
    tshark is supervised: stderr is drained by a thread while stdout is read (no pipe can
    fill), ``run.time_limit`` ends a pass that takes too long, lines that are not rows of
    fields are counted and skipped, and a tshark that dies midway leaves the rows it gave
    (``run.complete`` False and a warning) rather than an exception.
    """
    width = len(fields)
    with tempfile.TemporaryDirectory(prefix="tls-smtp-report-tshark-",
                                     ignore_cleanup_errors=True) as config_dir:
        with _LIVE_LOCK:
            _LIVE_DIRS.add(config_dir)
        try:
            proc = subprocess.Popen(
                list(cmd),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=clean_environment(config_dir),
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1 << 20,
            )
        except OSError as exc:
            with _LIVE_LOCK:
                _LIVE_DIRS.discard(config_dir)
            raise TsharkError(f"tshark could not be started: {exc}") from exc
        with _LIVE_LOCK:
            _LIVE.add(proc)
        assert proc.stdout is not None and proc.stderr is not None
        stderr_parts: list[str] = []
        drainer = threading.Thread(target=_drain, args=(proc.stderr, stderr_parts), daemon=True)
        drainer.start()
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            with contextlib.suppress(OSError):
                proc.kill()

        timer = None
        if run.time_limit is not None:
            timer = threading.Timer(run.time_limit, stop)
            timer.daemon = True
            timer.start()
        finished = False
        try:
            for line in proc.stdout:
                parts = line.rstrip("\n").split("\t")
                if not _is_row(parts, width):
                    if line.strip():
                        run.garbage_lines += 1
                    continue
                run.rows += 1
                yield dict(zip(fields, parts, strict=True))
            finished = True
        finally:
            if not finished and proc.poll() is None:
                proc.kill()  # the reader stopped early (or failed): tshark has no reader
            proc.stdout.close()
            proc.wait()
            if timer is not None:
                timer.cancel()
            drainer.join(timeout=10)
            proc.stderr.close()
            with _LIVE_LOCK:
                _LIVE.discard(proc)
                _LIVE_DIRS.discard(config_dir)
            run.returncode = proc.returncode
    _judge(run, "".join(stderr_parts), timed_out.is_set())


# long: one decision list over tshark's exit in priority order (time limit, signal, cut, damage,
#   failure); split, the order would be implicit
def _judge(run: FieldRun, stderr: str, timed_out: bool) -> None:
    """Turn tshark's exit status and messages into warnings, flags or one exception."""
    messages = [
        m.strip()
        for m in stderr.splitlines()
        if m.strip() and "Running as user" not in m and "could be dangerous" not in m
    ]
    text = " ".join(messages)
    code = run.returncode
    if run.garbage_lines:
        run.warnings.append(
            f"tshark printed {run.garbage_lines} line(s) that are not rows of fields: skipped"
        )
    if timed_out:
        run.complete = False
        run.warnings.append(
            f"tshark did not finish within {run.time_limit:.0f} s (--tshark-timeout) and was "
            f"stopped: the report covers the first {run.rows} packet(s) it read only"
        )
        return
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        run.complete = False
        run.warnings.append(
            f"tshark was killed by {name}: the report covers the first {run.rows} packet(s) "
            "it read only"
        )
        return
    if _CUT_SHORT.search(text):
        run.truncated = True
        run.warnings.append(
            "the capture file ends in the middle of a packet: analysed up to the cut"
        )
        return
    if _DAMAGED.search(text):
        run.complete = False
        damage = next((m for m in messages if _DAMAGED.search(m)), text)
        run.warnings.append(
            f"the capture file is damaged ({_one_line(damage)}): analysed up to the damage"
        )
        return
    if code not in (0, None) and (_UNREADABLE.search(text) or not messages) and not run.rows:
        raise CaptureError(_one_line(text) or f"tshark failed with exit code {code}")
    if code not in (0, None) and not run.rows:
        raise TsharkError(_one_line(text))
    if code not in (0, None):
        run.complete = False
        run.warnings.append(
            f"tshark stopped with exit code {code} ({_one_line(text) or 'no message'}): the "
            f"report covers the first {run.rows} packet(s) it read only"
        )
        return
    run.warnings.extend(_one_line(m) for m in messages)


#: The prefix of GLib log lines: "** (tshark:1234) 22:03:32.512630 [Epan WARNING] -- ".
_LOG_PREFIX = re.compile(r"^\*\* \(tshark:\d+\) [\d:.]+ \[([^\]]*)\] -- ")


def _one_line(text: str) -> str:
    """A tshark message as one stable line (no process id or clock time in it)."""
    text = _LOG_PREFIX.sub(r"\1: ", text.strip())
    text = re.sub(r"\s+", " ", text).strip()
    text = text.replace("tshark: ", "")
    return text[:300]
