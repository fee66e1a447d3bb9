"""Conversations + certificates -> findings: what is wrong, the evidence, and the fix.

Rule ids W1..W17 are those of ``shared/reference/exchange-online.md``; X-rules are checks
of our own (a 5.7.64 reply seen, a TLS alert, a server chain problem, a damaged capture).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .certificates import name_matches
from .invariants import allows
from .schema import FINDING_COLUMNS, ClientCert, Severity
from .tables import Record, records, records_by_stream

#: One conversation row (a dict from ``conversations.to_dict("records")``).
Conv = Mapping[str, Any]

def fix_present_cert(ehlo: str = "") -> str:
    """W6's fix; commands in backticks (code spans in Markdown, ``<code>`` in HTML), the
    certificate looked up by the EHLO name when the capture shows one."""
    lookup = (f"Get-ExchangeCertificate -DomainName {ehlo}" if _plain_name(ehlo)
              else "Get-ExchangeCertificate")
    return (
        "Make the sending server present its certificate. Exchange Server: find the "
        f"certificate with `{lookup} | fl Thumbprint,Subject,Issuer,NotAfter,Services`; "
        "enable it for SMTP with `Enable-ExchangeCertificate -Thumbprint <thumbprint> "
        "-Services SMTP`; point the send connector to Office 365 at it with "
        "`Set-SendConnector \"<connector>\" -TlsCertificateName \"<I><issuer><S><subject>\" "
        "-RequireTLS $true` (issuer and subject as Get-ExchangeCertificate shows them), then "
        "`Restart-Service MSExchangeTransport`. Postfix: `smtp_tls_chain_files = "
        "/etc/postfix/<name>.pem` (key, certificate, intermediates) with "
        "`smtp_tls_security_level = encrypt` for the Exchange Online destination. Exim: "
        "`tls_certificate` and `tls_privatekey` on the remote_smtp transport. Sendmail: "
        "`confCLIENT_CERT` and `confCLIENT_KEY`."
    )


def _plain_name(name: object) -> bool:
    """A host name that can go into a command line as it is (no quoting needed)."""
    return (isinstance(name, str) and "." in name and not name.startswith("[")
            and all(ch.isalnum() or ch in ".-_" for ch in name))


def windows_name(rfc4514: object) -> str:
    """An RFC 4514 name the way Windows and Get-ExchangeCertificate write it: the same order
    (CN first), RDNs separated by ", " (escaped commas stay)."""
    text = rfc4514 if isinstance(rfc4514, str) else ""
    out, escaped = [], False
    for ch in text:
        if ch == "," and not escaped:
            out.append(", ")
        else:
            out.append(ch)
        escaped = ch == "\\" and not escaped
    return "".join(out)


def _connector_name(names: Sequence[str]) -> str:
    """The name a certificate-scoped connector would match: its first DNS-looking name."""
    plain = [n for n in names if _plain_name(n) or (n.startswith("*.") and _plain_name(n[2:]))]
    return plain[0] if plain else "<name on the certificate>"


def tls_certificate_name(leaf: Record) -> str:
    """The send connector's TlsCertificateName for this certificate: <I>issuer<S>subject."""
    return f"<I>{windows_name(leaf['issuer'])}<S>{windows_name(leaf['subject'])}"


#: W6's fix when the capture shows no EHLO name.
FIX_PRESENT_CERT = fix_present_cert()


@dataclass(frozen=True)
class Options:
    """What the user told us about the intended setup (all optional)."""

    expect_cert_name: str | None = None  # the connector's TlsSenderCertificateName
    accepted_domains: tuple[str, ...] = ()
    sender_ips: tuple[str, ...] = ()  # the connector's SenderIPAddresses (CIDR)
    keylog_entries: int | None = None  # secrets in the --keylog file (None: no key log)
    keylog_matching: int | None = None  # of them, those for this capture's ClientHellos


