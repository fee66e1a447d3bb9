"""``tls-smtp-report probe HOST[:PORT]``: the click command and the probe's part of the report."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import click
from cryptography import x509
from rich.console import Console
from rich.text import Text

from ..core.certificates import load_trust_store
from ..core.events import IMPLICIT_TLS_PORTS
from ..core.schema import EXIT_TSHARK, EXIT_UNREADABLE, EXIT_USAGE
from ..engine.tshark import find_tshark
from ..errors import (
    CaptureError,
    CaptureWriteError,
    ConnectError,
    CredentialsError,
    KeylogError,
    TrustStoreError,
    TsharkError,
)
from ..render.text import render_text
from .credentials import Credentials, load_pem, load_pfx
from .handshake import certificate_type_name, scheme_name
from .run import ProbeReport, probe
from .session import ProbeSettings

EXIT_NO_CONNECTION = 6  # the probe could not open the TCP connection
MAX_CA_NAMES_SHOWN = 6  # in text; the fit line names the one that matched

PROBE_EXIT_HELP = """\b
Exit codes:
  0  nothing wrong found
  1  problems found (a finding, a rejected MAIL/RCPT, a session that stopped early)
  2  usage error
  3  tshark missing or too old
  4  certificate, key, PFX (wrong password), trust store or capture unreadable
  6  could not connect
"""


class ProbeFailure(click.ClickException):
    """One line on stderr and a documented exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def parse_target(target: str, implicit_tls: bool) -> tuple[str, int]:
    """HOST, HOST:PORT, [v6]:PORT or a bare IPv6 address; default port 25 or 465."""
    default = 465 if implicit_tls else 25
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif target.count(":") == 1:
        host, port = target.split(":")
    else:
        host, port = target, ""
    if not host:
        raise ProbeFailure(f"no host in {target!r}", EXIT_USAGE)
    if not port:
        return host, default
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ProbeFailure(f"bad port in {target!r}", EXIT_USAGE)
    return host, int(port)


def _password(var: str | None) -> bytes | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        raise ProbeFailure(f"--password-env {var}: the environment variable {var} is not set",
                           EXIT_USAGE)
    return value.encode()


def _credentials(cert: str | None, key: str | None, pfx: str | None,
                 password_env: str | None) -> Credentials | None:
    if pfx and (cert or key):
        raise ProbeFailure("give either --pfx or --cert/--key, not both", EXIT_USAGE)
    if key and not cert:
        raise ProbeFailure("--key needs --cert", EXIT_USAGE)
    password = _password(password_env)
    try:
        if pfx:
            return load_pfx(Path(pfx), password)
        if cert:
            return load_pem(Path(cert), Path(key) if key else None, password)
    except CredentialsError as exc:
        raise ProbeFailure(str(exc), EXIT_UNREADABLE) from None
    return None


def _default_ehlo(credentials: Credentials | None) -> str:
    """The leaf's first DNS name (what a connector's Fqdn usually is), else this host's name."""
    if credentials is not None:
        try:
            san = credentials.leaf.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value
            names = [n for n in san.get_values_for_type(x509.DNSName) if "*" not in n]
            if names:
                return names[0]
        except x509.ExtensionNotFound:
            pass
    return socket.getfqdn() or "localhost"


def _reply_text(lines: list[str]) -> str:
    """A reply on one line: a multi-line EHLO reply as its greeting plus the capabilities."""
    if not lines:
        return "(no reply)"
    if len(lines) == 1:
        return lines[0]
    return f"{lines[0][:3]} {lines[0][4:]} ({', '.join(x[4:] for x in lines[1:])})"


