"""The notebook layer: one conversation at a time, pictures, and pyshark drill-down.

>>> report = analyze("capture.pcapng", keylog="sslkeys.log")
>>> conv = report.conversation(8)
>>> conv.ladder()          # SVG sequence diagram (shows itself in Jupyter)
>>> conv.follow()          # the transcript, TLS handshake included
>>> conv.certificates      # DataFrame: this conversation's certificates
>>> conv.findings          # DataFrame: what is wrong, and the fix
>>> pkts = conv.packets()  # pyshark packets (JSON mode) of tcp.stream == 8

Everything here works inside a running event loop (Jupyter): ``packets()`` runs pyshark in
a worker thread with its own event loop. ``plot_timeline`` and ``plot_certificate_validity``
draw with matplotlib (the ``notebook`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from .core.evidence import evidence_filter
from .core.schema import ClientCert
from .errors import MissingExtra, PacketReadError
from .render.labels import items, verdict_label
from .render.ladder import STYLE_COLOURS, Ladder, verdict_colours

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report


class ConversationView:
    """One SMTP conversation of a ``Report`` (``report.conversation(stream)``)."""

    def __init__(self, report: Report, stream: int) -> None:
        rows = report.conversations[report.conversations["stream"] == stream]
        if not len(rows):
            known = ", ".join(str(s) for s in report.conversations["stream"])
            raise KeyError(f"no conversation with tcp.stream == {stream} "
                           f"(streams in this report: {known or 'none'})")
        self.report = report
        self.stream = int(stream)
        #: The conversation's row of ``report.conversations``.
        self.info: pd.Series = rows.iloc[0]

    @property
    def verdict(self) -> ClientCert:
        return ClientCert(str(self.info["client_cert"]))

    @property
    def certificates(self) -> pd.DataFrame:
        certs = self.report.certificates
        return certs[certs["stream"] == self.stream].reset_index(drop=True)

    @property
    def findings(self) -> pd.DataFrame:
        findings = self.report.findings
        return findings[findings["stream"] == self.stream].reset_index(drop=True)

    @property
    def events(self) -> pd.DataFrame:
        events = self.report.events
        return events[events["stream"] == self.stream].reset_index(drop=True)

    @property
    def display_filter(self) -> str:
        return evidence_filter(self.info)

    def follow(self) -> Transcript:
        """The conversation as text (Wireshark's Follow TCP Stream plus the TLS handshake)."""
        from .render.follow import transcript

        return Transcript(self.stream, transcript(self.report, self.stream))

    def ladder(self) -> Ladder:
        """The SVG ladder diagram (``.svg`` for the markup, ``.save(path)`` to write it)."""
        return Ladder(self.report, self.stream)

    def packets(self, display_filter: str | None = None, *, limit: int | None = None,
                timeout: float = 120.0) -> list[Any]:
        """This conversation's packets, dissected by pyshark in JSON mode.

        ``display_filter`` narrows further (e.g. ``"tls.handshake.type == 11"``). The key
        log the report was made with decrypts TLS here too. Safe inside Jupyter: pyshark runs
        in a worker thread with its own event loop.
        """
        wanted = self.display_filter
        if display_filter:
            wanted = f"({wanted}) && ({display_filter})"
        capture = self.report.capture
        return read_packets(capture["file"], wanted, keylog=capture.get("keylog"),
                            ports=capture.get("ports") or (), limit=limit, timeout=timeout)

    def _repr_html_(self) -> str:
        from .render.html import conversation_fragment

        return conversation_fragment(self.report, self.stream)

    def __repr__(self) -> str:
        named = os.path.basename(str(self.report.capture.get("file") or ""))
        return (f"<ConversationView {named} tcp.stream == {self.stream}: {self.info['client']} -> "
                f"{self.info['server']}, client certificate "
                f"{verdict_label(self.info['client_cert'])}>")


@dataclass
class Transcript:
    """``ConversationView.follow()``: (frame, sender, text, style) lines."""

    stream: int
    lines: list[tuple[int, str, str, str]]

    def __iter__(self) -> Iterator[tuple[int, str, str, str]]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __str__(self) -> str:
        out = []
        for frame, sender, text, _ in self.lines:
            arrow = "C->S" if sender == "client" else "S->C"
            out.append(f"{frame:>7}  {arrow}  {text}")
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.lines, columns=["frame", "sender", "text", "style"])

    def _repr_html_(self) -> str:
        rows = []
        for frame, sender, text, style in self.lines:
            colour = STYLE_COLOURS.get(style, ("#24292f", ""))[0] if style else "#24292f"
            if style == "blue":
                colour = "#0550ae"
            elif style == "dim":
                colour = "#8c959f"
            weight = "bold" if "bold" in style else "normal"
            arrow = "C&rarr;S" if sender == "client" else "S&rarr;C"
            rows.append(f'<tr><td style="text-align:right;color:#57606a">{frame}</td>'
                        f'<td style="color:#57606a">{arrow}</td>'
                        f'<td style="text-align:left;color:{colour};font-weight:{weight};'
                        f'white-space:pre-wrap">{html.escape(text)}</td></tr>')
        return ('<table style="font-family:monospace;font-size:12px;border-collapse:collapse">'
                f'<caption style="text-align:left">tcp.stream == {self.stream}</caption>'
                + "".join(rows) + "</table>")


