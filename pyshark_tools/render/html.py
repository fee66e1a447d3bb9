"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network).

``render_html(report)`` is the page ``--format html`` writes; ``report_fragment`` and
``conversation_fragment`` are the pieces Jupyter shows for ``Report`` and
``ConversationView``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd

from ..core.evidence import evidence_filter
from ..merged import capture_files, is_merged, per_capture
from .headline import headline
from .inline import html_inline
from .labels import items, verdict_label
from .ladder import STYLE_COLOURS, ladder_svg, severity_colours, verdict_colours
from .loglines import evidence_html, logs_summary_html

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report

CSS = """
.tsr { font-family: "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color: #24292f;
  font-size: 14px; line-height: 1.45; }
.tsr h1 { font-size: 22px; margin: 0 0 4px; }
.tsr h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de;
  padding-bottom: 4px; }
.tsr h3 { font-size: 15px; margin: 18px 0 6px; }
.tsr .muted { color: #57606a; }
.tsr table { border-collapse: collapse; margin: 6px 0 12px; }
.tsr th, .tsr td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left;
  vertical-align: top; }
.tsr th { background: #f6f8fa; font-weight: 600; }
.tsr td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tsr code, .tsr .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 12.5px; }
.tsr .badge { display: inline-block; border-radius: 10px; padding: 1px 9px; font-size: 12.5px;
  font-weight: 600; white-space: nowrap; border: 1px solid; }
.tsr .finding { border-left: 5px solid; padding: 6px 12px; margin: 10px 0;
  background: #f6f8fa; border-radius: 0 6px 6px 0; }
.tsr .finding h4 { margin: 0 0 4px; font-size: 14.5px; }
.tsr .finding p { margin: 4px 0; }
.tsr .fix { font-weight: 600; }
.tsr dl.summary { display: grid; grid-template-columns: max-content auto; gap: 2px 14px;
  margin: 8px 0; }
.tsr dl.summary dt { color: #57606a; }
.tsr dl.summary dd { margin: 0; }
.tsr .warning { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px;
  border-radius: 6px; margin: 6px 0; }
.tsr .ladder-wrap { overflow-x: auto; margin: 8px 0 18px; }
.tsr .ladder-wrap svg.ladder { max-width: 100%; height: auto; }
.tsr .scroll { overflow-x: auto; max-width: 100%; }
.tsr .scroll table { margin: 0; }
.tsr .headline { font-size: 17px; font-weight: 600; border: 1px solid; border-left-width: 6px;
  border-radius: 6px; padding: 8px 12px; margin: 8px 0 12px; max-width: 60em; }
.tsr dl.summary dd { overflow-wrap: anywhere; }
.tsr .thumb { word-break: break-all; }
.tsr code.cmd { background: #eaeef2; border-radius: 4px; padding: 1px 4px; }
.tsr code.cmd .word { white-space: nowrap; }
.tsr .glance span { margin-right: 10px; }
"""


def _e(value: object) -> str:
    return html.escape(_s(value), quote=True)


