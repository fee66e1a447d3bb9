"""A ladder (sequence) diagram of one conversation as standalone SVG, no JavaScript.

Two lanes (the sending server on the left, the receiving server on the right), one arrow per
SMTP command, SMTP reply and TLS message, each with its frame number and time offset, the
client's Certificate message in green (presented) or red (EMPTY), and the verdict as a
caption. ``ladder_steps`` gives the rows as data; ``ladder_svg`` draws them.
"""

from __future__ import annotations

import html
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..core.details import detail_fields
from ..core.evidence import evidence_filter
from .labels import SEVERITY_STYLES, VERDICT_STYLES, verdict_label

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report

#: The rich styles of ``labels.py`` as web colours (foreground, light background).
STYLE_COLOURS: dict[str, tuple[str, str]] = {
    "green": ("#1a7f37", "#dafbe1"),
    "bold red": ("#cf222e", "#ffebe9"),
    "red": ("#cf222e", "#ffebe9"),
    "yellow": ("#9a6700", "#fff8c5"),
    "cyan": ("#0969da", "#ddf4ff"),
    "": ("#57606a", "#f6f8fa"),
}


def verdict_colours(verdict: object) -> tuple[str, str]:
    """(foreground, background) colour of a ClientCert verdict, from ``VERDICT_STYLES``."""
    return STYLE_COLOURS.get(VERDICT_STYLES.get(str(verdict), ""), STYLE_COLOURS[""])


def severity_colours(severity: object) -> tuple[str, str]:
    return STYLE_COLOURS.get(SEVERITY_STYLES.get(str(severity), ""), STYLE_COLOURS[""])


@dataclass(frozen=True)
class Step:
    """One arrow of the ladder."""

    frame: int
    offset_s: float  # seconds since the conversation's first packet
    sender: str  # client/server
    kind: str  # the event kind (smtp_command, smtp_reply, tls_handshake, ...)
    label: str  # main text above the arrow
    note: str  # smaller text below the arrow ("" for none)
    tone: str  # smtp, tls, minor, good, bad, warn, empty
    phase: str  # clear, handshake, inside
    decrypted: bool
    full_text: str  # the untruncated text (SVG tooltip)


# Arrow/text colours per tone: (line colour, text colour, text weight).
_TONES: dict[str, tuple[str, str, str]] = {
    "smtp": ("#24292f", "#24292f", "normal"),
    "tls": ("#0550ae", "#0550ae", "bold"),
    "minor": ("#8c959f", "#6e7781", "normal"),
    "good": ("#1a7f37", "#1a7f37", "bold"),
    "warn": ("#9a6700", "#9a6700", "bold"),
    "bad": ("#cf222e", "#cf222e", "bold"),
    "empty": ("#cf222e", "#cf222e", "bold"),
}

_PHASES: dict[str, tuple[str, str]] = {
    # phase: (band fill, band title)
    "clear": ("#f6f8fa", "SMTP in clear"),
    "handshake": ("#eef5ff", "TLS handshake"),
    "inside": ("#f0fbf2", "inside TLS"),
}

_SMTP_CHARS = 78  # monospace characters that fit between the lanes

_MINOR_TLS = {"ServerKeyExchange", "ServerHelloDone", "ClientKeyExchange", "Finished",
              "NewSessionTicket", "EncryptedExtensions", "CertificateVerify",
              "ChangeCipherSpec"}


def _cn_or_subject(certs: pd.DataFrame, frame: int) -> tuple[str, int, str]:
    """(leaf CN or subject, chain length, leaf trust) of the Certificate message in frame."""
    chain = certs[certs["frame"] == frame] if len(certs) else certs
    if not len(chain):
        return "", 0, ""
    chain = chain.sort_values("position")
    leaf = chain.iloc[0]
    name = leaf["cn"] if isinstance(leaf["cn"], str) and leaf["cn"] else leaf["subject"]
    return str(name), len(chain), _s(leaf["trust"])


def _reply_tone(code: str) -> str:
    if code.startswith("5"):
        return "bad"
    if code.startswith("4"):
        return "warn"
    return "smtp"