# ---------------------------------------------------------------------------------------
# pyshark drill-down, safe inside a running event loop


def _decode_as(ports: Any) -> dict[str, str]:
    from .engine.tshark_rows import decode_as_rules

    rules = {}
    for rule in decode_as_rules([int(p) for p in ports]):
        criterion, proto = rule.rsplit(",", 1)
        rules[criterion] = proto
    return rules


def read_packets(capture: str | os.PathLike, display_filter: str, *,
                 keylog: str | os.PathLike | None = None, ports: Any = (),
                 limit: int | None = None, timeout: float = 120.0) -> list[Any]:
    """pyshark packets (JSON mode) of ``capture`` matching ``display_filter``.

    Runs pyshark in a worker thread with a fresh event loop, so it works from synchronous
    code, from inside ``asyncio.run`` and from a Jupyter cell alike.
    """
    from .engine.tshark import private_config_folder

    result: dict[str, Any] = {}
    started: list[Any] = []  # the tshark processes pyshark starts for this read

    def work() -> None:
        try:
            with private_config_folder() as config_dir:  # empty: no user profile applies
                result["packets"] = _read_in_own_loop(capture, display_filter, keylog, ports,
                                                      limit, timeout, started, config_dir)
        except BaseException as exc:
            result["error"] = exc

    worker = threading.Thread(target=work, name="pyshark-tools-packets", daemon=True)
    worker.start()
    try:
        worker.join(timeout + 30)
    except BaseException:  # Ctrl-C (a notebook's interrupt): tshark must not run on
        _kill_started(started)
        raise
    if worker.is_alive():
        _kill_started(started)
        raise PacketReadError(f"pyshark did not finish within {timeout:.0f} s")
    if "error" in result:
        error = result["error"]
        if isinstance(error, PacketReadError):
            raise error
        raise PacketReadError(f"pyshark could not read {capture}: {error}") from error
    return result["packets"]


def _kill_started(started: list[Any]) -> None:
    """Kill the tshark processes of a read that is abandoned (interrupted, out of time)."""
    from .engine.tshark import untrack_child

    for process in list(started):
        with contextlib.suppress(OSError):  # already gone
            process.kill()
        untrack_child(process)


