"""The ``detail`` text of handshake events, written and read in one place.

Both engines write it (tshark's rows and the native reader), the conversations stage, the
ladder and ``follow`` read it: ``key=value`` pairs separated by spaces, where a value may hold
spaces itself (``versions=TLS 1.3,TLS 1.2``), so a key starts only at ``word=``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["certificate_count", "certificate_detail", "client_hello_detail", "detail_fields",
           "server_hello_detail"]

_FIELD = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|$)")


def client_hello_detail(versions: Sequence[str], sni: str | None, ja3: str | None) -> str:
    """``versions=TLS 1.3,TLS 1.2 sni=mail.contoso.com ja3=...`` (sni and ja3 when known)."""
    parts = [f"versions={','.join(v for v in versions if v)}"]
    if sni:
        parts.append(f"sni={sni}")
    if ja3:
        parts.append(f"ja3={ja3}")
    return " ".join(parts)


def server_hello_detail(version: str | None, cipher: str | None, psk: object | None,
                        ja3s: str | None) -> str:
    """``version=TLS 1.2 cipher=... [psk=N] [ja3s=...]``; psk: the TLS 1.3 pre-shared key the
    server accepted (resumption)."""
    parts = [f"version={version}", f"cipher={cipher}"]
    if psk is not None:
        parts.append(f"psk={psk}")
    if ja3s:
        parts.append(f"ja3s={ja3s}")
    return " ".join(parts)


def certificate_detail(count: int | None, declared: int | None, *,
                       compressed: str | None = None, uncompressed: int | None = None) -> str:
    """``certificates=N length=L``: certificates read and the list length the message declared;
    for a CompressedCertificate also ``compressed=zlib uncompressed=U`` (``certificates=?``
    when it could not be decompressed here)."""
    text = f"certificates={'?' if count is None else count} length={declared}"
    if compressed:
        text += f" compressed={compressed} uncompressed={uncompressed}"
    return text


def certificate_count(detail: object) -> int | None:
    """The certificates a Certificate event's detail says it holds (None: not readable)."""
    value = detail_fields(detail).get("certificates", "0")
    return int(value) if value.isdigit() else None


def detail_fields(detail: object) -> dict[str, str]:
    """``versions=TLS 1.3,TLS 1.2 ja3=...`` -> {"versions": "TLS 1.3,TLS 1.2", "ja3": ...}."""
    return {key: value.strip() for key, value in _FIELD.findall(str(detail or ""))}