def ladder_steps(report: Report, stream: int) -> list[Step]:
    """The arrows of one conversation, in capture order."""
    events = report.events[report.events["stream"] == stream]
    certs = report.certificates[report.certificates["stream"] == stream]
    conv = report.conversations[report.conversations["stream"] == stream]
    start = None
    if len(conv) and not pd.isna(conv.iloc[0]["start_time"]):
        start = conv.iloc[0]["start_time"]
    elif len(events):
        start = events["time"].min()
    smtp_frames = set(events.loc[events["kind"].isin(["smtp_command", "smtp_reply"]), "frame"])
    steps: list[Step] = []
    seen_appdata = False
    for ev in events.itertuples(index=False):
        frame, sender, kind = int(ev.frame), str(ev.sender), str(ev.kind)
        name, detail = str(ev.name or ""), str(ev.detail or "")
        decrypted = bool(ev.decrypted) if not pd.isna(ev.decrypted) else False
        offset = (ev.time - start).total_seconds() if start is not None else 0.0
        note, tone = "", "smtp"
        if kind in ("smtp_command", "smtp_reply"):
            lines = [line for line in detail.split("\n") if line.strip()] or [name]
            label = lines[0]
            if len(label) > _SMTP_CHARS and len(lines) == 1:
                cut = label.rfind(" ", 0, _SMTP_CHARS)
                cut = cut if cut > _SMTP_CHARS // 2 else _SMTP_CHARS
                label, note = label[:cut], "\u2026" + label[cut:].strip()
            if len(lines) > 1:
                keywords = [line[4:].split(" ")[0] for line in lines[1:]]
                note = f"+{len(lines) - 1} lines: " + " ".join(keywords)
            tone = _reply_tone(name) if kind == "smtp_reply" else "smtp"
            if kind == "smtp_command" and name.upper() == "STARTTLS":
                tone = "tls"
            phase = "inside" if decrypted else "clear"
            full = detail
        elif kind == "tls_handshake":
            phase = "inside" if seen_appdata else "handshake"
            label, note, tone = _handshake(name, detail, sender, frame, certs)
            full = f"{label}\n{note}".strip() if note else label
        elif kind == "tls_alert":
            level, _, code = detail.partition(" ")
            label = f"Alert: {name}" + (f" ({level} {code})" if detail else "")
            benign = name in ("close_notify", "encrypted_alert")
            tone = "minor" if benign else "bad"
            phase = "inside" if seen_appdata else "handshake"
            full = label
        elif kind == "tls_ccs":
            label, tone = "ChangeCipherSpec", "minor"
            phase = "inside" if seen_appdata else "handshake"
            full = label
        elif kind == "tls_appdata":
            seen_appdata = True
            if frame in smtp_frames:
                continue  # the decrypted SMTP line of this frame says more
            label, tone, phase = "encrypted application data", "minor", "inside"
            note = "(no key log: SMTP inside TLS cannot be read)" if not report.capture.get(
                "keylog") else ""
            full = label
        else:
            continue
        steps.append(Step(frame, offset, sender, kind, label, note, tone, phase, decrypted, full))
    return _with_log_lines(report, stream, steps, start)


#: Step kind of a server log line (no arrow: a note on the lane of the side that logged it).
LOG_STEP = "server_log"


def _with_log_lines(report: Report, stream: int, steps: list[Step], start) -> list[Step]:
    """The joined server log lines (``--log``) among the packets, by time on the capture's
    clock; each takes the phase of the packet before it."""
    lines = getattr(report, "log_lines", None)
    if lines is None or not len(lines) or start is None:
        return steps
    mine = lines[lines["stream"] == stream]
    sessions = report.log_sessions.set_index("session")["role"] if len(mine) else None
    notes = []
    for row in mine.itertuples(index=False):
        if pd.isna(row.capture_time):
            continue
        role = str(sessions.get(row.session, "client")) if sessions is not None else "client"
        notes.append(Step(0, (row.capture_time - start).total_seconds(), role, LOG_STEP,
                          str(row.text), str(row.line), "log", "clear", False,
                          f"{row.line}: {row.text}"))
    merged = sorted([(s.offset_s, 0, i, s) for i, s in enumerate(steps)]
                    + [(n.offset_s, 1, i, n) for i, n in enumerate(notes)])
    out: list[Step] = []
    for _, _, _, step in merged:
        if step.kind == LOG_STEP:
            phase = out[-1].phase if out else "clear"
            step = Step(step.frame, step.offset_s, step.sender, step.kind, step.label,
                        step.note, step.tone, phase, step.decrypted, step.full_text)
        out.append(step)
    return out