def _s(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def _ts(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return f"{pd.Timestamp(value):%Y-%m-%d %H:%M:%S} UTC"


def verdict_badge(verdict: object) -> str:
    fg, bg = verdict_colours(verdict)
    return (f'<span class="badge verdict verdict-{_e(verdict)}" style="color:{fg};'
            f'background:{bg};border-color:{fg}">{_e(verdict_label(verdict))}</span>')


def severity_badge(severity: object) -> str:
    if not _s(severity):
        return '<span class="muted">none</span>'
    fg, bg = severity_colours(severity)
    return (f'<span class="badge severity-{_e(severity)}" style="color:{fg};background:{bg};'
            f'border-color:{fg}">{_e(str(severity).upper())}</span>')


def _capture_summary(report: Report) -> str:
    info = report.capture
    rows = [("Capture", f"<code>{_e(info['file'])}</code> ({int(info['size_bytes']):,} bytes)")]
    if info.get("first_packet_time") is not None:
        rows.append(("Time", f"{_e(_ts(info['first_packet_time']))} to "
                             f"{_e(_ts(info['last_packet_time']))}"))
    rows.append(("Packets analysed", f"{info['packets_analysed']:,} packets on ports "
                 + ", ".join(str(p) for p in info["ports"])
                 + (" (SMTP) and TLS on any port (--all-tls)" if info.get("all_tls") else "")))
    entries = int(info.get("keylog_entries") or 0)
    keylog = (f"<code>{_e(info['keylog'])}</code> ({entries} key{'s' if entries != 1 else ''}, "
              f"{int(info.get('keylog_matching') or 0)} match this capture)"
              if info.get("keylog") else "none (TLS 1.3 handshakes and SMTP inside TLS stay "
              "hidden)")
    rows.append(("TLS key log", keylog))
    rows.append(("Trust store", _e(info.get("trust_store"))))
    if info.get("expect_cert_name"):
        rows.append(("Expected certificate name", f"<code>{_e(info['expect_cert_name'])}"
                                                  "</code>"))
    if info.get("server_logs"):
        rows.append(("Server logs", logs_summary_html(info["server_logs"])))
    rows.append(("Tools", f"tls-smtp-report {_e(info.get('tool_version'))}, tshark "
                          f"{_e(info.get('tshark_version'))}"))
    body = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f'<dl class="summary">{body}</dl>'


def headline_html(report: Report) -> str:
    """The report's first sentence, for a reader who does not know TLS."""
    sentence, tone = headline(report)
    fg, bg = severity_colours(tone) if tone != "ok" else STYLE_COLOURS["green"]
    return (f'<p class="headline headline-{_e(tone)}" style="color:{fg};background:{bg};'
            f'border-color:{fg}">{_e(sentence)}</p>')


def _glance(report: Report) -> str:
    conv = report.conversations
    if not len(conv):
        return ""
    counts = conv["client_cert"].astype(str).value_counts()
    parts = [f"<span>{verdict_badge(v)} &times; {n}</span>" for v, n in counts.items()]
    sev = report.findings["severity"].astype(str).value_counts()
    findings = ", ".join(f"{sev.get(s, 0)} {s}" for s in ("error", "warning", "info"))
    return (f'<p class="glance">{len(conv)} conversation(s): {"".join(parts)}</p>'
            f"<p>Findings: {findings}.</p>")


def _reply_codes(codes: object) -> str:
    out = []
    for code in items(codes):
        colour = {"5": "#cf222e", "4": "#9a6700"}.get(code[:1])
        out.append(f'<b style="color:{colour}">{_e(code)}</b>' if colour else _e(code))
    return " ".join(out)


def conversations_table(conv: pd.DataFrame) -> str:
    head = ("stream", "client &rarr; server", "server host", "EHLO", "TLS",
            "client certificate", "client leaf / trust", "SMTP replies", "findings")
    rows = []
    for _, c in conv.iterrows():
        host = _e(c["server_host"]) + (' <span class="badge" style="color:#0550ae;'
                                       'border-color:#0550ae">EXO</span>'
                                       if bool(c["exchange_online"]) else "")
        tls = _e(c["tls_version"]) or ("no TLS" if _s(c["client_cert"]) == "no_tls" else "")
        leaf = _e(c["client_leaf_subject"])
        if _s(c["client_chain_trust"]):
            leaf += f' <span class="muted">({_e(c["client_chain_trust"])})</span>'
        sev_fg = severity_colours(c["severity"])[0] if _s(c["severity"]) else "#57606a"
        rows.append(
            f'<tr id="conv-{_e(c["stream"])}"><td class="num">{_e(c["stream"])}</td>'
            f'<td class="mono">{_e(c["client"])} &rarr; {_e(c["server"])}</td>'
            f"<td>{host}</td><td>{_e(c['ehlo'])}</td><td>{tls}</td>"
            f"<td>{verdict_badge(c['client_cert'])}</td><td>{leaf}</td>"
            f'<td class="mono">{_reply_codes(c["reply_codes"])}</td>'
            f'<td style="color:{sev_fg};font-weight:600">{_e(" ".join(items(c["finding_ids"])))}'
            "</td></tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return (f'<div class="scroll"><table class="conversations"><tr>{header}</tr>'
            f'{"".join(rows)}</table></div>')


def findings_html(findings: pd.DataFrame, conv: pd.DataFrame) -> str:
    if not len(findings):
        return '<p style="color:#1a7f37;font-weight:600">No problems found.</p>'
    out = []
    for stream, group in findings.groupby("stream", sort=True, observed=True):
        match = conv[conv["stream"] == stream]
        if len(match):
            c = match.iloc[0]
            host = _s(c["server_host"]) or _s(c["server"])
            exo = ", Exchange Online" if bool(c["exchange_online"]) else ""
            out.append(f"<h3>Stream {stream}: {_e(c['client'])} &rarr; {_e(c['server'])} "
                       f"({_e(host)}{exo})</h3>")
            out.append(f"<p>Client certificate: {verdict_badge(c['client_cert'])} "
                       f"{_e(c['verdict_reason'])}</p>")
        for _, f in group.iterrows():
            fg, _ = severity_colours(f["severity"])
            frames = items(f["evidence_frames"])
            shown = _e(evidence_filter(match.iloc[0])) if len(match) else ""
            evidence = (f"<p>Evidence: frame {', '.join(frames)} (Wireshark filter "
                        f"<code>{shown}</code>)</p>" if frames and shown else
                        f"<p>Evidence: frame {', '.join(frames)}</p>" if frames else "")
            out.append(
                f'<div class="finding" style="border-color:{fg}">'
                f'<h4>{severity_badge(f["severity"])} {_e(f["id"])} {_e(f["title"])}</h4>'
                f"<p>{html_inline(_s(f['explanation']))}</p>{evidence}{evidence_html(f)}"
                f'<p><span class="fix">Fix:</span> {html_inline(_s(f["fix"]))}</p></div>')
    return "\n".join(out)


def _validity_bar(nb: pd.Timestamp, na: pd.Timestamp, when: pd.Timestamp,
                  lo: pd.Timestamp, hi: pd.Timestamp, valid: bool) -> str:
    width, height = 180, 14
    span = max((hi - lo).total_seconds(), 1.0)

    def x(t: pd.Timestamp) -> float:
        return round(4 + (width - 8) * (t - lo).total_seconds() / span, 1)

    colour = STYLE_COLOURS["green" if valid else "red"][0]
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="validity window"><rect x="0" y="6" width="{width}" '
            f'height="2" fill="#d0d7de"/><rect x="{x(nb)}" y="3" '
            f'width="{max(x(na) - x(nb), 2)}" height="8" rx="2" fill="{colour}"/>'
            f'<line x1="{x(when)}" y1="0" x2="{x(when)}" y2="{height}" stroke="#24292f" '
            f'stroke-width="2"/></svg>')


def _days(delta: pd.Timedelta) -> str:
    days = abs(delta.total_seconds()) / 86400
    return f"{days:.0f} days" if days >= 2 else f"{days * 24:.0f} hours"


def certificates_html(report: Report) -> str:
    certs = report.certificates
    if not len(certs):
        return '<p class="muted">No certificates seen (or none could be read).</p>'
    when = pd.Timestamp(report.capture.get("first_packet_time") or pd.Timestamp.now("UTC"))
    dated = certs.dropna(subset=["not_before", "not_after"])
    lo = min([*dated["not_before"], when]) if len(dated) else when
    hi = max([*dated["not_after"], when]) if len(dated) else when
    rows = []
    groups = certs.groupby(certs["sha256"].fillna(certs["frame"].astype(str)), sort=False)
    for _, group in groups:
        c = group.iloc[0]
        streams = ", ".join(str(s) for s in dict.fromkeys(group["stream"]))
        roles = "/".join(dict.fromkeys(str(r) for r in group["role"]))
        kind = "leaf" if c["position"] == 0 else f"CA (position {c['position']})"
        if _s(c["parse_error"]):
            rows.append(f"<tr><td>{_e(roles)} {kind}<br><span class='muted'>streams "
                        f"{streams}</span></td><td colspan='5'>could not parse: "
                        f"{_e(c['parse_error'])}</td></tr>")
            continue
        valid = bool(c["valid_at_capture"]) if not pd.isna(c["valid_at_capture"]) else False
        nb, na = c["not_before"], c["not_after"]
        if pd.isna(nb) or pd.isna(na):
            validity = "unknown"
        else:
            if valid:
                state = f"valid at capture time; expires {_days(na - when)} later"
            elif when > na:
                state = f"EXPIRED {_days(when - na)} before the capture"
            else:
                state = f"NOT YET VALID: starts {_days(nb - when)} after the capture"
            colour = STYLE_COLOURS["green" if valid else "red"][0]
            validity = (f"{nb:%Y-%m-%d} &rarr; {na:%Y-%m-%d}<br>"
                        f"{_validity_bar(nb, na, when, lo, hi, valid)}<br>"
                        f'<span style="color:{colour};font-weight:600">{state}</span>')
        trust = _s(c["trust"])
        trust_html = ""
        if trust:
            fg = STYLE_COLOURS["green" if trust == "trusted" else "red"][0]
            trust_html = (f'<br><span style="color:{fg};font-weight:600">{_e(trust)}</span> '
                          f'<span class="muted">{_e(c["trust_detail"])}</span>')
        key = f"{_e(c['key_type'])} {_e(c['key_size'])}, {_e(c['signature_algorithm'])}"
        rows.append(
            f"<tr><td>{_e(roles)} {kind}<br><span class='muted'>stream(s) {streams}</span></td>"
            f"<td><b>{_e(c['subject'])}</b><br><span class='muted'>SANs:</span> "
            f"{_e('; '.join(items(c['sans']))) or '<span class=muted>none</span>'}<br>"
            "<span class='muted'>EKU:</span> "
            f"{_e('; '.join(items(c['ekus']))) or '<span class=muted>none</span>'}{trust_html}</td>"
            f"<td>{_e(c['issuer'])}</td><td>{validity}</td><td>{key}</td>"
            f'<td class="mono thumb">SHA-1 {_e(c["sha1"])}<br>SHA-256 {_e(c["sha256"])}</td>'
            "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("sent by", "subject, SANs, EKU, trust", "issuer",
                                             f"validity (| = capture, {when:%Y-%m-%d})",
                                             "key, signature", "thumbprints"))
    return (f'<div class="scroll"><table class="certificates"><tr>{head}</tr>'
            f'{"".join(rows)}</table></div>')


