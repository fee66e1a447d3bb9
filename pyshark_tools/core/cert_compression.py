"""Compressed certificates (RFC 8879) and the TLS 1.3 Certificate message body.

A TLS 1.3 peer that was offered certificate compression may send a CompressedCertificate
(handshake type 25) in place of its Certificate: OpenSSL 3.5 (Debian 13) does so with zlib
whenever the other side offers it, for the client's certificate too. tshark (4.0 to 4.4)
shows such a message but not the certificates inside it, so the report decompresses it
itself, bounded by the length the message declares (a small message cannot expand without
limit). Where the algorithm's library is missing, the report says it cannot read the
certificates instead of calling the message empty.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "MAX_UNCOMPRESSED",
    "CertificateCompression",
    "Decompressed",
    "decompress_certificate_message",
    "tls13_certificate_list",
]

#: A handshake message length is 24 bits: nothing longer can be declared.
MAX_UNCOMPRESSED = (1 << 24) - 1


class CertificateCompression(IntEnum):
    """The algorithm numbers of RFC 8879 (IANA "TLS Certificate Compression Algorithm IDs")."""

    ZLIB = 1
    BROTLI = 2
    ZSTD = 3

    @classmethod
    def name_of(cls, number: int | None) -> str:
        try:
            return cls(number).name.lower()
        except ValueError:
            return f"algorithm {number}"


@dataclass(frozen=True)
class Decompressed:
    """One CompressedCertificate as read: the Certificate message body inside it, or why not."""

    algorithm: str
    uncompressed_length: int | None
    body: bytes | None
    problem: str = ""  # e.g. "the Python module brotli is not installed"


def _zlib(data: bytes, limit: int) -> bytes:
    inflate = zlib.decompressobj()
    out = inflate.decompress(data, limit + 1)
    if len(out) > limit:  # longer than declared: the caller refuses it
        return out
    if not inflate.eof:
        raise ValueError("the zlib stream does not end where the message does")
    return out


def _brotli(data: bytes, limit: int) -> bytes:
    for module in ("brotli", "brotlicffi"):
        try:
            lib = importlib.import_module(module)
        except ImportError:
            continue
        try:  # brotli 1.1+: the output is bounded while it is produced
            return bytes(lib.Decompressor().process(data, output_buffer_limit=limit + 1))
        except TypeError:
            return bytes(lib.decompress(data))[:limit + 1]
    raise ModuleNotFoundError("the Python module brotli is not installed")


def _zstd(data: bytes, limit: int) -> bytes:
    try:  # Python 3.14's standard library
        lib = importlib.import_module("compression.zstd")
        return bytes(lib.decompress(data))[:limit + 1]
    except ImportError:
        pass
    try:
        lib = importlib.import_module("zstandard")
    except ImportError:
        raise ModuleNotFoundError("the Python module zstandard is not installed") from None
    return bytes(lib.ZstdDecompressor().decompress(data, max_output_size=limit + 1))


_DECOMPRESSORS: dict[int, Callable[[bytes, int], bytes]] = {
    CertificateCompression.ZLIB: _zlib,
    CertificateCompression.BROTLI: _brotli,
    CertificateCompression.ZSTD: _zstd,
}


def decompress_certificate_message(algorithm: int | None, uncompressed_length: int | None,
                                   data: bytes) -> Decompressed:
    """The Certificate body inside a CompressedCertificate, never longer than it declares."""
    name = CertificateCompression.name_of(algorithm)
    if uncompressed_length is None or not 0 < uncompressed_length <= MAX_UNCOMPRESSED:
        return Decompressed(name, uncompressed_length, None, "no valid uncompressed length")
    decompress = _DECOMPRESSORS.get(algorithm or 0)
    if decompress is None:
        return Decompressed(name, uncompressed_length, None, f"unknown {name}")
    try:
        body = decompress(data, uncompressed_length)
    except ModuleNotFoundError as exc:
        return Decompressed(name, uncompressed_length, None, str(exc))
    except Exception as exc:  # damaged data: any library's refusal
        return Decompressed(name, uncompressed_length, None,
                            f"the data does not decompress ({type(exc).__name__})")
    if len(body) != uncompressed_length:
        size = "more" if len(body) > uncompressed_length else f"{len(body)} bytes"
        return Decompressed(name, uncompressed_length, None,
                            f"it decompresses to {size}, not the {uncompressed_length} "
                            "bytes it declares")
    return Decompressed(name, uncompressed_length, body)


def tls13_certificate_list(body: bytes) -> tuple[int | None, tuple[bytes, ...]]:
    """(declared list length, DER certificates) of a TLS 1.3 Certificate body: the request
    context, then entries of certificate data and their extensions. A damaged body gives the
    entries read before the damage (declared None when even the list length is missing)."""
    if not body:
        return None, ()
    pos = 1 + body[0]
    if pos + 3 > len(body):
        return None, ()
    declared = int.from_bytes(body[pos:pos + 3], "big")
    pos += 3
    end = min(pos + declared, len(body))
    ders = []
    while pos + 3 <= end:
        size = int.from_bytes(body[pos:pos + 3], "big")
        if pos + 3 + size > end:
            break
        ders.append(body[pos + 3:pos + 3 + size])
        pos += 3 + size
        if pos + 2 > end:
            break
        pos += 2 + int.from_bytes(body[pos:pos + 2], "big")
    return declared, tuple(ders)
