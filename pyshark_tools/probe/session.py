"""One SMTP session, driven byte by byte: banner, EHLO, STARTTLS, TLS, EHLO, MAIL, RCPT, RSET,
QUIT. Never DATA.

TLS runs over ``ssl.MemoryBIO``, so every byte that crosses the socket passes through here and
is recorded (:class:`~.recorder.Recording`), and the key log is the probe's own. Every step has
its own deadline (``timeout`` seconds); a server that stalls, refuses or drops the connection
ends the session with a :class:`Stop` reason instead of an exception.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ..errors import ConnectError
from .credentials import Credentials
from .recorder import CloseKind, Direction, Recording

MAX_REPLY_BYTES = 64 * 1024
_REPLY_LINE = re.compile(rb"^(\d{3})([ -]|$)(.*)$")
_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class Stop(StrEnum):
    """Why the session ended."""

    COMPLETED = "completed"  # RSET and QUIT after RCPT (or after MAIL without --rcpt-to)
    BANNER_REJECTED = "banner_rejected"
    EHLO_REJECTED = "ehlo_rejected"
    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    STARTTLS_REFUSED = "starttls_refused"
    HANDSHAKE_FAILED = "handshake_failed"
    MAIL_REJECTED = "mail_rejected"
    CLOSED_BY_SERVER = "closed_by_server"
    TIMEOUT = "timeout"
    PROTOCOL_ERROR = "protocol_error"


@dataclass(frozen=True)
class ProbeSettings:
    host: str
    port: int
    implicit_tls: bool = False
    ehlo: str = "localhost"
    mail_from: str = ""
    rcpt_to: str | None = None
    tls_version: str | None = None  # "1.2" | "1.3" | None (both)
    sni: str | None = None
    timeout: float = 30.0
    credentials: Credentials | None = None


@dataclass
class Exchange:
    """One command and the server's reply (``command`` None: the banner)."""

    command: str | None
    code: int | None = None
    lines: list[str] = field(default_factory=list)
    in_tls: bool = False

    @property
    def text(self) -> str:
        return " / ".join(self.lines)


@dataclass
class SessionResult:
    settings: ProbeSettings
    recording: Recording
    exchanges: list[Exchange]
    stop: Stop
    stop_detail: str = ""
    tls_version: str | None = None  # as ssl names it: "TLSv1.2", "TLSv1.3"
    cipher: str | None = None
    tls_error: str | None = None
    keylog: bytes = field(default=b"", repr=False)
    server_tls_bytes: bytes = field(default=b"", repr=False)
    notes: list[str] = field(default_factory=list)

    def reply_to(self, verb: str) -> Exchange | None:
        for exchange in self.exchanges:
            if exchange.command and exchange.command.upper().startswith(verb):
                return exchange
        return None


class _Timeout(Exception):
    pass


class _Closed(Exception):
    def __init__(self, reset: bool = False) -> None:
        super().__init__("reset" if reset else "closed")
        self.reset = reset


class _ProtocolError(Exception):
    pass


