"""The certificate chain and private key the probe presents, read once and kept in memory.

Python's ``ssl`` only loads keys from files. The probe never writes the key to disk: it hands
OpenSSL the chain and the key through two pipes (``/dev/fd/N``), the key re-encrypted with a
random one-time password that exists only in this process.
"""

from __future__ import annotations

import os
import secrets
import ssl
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ..errors import CredentialsError


@dataclass(frozen=True)
class Credentials:
    """Leaf first, then the intermediates from the same file(s), and the leaf's key."""

    chain: tuple[x509.Certificate, ...]
    key: object = field(repr=False)  # a cryptography private key; never printed
    source: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def load_into(self, ctx: ssl.SSLContext) -> None:
        """Give the chain and key to ``ctx`` without writing the key anywhere."""
        one_time = secrets.token_hex(32).encode()
        key_pem = self.key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(one_time),
        )
        chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)
        with _Pipe(chain_pem) as chain_path, _Pipe(key_pem) as key_path:
            ctx.load_cert_chain(chain_path, key_path, password=one_time)


class _Pipe:
    """A pipe whose read end OpenSSL opens as a file; a thread feeds it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __enter__(self) -> str:
        self.read_fd, write_fd = os.pipe()
        self.thread = threading.Thread(target=self._feed, args=(write_fd,), daemon=True)
        self.thread.start()
        return f"/dev/fd/{self.read_fd}"

    def _feed(self, fd: int) -> None:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.data)
        except OSError:  # the reader gave up; nothing to do
            pass

    def __exit__(self, *exc: object) -> None:
        os.close(self.read_fd)
        self.thread.join(timeout=5)


def _permission_warning(path: Path) -> tuple[str, ...]:
    try:
        mode = path.stat().st_mode
    except OSError:
        return ()
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return (f"{path} holds a private key and is readable by other users "
                f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {path}",)
    return ()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CredentialsError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise CredentialsError(f"{what} {path} is a folder") from None
    except OSError as exc:
        raise CredentialsError(f"{what} {path} cannot be read ({exc.strerror})") from None


def _certificates(data: bytes, path: Path) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data) if b"CERTIFICATE-----" in data else []
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CredentialsError(f"certificate file {path} holds no readable certificate") from None


def _private_key(data: bytes, path: Path, password: bytes | None) -> object:
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=password)
        return serialization.load_der_private_key(data, password=password)
    except TypeError:  # encrypted without a password, or a password for a clear key
        if password is None:
            raise CredentialsError(f"key {path} is encrypted: pass its password with "
                                   "--password-env VAR") from None
        return _private_key(data, path, None)
    except ValueError:
        raise CredentialsError(f"key {path} cannot be read (wrong password, or not a "
                               "private key)") from None


def _ordered(certs: list[x509.Certificate], key: object, source: str) -> tuple:
    public = key.public_key()  # type: ignore[attr-defined]
    raw = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    for i, cert in enumerate(certs):
        if cert.public_key().public_bytes(serialization.Encoding.DER, spki) == raw:
            return (cert, *certs[:i], *certs[i + 1:])
    raise CredentialsError(f"the private key in {source} does not belong to any certificate "
                           "in it")


def load_pem(cert: Path, key: Path | None, password: bytes | None) -> Credentials:
    """``--cert`` (leaf plus intermediates, PEM or DER) and ``--key`` (or the key in --cert)."""
    cert_data = _read(cert, "certificate file")
    certs = _certificates(cert_data, cert)
    if not certs:
        raise CredentialsError(f"certificate file {cert} holds no certificate")
    key_path = key or cert
    key_data = cert_data if key is None else _read(key, "key file")
    if key is None and b"PRIVATE KEY-----" not in key_data:
        raise CredentialsError(f"{cert} holds no private key: pass --key FILE")
    private = _private_key(key_data, key_path, password)
    source = f"{cert}" + (f" + {key}" if key else "")
    return Credentials(_ordered(certs, private, source), private, source,
                       _permission_warning(key_path))


def load_pfx(path: Path, password: bytes | None) -> Credentials:
    """A PKCS#12 (.pfx/.p12) file as Windows exports it: key, leaf and intermediates."""
    data = _read(path, "PFX file")
    try:
        private, leaf, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        hint = "" if password else " (no password given: --password-env VAR)"
        raise CredentialsError(f"PFX file {path} cannot be opened: wrong password or not "
                               f"a PKCS#12 file{hint}") from None
    if private is None or leaf is None:
        raise CredentialsError(f"PFX file {path} holds no private key and certificate")
    certs = [leaf, *[c for c in extra if c != leaf]]
    return Credentials(_ordered(certs, private, str(path)), private, str(path),
                       _permission_warning(path))
