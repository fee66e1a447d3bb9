"""The human report: a conversations table with coloured verdicts, then each finding."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..core.evidence import evidence_filter
from ..merged import is_merged, per_capture
from .grouped import GROUP_ABOVE, render_grouped
from .labels import SEVERITY_STYLES, VERDICT_STYLES, items, verdict_label

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report


def _s(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def render_text(report: Report, console: Console, details: bool = False,
                no_problems: str = "No problems found.") -> None:
    """The header, then every conversation and finding; above ``GROUP_ABOVE`` conversations
    (unless ``details``), verdict counts and findings grouped by rule instead."""
    if is_merged(report):
        render_merged_text(report, console, details)
        return
    info = report.capture
    console.print(Text(f"Capture: {info['file']}", style="bold"))
    span = ""
    if info.get("first_packet_time") is not None:
        span = (f", {pd.Timestamp(info['first_packet_time']):%Y-%m-%d %H:%M:%S} to "
                f"{pd.Timestamp(info['last_packet_time']):%H:%M:%S} UTC")
    keys = (f"; key log: {info['keylog_entries']} secret(s), {info.get('keylog_matching', 0)} "
            "match this capture" if info.get("keylog") else "")
    console.print(f"{info['packets_analysed']} packets on {ports_text(info)}{span}; "
                  f"tshark {info['tshark_version']}{keys}")
    logs = info.get("server_logs")
    if logs:
        skews = ", ".join(f"{skew:+.2f} s in {name}" for name, skew in
                          (logs.get("skew_s_by_file") or {}).items())
        console.print(f"Server logs: {', '.join(logs['files']) or 'none readable'}; "
                      f"{logs['sessions']} session(s), {logs['joined']} joined to a conversation"
                      + (f" (clock skew {skews}; tolerance ±{logs['tolerance_s']:g} s)"
                         if skews else ""))
    for warning in report.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    conv = report.conversations
    if not len(conv) and info.get("conversations_in_capture"):
        console.print(Text(f"No conversation matches {filters_text(info)}.", style="yellow"))
        console.print(f"Hint: the capture holds {info['conversations_in_capture']} "
                      "conversation(s); without these options the report lists them all.")
        return
    if not len(conv):
        ports = ", ".join(map(str, info["ports"]))
        console.print(Text(f"No SMTP conversations on ports {ports}.", style="yellow"))
        console.print("Hint: mail on another port? Add it with --port N (e.g. --port 2525); "
                      "--all-tls also reports TLS conversations that are not SMTP.")
        return
    if len(conv) > GROUP_ABOVE and not details:
        render_grouped(report, console)
        return
    console.print(conversations_renderable(conv, console.width))
    findings = report.findings
    if not len(findings):
        console.print(Text(no_problems, style="green"))
        return
    for stream, group in findings.groupby("stream", sort=True, observed=True):
        c = conv[conv["stream"] == stream].iloc[0]
        names = [n for n in (_s(c["server_host"]),
                             "Exchange Online" if c["exchange_online"] else "") if n]
        about = f" ({', '.join(names)})" if names else ""
        console.print()
        console.print(Text(f"Stream {stream}: {c['client']} -> {c['server']}{about}",
                           style="bold"))
        hello = (f"EHLO {_s(c['ehlo']) or '(none seen)'}" if _s(c["protocol"]) in ("", "smtp")
                 else f"{_s(c['protocol']).upper()}, server name (SNI) {_s(c['sni']) or 'none'}")
        console.print(f"  {hello}; {_s(c['tls_version']) or 'no TLS'}"
                      f"{'; cipher ' + _s(c['cipher']) if _s(c['cipher']) else ''}")
        paragraph(console, 2, f"client certificate: {verdict_label(c['client_cert'])}: "
                              f"{_s(c['verdict_reason'])}")
        if _s(c["client_leaf_subject"]):
            console.print(f"  client leaf: {c['client_leaf_subject']} "
                          f"(trust: {_s(c['client_chain_trust']) or 'unknown'})")
        if _s(c.get("log_session")):
            console.print(f"  server log: {c['log_session']} (clock skew "
                          f"{float(c['log_skew_s']):+.2f} s); client certificate from the "
                          f"{c['client_cert_source']}; replies from the "
                          f"{_s(c['reply_source']) or 'capture'}", highlight=False)
        for _, f in group.iterrows():
            sev = str(f["severity"])
            console.print(Text(f"  [{sev.upper()}] {f['id']} {f['title']}",
                               style=SEVERITY_STYLES.get(sev, "")))
            paragraph(console, 4, str(f["explanation"]))
            if f["evidence_frames"]:
                frames = items(f["evidence_frames"])
                paragraph(console, 4, f"Evidence: frame {', '.join(frames)} (Wireshark filter: "
                                      f"{evidence_filter(c)})")
            if _s(f.get("evidence_lines")):
                paragraph(console, 4, f"Evidence: server log {f['evidence_lines']}")
            paragraph(console, 4, f"Fix: {f['fix']}")
    counts = findings["severity"].astype(str).value_counts()
    console.print()
    console.print(f"{len(conv)} conversation(s); findings: "
                  + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("error", "warning", "info")))


def render_merged_text(report: Report, console: Console, details: bool = False) -> None:
    """Several captures: one section per capture (its own streams, table and findings),
    then the totals. A conversation is (capture, stream): stream numbers restart per file."""
    parts = per_capture(report)
    named = report.capture["file"]
    named = ", ".join(map(str, named)) if isinstance(named, list) else str(named)
    console.print(Text(f"{len(parts)} captures: {named}", style="bold"))
    for part in parts:
        console.print()
        render_text(part, console, details)
    findings = report.findings
    counts = findings["severity"].astype(str).value_counts() if len(findings) else {}
    console.print()
    console.print(f"All {len(parts)} captures: {len(report.conversations)} conversation(s); "
                  "findings: " + ", ".join(f"{counts.get(s, 0)} {s}"
                                           for s in ("error", "warning", "info")))


#: Columns of the conversations table; the first three hold tokens that must not break.
_HEADERS = ("stream", "client", "server", "TLS", "client certificate", "findings")


def _table_cells(c: pd.Series) -> list[Text]:
    verdict = _s(c["client_cert"])
    server = _s(c["server_host"]) or _s(c["server"])
    if c["exchange_online"]:
        server += " (Exchange Online)"
    leaf = _s(c["client_leaf_subject"]).replace(",", ", ")  # breaks between its parts
    label = verdict_label(verdict) + (f"\n{leaf}" if leaf else "")
    sev = _s(c["severity"])
    return [Text(_s(c["stream"])), Text(_s(c["client"])), Text(server),
            Text(_s(c["tls_version"]) or ("none" if verdict == "no_tls" else "")),
            Text(label, style=VERDICT_STYLES.get(verdict, "")),
            Text(" ".join(items(c["finding_ids"])) or "-", style=SEVERITY_STYLES.get(sev, ""))]


def _longest_word(texts: list[Text]) -> int:
    return max((len(word) for t in texts for word in t.plain.split()), default=1)


def conversations_renderable(conv: pd.DataFrame, width: int) -> Table:
    """The conversations as a table when its words fit ``width`` unbroken (an address, a
    host name never splits), else one block per conversation (narrow terminals)."""
    rows = [_table_cells(c) for _, c in conv.iterrows()]
    columns = [[Text(h), *(row[i] for row in rows)] for i, h in enumerate(_HEADERS)]
    words = [_longest_word(col) for col in columns]
    if sum(words) + 3 * len(_HEADERS) + 1 <= width:
        table = Table(title="Conversations", show_lines=False, header_style="bold")
        for i, name in enumerate(_HEADERS):
            # the token columns get exactly their longest word: never folded, never squeezed
            table.add_column(name, width=words[i] if i < 3 else None, min_width=words[i],
                             overflow="fold")
        for row in rows:
            table.add_row(*row)
        return table
    grid = Table.grid(padding=(0, 1))
    grid.title = "Conversations"
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for row in rows:
        stream, client, server, tls, label, ids = row
        grid.add_row(Text(f"stream {stream.plain}", style="bold"),
                     Text(f"{client.plain} -> ").append_text(server))
        grid.add_row("", Text(f"{tls.plain or 'no TLS'}; client certificate ")
                     .append_text(label).append("; findings ").append_text(ids))
    return grid


def paragraph(console: Console, indent: int, text: str, style: str = "") -> None:
    """A paragraph of ``indent`` spaces that keeps its indent on every wrapped line (on a
    console that wraps; files and pipes get it on one line)."""
    if console.soft_wrap:
        console.print(Text(" " * indent + text, style=style), highlight=False)
        return
    grid = Table.grid()
    grid.add_column(width=indent, no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("", Text(text, style=style))
    console.print(grid)


def filters_text(info: dict) -> str:
    """The options that narrowed a report, as the user typed them."""
    parts = [f"--stream {n}" for n in info.get("stream_filter") or ()]
    if info.get("exo_only"):
        parts.append("--exo-only (conversations with Exchange Online)")
    return " ".join(parts) or "the options given"


def ports_text(info: dict) -> str:
    """What was read: the SMTP ports, and with --all-tls every other TLS conversation."""
    ports = f"ports {', '.join(map(str, info['ports']))}"
    return f"SMTP {ports} and TLS on any port (--all-tls)" if info.get("all_tls") else ports
