"""Log sessions + a capture's conversations -> one story per conversation.

A session joins the conversation with the same endpoints whose start lies within a clock-skew
tolerance (the client address may differ behind NAT: then the server endpoint and the time
decide). The log fills in what the capture could not see (the client certificate of a TLS 1.3
handshake without keys, a cut capture, the replies inside TLS), and where both saw the client
certificate and disagree, that is a finding of its own (L2). Each conversation then says where
its facts came from: capture, key log or server log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..core.invariants import allows
from ..core.schema import (
    CLIENT_CERT_UNKNOWN,
    FINDING_COLUMNS,
    LOG_LINE_COLUMNS,
    ClientCert,
    Severity,
)
from ..core.tables import records
from .model import LogSession
from .rules import L_DISAGREE, L_NOT_LOGGED

#: Default clock-skew tolerance between the log's clock and the capture's, seconds.
DEFAULT_TOLERANCE_S = 120.0
#: Log findings a capture cannot show, added to a joined conversation when it lacks them.
LOG_ONLY_RULES = frozenset({"X3", "L1", "L3"})
#: Log findings about the client certificate: added when the log decided the verdict.
CERT_RULES = frozenset({"W6", "W6b", "W9", "W10", "W11"})
#: Capture findings that only say "cannot see": dropped when the log decided the verdict.
CANNOT_SEE_RULES = frozenset({"W4", "X4", "W5", "X8"})
DECIDED = frozenset({ClientCert.PRESENTED.value, ClientCert.EMPTY.value})

#: Columns the join adds to the conversations table.
JOIN_COLUMNS = ("log_session", "log_skew_s", "client_cert_source", "reply_source")


@dataclass
class Match:
    session: int  # index into the sessions list / log_sessions table
    stream: int
    skew_s: float  # log clock minus capture clock
    exact: bool  # both endpoints equal (else: server endpoint and time only)
    role: str = "client"  # which end wrote the log: each end joins a conversation once


@dataclass
class JoinResult:
    conversations: pd.DataFrame
    findings: pd.DataFrame
    log_sessions: pd.DataFrame
    log_findings: pd.DataFrame
    log_lines: pd.DataFrame
    matches: list[Match] = field(default_factory=list)
    summary: dict[str, object] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # log findings the invariants held back


def log_lines(sessions: list[LogSession], matches: list[Match]) -> pd.DataFrame:
    """The joined sessions' lines, with their time on the capture's clock."""
    rows = []
    for m in matches:
        skew = pd.Timedelta(seconds=m.skew_s)
        for ref, when, text in sessions[m.session].lines:
            rows.append({"session": m.session, "stream": m.stream, "line": str(ref),
                         "time": when, "capture_time": when - skew if when is not None
                         else None, "text": text})
    df = pd.DataFrame(rows, columns=list(LOG_LINE_COLUMNS))
    for column in ("time", "capture_time"):
        df[column] = pd.to_datetime(df[column], utc=True)
    return df.astype({"session": "Int64", "stream": "Int64"})


def _same(a: object, b: object) -> bool:
    return a is not None and b is not None and not pd.isna(a) and not pd.isna(b) and (
        str(a).lower() == str(b).lower())


def _candidates(s: LogSession, conv: dict, tolerance: float) -> tuple[bool, float] | None:
    """(exact, skew) when this session can be this conversation, else None."""
    if s.start_time is None or conv["start_time"] is None or pd.isna(conv["start_time"]):
        return None
    skew = (s.start_time - conv["start_time"]).total_seconds()
    if abs(skew) > tolerance:
        return None
    server_ok = _same(s.server_ip, conv["server_ip"]) and (
        s.server_port is None or int(s.server_port) == int(conv["server_port"]))
    client_ok = _same(s.client_ip, conv["client_ip"]) and (
        s.client_port is None or int(s.client_port) == int(conv["client_port"]))
    if server_ok and client_ok:
        return True, skew
    if server_ok and s.server_ip is not None and s.client_port is None:
        return False, skew  # the log names no client port (Postfix): server and time decide
    if server_ok and not _same(s.client_ip, conv["client_ip"]):
        return False, skew  # NAT between the sender and the capture point
    if client_ok and s.server_ip is None and s.client_port is not None:
        return False, skew  # a receiving log without its own address
    return None


def match(sessions: list[LogSession], conversations: pd.DataFrame,
          tolerance: float = DEFAULT_TOLERANCE_S) -> list[Match]:
    """One-to-one pairs, best first: both endpoints over one, then the smallest skew. A
    conversation takes at most one session from each end (the sender's and the receiver's)."""
    convs = records(conversations)
    pairs = []
    for i, s in enumerate(sessions):
        for conv in convs:
            found = _candidates(s, conv, tolerance)
            if found is not None:
                exact, skew = found
                pairs.append((not exact, abs(skew), i, int(conv["stream"]), skew, exact,
                              s.role.value))
    pairs.sort()
    used_sessions: set[int] = set()
    used_streams: set[tuple[int, str]] = set()
    out = []
    for _, _, i, stream, skew, exact, role in pairs:
        if i in used_sessions or (stream, role) in used_streams:
            continue
        used_sessions.add(i)
        used_streams.add((stream, role))
        out.append(Match(i, stream, skew, exact, role))
    return sorted(out, key=lambda m: (m.stream, m.role))


def _leaf_sha1(certificates: pd.DataFrame, conv: dict, role: str, frame: int | None
               ) -> str | None:
    """The capture's leaf thumbprint of one side's Certificate message."""
    if not len(certificates) or frame is None:
        return None
    rows = certificates[(certificates["stream"] == conv["stream"])
                        & (certificates["role"] == role)
                        & (certificates["frame"] == frame)
                        & (certificates["position"] == 0)]
    return str(rows.iloc[0]["sha1"]) if len(rows) and pd.notna(rows.iloc[0]["sha1"]) else None


def _source(conv: dict) -> str:
    if conv["decrypted"] is True and conv["tls_version"] == "TLS 1.3":
        return "key log"
    return "capture"


def join_logs(conversations: pd.DataFrame, findings: pd.DataFrame, certificates: pd.DataFrame,
              sessions: list[LogSession], log_sessions: pd.DataFrame, log_findings: pd.DataFrame,
              tolerance: float = DEFAULT_TOLERANCE_S) -> JoinResult:
    """Join, fill in, and report disagreements. Severity columns are left to the caller."""
    # an empty findings table may come without its columns (merged from no chunk at all)
    findings = findings.reindex(columns=list(dict.fromkeys([*FINDING_COLUMNS,
                                                            *findings.columns])))
    matches = match(sessions, conversations, tolerance)
    by_stream: dict[int, list[Match]] = {}
    for m in matches:
        by_stream.setdefault(m.stream, []).append(m)
    conversations = conversations.copy()
    for column in JOIN_COLUMNS:
        conversations[column] = None
    conversations["log_skew_s"] = conversations["log_skew_s"].astype("Float64")
    log_sessions = log_sessions.copy()
    log_findings = log_findings.copy()
    added: list[dict[str, object]] = []
    dropped: set[tuple[int, str]] = set()
    rows = records(conversations)
    for position, conv in enumerate(rows):
        stream = int(conv["stream"])
        source = _source(conv)
        updates: dict[str, object] = {"client_cert_source": source,
                                      "reply_source": source if conv["reply_codes"] else None}
        joined_here: list[str] = []
        for m in by_stream.get(stream, []):
            conv = {**conv, **updates}
            s = sessions[m.session]
            log_row = log_sessions.iloc[m.session]
            log_sessions.loc[log_sessions.index[m.session], ["stream", "skew_s"]] = [stream,
                                                                                     m.skew_s]
            mine = log_findings["session"] == m.session
            log_findings.loc[mine, "stream"] = stream
            filled = _fill(conv, s, log_row)
            updates.update(filled)
            joined_here.append(f"{s.file}:{s.session_id}")
            updates["log_session"] = "; ".join(joined_here)
            if updates.get("log_skew_s") is None:
                updates["log_skew_s"] = round(m.skew_s, 3)
            verdict_from_log = filled.get("client_cert_source") == "server log"
            have = set(findings.loc[findings["stream"] == stream, "id"]) | {
                str(f["id"]) for f in added if f["stream"] == stream}
            for f in records(log_findings[mine]):
                wanted = f["id"] in LOG_ONLY_RULES or (verdict_from_log and (
                    f["id"] in CERT_RULES or f["id"] == L_NOT_LOGGED))
                if wanted and f["id"] not in have:
                    added.append(_as_capture_finding(f, stream))
            if verdict_from_log:
                dropped |= {(stream, rule) for rule in CANNOT_SEE_RULES}
            disagreement = _disagreement(conv, s, certificates, stream)
            if disagreement is not None and L_DISAGREE not in have:
                added.append(disagreement)
                log_findings = pd.concat([log_findings, pd.DataFrame([{
                    **disagreement, "session": m.session}])], ignore_index=True)
        for key, value in updates.items():
            conversations.at[conversations.index[position], key] = value
    added, refused = _guarded(added, conversations)
    keep = [(int(s), r) not in dropped for s, r in zip(findings["stream"], findings["id"],
                                                        strict=True)]
    findings = findings[pd.Series(keep, index=findings.index, dtype=bool)].copy()
    for m in matches:
        fatal = next((r for r in sessions[m.session].replies if r.code.startswith("5")), None)
        if fatal is not None:
            _reply_now_known(findings, m.stream, f"{fatal.code} reply in the server log "
                             f"({fatal.ref})")
    findings["evidence_lines"] = ""
    if added:
        extra = pd.DataFrame(added, columns=list(findings.columns))
        findings = pd.concat([findings.astype({"severity": str}), extra], ignore_index=True)
    findings = _sorted(findings)
    log_findings["session"] = log_findings["session"].astype("Int64")
    log_findings["stream"] = log_findings["stream"].astype("Int64")
    return JoinResult(conversations, findings, log_sessions, log_findings,
                      log_lines(sessions, matches), matches,
                      _summary(sessions, matches, tolerance), refused)


def _guarded(added: list[dict[str, object]], conversations: pd.DataFrame
             ) -> tuple[list[dict[str, object]], list[str]]:
    """(kept, refusals): the log's findings obey the capture's invariants, on the joined
    facts (``pyshark_tools.core.invariants``)."""
    joined = {int(c["stream"]): c for c in records(conversations)}
    kept, refused = [], []
    for f in added:
        broken = allows(str(f["id"]), joined[int(f["stream"])])
        if broken is None:
            kept.append(f)
        else:
            refused.append(f"stream {f['stream']}: {f['id']} (server log) not reported: it "
                           f"needs {broken.says}")
    return kept, refused


def _summary(sessions: list[LogSession], matches: list[Match], tolerance: float
             ) -> dict[str, object]:
    """How many sessions joined, and the clock skew found (overall and per log file)."""
    skews = [m.skew_s for m in matches]
    by_file: dict[str, list[float]] = {}
    for m in matches:
        by_file.setdefault(sessions[m.session].file, []).append(m.skew_s)
    return {
        "sessions": len(sessions), "joined": len(matches),
        "exact_endpoints": sum(m.exact for m in matches),
        "tolerance_s": tolerance,
        "skew_s_median": round(float(pd.Series(skews).median()), 3) if skews else None,
        "skew_s_min": round(min(skews), 3) if skews else None,
        "skew_s_max": round(max(skews), 3) if skews else None,
        "skew_s_by_file": {name: round(float(pd.Series(values).median()), 3)
                           for name, values in by_file.items()},
    }


#: The capture's W6 says what happens "once the IP connector is removed" when it saw no
#: rejection; with the rejection in the log that sentence would contradict the facts.
_W6_UNTIL_REJECTED = "As long as an IP-scoped connector still matches"


def _reply_now_known(findings: pd.DataFrame, stream: int, what: str) -> None:
    rows = findings.index[(findings["stream"] == stream) & (findings["id"] == "W6")]
    for index in rows:
        text = str(findings.at[index, "explanation"])
        cut = text.find(_W6_UNTIL_REJECTED)
        if cut >= 0:
            findings.at[index, "explanation"] = f"{text[:cut]}The {what} is the result."


def _sorted(findings: pd.DataFrame) -> pd.DataFrame:
    order = {s.value: i for i, s in enumerate(Severity)}
    findings = findings.copy()
    findings["severity"] = findings["severity"].astype(str)
    findings = findings.sort_values(["stream", "severity", "id"], key=lambda c: c.map(order)
                                    if c.name == "severity" else c, kind="stable")
    findings["severity"] = pd.Categorical(findings["severity"],
                                          categories=[s.value for s in Severity])
    findings["stream"] = findings["stream"].astype("Int64")
    return findings.reset_index(drop=True)


def _as_capture_finding(f: dict, stream: int) -> dict[str, object]:
    lines = f["evidence_lines"] or ""
    return {"stream": stream, "id": f["id"], "severity": str(f["severity"]),
            "title": f["title"],
            "explanation": f["explanation"],
            "evidence_frames": "", "fix": f["fix"], "evidence_lines": lines}


def _fill(conv: dict, s: LogSession, log_row: pd.Series) -> dict[str, object]:
    """What the log adds to this conversation."""
    out: dict[str, object] = {}
    verdict = str(conv["client_cert"])
    logged = s.client_cert.value
    cert_ref = s.refs.get("client_certificate") or s.refs.get("tls")
    if verdict in {v.value for v in CLIENT_CERT_UNKNOWN} and logged in DECIDED:
        out["client_cert"] = logged
        where = f"server log {cert_ref}" if cert_ref else f"server log {s.file}"
        out["verdict_reason"] = (f"{s.verdict_reason} ({where}); the capture alone: "
                                 f"{conv['verdict_reason']}")
        out["client_cert_source"] = "server log"
        if logged == ClientCert.PRESENTED.value and s.client_certificate is not None:
            subject = s.client_certificate.subject
            if subject:
                out["client_leaf_subject"] = subject
    log_codes = log_row["reply_codes"]
    capture_codes = conv["reply_codes"] or ""
    if isinstance(log_codes, str) and log_codes:
        if len(log_codes.split()) > len(capture_codes.split()):
            out["reply_codes"] = log_codes
            out["last_reply"] = log_row["last_reply"]
            out["reply_source"] = "server log"
        elif set(log_codes.split()) - set(capture_codes.split()):
            out["last_reply"] = log_row["last_reply"]
            out["reply_source"] = "capture and server log"
    if (conv["ehlo"] is None or pd.isna(conv["ehlo"])) and s.ehlo:
        out["ehlo"] = s.ehlo
    if (conv["tls_version"] is None or pd.isna(conv["tls_version"])) and s.tls_version:
        out["tls_version"] = s.tls_version
    return out


def _frame(value: object) -> int | None:
    return int(value) if value is not None and not pd.isna(value) else None


def _client_disagreement(conv: dict, s: LogSession, certificates: pd.DataFrame
                         ) -> str | None:
    captured = str(conv["client_cert"])
    logged = s.client_cert.value
    if captured not in DECIDED or logged not in DECIDED:
        return None
    ref = s.refs.get("client_certificate") or s.refs.get("tls")
    frame = _frame(conv["frame_client_certificate"])
    frame_text = f"frame {frame}" if frame is not None else "?"
    logged_cert = s.client_certificate
    if captured == ClientCert.EMPTY.value and logged == ClientCert.PRESENTED.value:
        thumb = f" (thumbprint {logged_cert.thumbprint})" if logged_cert and (
            logged_cert.thumbprint) else ""
        return (f"The sending server's log records that it sent its certificate{thumb} "
                f"(server log {ref}), but the capture shows an EMPTY client Certificate "
                f"message ({frame_text}): something between the sender and the capture point "
                "rewrites TLS (a TLS-inspecting firewall or proxy) and drops the certificate.")
    if captured == ClientCert.PRESENTED.value and logged == ClientCert.EMPTY.value:
        return (f"The capture shows a client certificate ({frame_text}) but the log records "
                f"none (server log {ref}): a device between the two re-originates TLS and "
                "presents a certificate of its own.")
    captured_sha1 = _leaf_sha1(certificates, conv, "client", frame)
    if not captured_sha1 or logged_cert is None or not logged_cert.thumbprint or (
            captured_sha1.upper() == logged_cert.thumbprint.upper()):
        return None
    return (f"The client certificate in the capture (thumbprint {captured_sha1}, "
            f"{frame_text}) is not the one the log records (thumbprint "
            f"{logged_cert.thumbprint}, server log {ref}): a device between the two "
            "re-originates TLS with its own certificate.")


def _server_disagreement(conv: dict, s: LogSession, certificates: pd.DataFrame
                         ) -> str | None:
    """The sender's log names the server certificate it received: a TLS-inspecting device
    shows the sender its own certificate instead of the receiver's."""
    logged = s.server_certificate
    frame = _frame(conv["frame_server_certificate"])
    captured_sha1 = _leaf_sha1(certificates, conv, "server", frame)
    if logged is None or not logged.thumbprint or not captured_sha1 or (
            captured_sha1.upper() == logged.thumbprint.upper()):
        return None
    return (f"The server certificate the log records (thumbprint {logged.thumbprint}, "
            f"'{logged.subject}', server log {logged.ref}) is not the one in the capture "
            f"(thumbprint {captured_sha1}, frame {frame}): the sender talks TLS to a device in "
            "between, not to the receiving server.")