def _handshake(name: str, detail: str, sender: str, frame: int,
               certs: pd.DataFrame) -> tuple[str, str, str]:
    kv = detail_fields(detail)
    if name == "ClientHello":
        offered = kv.get("versions", "").replace(",", ", ")
        return "ClientHello", f"offers {offered}" if offered else "", "tls"
    if name == "ServerHello":
        note = " ".join(v for v in (kv.get("version", ""), kv.get("cipher", "")) if v)
        return "ServerHello", note, "tls"
    if name == "CertificateRequest":
        return "CertificateRequest: send me your certificate", "", "warn"
    if name in ("Certificate", "CompressedCertificate"):
        count = kv.get("certificates")
        if kv.get("compressed"):  # RFC 8879: shown as the Certificate it carries
            chain_kind = f"{kv['compressed']}-compressed"
            count = None if count == "?" else count
        else:
            chain_kind = ""
        if count == "0":
            return ("Certificate: EMPTY \u2014 no client certificate sent", "0 certificates",
                    "empty")
        cn, chain, trust = _cn_or_subject(certs, frame)
        chain_note = f"{chain} certificate{'s' if chain != 1 else ''} in chain" if chain else (
            f"{count} certificates" if count else "")
        if trust and trust != "trusted":
            chain_note += f", leaf {trust.replace('_', ' ')}"
        if chain_kind:
            chain_note = ", ".join(n for n in (chain_note, chain_kind) if n)
        if cn:
            label = f"Certificate: {cn}"
        elif count:
            label = f"Certificate ({count} certificates)"
        else:
            label = "Certificate"
        return label, chain_note, "good" if sender == "client" else "tls"
    if name in _MINOR_TLS:
        return name, "", "minor"
    return name + (f" {detail}" if detail else ""), "", "tls"


# ---------------------------------------------------------------------------------------
# Drawing