def _w4_fix(options: Options) -> str:
    """W4's advice: a key log, or (when one was given) the right key log."""
    log = "read the sender's SMTP send protocol log ('Sending certificate' lines)"
    if options.keylog_entries is None:
        return f"Re-run with --keylog FILE (an SSLKEYLOGFILE from the sender), or {log}."
    if not options.keylog_matching:
        return (f"The key log given holds {options.keylog_entries} secret(s), but none for a "
                "ClientHello of this capture: it was written for other connections. Use the "
                f"SSLKEYLOGFILE the sender wrote while this capture ran, or {log}.")
    return (f"The key log given ({options.keylog_entries} secret(s), "
            f"{options.keylog_matching} for this capture) has no secret for this "
            f"conversation: add the sender's secrets for it, or {log}.")


def _frames(*frames: object) -> str:
    seen: list[int] = []
    for f in frames:
        if f is not None and not pd.isna(f) and int(f) not in seen:
            seen.append(int(f))
    return " ".join(str(f) for f in sorted(seen))


class _Collector:
    """Finding rows; a finding its conversation's facts contradict is refused (see
    :mod:`pyshark_tools.core.invariants`) and named in ``refused`` instead."""

    def __init__(self, guard: bool = True) -> None:
        self.rows: list[dict[str, object]] = []
        self.refused: list[str] = []
        self.guard = guard

    def add(self, conv: Conv, rule: str, severity: Severity, title: str,
            explanation: str, frames: str, fix: str) -> None:
        broken = allows(rule, conv) if self.guard else None
        if broken is not None:
            self.refused.append(f"stream {conv['stream']}: {rule} not reported: it needs "
                                f"{broken.says}")
            return
        self.rows.append({
            "stream": int(conv["stream"]), "id": rule, "severity": severity.value,
            "title": title, "explanation": explanation, "evidence_frames": frames, "fix": fix,
        })


def diagnose(
    conversations: pd.DataFrame,
    certificates: pd.DataFrame,
    events: pd.DataFrame,
    options: Options = Options(),
    *,
    guard: bool = True,
) -> pd.DataFrame:
    """Apply every rule to every conversation; one row per finding.

    ``guard=False`` lets findings through that contradict their conversation (tests use it
    to show no rule ever needs the guard); ``df.attrs["refused"]`` names what the guard
    held back.
    """
    out = _Collector(guard)
    # Plain records grouped by stream once: pandas operations on per-conversation slices
    # cost about a millisecond each, which dominated large captures.
    certs_by_stream = records_by_stream(certificates)
    if len(events):
        relevant = events[(events["kind"] == "smtp_reply")
                          & events["detail"].str.contains("5.7.64", regex=False, na=False)]
    else:
        relevant = events
    replies_by_stream = records_by_stream(relevant)
    for conv in records(conversations):
        stream = int(conv["stream"])
        certs = certs_by_stream.get(stream, [])
        _smtp_rules(out, conv)
        _tls_rules(out, conv, options)
        _client_chain_rules(out, conv, certs, options)
        _server_chain_rules(out, conv, certs)
        _reply_rules(out, conv, replies_by_stream.get(stream, []))
        _ip_rules(out, conv, options)
    df = pd.DataFrame(out.rows, columns=list(FINDING_COLUMNS))
    df["stream"] = df["stream"].astype("Int64")
    order = {s.value: i for i, s in enumerate(Severity)}
    df = df.sort_values(["stream", "severity", "id"], key=lambda c: c.map(order) if
                        c.name == "severity" else c, kind="stable").reset_index(drop=True)
    df["severity"] = pd.Categorical(df["severity"], categories=[s.value for s in Severity])
    df.attrs["refused"] = out.refused
    return df


def _chain(certs: list[Record], role: str, frame: object) -> list[Record]:
    """One Certificate message's certificates, leaf first."""
    if frame is None or pd.isna(frame):
        return []
    chain = [c for c in certs if c["role"] == role and c["frame"] == int(frame)]
    return sorted(chain, key=lambda c: c["position"])


