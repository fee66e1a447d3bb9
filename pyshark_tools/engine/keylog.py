"""TLS key logs: checked before tshark sees them, never echoed.

A key log is a secret. Errors name the file and the line number, never the line.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import KeylogError

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


@dataclass(frozen=True)
class KeylogInfo:
    path: Path
    entries: int
    labels: tuple[str, ...]
    #: numbers of the lines that are not key-log lines (skipped; a warning names them)
    skipped_lines: tuple[int, ...] = ()

    def warning(self) -> str | None:
        """One line about the skipped lines (never their content), or None."""
        if not self.skipped_lines:
            return None
        first = ", ".join(map(str, self.skipped_lines[:3]))
        more = ", ..." if len(self.skipped_lines) > 3 else ""
        return (f"key log {self.path}: {len(self.skipped_lines)} line(s) are not NSS key log "
                f"lines (line {first}{more}): skipped")


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
    skipped: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match or match[1] not in LABELS:
            skipped.append(number)  # e.g. a last line cut while the sender wrote it
            continue
        entries += 1
        labels.add(match[1])
    if not entries and skipped:
        raise KeylogError(
            f"key log {p}: line {skipped[0]} is not an NSS key log line "
            "(expected LABEL <client_random hex> <secret hex>) and no line is"
        )
    if not entries:
        raise KeylogError(f"key log {p} holds no keys")
    return KeylogInfo(path=p, entries=entries, labels=tuple(sorted(labels)),
                      skipped_lines=tuple(skipped))


# --------------------------------------------------------------------------- matching

#: A TLS record holding a ClientHello: record header (handshake, 3.x, length), handshake
#: header (type 1, 24-bit length), client_version 3.x; the 32-byte client random follows.
_CLIENT_HELLO = re.compile(rb"\x16\x03[\x00-\x04][\x00-\x48].\x01[\x00-\x01]..\x03[\x00-\x04]",
                           re.DOTALL)
_CHUNK = 16 << 20
#: A key log this short costs tshark nothing: when one of its lines matches, all of it is
#: handed on, so the secret of a handshake the capture shows only encrypted (a TLS 1.2
#: renegotiation's ClientHello travels under the first handshake's keys) is there too.
SMALL_KEYLOG_LINES = 64


def capture_client_randoms(capture: str | os.PathLike) -> set[bytes]:
    """The client randoms of every ClientHello in a capture file (pcap/pcapng, gzipped or
    not), found by their byte pattern; a random split across two packets is missed (the
    ClientHello's first 43 bytes sit in one segment in practice)."""
    import gzip

    randoms: set[bytes] = set()
    with open(capture, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    keep = b""
    with opener(capture, "rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            data = keep + chunk
            for match in _CLIENT_HELLO.finditer(data):
                start = match.end()
                if start + 32 <= len(data):
                    randoms.add(bytes(data[start:start + 32]))
            keep = data[-64:]  # a ClientHello header across two chunks
    return randoms


@dataclass(frozen=True)
class KeylogMatch:
    """How much of a key log belongs to a capture, and the lines tshark gets."""

    entries: int  # key lines in the file
    matching: int  # lines whose client random is in one of the capture's ClientHellos
    path: Path | None  # a private file with only the matching lines (None: none match)


def _matching_lines(text: str, randoms: set[bytes]) -> list[str]:
    kept = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        # RSA lines name the encrypted pre-master secret, not the client random: always kept
        if match[1] == "RSA" or bytes.fromhex(match[2]) in randoms:
            kept.append(match[0])
    return kept


def small_keylog_lines(text: str) -> list[str]:
    """Every well-formed key line of a short key log, matching this capture or not."""
    return [m[0] for m in (_LINE.match(line.strip()) for line in text.splitlines()) if m]


@contextmanager
def matching_keylog(info: KeylogInfo | None,
                    capture: str | os.PathLike) -> Iterator[KeylogMatch | None]:
    """The key log's lines for this capture's ClientHellos only, in a private temporary
    file removed afterwards: tshark loads a key log in quadratic time, and a key log of
    another capture must be told apart from one that decrypts nothing."""
    if info is None:
        yield None
        return
    randoms = capture_client_randoms(capture)
    text = info.path.read_text("ascii")
    kept = _matching_lines(text, randoms)
    matching = sum(1 for line in kept if not line.startswith("RSA "))
    if not kept:
        yield KeylogMatch(info.entries, 0, None)
        return
    if matching and info.entries <= SMALL_KEYLOG_LINES:
        kept = small_keylog_lines(text)
    with tempfile.TemporaryDirectory(prefix="tls-smtp-report-keys-") as folder:
        path = Path(folder) / "matching.keys"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write("\n".join(kept) + "\n")
        yield KeylogMatch(info.entries, matching, path)
