"""Log sessions -> the ``log_sessions`` and log findings tables (pandas, stable columns)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..core.findings import Options, worst
from ..core.schema import LOG_FINDING_COLUMNS, LOG_SESSION_COLUMNS, ClientCert, Severity
from .model import LogRef, LogSession, endpoint
from .rules import Collector, session_rules


def _ref(ref: LogRef | None) -> str | None:
    return str(ref) if ref is not None else None


def session_row(index: int, s: LogSession) -> dict[str, object]:
    cert = s.client_certificate
    duration = ((s.end_time - s.start_time).total_seconds()
                if s.start_time is not None and s.end_time is not None else None)
    return {
        "session": index, "log_format": s.log_format.value, "role": s.role.value,
        "file": s.file, "session_id": s.session_id, "connector": s.connector,
        "client": endpoint(s.client_ip, s.client_port),
        "server": endpoint(s.server_ip, s.server_port),
        "client_ip": s.client_ip, "client_port": s.client_port,
        "server_ip": s.server_ip, "server_port": s.server_port,
        "start_time": s.start_time, "end_time": s.end_time, "duration_s": duration,
        "banner": s.banner, "server_host": s.server_host,
        "exchange_online": s.exchange_online, "ehlo": s.ehlo,
        "starttls_offered": s.starttls_offered, "starttls_requested": s.starttls_requested,
        "starttls_accepted": s.starttls_accepted,
        "tls_version": s.tls_version, "cipher": s.cipher, "tls_error": s.tls_error,
        "client_cert": s.client_cert.value,
        "client_leaf_subject": cert.subject if cert else None,
        "client_leaf_issuer": cert.issuer if cert else None,
        "client_leaf_serial": cert.serial if cert else None,
        "client_leaf_sha1": cert.thumbprint if cert else None,
        "client_leaf_not_before": cert.not_before if cert else None,
        "client_leaf_not_after": cert.not_after if cert else None,
        "client_leaf_sans": "; ".join(cert.sans) if cert and cert.sans else None,
        "server_leaf_subject": s.server_certificate.subject if s.server_certificate else None,
        "reply_codes": " ".join(r.code for r in s.replies) or None,
        "last_reply": s.replies[-1].text if s.replies else None,
        "verdict_reason": s.verdict_reason,
        "severity": "", "finding_ids": "",
        "line_first": _ref(s.first_ref), "line_banner": _ref(s.refs.get("banner")),
        "line_ehlo_reply": _ref(s.refs.get("ehlo_reply")),
        "line_starttls": _ref(s.refs.get("starttls")), "line_tls": _ref(s.refs.get("tls")),
        "line_client_certificate": _ref(s.refs.get("client_certificate")),
        "line_tls_error": _ref(s.refs.get("tls_error")),
        "line_last_reply": _ref(s.refs.get("last_reply")),
        "stream": pd.NA, "skew_s": None,
    }


def findings_table(rows: list[dict[str, object]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(LOG_FINDING_COLUMNS))
    df["session"] = df["session"].astype("Int64")
    df["stream"] = df["stream"].astype("Int64")
    order = {s.value: i for i, s in enumerate(Severity)}
    df = df.sort_values(["session", "severity", "id"], key=lambda c: c.map(order)
                        if c.name == "severity" else c, kind="stable").reset_index(drop=True)
    df["severity"] = pd.Categorical(df["severity"], categories=[s.value for s in Severity])
    return df


def build(sessions: Sequence[LogSession], options: Options | None = None
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(log_sessions, log findings) for these sessions, in this order."""
    options = options or Options()
    collector = Collector()
    rows = []
    for index, s in enumerate(sessions):
        session_rules(collector, index, s, options)
        rows.append(session_row(index, s))
    findings = findings_table(collector.rows)
    table = pd.DataFrame(rows, columns=list(LOG_SESSION_COLUMNS))
    for column in ("start_time", "end_time", "client_leaf_not_before", "client_leaf_not_after"):
        table[column] = pd.to_datetime(table[column], utc=True)
    for column in ("session", "client_port", "server_port", "stream"):
        table[column] = table[column].astype("Int64")
    table["client_cert"] = pd.Categorical(table["client_cert"],
                                          categories=[v.value for v in ClientCert])
    by_session: dict[int, list[tuple[str, str]]] = {}
    for session, severity, rule in zip(findings["session"], findings["severity"].astype(str),
                                       findings["id"], strict=True):
        by_session.setdefault(int(session), []).append((severity, rule))
    table["severity"] = [worst([s for s, _ in by_session.get(i, [])]) for i in table["session"]]
    table["finding_ids"] = [" ".join(dict.fromkeys(r for _, r in by_session.get(i, [])))
                            for i in table["session"]]
    return table, findings