def _version_disagreement(conv: dict, s: LogSession) -> str | None:
    version = conv["tls_version"]
    if not s.tls_version or not isinstance(version, str) or version == s.tls_version:
        return None
    return (f"The log records {s.tls_version} (server log {s.refs.get('tls')}) but the "
            f"capture shows {version} (frame {_frame(conv['frame_server_hello'])}): two "
            "different TLS sessions, one on each side of a device in between.")


def _disagreement(conv: dict, s: LogSession, certificates: pd.DataFrame,
                  stream: int) -> dict[str, object] | None:
    """L2: where the log and the capture both saw a TLS fact and disagree."""
    reasons = [text for text in (_client_disagreement(conv, s, certificates),
                                 _server_disagreement(conv, s, certificates),
                                 _version_disagreement(conv, s)) if text]
    if not reasons:
        return None
    frames = sorted({f for f in (_frame(conv["frame_client_certificate"]),
                                 _frame(conv["frame_server_certificate"])) if f is not None})
    refs = [s.refs.get("client_certificate") or s.refs.get("tls"),
            s.server_certificate.ref if s.server_certificate else None]
    lines = " ".join(dict.fromkeys(str(r) for r in refs if r is not None))
    return {"stream": stream, "id": L_DISAGREE, "severity": Severity.ERROR.value,
            "title": "The server log and the capture disagree about the TLS session",
            "explanation": " ".join(reasons), "evidence_frames": " ".join(map(str, frames)),
            "fix": "Exempt the SMTP route to the receiving server from TLS inspection (SMTP/"
                   "ESMTP inspection, SSL decryption policies on the firewall), or capture on "
                   "the sending server itself to see what leaves it.",
            "evidence_lines": lines}