def _problem_streams(report: Report) -> Iterable[int]:
    problems = report.problems
    return sorted({int(s) for s in problems["stream"].dropna()})


def report_body(report: Report, *, ladders: bool = True, certificates: bool = True) -> str:
    if is_merged(report):
        return _merged_body(report, ladders=ladders, certificates=certificates)
    parts = [f"<h1>tls-smtp-report: {_e(report.capture['file'])}</h1>", headline_html(report),
             '<p class="muted">Did the sending mail server present its TLS client certificate?'
             "</p>", _capture_summary(report)]
    parts += [f'<div class="warning">Warning: {_e(w)}</div>' for w in report.warnings]
    parts.append("<h2>Conversations</h2>")
    if len(report.conversations):
        parts += [_glance(report), conversations_table(report.conversations)]
    else:
        ports = ", ".join(map(str, report.capture["ports"]))
        parts.append(f"<p>No SMTP conversations on ports {ports}.</p>")
    parts += ["<h2>Findings</h2>", findings_html(report.findings, report.conversations)]
    streams = list(_problem_streams(report))
    if ladders and streams:
        parts.append("<h2>Ladder diagrams of the conversations with a problem</h2>")
        for stream in streams:
            parts.append(f'<div class="ladder-wrap" id="ladder-{stream}">'
                         f"{ladder_svg(report, stream)}</div>")
    if certificates:
        parts += ["<h2>Certificates</h2>", certificates_html(report)]
    return "\n".join(parts)


