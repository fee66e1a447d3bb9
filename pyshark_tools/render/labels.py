"""Words and colours for verdicts and severities, shared by every human-facing renderer."""

from __future__ import annotations

from ..core.schema import ClientCert

VERDICT_LABELS: dict[str, str] = {
    ClientCert.PRESENTED: "presented",
    ClientCert.EMPTY: "EMPTY: no certificate sent",
    ClientCert.NOT_REQUESTED: "not requested by server",
    ClientCert.HIDDEN_TLS13: "cannot see (TLS 1.3)",
    ClientCert.HIDDEN_RENEGOTIATION: "cannot see (renegotiated inside TLS)",
    ClientCert.RESUMED: "cannot see (resumed session)",
    ClientCert.NO_TLS: "no TLS",
    ClientCert.HANDSHAKE_FAILED: "handshake failed first",
    ClientCert.NOT_CAPTURED: "cannot see (not captured)",
    ClientCert.NOT_LOGGED: "cannot see (not logged)",
}

VERDICT_STYLES: dict[str, str] = {
    ClientCert.PRESENTED: "green",
    ClientCert.EMPTY: "bold red",
    ClientCert.NOT_REQUESTED: "yellow",
    ClientCert.HIDDEN_TLS13: "cyan",
    ClientCert.HIDDEN_RENEGOTIATION: "cyan",
    ClientCert.RESUMED: "cyan",
    ClientCert.NO_TLS: "red",
    ClientCert.HANDSHAKE_FAILED: "red",
    ClientCert.NOT_CAPTURED: "cyan",
    ClientCert.NOT_LOGGED: "cyan",
}

SEVERITY_STYLES: dict[str, str] = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def items(value: object) -> list[str]:
    """A list cell of a report table as strings (a separated string is split too)."""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if value is None or not isinstance(value, str):
        return []
    return value.split()


def verdict_label(value: object) -> str:
    return VERDICT_LABELS.get(str(value), str(value))