def _smtp(conv: Conv) -> bool:
    """SMTP (the default) rather than other TLS that --all-tls reports (HTTPS, IMAPS ...)."""
    return str(conv.get("protocol") or "smtp") == "smtp"


def _sender(conv: Conv) -> str:
    """The connecting side, named inside a sentence."""
    return "the sending server" if _smtp(conv) else "the client"


def _server_fatal_alert(alerts: str) -> str | None:
    """The first fatal alert the server sent in clear ("handshake_failure(40)"), if any."""
    for alert in alerts.split():
        if alert.startswith("server:") and "close_notify" not in alert \
                and "encrypted_alert" not in alert:
            return alert.split(":", 1)[1]
    return None


#: W6's fix for TLS that is not SMTP (--all-tls).
FIX_PRESENT_CERT_TLS = (
    "Configure the client program to present its certificate and key (for example "
    "`curl --cert client.pem --key client.key`), with the intermediates the server needs, "
    "issued by a CA the server trusts."
)


def _who(conv: Conv) -> str:
    """The receiving side, named for the start of a sentence."""
    if conv["exchange_online"]:
        return "Exchange Online"
    return "The receiving server" if _smtp(conv) else "The server"


def _smtp_rules(out: _Collector, conv: Conv) -> None:
    exo = bool(conv["exchange_online"])
    if _false(conv["starttls_offered"]):
        out.add(conv, "W1", Severity.ERROR if exo else Severity.WARNING,
                "STARTTLS not offered",
                f"{_who(conv)}'s EHLO reply (frame {conv['frame_ehlo_reply']}) does not list "
                "STARTTLS, so no TLS session and no certificate matching can happen; a "
                "certificate-scoped connector can never match this connection.",
                _frames(conv["frame_ehlo_reply"]),
                "Check the sending IP's reputation and block lists; make sure no firewall or "
                "SMTP inspection between the servers strips the STARTTLS keyword (e.g. ESMTP "
                "inspection on a Cisco ASA).")
    elif _true(conv["starttls_offered"]) and _false(conv["starttls_requested"]):
        out.add(conv, "W2", Severity.ERROR if exo else Severity.WARNING,
                "STARTTLS offered but not used",
                f"{_who(conv)} offered STARTTLS (frame {conv['frame_ehlo_reply']}) but the "
                "sending server went on without TLS, so it presented no certificate.",
                _frames(conv["frame_ehlo_reply"]),
                "Turn TLS on for this route. Exchange Server: `Set-SendConnector "
                "\"<connector>\" -RequireTLS $true -TlsAuthLevel DomainValidation "
                "-TlsDomain mail.protection.outlook.com`. Postfix: `smtp_tls_security_level = "
                "encrypt`.")


def _true(value: object) -> bool:
    return value is not None and not pd.isna(value) and bool(value)


def _false(value: object) -> bool:
    return value is not None and not pd.isna(value) and not bool(value)


def _max_offered(text: object) -> str | None:
    if not isinstance(text, str) or not text:
        return None
    order = ["SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3"]
    known = [v for v in text.split(",") if v in order]
    return max(known, key=order.index) if known else None


