"""An Exchange Online-like SMTP server on 127.0.0.1 for the probe tests (real sockets, real TLS).

It behaves like the fixture factory's server (banner, EHLO capabilities, STARTTLS,
CertificateRequest naming the trusted test roots, ``250 2.1.5 Recipient OK`` or ``550 5.7.64
TenantAttribution``) and decides attribution the way an inbound connector scoped by
``TlsSenderCertificateName`` does: a certificate was presented, its chain verifies against the
test roots through the intermediates the client sent, it is valid now, and its CN or a SAN
matches the configured name. It keeps a log of what it saw and answered: the ground truth the
tests compare the probe's report with.

The test certificates are issued here from the test PKI's cached keys and CAs
(``fixtures/pki``), with validity windows relative to now (the fixtures' leaves are relative to
their capture date).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.utils import format_datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from fixtures.factory.pki import SERVER_AND_CLIENT, Issued, build_pki, issue, load_key

HOST = "contoso-com.mail.protection.outlook.com"
ROOTS = Path(__file__).resolve().parent.parent / "fixtures" / "pki" / "test-root-ca.pem"
DAY = dt.timedelta(days=1)


class Behaviour(StrEnum):
    NORMAL = "normal"
    REFUSE_STARTTLS = "refuse_starttls"  # 454 4.7.0 to STARTTLS
    DROP_AT_STARTTLS = "drop_at_starttls"  # closes the connection when STARTTLS arrives
    SILENT = "silent"  # accepts the connection and never sends a banner
    IMPLICIT_TLS = "implicit_tls"  # TLS from the first byte (port 465 style)
    SILENT_AFTER_STARTTLS = "silent_after_starttls"  # 220 to STARTTLS, then no handshake
    REQUIRE_TRUSTED = "require_trusted"  # OpenSSL's own check: no trusted certificate, alert


# --- OpenSSL hooks Python's ssl does not expose (test server only) ----------------------------
_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_libssl = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]
_libssl.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
_libssl.SSL_CTX_set_verify.restype = None
_libssl.X509_STORE_CTX_get_error.argtypes = [ctypes.c_void_p]
_libssl.X509_STORE_CTX_get_error.restype = ctypes.c_int
_libssl.SSL_load_client_CA_file.argtypes = [ctypes.c_char_p]
_libssl.SSL_load_client_CA_file.restype = ctypes.c_void_p
_libssl.SSL_CTX_set_client_CA_list.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_libssl.SSL_CTX_set_client_CA_list.restype = None
_verify_errors = threading.local()


@_VERIFY_CB
def _record_and_accept(ok: int, store: int) -> int:
    """Exchange Online takes any certificate at the TLS layer and decides at attribution."""
    if not ok:
        _verify_errors.codes.append(_libssl.X509_STORE_CTX_get_error(store))
    return 1


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    # PySSLContext: PyObject_HEAD (two pointers), then SSL_CTX *ctx
    return ctypes.c_void_p.from_address(id(ctx) + ctypes.sizeof(ctypes.c_void_p) * 2).value


# --- certificates -----------------------------------------------------------------------------

def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True)
class Chains:
    good: tuple[Issued, ...]
    expired: tuple[Issued, ...]
    wrong_name: tuple[Issued, ...]
    leaf_only: tuple[Issued, ...]
    server: tuple[Issued, ...]


def make_chains() -> Chains:
    pki = build_pki()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    key = load_key("client-leaf")
    good = issue("probe-client-ok", _name("mail.contoso.com", "Contoso Ltd"), key,
                 pki.contoso_ca, now - 30 * DAY, now + 300 * DAY, sans=("mail.contoso.com",),
                 ekus=SERVER_AND_CLIENT)
    expired = issue("probe-client-expired", _name("mail.contoso.com", "Contoso Ltd"), key,
                    pki.contoso_ca, now - 400 * DAY, now - DAY, sans=("mail.contoso.com",),
                    ekus=SERVER_AND_CLIENT)
    wrong = issue("probe-client-wrong-name", _name("mail.fabrikam.net", "Fabrikam Inc"), key,
                  pki.contoso_ca, now - 30 * DAY, now + 300 * DAY, sans=("mail.fabrikam.net",),
                  ekus=SERVER_AND_CLIENT)
    server = issue("probe-exo-server", _name("*.mail.protection.outlook.com",
                                             "Microsoft Corporation"),
                   load_key("exo-server"), pki.fabrikam_ca, now - 30 * DAY, now + 300 * DAY,
                   sans=("*.mail.protection.outlook.com", "mail.protection.outlook.com"),
                   ekus=SERVER_AND_CLIENT)
    return Chains((good, pki.contoso_ca), (expired, pki.contoso_ca), (wrong, pki.contoso_ca),
                  (good,), (server, pki.fabrikam_ca))


def write_pem(folder: Path, name: str, chain: tuple[Issued, ...], mode: int = 0o600
              ) -> tuple[Path, Path]:
    """chain -> (certificate file with the chain, key file), the key file with ``mode``."""
    cert = folder / f"{name}.pem"
    key = folder / f"{name}.key"
    cert.write_bytes(b"".join(i.pem for i in chain))
    key.write_bytes(chain[0].key_pem)
    key.chmod(mode)
    return cert, key


def write_pfx(folder: Path, name: str, chain: tuple[Issued, ...], password: bytes) -> Path:
    path = folder / f"{name}.pfx"
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        name.encode(), chain[0].key, chain[0].cert, [i.cert for i in chain[1:]],
        serialization.BestAvailableEncryption(password)))
    path.chmod(0o600)
    return path


# --- the server -------------------------------------------------------------------------------

def name_matches(cert: x509.Certificate, wanted: str) -> bool:
    """TlsSenderCertificateName: the CN or a SAN equals it; *.domain covers domain and below."""
    names = [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)]
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    wanted = wanted.lower()
    if wanted.startswith("*."):
        base = wanted[2:]
        return any(n in (base, wanted) or n.endswith("." + base) for n in names)
    return wanted in names


@dataclass
class Session:
    """What the server saw and answered on one connection (the ground truth)."""

    commands: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    tls_version: str | None = None
    presented_subject: str | None = None
    verify_errors: list[int] = field(default_factory=list)
    attributed: bool | None = None


class ExoLikeServer:
    def __init__(self, chains: Chains, folder: Path, *, sender_name: str = "mail.contoso.com",
                 behaviour: Behaviour = Behaviour.NORMAL, tls_max: str = "1.3",
                 address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.sender_name = sender_name
        self.behaviour = behaviour
        self.sessions: list[Session] = []
        cert, key = write_pem(folder, "server", chains.server)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.maximum_version = (ssl.TLSVersion.TLSv1_3 if tls_max == "1.3"
                               else ssl.TLSVersion.TLSv1_2)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=str(ROOTS))
        pointer = _ssl_ctx_pointer(ctx)
        if behaviour == Behaviour.REQUIRE_TRUSTED:
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            _libssl.SSL_CTX_set_verify(pointer, 1, _record_and_accept)  # SSL_VERIFY_PEER
        _libssl.SSL_CTX_set_client_CA_list(pointer,
                                           _libssl.SSL_load_client_CA_file(str(ROOTS).encode()))
        self.ctx = ctx
        self.listener = socket.create_server(address)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ExoLikeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(timeout=10)

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                conn, peer = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            session = Session()
            self.sessions.append(session)
            with contextlib.suppress(OSError, ssl.SSLError), conn:
                self._talk(conn, peer, session)

    def _talk(self, conn: socket.socket, peer: tuple, session: Session) -> None:
        conn.settimeout(10)
        if self.behaviour == Behaviour.SILENT:
            self.stopping.wait(30)
            return
        stream: socket.socket = conn
        in_tls = False
        if self.behaviour == Behaviour.IMPLICIT_TLS:
            stream = self._start_tls(conn, session)
            in_tls = True
        reader = stream.makefile("rb")

        def say(line: str) -> None:
            session.replies.append(line.split("\r\n")[-1])
            stream.sendall((line + "\r\n").encode())

        say(f"220 {HOST} Microsoft ESMTP MAIL Service ready at "
            f"{format_datetime(dt.datetime.now(dt.UTC))}")
        while True:
            raw = reader.readline(4096)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            session.commands.append(line)
            verb = line.split(" ")[0].split(":")[0].upper()
            if verb in ("EHLO", "HELO"):
                caps = ["SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES"]
                if not in_tls:
                    caps.append("STARTTLS")
                caps += ["8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"]
                lines = [f"{HOST} Hello [{peer[0]}]", *caps]
                say("\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{x}"
                                for i, x in enumerate(lines)))
            elif verb == "STARTTLS":
                if self.behaviour == Behaviour.DROP_AT_STARTTLS:
                    return
                if self.behaviour == Behaviour.REFUSE_STARTTLS:
                    say("454 4.7.0 TLS not available due to temporary reason")
                    continue
                say("220 2.0.0 SMTP server ready")
                if self.behaviour == Behaviour.SILENT_AFTER_STARTTLS:
                    self.stopping.wait(30)
                    return
                stream = self._start_tls(conn, session)
                reader = stream.makefile("rb")
                in_tls = True
            elif verb == "MAIL":
                say("250 2.1.0 Sender OK")
            elif verb == "RCPT":
                session.attributed = self._attributed(stream if in_tls else None, session)
                if session.attributed:
                    say("250 2.1.5 Recipient OK")
                else:
                    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
                    say(f"550 5.7.64 TenantAttribution; Relay Access Denied [{HOST} "
                        f"{stamp}Z 08DC0000PROBE1]")
            elif verb == "RSET":
                say("250 2.0.0 Resetting")
            elif verb == "QUIT":
                say("221 2.0.0 Service closing transmission channel")
                if in_tls:
                    with contextlib.suppress(OSError, ssl.SSLError):
                        stream.unwrap()
                return
            else:
                say("500 5.3.3 Unrecognized command")

    def _start_tls(self, conn: socket.socket, session: Session) -> ssl.SSLSocket:
        _verify_errors.codes = []
        stream = self.ctx.wrap_socket(conn, server_side=True)
        session.verify_errors = _verify_errors.codes
        session.tls_version = stream.version()
        leaf = stream.getpeercert(binary_form=True)
        if leaf:
            session.presented_subject = x509.load_der_x509_certificate(
                leaf).subject.rfc4514_string()
        return stream

    def _attributed(self, tls: ssl.SSLSocket | None, session: Session) -> bool:
        if tls is None:
            return False
        leaf = tls.getpeercert(binary_form=True)
        if not leaf or session.verify_errors:
            return False
        cert = x509.load_der_x509_certificate(leaf)
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return False
        return name_matches(cert, self.sender_name)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    time.sleep(0.01)
    return port