def printable(text: str) -> str:
    """Server text made safe for a terminal: control characters (ANSI escapes) shown as \\xNN."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _now() -> int:
    return time.time_ns()


def _address(sockaddr: tuple) -> tuple[str, int]:
    return str(ipaddress.ip_address(sockaddr[0].split("%")[0])), int(sockaddr[1])


class _Session:
    def __init__(self, settings: ProbeSettings, sock: socket.socket, rec: Recording,
                 keylog_path: Path) -> None:
        self.s = settings
        self.sock = sock
        self.rec = rec
        self.keylog_path = keylog_path
        self.exchanges: list[Exchange] = []
        self.buffer = b""
        self.tls: ssl.SSLObject | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.server_tls = bytearray()
        self.server_closed = False
        self.notes: list[str] = []
        self.step = "banner"

    # --- the wire ---------------------------------------------------------------------------
    def _deadline(self) -> float:
        return time.monotonic() + self.s.timeout

    def _send_raw(self, data: bytes, note: str, deadline: float) -> None:
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        self.rec.add(_now(), Direction.TO_SERVER, data, note)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise _Timeout() from None
        except (BrokenPipeError, ConnectionResetError):
            raise _Closed(reset=True) from None

    def _recv_raw(self, deadline: float) -> bytes:
        if self.server_closed:
            raise _Closed()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise _Timeout() from None
        except ConnectionResetError:
            self.server_closed = True
            self.rec.close(_now(), Direction.TO_CLIENT, CloseKind.RST)
            raise _Closed(reset=True) from None
        if not data:
            self.server_closed = True
            self.rec.close(_now(), Direction.TO_CLIENT)
            raise _Closed()
        self.rec.add(_now(), Direction.TO_CLIENT, data)
        if self.tls is not None:
            self.server_tls += data
        return data

    def _flush_tls(self, note: str, deadline: float) -> None:
        data = self.outgoing.read()
        if data:
            self._send_raw(data, note, deadline)

    # --- SMTP over clear text or TLS ---------------------------------------------------------
    def _read_more(self, deadline: float) -> bytes:
        if self.tls is None:
            return self._recv_raw(deadline)
        while True:
            try:
                data = self.tls.read(65536)
                if not data:
                    raise _Closed()
                return data
            except ssl.SSLWantReadError:
                self._flush_tls("", deadline)
                self.incoming.write(self._recv_raw(deadline))
            except ssl.SSLZeroReturnError:
                raise _Closed() from None

    def read_reply(self, exchange: Exchange) -> Exchange:
        deadline = self._deadline()
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                line = line.rstrip(b"\r")
                match = _REPLY_LINE.match(line)
                if match is None:
                    raise _ProtocolError(f"not an SMTP reply line: {line[:80]!r}")
                exchange.lines.append(printable(line.decode("utf-8", "replace")))
                if match.group(2) != b"-":
                    exchange.code = int(match.group(1))
                    return exchange
            if len(self.buffer) + sum(map(len, exchange.lines)) > MAX_REPLY_BYTES:
                raise _ProtocolError("reply longer than 64 KiB")
            self.buffer += self._read_more(deadline)

    def command(self, line: str) -> Exchange:
        self.step = line.split(":")[0].split(" ")[0].upper()
        exchange = Exchange(line, in_tls=self.tls is not None)
        self.exchanges.append(exchange)
        data = (line + "\r\n").encode()
        deadline = self._deadline()
        if self.tls is None:
            self._send_raw(data, f"probe: {self.step}", deadline)
        else:
            self.tls.write(data)
            self._flush_tls(f"probe: {self.step} (inside TLS)", deadline)
        return self.read_reply(exchange)

    def banner(self) -> Exchange:
        self.step = "banner"
        exchange = Exchange(None, in_tls=self.tls is not None)
        self.exchanges.append(exchange)
        return self.read_reply(exchange)

    # --- TLS ----------------------------------------------------------------------------------
    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # like an MTA's opportunistic TLS; the report judges
        if self.s.tls_version:
            ctx.minimum_version = ctx.maximum_version = _TLS_VERSIONS[self.s.tls_version]
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.keylog_filename = str(self.keylog_path)
        if self.s.credentials is not None:
            self.s.credentials.load_into(ctx)
        return ctx

    def handshake(self) -> None:
        self.step = "TLS handshake"
        if self.buffer:
            self.notes.append(f"the server sent {len(self.buffer)} byte(s) after its STARTTLS "
                              "reply, before the handshake: discarded (never read as TLS)")
            self.buffer = b""
        sni = self.s.sni
        if sni is None:
            try:
                ipaddress.ip_address(self.s.host)
            except ValueError:
                sni = self.s.host
        self.tls = self.context().wrap_bio(self.incoming, self.outgoing, server_hostname=sni)
        deadline = self._deadline()
        note = "probe: ClientHello"
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush_tls(note, deadline)
                note = "probe: TLS handshake"
                self.incoming.write(self._recv_raw(deadline))
        self._flush_tls("probe: TLS handshake (client's last flight)", deadline)

    def close(self) -> None:
        """close_notify (inside TLS), then FIN; wait briefly for the server's FIN."""
        deadline = time.monotonic() + min(self.s.timeout, 2.0)
        try:
            if self.tls is not None and not self.server_closed:
                with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLError):
                    self.tls.unwrap()
                self._flush_tls("probe: close_notify", deadline)
        except (_Timeout, _Closed, OSError):
            pass
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.rec.close(_now(), Direction.TO_SERVER)
        except OSError:
            self.rec.close(_now(), Direction.TO_SERVER, CloseKind.RST)
        try:
            while not self.server_closed:
                self._recv_raw(deadline)
        except (_Timeout, _Closed, OSError):
            pass

    # --- the dialogue -------------------------------------------------------------------------
    def run(self) -> tuple[Stop, str]:
        s = self.s
        if s.implicit_tls:
            self.handshake()
        banner = self.banner()
        if banner.code != 220:
            self.command("QUIT")
            return Stop.BANNER_REJECTED, banner.text
        ehlo = self.command(f"EHLO {s.ehlo}")
        if ehlo.code != 250:
            self.command("QUIT")
            return Stop.EHLO_REJECTED, ehlo.text
        if not s.implicit_tls:
            capabilities = {line[4:].split(" ")[0].upper() for line in ehlo.lines[1:]}
            if "STARTTLS" not in capabilities:
                self.command("QUIT")
                return Stop.STARTTLS_NOT_OFFERED, "the EHLO reply does not offer STARTTLS"
            starttls = self.command("STARTTLS")
            if starttls.code != 220:
                self.command("QUIT")
                return Stop.STARTTLS_REFUSED, starttls.text
            self.handshake()
            second = self.command(f"EHLO {s.ehlo}")
            if second.code != 250:
                self.command("QUIT")
                return Stop.EHLO_REJECTED, second.text
        mail = self.command(f"MAIL FROM:<{s.mail_from}>")
        if mail.code is None or mail.code // 100 != 2:
            self.command("QUIT")
            return Stop.MAIL_REJECTED, mail.text
        if s.rcpt_to is not None:
            self.command(f"RCPT TO:<{s.rcpt_to}>")
        self.command("RSET")
        self.command("QUIT")
        return Stop.COMPLETED, ""