def render_probe(result: ProbeReport, console: Console) -> None:
    """What only the probe knows, after the pipeline's report."""
    s = result.session
    st = s.settings
    console.print()
    console.print(Text(f"Probe: {st.host}:{st.port} "
                       f"({'implicit TLS' if st.implicit_tls else 'STARTTLS'})", style="bold"))
    creds = st.credentials
    if creds is None:
        console.print("  offered: no certificate (no --cert/--pfx given)")
    else:
        extra = len(creds.chain) - 1
        console.print(f"  offered: {creds.leaf.subject.rfc4514_string()}"
                      f" + {extra} more certificate(s) from {creds.source}", highlight=False)
    req = result.certificate_request
    if req is not None:
        version = "TLS 1.3" if req.tls13 else "TLS 1.2"
        console.print(f"  CertificateRequest ({version}): the server asked for a client "
                      "certificate")
        if req.certificate_types:
            console.print("    certificate types: " + ", ".join(
                certificate_type_name(t) for t in req.certificate_types))
        console.print("    signature algorithms: " + (", ".join(
            scheme_name(c) for c in req.signature_algorithms) or "none"))
        if req.signature_algorithms_cert:
            console.print("    signature algorithms for certificates: " + ", ".join(
                scheme_name(c) for c in req.signature_algorithms_cert))
        names = req.ca_name_strings
        if len(names) > MAX_CA_NAMES_SHOWN:  # Exchange Online lists its whole root program
            shown = "; ".join(names[:MAX_CA_NAMES_SHOWN]) + (
                f"; ... and {len(names) - MAX_CA_NAMES_SHOWN} more (--format json lists all)")
        else:
            shown = "; ".join(names) if names else "none (any CA)"
        console.print(f"    acceptable CA names ({len(names)}): {shown}", highlight=False)
        for check in result.fit:
            style = "green" if check.fits else "red"
            console.print(Text(f"    {'fits' if check.fits else 'DOES NOT FIT'}: "
                               f"{check.detail}", style=style))
    elif s.tls_version:
        console.print("  CertificateRequest: none: the server did not ask for a certificate")
    for exchange in s.exchanges:
        if exchange.command is None:
            continue
        where = " (inside TLS)" if exchange.in_tls else ""
        reply = _reply_text(exchange.lines)
        console.print(f"  {exchange.command}{where} -> {reply}", highlight=False)
    rcpt = result.rcpt
    if rcpt is not None and rcpt.code == 550 and "5.7.64" in rcpt.text:
        streams = result.report.findings
        why = [f"{r['id']} {r['title']}" for _, r in streams.iterrows()
               if str(r["severity"]) == "error" and r["id"] != "X3"]
        if why:
            console.print(Text("  explained by: " + "; ".join(why), style="red"))
        else:
            console.print(Text("  the certificate shows no fault: check the inbound connector "
                               "(TlsSenderCertificateName, accepted domains, about an hour "
                               "to propagate after a change)", style="red"))
    if st.rcpt_to is None:
        console.print("  (no --rcpt-to: RCPT not sent; the 5.7.64 decision comes at RCPT)")
    for note in s.notes:
        console.print(Text(f"  note: {note}", style="yellow"))
    for problem in result.problems():
        console.print(Text(f"  problem: {problem}", style="red"))
    where = (f"{result.capture}" if result.capture else "not kept (pass -o FILE.pcapng)")
    console.print(f"  capture: {where}; {len(s.recording.chunks)} data chunk(s), "
                  f"{'TLS secrets embedded' if s.keylog else 'no TLS secrets'}", highlight=False)


def _json(result: ProbeReport) -> str:
    s = result.session
    req = result.certificate_request
    doc = result.report.to_dict()
    doc["probe"] = {
        "host": s.settings.host, "port": s.settings.port,
        "implicit_tls": s.settings.implicit_tls,
        "stop": s.stop.value, "stop_detail": s.stop_detail,
        "tls_version": s.tls_version, "cipher": s.cipher,
        "offered_chain": [c.subject.rfc4514_string() for c in s.settings.credentials.chain]
        if s.settings.credentials else [],
        "certificate_request": None if req is None else {
            "tls13": req.tls13,
            "certificate_types": [certificate_type_name(t) for t in req.certificate_types],
            "signature_algorithms": [scheme_name(c) for c in req.signature_algorithms],
            "signature_algorithms_cert": [scheme_name(c) for c in req.signature_algorithms_cert],
            "ca_names": req.ca_name_strings,
        },
        "fit": [{"aspect": c.aspect.value, "fits": c.fits, "detail": c.detail}
                for c in result.fit],
        "exchanges": [{"command": e.command, "code": e.code, "reply": e.lines,
                       "in_tls": e.in_tls} for e in s.exchanges],
        "problems": result.problems(),
        "capture": str(result.capture) if result.capture else None,
    }
    return json.dumps(doc, indent=2) + "\n"


@click.command("probe", epilog=PROBE_EXIT_HELP)
@click.argument("target", metavar="HOST[:PORT]")
@click.option("--cert", type=click.Path(path_type=str), metavar="FILE",
              help="Client certificate (PEM: leaf first, then intermediates).")
@click.option("--key", type=click.Path(path_type=str), metavar="FILE",
              help="Its private key (PEM); read, used, never written anywhere.")
@click.option("--pfx", type=click.Path(path_type=str), metavar="FILE",
              help="PKCS#12 file (.pfx/.p12) with key, leaf and intermediates.")
@click.option("--password-env", metavar="VAR",
              help="Environment variable holding the PFX (or encrypted key) password.")
@click.option("--ehlo", metavar="NAME", help="EHLO name (default: the certificate's first "
                                             "DNS name, else this host's name).")
@click.option("--mail-from", default=None, metavar="ADDR",
              help="MAIL FROM address (default: postmaster@EHLO name).")
@click.option("--rcpt-to", metavar="ADDR", help="RCPT TO address (the 5.7.64 decision comes "
                                                "here; without it RCPT is not sent).")
@click.option("--tls", "tls_version", type=click.Choice(["1.2", "1.3"]),
              help="Only this TLS version (default: 1.2 or 1.3, as the server picks).")
