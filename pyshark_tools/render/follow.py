"""One conversation as Wireshark's Follow TCP Stream shows it, with the TLS handshake
messages interleaved and annotated (frame numbers, sender, certificate subjects)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.text import Text

from ..core.details import detail_fields
from ..core.evidence import evidence_filter
from ..merged import captures_with_stream, is_merged, one_capture
from .labels import verdict_label

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report


def transcript(report: Report, stream: int) -> list[tuple[int, str, str, str]]:
    """(frame, sender, text, style) lines for one stream; the text form of the ladder."""
    events = report.events[report.events["stream"] == stream]
    certs = report.certificates[report.certificates["stream"] == stream]
    lines: list[tuple[int, str, str, str]] = []
    for ev in events.itertuples(index=False):
        frame, sender = int(ev.frame), str(ev.sender)
        tag = " (decrypted)" if ev.decrypted else ""
        if ev.kind in ("smtp_command", "smtp_reply"):
            for line in str(ev.detail).split("\n"):
                lines.append((frame, sender, line + tag, ""))
        elif ev.kind == "tls_handshake":
            text, style = _handshake_text(ev, certs)
            lines.append((frame, sender, text + tag, style))
        elif ev.kind == "tls_alert":
            extra = f" {ev.detail}" if ev.detail else ""
            lines.append((frame, sender, f"[TLS Alert {ev.name}{extra}]", "red"))
        elif ev.kind == "tls_ccs":
            lines.append((frame, sender, "[TLS ChangeCipherSpec]", "dim"))
        elif ev.kind == "tls_appdata":
            lines.append((frame, sender, "[TLS application data: encrypted from here on]", "dim"))
    return lines


def _handshake_text(ev: object, certs: pd.DataFrame) -> tuple[str, str]:
    name, detail = ev.name, ev.detail  # type: ignore[attr-defined]
    if name not in ("Certificate", "CompressedCertificate"):
        return f"[TLS {name}{' ' + detail if detail else ''}]", "blue"
    chain = certs[certs["frame"] == ev.frame] if len(certs) else certs  # type: ignore[attr-defined]
    if detail_fields(detail).get("certificates") == "0":
        return "[TLS Certificate: EMPTY - no certificate presented]", "bold red"
    subjects = [str(s) for s in chain.sort_values("position")["subject"]] if len(chain) else []
    shown = " <- ".join(subjects) if subjects else detail
    compressed = detail_fields(detail).get("compressed")
    if compressed:
        shown += f" ({compressed}-compressed, RFC 8879)"
    return f"[TLS Certificate: {shown}]", "green" if ev.sender == "client" else "blue"  # type: ignore[attr-defined]


def render_follow(report: Report, stream: int, console: Console) -> None:
    if is_merged(report):  # the same stream number in several captures: one block each
        for path in captures_with_stream(report, stream):
            console.print(Text(f"Capture: {path}", style="bold"))
            render_follow(one_capture(report, path), stream, console)
            console.print()
        return
    conv = report.conversations[report.conversations["stream"] == stream].iloc[0]
    console.print(Text(f"Stream {stream}: {conv['client']} (client) -> {conv['server']} "
                       f"(server); filter: {evidence_filter(conv)}", style="bold"))
    console.print(f"client certificate: {verdict_label(conv['client_cert'])}: "
                  f"{conv['verdict_reason']}")
    for frame, sender, text, style in transcript(report, stream):
        arrow = "C->S" if sender == "client" else "S->C"
        console.print(Text(f"{frame:>7}  {arrow}  {text}", style=style), highlight=False)