def _ensure_thread_safe_child_watcher() -> None:
    """asyncio subprocesses from a worker thread need a loop-independent child watcher.

    pyshark installs a ``SafeChildWatcher`` bound to the main thread's loop whenever it is
    used from the main thread; a subprocess started from another loop would never be
    reaped. ``ThreadedChildWatcher`` (Python's default) works for every loop.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.get_child_watcher()
        if not isinstance(watcher, asyncio.ThreadedChildWatcher):
            asyncio.set_child_watcher(asyncio.ThreadedChildWatcher())


def _capture_class(started: list[Any] | None = None, config_dir: str | None = None) -> type:
    import subprocess

    import pyshark
    from packaging.version import parse as parse_version

    from .engine.tshark import clean_environment, find_tshark, track_child, untrack_child

    known = find_tshark()  # asked once, under our own time limit

    class _FileCapture(pyshark.FileCapture):
        """pyshark's FileCapture, letting tshark exit on its own after the last packet.

        pyshark kills tshark at the end; when tshark is exiting at that moment, Python's
        ``Popen.send_signal`` reaps it first and asyncio reports exit code 255 ("Unknown
        child process"), which pyshark turns into TSharkCrashException. Waiting for the
        exit avoids the race; tshark's exit code 2 for a cut capture file is not a crash.
        """

        async def _cleanup_subprocess(self, process: Any) -> None:
            try:
                if process.returncode is None and self._eof_reached:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), 10)
                if self._eof_reached and process.returncode is not None:
                    return
                await super()._cleanup_subprocess(process)
            finally:
                untrack_child(process)

        async def _get_tshark_process(self, packet_count: int | None = None,
                                      stdin: Any = None) -> Any:
            """tshark started as pyshark would (JSON output), but in the environment of our
            own runs: ``config_dir`` is its configuration folder, so no personal disabled
            protocol, heuristic, Decode As entry or profile changes what it dissects."""
            if config_dir is None:
                return await super()._get_tshark_process(packet_count, stdin)
            self._verify_capture_parameters()
            parameters = [self._get_tshark_path(), "-l", "-n", "-T", "json"]
            if known.version >= (2, 6, 7):
                parameters.append("--no-duplicate-keys")
            parameters += self.get_parameters(packet_count=packet_count)
            process = await asyncio.create_subprocess_exec(
                *parameters, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin,
                env=clean_environment(config_dir))
            self._create_stderr_handling_task(process.stderr)
            self._created_new_process(parameters, process)
            return process

        def _get_tshark_version(self) -> Any:
            # pyshark would run ``tshark -v`` without a time limit; ours was asked with one
            return parse_version(".".join(str(n) for n in known.version))

        def _created_new_process(self, parameters: Any, process: Any,
                                 process_name: str = "TShark") -> None:
            # supervised like our own tshark runs: a signal or an abandoned read kills it
            track_child(process)
            if started is not None:
                started.append(process)
            super()._created_new_process(parameters, process, process_name)

    return _FileCapture


def _clean_preferences() -> dict[str, str]:
    """The reassembly and decoding preferences every tshark run of ours sets (a user's
    Wireshark preferences must not change what the drill-down shows)."""
    from .engine.tshark import CLEAN_PREFERENCES

    return dict(pref.split(":", 1) for pref in CLEAN_PREFERENCES)


def _read_in_own_loop(capture: str | os.PathLike, display_filter: str,
                      keylog: str | os.PathLike | None, ports: Any, limit: int | None,
                      timeout: float, started: list[Any] | None = None,
                      config_dir: str | None = None) -> list[Any]:
    from pyshark.capture.capture import StopCapture

    from .engine.tshark import find_tshark

    _ensure_thread_safe_child_watcher()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    prefs = _clean_preferences()
    if keylog:
        prefs["tls.keylog_file"] = os.path.abspath(os.fspath(keylog))
    packets: list[Any] = []
    cap = None
    try:
        cap = _capture_class(started, config_dir)(
            os.fspath(capture), display_filter=display_filter, use_json=True,
            override_prefs=prefs, decode_as=_decode_as(ports) or None,
            tshark_path=find_tshark().path, eventloop=loop,
        )
        def keep(packet: Any) -> None:
            packets.append(packet)
            if limit and len(packets) >= limit:
                raise StopCapture  # tshark's -c counts packets before the display filter

        loop.run_until_complete(asyncio.wait_for(cap.packets_from_tshark(keep), timeout))
        return packets
    except TimeoutError:
        raise PacketReadError(f"pyshark did not finish within {timeout:.0f} s") from None
    finally:
        if cap is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(cap.close_async())
            cap._running_processes.clear()  # nothing left for __del__ to close
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


_HANDSHAKE_NAMES = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket",
                    8: "EncryptedExtensions", 11: "Certificate", 12: "ServerKeyExchange",
                    13: "CertificateRequest", 14: "ServerHelloDone", 15: "CertificateVerify",
                    16: "ClientKeyExchange", 20: "Finished"}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _field(layer: Any, name: str) -> Any:
    try:
        return layer.get_field(name)
    except AttributeError:
        return None


def tls_handshakes(packet: Any) -> list[dict[str, Any]]:
    """The TLS handshake messages pyshark dissected in one packet, as plain dicts.

    ``certificates_length`` is 0 for an empty Certificate message (the seed's case).
    Encrypted handshake messages (no key log) have no type and are left out.
    """
    out = []
    layers = []
    for layer in packet.layers:
        if layer.layer_name == "tls":  # pyshark keeps a frame's further TLS layers aside
            layers += [layer, *getattr(layer, "duplicate_layers", [])]
    for layer in layers:
        for record in _as_list(_field(layer, "record")):
            if not hasattr(record, "get_field"):
                continue
            for message in _as_list(_field(record, "handshake")):
                if not hasattr(message, "get_field") or _field(message, "type") is None:
                    continue
                kind = int(_field(message, "type"))
                length = _field(message, "certificates_length")
                out.append({
                    "frame": int(packet.number),
                    "type": kind,
                    "name": _HANDSHAKE_NAMES.get(kind, str(kind)),
                    "length": int(_field(message, "length") or 0),
                    "certificates_length": int(length) if length is not None else None,
                })
    return out


# ---------------------------------------------------------------------------------------
# Plots (matplotlib, from the ``notebook`` extra)


def _hex(verdict: object) -> str:
    return verdict_colours(verdict)[0]


def need_matplotlib(function: str) -> None:
    """Raise ``MissingExtra`` saying how to get matplotlib, before any plotting starts."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra(f"{function} draws with matplotlib, which is not installed: "
                           "pip install 'pyshark-tools[notebook]'") from None


def plot_timeline(report: Report, ax: Any = None) -> Any:
    """Conversations over the capture's time, one row each, coloured by client-cert verdict."""
    need_matplotlib("plot_timeline")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    conv = report.conversations.sort_values("start_time", ascending=False)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.45 * max(len(conv), 3) + 1.4))
    first = pd.Timestamp(report.capture["first_packet_time"])
    last = pd.Timestamp(report.capture["last_packet_time"])
    span = max((last - first).total_seconds(), 1.0)
    minimum = pd.Timedelta(seconds=span * 0.008)  # short conversations stay visible
    labels = []
    for i, (_, c) in enumerate(conv.iterrows()):
        start = c["start_time"].tz_convert(None)
        width = max(c["end_time"] - c["start_time"], minimum)
        ax.barh(i, width, left=start, height=0.6, color=_hex(c["client_cert"]),
                edgecolor="#24292f", linewidth=0.5)
        note = " ".join(items(c["finding_ids"]))
        ax.text(start + width, i, f"  {verdict_label(c['client_cert'])}"
                + (f"  [{note}]" if note else ""), va="center", fontsize=8.5)
        host = c["server_host"] if isinstance(c["server_host"], str) else c["server"]
        labels.append(f"#{c['stream']}  {host}")
    ax.set_yticks(range(len(labels)), labels, fontsize=8.5)
    ax.set_xlim(first.tz_convert(None) - pd.Timedelta(seconds=span * 0.02),
                last.tz_convert(None) + pd.Timedelta(seconds=span * 0.35))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.set_xlabel(f"capture time (UTC, {first:%Y-%m-%d})")
    ax.set_title("SMTP conversations, coloured by client-certificate verdict")
    seen = list(dict.fromkeys(str(v) for v in report.conversations["client_cert"]))
    ax.legend(handles=[Patch(color=_hex(v), label=verdict_label(v)) for v in seen],
              loc="upper right", fontsize=8, frameon=True)
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_certificate_validity(report: Report, ax: Any = None) -> Any:
    """Each certificate's validity window (once per certificate) against the capture time."""
    need_matplotlib("plot_certificate_validity")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    certs = report.certificates.dropna(subset=["not_before", "not_after"])
    certs = certs.drop_duplicates("sha256").sort_values(["role", "position", "not_after"])
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.5 * max(len(certs), 2) + 1.4))
    when = pd.Timestamp(report.capture["first_packet_time"]).tz_convert(None)
    labels = []
    ok, bad = STYLE_COLOURS["green"][0], STYLE_COLOURS["red"][0]
    for i, (_, c) in enumerate(certs.iterrows()):
        start, end = c["not_before"].tz_convert(None), c["not_after"].tz_convert(None)
        valid = bool(c["valid_at_capture"]) if not pd.isna(c["valid_at_capture"]) else False
        ax.barh(i, end - start, left=start, height=0.55, color=ok if valid else bad, alpha=0.8)
        kind = "leaf" if c["position"] == 0 else "CA"
        labels.append(f"{c['cn'] or c['subject']}  ({c['role']} {kind})")
    ax.axvline(when, color="#24292f", linestyle="--", linewidth=1.2)
    ax.text(when, 1.01, f" capture {when:%Y-%m-%d}", transform=ax.get_xaxis_transform(),
            fontsize=8.5, ha="center", va="bottom")
    ax.set_yticks(range(len(labels)), labels, fontsize=8.5)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    ax.set_title("Certificate validity windows (green: valid at capture time, red: not)",
                 pad=18)
    ax.grid(axis="x", alpha=0.3)
    return ax