def _tls_rules(out: _Collector, conv: Conv, options: Options = Options()) -> None:
    verdict = conv["client_cert"]
    exo = bool(conv["exchange_online"])
    alerts = conv["tls_alerts"] if isinstance(conv["tls_alerts"], str) else ""
    top = _max_offered(conv["tls_offered"])
    if top in ("SSL 3.0", "TLS 1.0", "TLS 1.1") or (
        "protocol_version" in alerts and pd.isna(conv["frame_server_hello"])
    ):
        failed = pd.isna(conv["frame_server_hello"])
        smtp = _smtp(conv)
        out.add(conv, "W3", Severity.ERROR if exo or failed else Severity.WARNING,
                "Legacy TLS version",
                (f"The sending server's ClientHello (frame {conv['frame_client_hello']}) offers "
                 f"nothing newer than {top or 'TLS 1.1'}; Exchange Online accepts TLS 1.2 and "
                 "newer only, so "
                 + ("the handshake fails (the sender's log shows 'TLS negotiation failed with "
                    "error SocketError')." if failed or exo else
                    "this sender's mail to Exchange Online would fail the same way.")) if smtp
                else (f"The client's ClientHello (frame {conv['frame_client_hello']}) offers "
                      f"nothing newer than {top or 'TLS 1.1'}"
                      + ("; the server refused it." if failed else
                         "; current servers refuse that.")),
                _frames(conv["frame_client_hello"], conv["frame_alert"]),
                "Enable TLS 1.2 on the sending server (Windows: SchUseStrongCrypto and the "
                "SCHANNEL TLS 1.2 client keys; Postfix: `smtp_tls_protocols = >=TLSv1.2`)."
                if smtp else "Enable TLS 1.2 (or newer) in the client program and its TLS "
                "library.")
    elif "handshake_failure" in alerts and pd.isna(conv["frame_server_hello"]):
        out.add(conv, "W16", Severity.ERROR, "No shared cipher suite",
                "The server ended the handshake with a handshake_failure alert right after "
                f"the ClientHello (frame {conv['frame_client_hello']}): the two sides share no "
                "cipher suite.",
                _frames(conv["frame_client_hello"], conv["frame_alert"]),
                "Enable ECDHE-RSA-AES-GCM suites (TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) on "
                + ("the sender; 3DES and RC4 are refused by Exchange Online since 2019."
                   if _smtp(conv) else "the client; servers refuse 3DES and RC4."))
    if verdict == ClientCert.HIDDEN_TLS13:
        out.add(conv, "W4", Severity.INFO, "TLS 1.3: client certificate not visible",
                f"The server chose TLS 1.3 (frame {conv['frame_server_hello']}). TLS 1.3 "
                "encrypts the Certificate and CertificateRequest messages, so this capture "
                "cannot tell whether the client presented a certificate. This is not 'no "
                "certificate': it is 'cannot see'.",
                _frames(conv["frame_server_hello"]),
                _w4_fix(options) if _smtp(conv)
                else "Re-run with --keylog FILE (an SSLKEYLOGFILE written by the client "
                "program), or read the client's or the server's own log of the handshake.")
    elif verdict == ClientCert.RESUMED:
        out.add(conv, "W5", Severity.INFO, "Resumed TLS session: no certificates exchanged",
                "This connection resumed an earlier TLS session, so neither side sent "
                "certificates. Whether a certificate was presented is decided by the full "
                "handshake this session came from.",
                _frames(conv["frame_server_hello"]),
                "Look at the earlier full handshake in the capture, or capture a new "
                + ("connection after restarting the sender's transport service." if _smtp(conv)
                   else "connection after restarting the client program."))
    elif verdict == ClientCert.EMPTY:
        replies = conv["reply_codes"] or ""
        seen_550 = " 550" in f" {replies}"
        consequence = (
            "The 550 reply in this capture is the result." if seen_550 else
            "As long as an IP-scoped connector still matches, mail flows; once it is removed, "
            "mail is rejected with 550 5.7.64 TenantAttribution; Relay Access Denied."
        )
        refused = _server_fatal_alert(alerts)
        out.add(conv, "W6", Severity.ERROR if exo or refused else Severity.WARNING,
                "No client certificate presented (empty Certificate message)",
                f"{_who(conv)} asked {_sender(conv)} for its certificate "
                f"(CertificateRequest, frame {conv['frame_certificate_request']}), and "
                f"{_sender(conv)} answered with an EMPTY Certificate message (frame "
                f"{conv['frame_client_certificate']}): it presented no certificate. "
                + (f"The server then ended the handshake with the fatal alert {refused} (frame "
                   f"{conv['frame_alert']}): it requires a certificate. " if refused else "")
                + ("Exchange Online therefore cannot attribute this mail to an inbound "
                   "connector scoped by certificate (TlsSenderCertificateName). "
                   if exo else "")
                + (consequence if exo else ""),
                _frames(conv["frame_certificate_request"], conv["frame_client_certificate"],
                        conv["frame_alert"] if refused else None),
                fix_present_cert(conv["ehlo"] if isinstance(conv["ehlo"], str) else "")
                if _smtp(conv) else FIX_PRESENT_CERT_TLS)
        ehlo = conv["ehlo"] if isinstance(conv["ehlo"], str) else ""
        if exo and _looks_internal(ehlo):
            out.add(conv, "W6b", Severity.WARNING, "EHLO name is not a public certificate name",
                    f"The sending server introduced itself as '{ehlo}'. Exchange Server picks "
                    "its TLS certificate by the send connector's Fqdn; an internal name is on "
                    "no public certificate, so it found none to present.",
                    _frames(conv["frame_ehlo_reply"], conv["frame_client_certificate"]),
                    "Set the send connector's Fqdn to a name on the certificate "
                    "(`Set-SendConnector \"<connector>\" -Fqdn mail.contoso.com`) and set "
                    "TlsCertificateName.")
    elif verdict == ClientCert.NOT_REQUESTED:
        tls12 = conv["tls_version"] in ("TLS 1.2", "TLS 1.1", "TLS 1.0", "SSL 3.0")
        if tls12:
            out.add(conv, "W7", Severity.WARNING if exo else Severity.INFO,
                    "The server never asked for a client certificate",
                    f"The {conv['tls_version']} handshake completed without a "
                    "CertificateRequest, so the client had no chance to present a certificate."
                    + (" Exchange Online normally asks: a TLS-inspecting proxy or the wrong "
                       "endpoint is in the path." if exo else ""),
                    _frames(conv["frame_server_hello"]),
                    "Send to <tenant>.mail.protection.outlook.com on port 25 directly, without "
                    "TLS inspection in between." if exo else
                    "Nothing to fix unless this server is meant to authenticate senders by "
                    "certificate; then configure it to request client certificates.")
    elif verdict == ClientCert.HIDDEN_RENEGOTIATION:
        out.add(conv, "X8", Severity.INFO, "Renegotiated inside TLS: client certificate not "
                "visible",
                f"{conv['verdict_reason'][:1].upper()}{conv['verdict_reason'][1:]}. A server "
                "that asks for the certificate only in a renegotiation (as IIS-style front ends "
                "do) receives it there, so this is not 'no certificate': it is 'cannot see'.",
                _frames(conv["frame_server_hello"]),
                "Re-run with --keylog FILE: an SSLKEYLOGFILE holding both handshakes' secrets "
                "(OpenSSL and GnuTLS write one line per handshake), or read the server's log "
                "of the second handshake.")
    elif verdict == ClientCert.NOT_CAPTURED:
        out.add(conv, "X4", Severity.INFO, "Capture incomplete for this conversation",
                f"{conv['verdict_reason']}. The capture cannot tell whether a certificate was "
                "presented.",
                _frames(conv["first_frame"]),
                "Capture again with a full snap length (tcpdump -s 0, dumpcap default) and let "
                "the conversation finish.")
    hello_refused = pd.isna(conv["frame_server_hello"]) and (
        "handshake_failure" in alerts or "protocol_version" in alerts)  # W16 / W3 above
    if alerts and not hello_refused and "protocol_version" not in alerts:
        server_alerts = [a for a in alerts.split() if a.startswith("server:")
                         and "close_notify" not in a and "encrypted_alert" not in a]
        if server_alerts and verdict == ClientCert.PRESENTED:
            name = server_alerts[0].split(":", 1)[1]
            out.add(conv, "X2", Severity.ERROR, f"Server rejected the client certificate "
                    f"({name})",
                    f"The client presented a certificate (frame "
                    f"{conv['frame_client_certificate']}) and the server answered with the "
                    f"fatal alert {name} (frame {conv['frame_alert']}).",
                    _frames(conv["frame_client_certificate"], conv["frame_alert"]),
                    "See the certificate findings for this conversation: use a certificate "
                    "from a public CA, send the full chain, and renew it before it expires.")
        elif server_alerts and verdict != ClientCert.EMPTY:  # EMPTY: W6 names the alert
            name = server_alerts[0].split(":", 1)[1]
            out.add(conv, "X7", Severity.ERROR, f"Server ended the TLS handshake ({name})",
                    f"The server sent the fatal alert {name} (frame {conv['frame_alert']}) "
                    f"after its ServerHello (frame {conv['frame_server_hello']}): the "
                    "connection failed before any application data.",
                    _frames(conv["frame_server_hello"], conv["frame_alert"]),
                    "Read the server's log for why it refused the handshake (certificate "
                    "required, unsupported parameters), and the alert's meaning in RFC 5246 "
                    "section 7.2.")