def _merged_body(report: Report, *, ladders: bool, certificates: bool) -> str:
    """Several captures: a list of them, then one section per capture (its own streams)."""
    parts = per_capture(report)
    items = "".join(f'<li><a href="#capture-{i}"><code>{_e(path)}</code></a></li>'
                    for i, path in enumerate(capture_files(report)))
    out = [f"<h1>tls-smtp-report: {len(parts)} captures</h1>", headline_html(report),
           f"<ul>{items}</ul>"]
    for i, part in enumerate(parts):
        body = report_body(part, ladders=ladders, certificates=certificates)
        # element ids are per document: the same stream number recurs in every capture
        body = body.replace('id="conv-', f'id="capture-{i}-conv-').replace(
            'id="ladder-', f'id="capture-{i}-ladder-')
        out.append(f'<section class="capture" id="capture-{i}">{body}</section>')
    return "\n".join(out)


def _title(report: Report) -> str:
    if is_merged(report):
        return f"tls-smtp-report: {len(capture_files(report))} captures"
    return f"tls-smtp-report: {report.capture['file']}"


def render_html(report: Report) -> str:
    """The whole report as one HTML document (no script, no external resources)."""
    title = _title(report)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}\nbody {{ margin: 24px; }}</style>\n"
        f'</head>\n<body class="tsr">\n{report_body(report)}\n'
        f'<p class="muted" style="margin-top:30px">Generated by tls-smtp-report '
        f"{_e(report.capture.get('tool_version'))}. This file is self-contained.</p>\n"
        "</body>\n</html>\n"
    )


def report_fragment(report: Report) -> str:
    """What Jupyter shows for a Report: summary, conversations, findings with fixes."""
    body = report_body(report, ladders=False, certificates=False)
    return f'<div class="tsr"><style>{CSS}</style>{body}</div>'


def conversation_fragment(report: Report, stream: int) -> str:
    """What Jupyter shows for one conversation: its row, findings and ladder."""
    conv = report.conversations[report.conversations["stream"] == stream]
    findings = report.findings[report.findings["stream"] == stream]
    c = conv.iloc[0]
    parts = [f"<h3>Stream {stream}: {_e(c['client'])} &rarr; {_e(c['server'])} "
             f"({_e(c['server_host'])})</h3>",
             f"<p>Client certificate: {verdict_badge(c['client_cert'])} "
             f"{_e(c['verdict_reason'])}</p>",
             conversations_table(conv)]
    if len(findings):
        parts.append(findings_html(findings, conv.iloc[0:0]))
    parts.append(f'<div class="ladder-wrap">{ladder_svg(report, stream)}</div>')
    return f'<div class="tsr"><style>{CSS}</style>{"".join(parts)}</div>'
