"""The one sentence a report opens with: what is wrong, for whom, and what it means for mail.

Written for a reader who does not know TLS: counts of conversations, who the receiving side
is, and the consequence, worst first. The tone (error/warning/info/ok) colours it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ..core.schema import CLIENT_CERT_UNKNOWN, ClientCert, Severity
from .labels import items

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report

#: Verdicts that mean "this conversation presented no client certificate".
_NO_CERT = {ClientCert.EMPTY.value, ClientCert.NOT_REQUESTED.value, ClientCert.NO_TLS.value,
            ClientCert.HANDSHAKE_FAILED.value}


def _of(count: int, total: int, noun: str = "conversations") -> str:
    if total == 1:
        return "The " + noun.replace("conversations", "conversation", 1)
    return f"All {total} {noun}" if count == total else f"{count} of {total} {noun}"


def headline(report: Report) -> tuple[str, str]:
    """(sentence, tone); tone is a Severity value or "ok"."""
    conv = report.conversations
    total = len(conv)
    if not total:
        return "No SMTP conversations in this capture: nothing to judge.", Severity.INFO.value
    severity = conv["severity"].astype(str)
    verdicts = conv["client_cert"].astype(str)
    exo = conv["exchange_online"].fillna(False).astype(bool)
    # X3: the capture shows the 550 5.7.64 reply itself (clear text or decrypted)
    rejected = conv["finding_ids"].map(lambda ids: "X3" in items(ids))
    no_cert = exo & verdicts.isin(_NO_CERT)
    if no_cert.any():
        count, n_exo = int(no_cert.sum()), int(exo.sum())
        who = _of(count, n_exo, "conversations to Exchange Online")
        them = "it" if count == 1 else "them"
        consequence = (f"mail from {them} is rejected (550 5.7.64)"
                       if (no_cert & rejected).any() else
                       f"mail from {them} is rejected once the connector is scoped by "
                       "certificate")
        return f"{who} presented no client certificate: {consequence}.", Severity.ERROR.value
    errors = severity == Severity.ERROR.value
    if errors.any():
        titles = _titles(report, conv[errors])
        return (f"{_of(int(errors.sum()), total)} {_have(int(errors.sum()), total)} a problem "
                f"that makes mail fail: {titles}.", Severity.ERROR.value)
    warnings = severity == Severity.WARNING.value
    if warnings.any():
        titles = _titles(report, conv[warnings])
        return (f"Mail flows, but {_of(int(warnings.sum()), total).lower()} "
                f"{_have(int(warnings.sum()), total)} a warning: {titles}.",
                Severity.WARNING.value)
    unknown = verdicts.isin({v.value for v in CLIENT_CERT_UNKNOWN})
    if unknown.any():
        return (f"Nothing wrong seen, but for {_of(int(unknown.sum()), total).lower()} this "
                "capture cannot show whether a client certificate was presented (see the "
                "findings).", Severity.INFO.value)
    return (f"Nothing wrong found: {_of(total, total).lower()} "
            f"{'look' if total > 1 else 'looks'} right.", "ok")


def _have(count: int, total: int) -> str:
    return "has" if count == 1 or total == 1 else "have"


def _titles(report: Report, rows: pd.DataFrame) -> str:
    """The distinct finding titles of these conversations, worst first, lower-cased."""
    findings = report.findings
    keys = set(rows["stream"].astype(int))
    if "capture" in rows.columns and "capture" in findings.columns:
        keys = set(zip(rows["capture"], rows["stream"].astype(int), strict=True))
        mine = findings[[(c, int(s)) in keys for c, s in zip(findings["capture"],
                                                             findings["stream"], strict=True)]]
    else:
        mine = findings[findings["stream"].astype(int).isin(keys)]
    mine = mine[mine["severity"].astype(str).isin([Severity.ERROR.value, Severity.WARNING.value])]
    titles = list(dict.fromkeys(str(t) for t in mine["title"]))
    shown = "; ".join(t[:1].lower() + t[1:] for t in titles[:3])
    return shown + ("; ..." if len(titles) > 3 else "")