def _looks_internal(name: str) -> bool:
    if not name or "." not in name or name.startswith("["):
        return bool(name)
    return name.lower().rstrip(".").rsplit(".", 1)[-1] in {"local", "lan", "corp", "internal",
                                                           "localdomain", "home", "intra"}


def _client_chain_rules(out: _Collector, conv: Conv, certs: list[Record],
                        options: Options) -> None:
    if conv["client_cert"] != ClientCert.PRESENTED:
        return
    chain = _chain(certs, "client", conv["frame_client_certificate"])
    if not chain:
        return
    leaf = chain[0]
    frame = _frames(conv["frame_client_certificate"])
    exo = bool(conv["exchange_online"])
    sev = Severity.ERROR if exo else Severity.WARNING
    if leaf["parse_error"]:
        out.add(conv, "X5", sev, "Client certificate cannot be parsed",
                f"The client's leaf certificate could not be read: {leaf['parse_error']}.",
                frame, "Reissue the certificate.")
        return
    subject = leaf["subject"]
    trust = leaf["trust"]
    invalid = [c for c in chain if c["valid_at_capture"] is False]
    if invalid:
        bad = invalid[0]
        when = "expired on" if bad["not_after"] < conv["start_time"] else "is not valid before"
        date = bad["not_after"] if "expired" in when else bad["not_before"]
        out.add(conv, "W10", sev, "Client certificate outside its validity period",
                f"The certificate '{bad['subject']}' (thumbprint {bad['sha1']}) {when} "
                f"{date:%Y-%m-%d %H:%M UTC}, and the capture was taken on "
                f"{conv['start_time']:%Y-%m-%d %H:%M UTC}.",
                frame, "Renew the certificate (thumbprint "
                f"{leaf['sha1']}) and configure the client program to present the new one."
                if not _smtp(conv) else
                "Renew the certificate (the one presented: `Get-ExchangeCertificate "
                f"-Thumbprint {leaf['sha1']} | fl Subject,Issuer,NotAfter,Services`), enable the "
                "new one for SMTP (`Enable-ExchangeCertificate -Thumbprint <new thumbprint> "
                "-Services SMTP`) and re-point the send connector at it (`Set-SendConnector "
                f"\"<connector>\" -TlsCertificateName \"{tls_certificate_name(leaf)}\"` when "
                "the renewed certificate keeps this issuer and subject).")
    weak = [c for c in chain if c["signature_hash"] in ("sha1", "md5") and not c["self_signed"]]
    if trust == "missing_intermediate":
        out.add(conv, "W8", sev, "Client sent its certificate without the intermediate CA",
                f"The client sent only its leaf '{subject}' (issued by '{leaf['issuer']}'). "
                "Exchange Online does not download missing intermediates, so it cannot build "
                "a chain to a trusted root (450 4.4.317 or 550 5.7.64).",
                frame, "Install the issuing CA's intermediate certificate on the sending "
                "server (Exchange: import it into the Local Computer Intermediate Certification "
                "Authorities store; Postfix: append it to the file in `smtp_tls_chain_files`).")
    elif trust in ("self_signed", "untrusted"):
        what = "self-signed" if trust == "self_signed" else "issued by a CA that is not publicly"\
            " trusted"
        out.add(conv, "W9", sev, "Client certificate not publicly trusted",
                f"The client's certificate '{subject}' is {what} ({leaf['trust_detail']}). "
                + ("Exchange Online only accepts certificates from public CAs for connector "
                   "attribution." if _smtp(conv) else
                   "Only a server that trusts its issuing CA accepts it."),
                frame, "Use a certificate from a CA the server trusts, or make the server trust "
                f"this issuer ('{leaf['issuer']}')." if not _smtp(conv) else
                "Use a certificate issued by a public CA (the name must be on it: CN or "
                "SAN), then point the send connector at it (`Enable-ExchangeCertificate "
                "-Thumbprint <new thumbprint> -Services SMTP`, `Set-SendConnector \"<connector>\" "
                "-TlsCertificateName \"<I><issuer><S><subject>\"`). The one presented now: "
                f"`Get-ExchangeCertificate -Thumbprint {leaf['sha1']}`.")
    elif trust == "weak_signature" or weak:
        hashes = sorted({c["signature_hash"] for c in weak} or {"sha1"})
        out.add(conv, "W13", sev, "SHA-1 signature in the client chain",
                f"A certificate in the client's chain is signed with {', '.join(hashes)}; "
                "Exchange Online rejects SHA-1 signed certificates since 2016.",
                frame, "Reissue the certificate (and chain) with SHA-256.")
    elif trust == "invalid":
        out.add(conv, "X6", sev, "Client chain does not verify",
                f"The client's chain does not verify: {leaf['trust_detail']}.",
                frame, "Reissue the certificate from a public CA and send the full chain.")
    small = [c for c in chain if c["key_type"] == "RSA" and (c["key_size"] or 0) < 2048
             and c["key_size"] is not None]
    if small:
        out.add(conv, "W14", Severity.WARNING, "RSA key shorter than 2048 bits",
                f"'{small[0]['subject']}' has a {small[0]['key_size']}-bit RSA key.",
                frame, "Reissue with an RSA key of 2048 bits or more.")
    ekus = leaf["ekus"] if isinstance(leaf["ekus"], str) else ""
    if ekus and "clientAuth" not in ekus.split("; "):
        out.add(conv, "W15", Severity.WARNING, "Client certificate lacks the clientAuth EKU",
                f"The leaf's extended key usage is '{ekus}' without clientAuth. Postfix refuses "
                "such a certificate as a client; Exchange Online's rule is undocumented, and "
                "public CAs stop issuing clientAuth in 2026.",
                frame, "Monitor; prefer a certificate whose EKU includes clientAuth "
                "(TLS Web Client Authentication).")
    names = list(dict.fromkeys([n for n in [leaf["cn"]] if isinstance(n, str)] + [
        s.split(":", 1)[-1] for s in (leaf["sans"] or "").split("; ") if s]))  # CN is a SAN too
    if options.expect_cert_name and not name_matches(options.expect_cert_name, names):
        out.add(conv, "W11", sev, "Certificate name does not match the connector",
                f"The connector expects '{options.expect_cert_name}' "
                "(TlsSenderCertificateName) but the certificate's names are "
                f"{', '.join(names) or 'none'}.",
                frame, "Set the inbound connector's TlsSenderCertificateName to a name on the "
                "certificate (`Set-InboundConnector \"<connector>\" -TlsSenderCertificateName "
                f"{_connector_name(names)}`), or present a certificate carrying the expected "
                "name.")
    if options.accepted_domains:
        matched = options.expect_cert_name or (leaf["cn"] if isinstance(leaf["cn"], str)
                                               else None)
        if matched and not _in_accepted(matched, options.accepted_domains):
            out.add(conv, "W12", sev, "Certificate domain is not an accepted domain",
                    f"'{matched}' is not in or under an accepted domain "
                    f"({', '.join(options.accepted_domains)}); since November 2023 relayed mail "
                    "needs the certificate domain or the MAIL FROM domain to be accepted.",
                    frame, "Add the domain as an accepted domain in Exchange Online, or use a "
                    "certificate whose name is in one.")


