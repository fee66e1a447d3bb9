"""The human report: a conversations table with coloured verdicts, then each finding."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..report import Report
from .labels import SEVERITY_STYLES, VERDICT_STYLES, verdict_label


def _s(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def render_text(report: Report, console: Console) -> None:
    info = report.capture
    console.print(Text(f"Capture: {info['file']}", style="bold"))
    span = ""
    if info.get("first_packet_time") is not None:
        span = (f", {pd.Timestamp(info['first_packet_time']):%Y-%m-%d %H:%M:%S} to "
                f"{pd.Timestamp(info['last_packet_time']):%H:%M:%S} UTC")
    keys = (f"; key log: {info['keylog_entries']} secret(s), {info.get('keylog_matching', 0)} "
            "match this capture" if info.get("keylog") else "")
    console.print(f"{info['packets_analysed']} packets on ports "
                  f"{', '.join(map(str, info['ports']))}{span}; tshark {info['tshark_version']}"
                  f"{keys}")
    for warning in report.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    conv = report.conversations
    if not len(conv):
        ports = ", ".join(map(str, info["ports"]))
        console.print(Text(f"No SMTP conversations on ports {ports}.", style="yellow"))
        console.print("Hint: mail on another port? Add it with --port N (e.g. --port 2525); "
                      "--all-tls also reports TLS conversations that are not SMTP.")
        return
    table = Table(title="Conversations", show_lines=False, header_style="bold")
    for name in ("stream", "client", "server", "TLS", "client certificate", "findings"):
        table.add_column(name, overflow="fold")
    for _, c in conv.iterrows():
        verdict = _s(c["client_cert"])
        server = _s(c["server_host"]) or _s(c["server"])
        if c["exchange_online"]:
            server += " (Exchange Online)"
        leaf = _s(c["client_leaf_subject"])
        label = verdict_label(verdict) + (f"\n{leaf}" if leaf else "")
        sev = _s(c["severity"])
        table.add_row(
            _s(c["stream"]), _s(c["client"]), server,
            _s(c["tls_version"]) or ("none" if verdict == "no_tls" else ""),
            Text(label, style=VERDICT_STYLES.get(verdict, "")),
            Text(_s(c["finding_ids"]) or "-", style=SEVERITY_STYLES.get(sev, "")),
        )
    console.print(table)
    findings = report.findings
    if not len(findings):
        console.print(Text("No problems found.", style="green"))
        return
    for stream, group in findings.groupby("stream", sort=True, observed=True):
        c = conv[conv["stream"] == stream].iloc[0]
        names = [n for n in (_s(c["server_host"]),
                             "Exchange Online" if c["exchange_online"] else "") if n]
        about = f" ({', '.join(names)})" if names else ""
        console.print()
        console.print(Text(f"Stream {stream}: {c['client']} -> {c['server']}{about}",
                           style="bold"))
        console.print(f"  EHLO {_s(c['ehlo']) or '(none seen)'}; {_s(c['tls_version']) or 'no TLS'}"
                      f"{'; cipher ' + _s(c['cipher']) if _s(c['cipher']) else ''}")
        console.print(f"  client certificate: {verdict_label(c['client_cert'])}: "
                      f"{_s(c['verdict_reason'])}")
        if _s(c["client_leaf_subject"]):
            console.print(f"  client leaf: {c['client_leaf_subject']} "
                          f"(trust: {_s(c['client_chain_trust']) or 'unknown'})")
        for _, f in group.iterrows():
            sev = str(f["severity"])
            console.print(Text(f"  [{sev.upper()}] {f['id']} {f['title']}",
                               style=SEVERITY_STYLES.get(sev, "")))
            console.print(f"    {f['explanation']}", highlight=False)
            if f["evidence_frames"]:
                frames = f["evidence_frames"].split()
                console.print(f"    Evidence: frame {', '.join(frames)} (Wireshark filter: "
                              f"tcp.stream == {stream})", highlight=False)
            console.print(f"    Fix: {f['fix']}", highlight=False)
    counts = findings["severity"].astype(str).value_counts()
    console.print()
    console.print(f"{len(conv)} conversation(s); findings: "
                  + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("error", "warning", "info")))