@click.option("--sni", metavar="NAME", help="Server name to send (default: HOST unless it is "
                                            "an IP address).")
@click.option("--starttls/--implicit-tls", "starttls", default=True,
              help="STARTTLS on port 25 (default) or TLS from the first byte (port 465).")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30, show_default=True,
              metavar="S", help="Seconds allowed for each step (connect, each reply, TLS).")
@click.option("-o", "--output", metavar="FILE",
              help="Keep the probe's capture (pcapng with its TLS secrets) in FILE.")
@click.option("--expect-cert-name", metavar="NAME",
              help="The connector's TlsSenderCertificateName.")
@click.option("--accepted-domain", "accepted_domains", multiple=True, metavar="D",
              help="An accepted domain of the tenant (repeatable).")
@click.option("--sender-ip", "sender_ips", multiple=True, metavar="CIDR",
              help="The connector's SenderIPAddresses (repeatable).")
@click.option("--trust-store", type=click.Path(path_type=str), metavar="PEM",
              help="PEM bundle of trusted roots instead of Mozilla's (certifi).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--color/--no-color", default=None, help="Force colours on or off.")
def probe_command(target: str, cert: str | None, key: str | None, pfx: str | None,
                  password_env: str | None, ehlo: str | None, mail_from: str | None,
                  rcpt_to: str | None, tls_version: str | None, sni: str | None,
                  starttls: bool, timeout: float, output: str | None,
                  expect_cert_name: str | None, accepted_domains: tuple[str, ...],
                  sender_ips: tuple[str, ...], trust_store: str | None, fmt: str,
                  color: bool | None) -> None:
    """Connect to HOST, present a client certificate, run SMTP up to RCPT (never DATA), record
    the session as pcapng and report on it like a capture."""
    host, port = parse_target(target, implicit_tls=not starttls)
    if not starttls and port not in IMPLICIT_TLS_PORTS:
        raise ProbeFailure(f"--implicit-tls on port {port}: the report reads implicit TLS on "
                           f"port {', '.join(map(str, IMPLICIT_TLS_PORTS))} only", EXIT_USAGE)
    capture = Path(output) if output else None
    if capture is not None and (not capture.parent.is_dir() or capture.is_dir()
                                or not os.access(capture.parent, os.W_OK)):
        raise ProbeFailure(f"cannot write {output}: no such folder, not writable, or it is a "
                           "folder", EXIT_USAGE)
    try:
        tshark = find_tshark()
    except TsharkError as exc:
        raise ProbeFailure(str(exc), EXIT_TSHARK) from None
    credentials = _credentials(cert, key, pfx, password_env)
    try:
        store = load_trust_store(trust_store)
    except TrustStoreError as exc:
        raise ProbeFailure(str(exc), EXIT_UNREADABLE) from None
    for warning in credentials.warnings if credentials else ():
        click.echo(f"warning: {warning}", err=True)
    ehlo = ehlo or _default_ehlo(credentials)
    settings = ProbeSettings(
        host=host, port=port, implicit_tls=not starttls, ehlo=ehlo,
        mail_from=mail_from if mail_from is not None else f"postmaster@{ehlo}",
        rcpt_to=rcpt_to, tls_version=tls_version, sni=sni, timeout=timeout,
        credentials=credentials,
    )
    try:
        result = probe(settings, capture=capture, expect_cert_name=expect_cert_name,
                       accepted_domains=accepted_domains, sender_ips=sender_ips,
                       trust_store=store, tshark=tshark)
    except ConnectError as exc:
        raise ProbeFailure(str(exc), EXIT_NO_CONNECTION) from None
    except CaptureWriteError as exc:
        raise ProbeFailure(str(exc), EXIT_USAGE) from None
    except TsharkError as exc:
        raise ProbeFailure(str(exc), EXIT_TSHARK) from None
    except (CaptureError, KeylogError, TrustStoreError) as exc:
        raise ProbeFailure(str(exc), EXIT_UNREADABLE) from None
    if fmt == "json":
        click.echo(_json(result), nl=False)
    else:
        is_tty = sys.stdout.isatty()
        use_color = is_tty if color is None else color
        console = Console(record=True, force_terminal=use_color, no_color=not use_color,
                          markup=False, highlight=False, soft_wrap=not is_tty,
                          width=None if is_tty else 120,
                          file=open(os.devnull, "w"))  # noqa: SIM115
        if len(result.report.conversations):
            render_text(result.report, console,
                        no_problems="No problems found in the recorded conversation."
                        if result.problems() else "No problems found.")
        else:  # nothing SMTP reached the wire: the capture report's port hint would mislead
            console.print(f"Capture: {result.report.capture['file']}: no SMTP in the recorded "
                          "session (see the probe's lines below)")
        render_probe(result, console)
        click.echo(console.export_text(styles=use_color), nl=False)
    sys.exit(result.exit_code())