def _in_accepted(name: str, domains: Iterable[str]) -> bool:
    name = name.lower().lstrip("*.").rstrip(".")
    for domain in domains:
        d = domain.lower().strip().rstrip(".")
        if name == d or name.endswith("." + d):
            return True
    return False


def _server_chain_rules(out: _Collector, conv: Conv, certs: list[Record]) -> None:
    chain = _chain(certs, "server", conv["frame_server_certificate"])
    expired = [c for c in chain if c["valid_at_capture"] is False]
    if expired:
        bad = expired[0]
        out.add(conv, "X1", Severity.WARNING, "Server certificate outside its validity period",
                f"The server's certificate '{bad['subject']}' is valid from "
                f"{bad['not_before']:%Y-%m-%d} to {bad['not_after']:%Y-%m-%d}, which does not "
                "cover the capture time.",
                _frames(conv["frame_server_certificate"]),
                "The receiving side must renew its certificate.")


def _reply_rules(out: _Collector, conv: Conv, replies: list[Record]) -> None:
    """``replies``: this stream's SMTP replies that carry 5.7.64, in frame order."""
    if replies:
        hit = replies[0]
        how = "decrypted with the key log" if hit["decrypted"] else "in clear text"
        out.add(conv, "X3", Severity.ERROR, "Relay denied: 550 5.7.64 TenantAttribution",
                f"The server answered '{hit['detail'].splitlines()[0]}' (frame {hit['frame']}, "
                f"{how}): Exchange Online could not attribute this connection to an "
                "OnPremises inbound connector, neither by source IP nor by certificate.",
                _frames(hit["frame"]),
                "Make an OnPremises inbound connector match: present a certificate whose name "
                "is the connector's TlsSenderCertificateName, or scope the connector by this "
                "sender's public IP.")