def connect(settings: ProbeSettings) -> tuple[socket.socket, Recording]:
    """Open the TCP connection to the host given (and only to it)."""
    start = _now()
    try:
        sock = socket.create_connection((settings.host, settings.port), timeout=settings.timeout)
    except socket.gaierror as exc:
        raise ConnectError(f"cannot resolve {settings.host} ({exc.strerror})") from None
    except TimeoutError:
        raise ConnectError(f"no answer from {settings.host}:{settings.port} within "
                           f"{settings.timeout:g} s") from None
    except ConnectionRefusedError:
        raise ConnectError(f"{settings.host}:{settings.port} refused the connection") from None
    except OSError as exc:
        raise ConnectError(f"cannot connect to {settings.host}:{settings.port} "
                           f"({exc.strerror or exc})") from None
    end = _now()
    rec = Recording(_address(sock.getsockname()), _address(sock.getpeername()), start, end)
    return sock, rec


def run_session(settings: ProbeSettings) -> SessionResult:
    """Connect, talk, close. Raises ConnectError only; everything after connect is a Stop."""
    sock, rec = connect(settings)
    with tempfile.TemporaryDirectory(prefix="tls-smtp-probe-") as folder, sock:
        keylog_path = Path(folder) / "session.keys"
        session = _Session(settings, sock, rec, keylog_path)
        tls_error = None
        try:
            stop, detail = session.run()
        except _Timeout:
            stop, detail = Stop.TIMEOUT, (f"no answer within {settings.timeout:g} s "
                                          f"({session.step})")
        except _Closed as closed:
            how = "reset" if closed.reset else "closed"
            stop, detail = Stop.CLOSED_BY_SERVER, f"the server {how} the connection " \
                                                  f"({session.step})"
        except _ProtocolError as exc:
            stop, detail = Stop.PROTOCOL_ERROR, f"{exc} ({session.step})"
        except ssl.SSLError as exc:
            tls_error = exc.reason or str(exc)
            stop, detail = Stop.HANDSHAKE_FAILED, f"{tls_error} ({session.step})"
            with contextlib.suppress(_Timeout, _Closed, OSError):
                session._flush_tls("probe: TLS alert", time.monotonic() + 1)
        session.close()
        version = cipher = None
        if session.tls is not None:
            try:
                version = session.tls.version()
                cipher_info = session.tls.cipher()
                cipher = cipher_info[0] if cipher_info else None
            except (ssl.SSLError, ValueError):
                pass
        if (stop == Stop.CLOSED_BY_SERVER and version == "TLSv1.3"
                and session.exchanges and session.exchanges[-1].in_tls
                and sum(e.in_tls for e in session.exchanges) == 1):
            detail += ("; in TLS 1.3 the server checks the client certificate after the "
                       "handshake, so this is where it rejects one")
        keylog = keylog_path.read_bytes() if keylog_path.exists() else b""
    return SessionResult(settings, rec, session.exchanges, stop, detail, version, cipher,
                         tls_error, keylog, bytes(session.server_tls), session.notes)
