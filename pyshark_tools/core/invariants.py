"""What must be true of a conversation for each finding to be printed about it.

A finding that contradicts the facts of its own conversation ("STARTTLS not offered" next
to "TLS 1.2, certificate presented") costs the reader's trust in every other line. Each
rule's precondition is written here once, as data: :mod:`pyshark_tools.core.findings` refuses to
emit a finding whose precondition fails (and says so in the capture's warnings), and the
tests check that no rule ever needs that refusal on any fixture or corpus capture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .schema import ClientCert

__all__ = ["INVARIANTS", "Invariant", "allows", "violations"]

#: One conversation row, as the findings module sees it.
Conv = Mapping[str, Any]


def _set(value: object) -> bool:
    """A real value: not None and not a pandas missing value."""
    return value is not None and not pd.isna(value)


def _is(value: object, expected: bool) -> bool:
    return _set(value) and bool(value) is expected


def _no_tls(conv: Conv) -> bool:
    return not _set(conv["tls_version"]) and not _set(conv["frame_client_hello"])


def _verdict(*allowed: ClientCert) -> Callable[[Conv], bool]:
    names = {v.value for v in allowed}
    return lambda conv: str(conv["client_cert"]) in names


@dataclass(frozen=True)
class Invariant:
    """``rule`` may be reported on a conversation only when ``holds`` says yes."""

    rule: str
    says: str  # the precondition in words, for the warning and the docs
    holds: Callable[[Conv], bool]


INVARIANTS: tuple[Invariant, ...] = (
    Invariant("W1", "the EHLO reply was read whole and lacks STARTTLS, the client never sent "
              "STARTTLS and no TLS was negotiated",
              lambda c: _is(c["starttls_offered"], False)
              and not _is(c["starttls_requested"], True) and _no_tls(c)),
    Invariant("W2", "STARTTLS was offered, never sent, and no TLS was negotiated",
              lambda c: _is(c["starttls_offered"], True)
              and _is(c["starttls_requested"], False) and _no_tls(c)),
    Invariant("W3", "a ClientHello was seen", lambda c: _set(c["frame_client_hello"])),
    Invariant("W4", "the verdict is hidden_tls13 and the server chose TLS 1.3",
              lambda c: _verdict(ClientCert.HIDDEN_TLS13)(c) and c["tls_version"] == "TLS 1.3"),
    Invariant("W5", "the verdict is resumed", _verdict(ClientCert.RESUMED)),
    Invariant("W6", "the verdict is empty", _verdict(ClientCert.EMPTY)),
    Invariant("W6b", "the verdict is empty", _verdict(ClientCert.EMPTY)),
    Invariant("W7", "the verdict is not_requested and the version is below TLS 1.3",
              lambda c: _verdict(ClientCert.NOT_REQUESTED)(c)
              and c["tls_version"] in ("TLS 1.2", "TLS 1.1", "TLS 1.0", "SSL 3.0")),
    *(Invariant(rule, "the verdict is presented", _verdict(ClientCert.PRESENTED))
      for rule in ("W8", "W9", "W10", "W11", "W12", "W13", "W14", "W15", "X2", "X5", "X6")),
    Invariant("W16", "a ClientHello was seen and no ServerHello",
              lambda c: _set(c["frame_client_hello"]) and not _set(c["frame_server_hello"])),
    Invariant("X1", "the server sent a certificate",
              lambda c: _set(c["frame_server_certificate"])),
    Invariant("X4", "the verdict is not_captured", _verdict(ClientCert.NOT_CAPTURED)),
    Invariant("X8", "the verdict is hidden_renegotiation",
              _verdict(ClientCert.HIDDEN_RENEGOTIATION)),
)

_BY_RULE = {inv.rule: inv for inv in INVARIANTS}


def allows(rule: str, conv: Conv) -> Invariant | None:
    """None when ``rule`` may be reported on ``conv``; else the invariant it would break."""
    inv = _BY_RULE.get(rule)
    return None if inv is None or inv.holds(conv) else inv


def violations(conversations: Iterable[Conv], findings: Iterable[Mapping[str, Any]]
               ) -> list[str]:
    """Every finding whose precondition its conversation breaks, in words (for tests)."""
    def key(row: Mapping[str, Any]) -> tuple[object, int]:
        return row.get("capture"), int(row["stream"])

    by_key = {key(c): c for c in conversations}
    out = []
    for finding in findings:
        conv = by_key.get(key(finding))
        broken = allows(str(finding["id"]), conv) if conv is not None else None
        if broken is not None:
            out.append(f"stream {finding['stream']}: {finding['id']} needs {broken.says}")
    return out