WIDTH = 1000
_GUTTER = 118  # frame / time column
_CLIENT_X = 190
_SERVER_X = 800
_MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
_SANS = "DejaVu Sans, Segoe UI, Helvetica, Arial, sans-serif"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _s(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def ladder_svg(report: Report, stream: int, *, title: bool = True) -> str:
    """The ladder diagram of one conversation as an ``<svg>`` element (UTF-8 text)."""
    conv_rows = report.conversations[report.conversations["stream"] == stream]
    if not len(conv_rows):
        raise KeyError(f"no conversation with tcp.stream == {stream}")
    conv = conv_rows.iloc[0]
    steps = ladder_steps(report, stream)
    findings = report.findings[report.findings["stream"] == stream]
    out: list[str] = []
    y = 14
    if title:
        start = conv["start_time"]
        when = f"{start:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC" if not pd.isna(start) else ""
        out.append(f'<text x="14" y="{y + 14}" font-size="16" font-weight="bold">'
                   f'Stream {stream}: {_e(conv["client"])} \u2192 {_e(conv["server"])}</text>')
        out.append(f'<text x="14" y="{y + 32}" font-size="12" fill="#57606a">'
                   f'{_e(when)}  \u00b7  Wireshark filter: {_e(evidence_filter(conv))}  \u00b7  '
                   f'{sum(s.kind != LOG_STEP for s in steps)} messages</text>')
        y += 46
    # Lane heads
    head_h = 58
    client_lines = ["CLIENT (sending server)", _s(conv["client"]),
                    f"EHLO {_s(conv['ehlo'])}" if _s(conv["ehlo"]) else ""]
    server_host = _s(conv["server_host"])
    server_lines = ["SERVER" + (" (Exchange Online)" if bool(conv["exchange_online"]) else ""),
                    _s(conv["server"]), server_host]
    for x, lines in ((_CLIENT_X, client_lines), (_SERVER_X, server_lines)):
        out.append(f'<rect x="{x - 150}" y="{y}" width="300" height="{head_h}" rx="6" '
                   f'fill="#ffffff" stroke="#57606a" stroke-width="1.2"/>')
        for i, line in enumerate(line for line in lines if line):
            weight = ' font-weight="bold"' if i == 0 else ""
            size = 12 if i == 0 else 11.5
            out.append(f'<text x="{x}" y="{y + 17 + i * 16}" text-anchor="middle" '
                       f'font-size="{size}"{weight}>{_e(_fit(line, 44))}</text>')
    y += head_h + 8
    lanes_top = y
    out.append(f'<text x="14" y="{y + 10}" font-size="10.5" fill="#57606a" '
               f'font-weight="bold">FRAME   TIME</text>')
    y += 18

    # Rows
    rows: list[tuple[Step, int, int]] = []  # step, y of the arrow, row height
    for step in steps:
        height = 42 if step.note else 28
        rows.append((step, y + 22, height))
        y += height
    lanes_bottom = y + 6

    # Phase bands behind the arrows
    band_parts: list[str] = []
    i = 0
    while i < len(rows):
        phase = rows[i][0].phase
        j = i
        while j + 1 < len(rows) and rows[j + 1][0].phase == phase:
            j += 1
        top = rows[i][1] - 24
        bottom = rows[j][1] + rows[j][2] - 20
        fill, name = _PHASES[phase]
        names = [name]
        if phase == "inside":
            decrypted = any(r[0].decrypted for r in rows[i:j + 1])
            names.append("(decrypted with key log)" if decrypted else "(encrypted)")
        band_parts.append(f'<rect x="{_GUTTER}" y="{top}" width="{WIDTH - _GUTTER - 6}" '
                          f'height="{bottom - top}" fill="{fill}"/>')
        for k, text in enumerate(names):
            band_parts.append(f'<text x="{WIDTH - 12}" y="{top + 14 + 13 * k}" '
                              f'text-anchor="end" font-size="10.5" fill="#57606a" '
                              f'font-style="italic">{_e(text)}</text>')
        i = j + 1
    out.extend(band_parts)
    # Lifelines
    for x in (_CLIENT_X, _SERVER_X):
        out.append(f'<line x1="{x}" y1="{lanes_top}" x2="{x}" y2="{lanes_bottom}" '
                   f'stroke="#8c959f" stroke-width="1.5" stroke-dasharray="5 4"/>')

    previous_frame = None
    for step, ay, height in rows:
        if step.kind == LOG_STEP:
            out.append(_log_note(step, ay))
            continue
        line_colour, text_colour, weight = _TONES.get(step.tone, _TONES["smtp"])
        x1, x2 = (_CLIENT_X, _SERVER_X) if step.sender == "client" else (_SERVER_X, _CLIENT_X)
        tip = x2 - 9 if x2 > x1 else x2 + 9
        width = 3.2 if step.tone == "empty" else (1.1 if step.tone == "minor" else 1.6)
        dash = ' stroke-dasharray="4 3"' if step.tone == "minor" else ""
        # Frame number and time: once per frame, a bracket for more messages in one frame.
        if step.frame != previous_frame:
            out.append(f'<text x="14" y="{ay + 4}" font-size="11.5" font-family="{_MONO}" '
                       f'fill="#24292f" class="frame">{step.frame}</text>')
            out.append(f'<text x="{_GUTTER - 8}" y="{ay + 4}" text-anchor="end" '
                       f'font-size="11" font-family="{_MONO}" fill="#57606a">'
                       f'+{step.offset_s:.3f}s</text>')
        else:
            out.append(f'<text x="14" y="{ay + 4}" font-size="11.5" font-family="{_MONO}" '
                       f'fill="#afb8c1">\u2502</text>')
        previous_frame = step.frame
        group = [f'<g class="step tone-{step.tone}" data-frame="{step.frame}">',
                 f"<title>frame {step.frame} (+{step.offset_s:.3f} s), {step.sender}: "
                 f"{_e(step.full_text)}</title>"]
        if step.tone == "empty":
            group.append(f'<rect x="{_CLIENT_X + 8}" y="{ay - 20}" '
                         f'width="{_SERVER_X - _CLIENT_X - 16}" height="{height - 2}" rx="5" '
                         f'fill="#ffebe9" stroke="#cf222e" stroke-width="1"/>')
        group.append(f'<line x1="{x1}" y1="{ay}" x2="{tip}" y2="{ay}" stroke="{line_colour}" '
                     f'stroke-width="{width}"{dash}/>')
        head = 10 if step.tone == "empty" else 8
        direction = 1 if x2 > x1 else -1
        group.append(f'<polygon points="{x2},{ay} {x2 - direction * head},{ay - head / 2 - 1} '
                     f'{x2 - direction * head},{ay + head / 2 + 1}" fill="{line_colour}"/>')
        mid = (_CLIENT_X + _SERVER_X) / 2
        smtp = step.kind in ("smtp_command", "smtp_reply")
        font = _MONO if smtp else _SANS
        limit = _SMTP_CHARS if smtp else 80
        group.append(f'<text x="{mid}" y="{ay - 5}" text-anchor="middle" font-size="12.5" '
                     f'font-family="{font}" font-weight="{weight}" fill="{text_colour}">'
                     f'{_e(_fit(step.label, limit))}</text>')
        if step.note:
            group.append(f'<text x="{mid}" y="{ay + 13}" text-anchor="middle" font-size="10.5" '
                         f'fill="{text_colour if step.tone == "empty" else "#57606a"}">'
                         f'{_e(_fit(step.note, 100))}</text>')
        group.append("</g>")
        out.extend(group)

    # Caption: the verdict and the findings
    y = lanes_bottom + 14
    verdict = _s(conv["client_cert"])
    fg, bg = verdict_colours(verdict)
    problems = [str(s) for s in findings["severity"] if str(s) in ("error", "warning")]
    if problems:  # never a green box beside a red error: the worst finding colours it
        fg, bg = severity_colours("error" if "error" in problems else "warning")
    reason = textwrap.wrap(_s(conv["verdict_reason"]), 120)
    finding_lines = [(f"{f['id']} ({f['severity']}): {f['title']}", str(f["severity"]))
                     for _, f in findings.iterrows()]
    cap_h = 34 + 16 * len(reason) + 18 * len(finding_lines) + 8
    out.append(f'<rect x="14" y="{y}" width="{WIDTH - 28}" height="{cap_h}" rx="8" '
               f'fill="{bg}" stroke="{fg}" stroke-width="2"/>')
    out.append(f'<text x="28" y="{y + 24}" font-size="15" font-weight="bold" fill="{fg}" '
               f'class="verdict">Client certificate: {_e(verdict_label(verdict))}</text>')
    ty = y + 24
    for line in reason:
        ty += 16
        out.append(f'<text x="28" y="{ty}" font-size="12" fill="#24292f">{_e(line)}</text>')
    for text, severity in finding_lines:
        ty += 18
        sfg, _ = severity_colours(severity)
        out.append(f'<text x="28" y="{ty}" font-size="12" font-weight="bold" fill="{sfg}">'
                   f'{_e(_fit(text, 130))}</text>')
    height = y + cap_h + 14
    body = "\n".join(out)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{WIDTH}" '
            f'height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="{_SANS}" '
            f'role="img" aria-label="Ladder diagram of tcp.stream {stream}">\n'
            f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>\n{body}\n</svg>\n')


def _log_note(step: Step, ay: int) -> str:
    """A server log line: a dashed note box at the lane of the side that wrote the log."""
    x = _CLIENT_X + 12 if step.sender == "client" else _SERVER_X - 12 - 420
    return (f'<g class="step tone-log" data-log-line="{_e(step.note)}">'
            f"<title>{_e(step.full_text)}</title>"
            f'<text x="14" y="{ay + 4}" font-size="10.5" fill="#8250df">log</text>'
            f'<text x="{_GUTTER - 8}" y="{ay + 4}" text-anchor="end" font-size="11" '
            f'font-family="{_MONO}" fill="#8250df">+{step.offset_s:.3f}s</text>'
            f'<rect x="{x}" y="{ay - 17}" width="420" height="34" rx="4" fill="#fbefff" '
            f'stroke="#8250df" stroke-width="1" stroke-dasharray="3 2"/>'
            f'<text x="{x + 8}" y="{ay - 3}" font-size="11" font-family="{_MONO}" '
            f'fill="#24292f">{_e(_fit(step.label, 64))}</text>'
            f'<text x="{x + 8}" y="{ay + 11}" font-size="10" fill="#8250df">server log '
            f"{_e(_fit(step.note, 60))}</text></g>")


class Ladder:
    """A ladder diagram; shows itself in Jupyter and saves as .svg."""

    def __init__(self, report: Report, stream: int) -> None:
        self.stream = stream
        self.steps = ladder_steps(report, stream)
        self.svg = ladder_svg(report, stream)

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_html_(self) -> str:
        return f'<div style="overflow-x:auto">{self.svg}</div>'

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + self.svg,
                          encoding="utf-8")
        return target

    def __repr__(self) -> str:
        return f"<Ladder tcp.stream == {self.stream}: {len(self.steps)} messages>"