def _ip_rules(out: _Collector, conv: Conv, options: Options) -> None:
    if not conv["exchange_online"]:
        return
    try:
        ip = ipaddress.ip_address(conv["client_ip"])
    except ValueError:
        return
    if ip.version == 6:
        out.add(conv, "W17", Severity.WARNING, "IPv6 source: an IP-scoped connector cannot match",
                f"The sender connects from {ip}. Exchange Online's SenderIPAddresses takes IPv4 "
                "only, so only a certificate-scoped connector can attribute this mail.",
                _frames(conv["first_frame"]), "Scope the connector by certificate, or send "
                "over IPv4.")
        return
    if options.sender_ips:
        nets = [ipaddress.ip_network(n, strict=False) for n in options.sender_ips]
        if not any(ip in n for n in nets):
            out.add(conv, "W17", Severity.WARNING, "Source IP outside the connector's range",
                    f"The sender connects from {ip}, outside {', '.join(options.sender_ips)}: "
                    "an IP-scoped connector cannot match.",
                    _frames(conv["first_frame"]), "Scope the connector by certificate, or fix "
                    "the NAT egress address.")


def worst(severities: Sequence[str]) -> str:
    order = [s.value for s in Severity]
    present = [s for s in order if s in set(severities)]
    return present[0] if present else ""


def attach_severity(conversations: pd.DataFrame, findings: pd.DataFrame) -> pd.DataFrame:
    """Each conversation's worst severity and its finding ids (in the findings' order)."""
    conversations = conversations.copy()
    severities: dict[int, list[str]] = {}
    ids: dict[int, list[str]] = {}
    for stream, severity, rule in zip(findings["stream"], findings["severity"].astype(str),
                                      findings["id"], strict=True):
        severities.setdefault(int(stream), []).append(severity)
        ids.setdefault(int(stream), []).append(rule)
    streams = [int(s) for s in conversations["stream"]]
    conversations["severity"] = [worst(severities.get(s, [])) for s in streams]
    conversations["finding_ids"] = [" ".join(dict.fromkeys(ids.get(s, []))) for s in streams]
    return conversations
