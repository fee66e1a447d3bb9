"""TLS key logs: checked before tshark sees them, never echoed.

A key log is a secret. Errors name the file and the line number, never the line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

LABELS = frozenset({
    "CLIENT_RANDOM",
    "CLIENT_EARLY_TRAFFIC_SECRET",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EARLY_EXPORTER_SECRET",
    "EXPORTER_SECRET",
    "RSA",
})
_LINE = re.compile(r"^([A-Z_0-9]+) ([0-9a-fA-F]+) ([0-9a-fA-F]+)$")


class KeylogError(Exception):
    """The key log cannot be used; the message never contains key material."""


@dataclass(frozen=True)
class KeylogInfo:
    path: Path
    entries: int
    labels: tuple[str, ...]


def check_keylog(path: str | os.PathLike) -> KeylogInfo:
    """Validate an NSS key log file (SSLKEYLOGFILE format) and count its entries."""
    p = Path(path)
    if not p.exists():
        raise KeylogError(f"key log {p} does not exist")
    if not p.is_file():
        raise KeylogError(f"key log {p} is not a file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise KeylogError(f"key log {p} cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeylogError(f"key log {p} is not a text key log (binary content)") from None
    entries = 0
    labels: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match or match[1] not in LABELS:
            raise KeylogError(
                f"key log {p}: line {number} is not an NSS key log line "
                "(expected LABEL <client_random hex> <secret hex>)"
            )
        entries += 1
        labels.add(match[1])
    if not entries:
        raise KeylogError(f"key log {p} holds no keys")
    return KeylogInfo(path=p, entries=entries, labels=tuple(sorted(labels)))
