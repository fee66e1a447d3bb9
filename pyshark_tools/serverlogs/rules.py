"""Log sessions -> findings: the capture's rule ids (W1 ... W11, X3) where the log shows the
same fact, and the L rules only a log can show (NoCredentials, the meaning of a reply, a log
level too low). The evidence is the log's own ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..core.certificates import name_matches
from ..core.findings import FIX_PRESENT_CERT, Options
from ..core.schema import ClientCert, Severity
from .model import LogFormat, LogRef, LogRole, LogSession

#: Rule ids of the L rules (documented in the README's findings table).
L_NO_CREDENTIALS = "L1"
L_DISAGREE = "L2"
L_REPLY = "L3"
L_NOT_LOGGED = "L4"

FIX_KEY_READABLE = (
    "Make the certificate usable by the transport service. Check it with "
    "Get-ExchangeCertificate -Thumbprint <thumbprint> | fl Thumbprint,Subject,HasPrivateKey,"
    "Services,NotAfter: HasPrivateKey must be True, and NETWORK SERVICE needs read access to "
    "the private key (certlm.msc > the certificate > All Tasks > Manage Private Keys). "
    "Re-import the PFX with its private key if it is missing, then Enable-ExchangeCertificate "
    "-Thumbprint <thumbprint> -Services SMTP and restart MSExchangeTransport."
)

_INTERNAL_TLDS = {"local", "lan", "corp", "internal", "localdomain", "home", "intra"}


@dataclass(frozen=True)
class KnownReply:
    """A reply whose meaning Exchange Online (or Exchange Server) documents."""

    code: str  # the basic code, "450"
    enhanced: str  # the enhanced status code the text starts with, "4.4.317"
    severity: Severity
    meaning: str
    fix: str


KNOWN_REPLIES: tuple[KnownReply, ...] = (
    KnownReply("450", "4.4.317", Severity.ERROR,
               "Exchange Online could not build the sender's certificate chain to a trusted root "
               "(UntrustedRoot): it does not fetch missing intermediate certificates",
               "Send the full chain: install the issuing CA's intermediate on the sending server "
               "(Exchange: Local Computer Intermediate Certification Authorities store; Postfix: "
               "append it to the smtp_tls_chain_files file)."),
    KnownReply("550", "5.7.51", Severity.ERROR,
               "TenantInboundAttribution; Rejecting: a Partner inbound connector's restrictions "
               "(certificate or IP) rejected this sender",
               "Compare the connector's TlsSenderCertificateName / SenderIPAddresses and "
               "RestrictDomainsToCertificate / RestrictDomainsToIPAddresses with what this "
               "sender presents."),
    KnownReply("451", "4.4.62", Severity.ERROR,
               "Mail sent to the wrong Office 365 region (ATTR35): a legacy endpoint or an IP "
               "literal instead of the tenant's MX host",
               "Send to <tenant>.mail.protection.outlook.com (the tenant's MX record), not to "
               "an IP address or an old regional host name."),
    KnownReply("454", "4.7.5", Severity.ERROR,
               "The certificate named by the send connector's TlsCertificateName could not be "
               "found, so Exchange sent none",
               "Set-SendConnector \"<connector>\" -TlsCertificateName \"<I><issuer><S><subject>\" "
               "with the issuer and subject exactly as Get-ExchangeCertificate shows them, and "
               "make sure that certificate is in the Local Computer Personal store."),
    KnownReply("550", "5.7.68", Severity.ERROR,
               "TenantInboundAttribution; Direct Send is not allowed for this organization from "
               "unauthorized sources",
               "Relay through an OnPremises inbound connector (certificate or IP scope) instead "
               "of Direct Send."),
    KnownReply("454", "4.7.0", Severity.WARNING,
               "TLS not available due to a temporary reason: the server refused STARTTLS",
               "Retry; if it persists, check the receiving side's certificate and TLS settings."),
    KnownReply("530", "5.7.0", Severity.ERROR,
               "Must issue a STARTTLS command first: the receiving side requires TLS",
               "Turn TLS on for this route (Exchange: Set-SendConnector -RequireTLS $true; "
               "Postfix: smtp_tls_security_level = encrypt)."),
    KnownReply("421", "4.4.2", Severity.ERROR,
               "Connection dropped due to SocketError: typically a sender limited to TLS 1.0/1.1",
               "Enable TLS 1.2 on the sending server."),
    KnownReply("550", "5.7.230", Severity.ERROR,
               "The connecting Exchange server version is out of date",
               "Update Exchange Server to a supported cumulative update."),
    KnownReply("450", "4.7.230", Severity.WARNING,
               "The connecting Exchange server version is out of date (temporary rejection)",
               "Update Exchange Server to a supported cumulative update."),
)


@dataclass
class Collector:
    rows: list[dict[str, object]] = field(default_factory=list)

    def add(self, session: int, rule: str, severity: Severity, title: str, explanation: str,
            refs: list[LogRef | None], fix: str, stream: object = pd.NA) -> None:
        lines = " ".join(dict.fromkeys(str(r) for r in refs if r is not None))
        self.rows.append({"session": session, "stream": stream, "id": rule,
                          "severity": severity.value, "title": title,
                          "explanation": explanation, "evidence_lines": lines, "fix": fix})


def _at(ref: LogRef | None) -> str:
    return f"line {ref.line}" if ref is not None else "line ?"


def _looks_internal(name: str) -> bool:
    if not name or "." not in name or name.startswith("["):
        return bool(name)
    return name.lower().rstrip(".").rsplit(".", 1)[-1] in _INTERNAL_TLDS


def session_rules(out: Collector, index: int, s: LogSession, options: Options) -> None:
    """Every rule for one log session."""
    exo = s.exchange_online
    who = "Exchange Online" if exo else "The receiving server"
    sev = Severity.ERROR if exo else Severity.WARNING
    refs = s.refs
    if s.starttls_offered is False and not s.starttls_requested:
        out.add(index, "W1", sev, "STARTTLS not offered",
                f"{who}'s EHLO reply ({_at(refs.get('ehlo_reply'))}) does not list STARTTLS, so "
                "no TLS session and no certificate matching can happen.",
                [refs.get("ehlo_reply")],
                "Check the sending IP's reputation and block lists; make sure no firewall or "
                "SMTP inspection strips the STARTTLS keyword.")
    elif s.starttls_offered and not s.starttls_requested:
        out.add(index, "W2", sev, "STARTTLS offered but not used",
                f"{who} offered STARTTLS ({_at(refs.get('ehlo_reply'))}) but the sending server "
                "went on without TLS, so it presented no certificate.",
                [refs.get("ehlo_reply")],
                "Turn TLS on for this route. Exchange Server: Set-SendConnector \"<connector>\" "
                "-RequireTLS $true. Postfix: smtp_tls_security_level = encrypt.")
    error = s.tls_error or ""
    legacy = s.tls_version in ("SSL 3.0", "TLS 1.0", "TLS 1.1")
    if error == "SocketError" or legacy:
        out.add(index, "W3", Severity.ERROR if exo or error else Severity.WARNING,
                "Legacy TLS version",
                (f"The log records 'TLS negotiation failed with error SocketError' "
                 f"({_at(refs.get('tls_error'))}): the typical result of a sender limited to "
                 "TLS 1.0/1.1 meeting a server that accepts TLS 1.2 and newer only."
                 if error == "SocketError" else
                 f"The log records {s.tls_version} ({_at(refs.get('tls'))}); Exchange Online "
                 "accepts TLS 1.2 and newer only."),
                [refs.get("tls_error") or refs.get("tls")],
                "Enable TLS 1.2 on the sending server (Windows: SchUseStrongCrypto and the "
                "SCHANNEL TLS 1.2 client keys; Postfix: smtp_tls_protocols = >=TLSv1.2).")
    if error == "AlgorithmMismatch":
        out.add(index, "W16", Severity.ERROR, "No shared cipher suite",
                f"The log records 'TLS negotiation failed with error AlgorithmMismatch' "
                f"({_at(refs.get('tls_error'))}): the two sides share no cipher suite.",
                [refs.get("tls_error")],
                "Enable ECDHE-RSA-AES-GCM suites (TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) on "
                "the sender; 3DES and RC4 are refused by Exchange Online since 2019.")
    if error in ("NoCredentials", "UnknownCredentials"):
        out.add(index, L_NO_CREDENTIALS, Severity.ERROR,
                "The certificate's private key is not readable by the transport service",
                f"The log records 'TLS negotiation failed with error {error}' "
                f"({_at(refs.get('tls_error'))}): Schannel found no usable credentials for the "
                "certificate Exchange picked. The certificate's private key is missing, or the "
                "transport service (NETWORK SERVICE) cannot read it, so no TLS session and no "
                "certificate presentation happen.",
                [refs.get("tls_error")], FIX_KEY_READABLE)
    # A receiving server's log cannot say whether the server asked: no W6 from it.
    if s.client_cert == ClientCert.EMPTY and s.role == LogRole.CLIENT:
        fatal = next((r for r in s.replies if r.code.startswith("5")), None)
        consequence = (f"The {fatal.code} reply in this log ({_at(fatal.ref)}) is the result."
                       if fatal else
                       "As long as an IP-scoped connector still matches, mail flows; once it "
                       "is removed, mail is rejected with 550 5.7.64 TenantAttribution.")
        out.add(index, "W6", sev, "No client certificate presented",
                f"{s.verdict_reason[:1].upper()}{s.verdict_reason[1:]}. "
                + ("Exchange Online therefore cannot attribute this mail to an inbound connector "
                   "scoped by certificate (TlsSenderCertificateName). " + consequence
                   if exo else ""),
                [refs.get("starttls"), refs.get("tls"), fatal.ref if fatal else None],
                FIX_PRESENT_CERT)
        if exo and _looks_internal(s.ehlo or ""):
            out.add(index, "W6b", Severity.WARNING, "EHLO name is not a public certificate name",
                    f"The sending server introduced itself as '{s.ehlo}' "
                    f"({_at(refs.get('ehlo'))}). Exchange Server picks its TLS certificate by "
                    "the send connector's Fqdn; an internal name is on no public certificate, "
                    "so it found none to present.",
                    [refs.get("ehlo")],
                    "Set the send connector's Fqdn to a name on the certificate "
                    "(Set-SendConnector -Fqdn mail.contoso.com) and set TlsCertificateName.")
    if s.client_cert == ClientCert.NOT_LOGGED:
        out.add(index, L_NOT_LOGGED, Severity.INFO, "The log does not record the client "
                "certificate",
                f"{s.verdict_reason[:1].upper()}{s.verdict_reason[1:]}. This is not 'no "
                "certificate': it is 'not logged'.",
                [refs.get("tls") or refs.get("starttls_reply") or s.first_ref],
                _not_logged_fix(s))
    _certificate_rules(out, index, s, options, sev)
    _reply_rules(out, index, s)


def _not_logged_fix(s: LogSession) -> str:
    if s.log_format == LogFormat.EXCHANGE:
        return ("Set the connector's logging to Verbose (Set-SendConnector \"<connector>\" "
                "-ProtocolLoggingLevel Verbose, or Set-ReceiveConnector ... on the receiving "
                "side) and send again.")
    if s.log_format == LogFormat.POSTFIX:
        return ("Read the receiving side's log (Postfix smtpd says Anonymous or Untrusted/"
                "Trusted/Verified) or take a capture: a TLS 1.2 handshake shows the client "
                "certificate in clear. Postfix 3.4 and newer name the client-signature in TLS "
                "1.3 lines with smtp_tls_loglevel = 1.")
    return ("Add +tls_peerdn +tls_certificate_verified to Exim's log_selector; for Exim's own "
            "deliveries, take a capture with a key log, or read the receiving side's log.")


def _certificate_rules(out: Collector, index: int, s: LogSession, options: Options,
                       sev: Severity) -> None:
    cert = s.client_certificate
    if s.client_cert != ClientCert.PRESENTED or cert is None:
        return
    ref = cert.ref
    shown = cert.subject or "(subject not logged)"
    if cert.subject and cert.issuer and _same_dn(cert.subject, cert.issuer):
        out.add(index, "W9", sev, "Client certificate not publicly trusted",
                f"The logged certificate '{shown}' names itself as its issuer ({_at(ref)}): it "
                "is self-signed. Exchange Online only accepts certificates from public CAs for "
                "connector attribution.",
                [ref], "Use a certificate issued by a public CA (the name must be on it: CN or "
                "SAN), then point the send connector at it.")
    when = s.start_time
    if when is not None and (cert.not_after is not None or cert.not_before is not None):
        expired = cert.not_after is not None and cert.not_after < when
        early = cert.not_before is not None and cert.not_before > when
        if expired or early:
            verb, date = ("expired on", cert.not_after) if expired else (
                "is not valid before", cert.not_before)
            out.add(index, "W10", sev, "Client certificate outside its validity period",
                    f"The certificate '{shown}' (thumbprint {cert.thumbprint or '?'}) {verb} "
                    f"{date:%Y-%m-%d %H:%M UTC}, and the log records the session on "
                    f"{when:%Y-%m-%d %H:%M UTC} ({_at(ref)}).",
                    [ref], "Renew the certificate, enable the new one for SMTP "
                    "(Enable-ExchangeCertificate -Services SMTP) and re-point the send "
                    "connector (Set-SendConnector -TlsCertificateName) at it.")
    names = cert.names
    if options.expect_cert_name and names and not name_matches(options.expect_cert_name, names):
        out.add(index, "W11", sev, "Certificate name does not match the connector",
                f"The connector expects '{options.expect_cert_name}' (TlsSenderCertificateName) "
                f"but the logged certificate's names are {', '.join(names)} ({_at(ref)}).",
                [ref], "Set the inbound connector's TlsSenderCertificateName to a name on the "
                "certificate (Set-InboundConnector -TlsSenderCertificateName), or present a "
                "certificate carrying the expected name.")


def _same_dn(a: str, b: str) -> bool:
    def norm(dn: str) -> list[str]:
        return sorted(p.replace(" ", "").lower() for p in dn.replace(", ", ",").split(","))
    return norm(a) == norm(b)


def _reply_rules(out: Collector, index: int, s: LogSession) -> None:
    hit = next((r for r in s.replies if "5.7.64" in r.text), None)
    if hit is not None:
        out.add(index, "X3", Severity.ERROR, "Relay denied: 550 5.7.64 TenantAttribution",
                f"The server answered '{hit.text}' (server log {hit.ref}): Exchange Online "
                "could not attribute this connection to an OnPremises inbound connector, "
                "neither by source IP nor by certificate.",
                [hit.ref],
                "Make an OnPremises inbound connector match: present a certificate whose name "
                "is the connector's TlsSenderCertificateName, or scope the connector by this "
                "sender's public IP.")
    seen: set[str] = set()
    for reply in s.replies:
        words = reply.text[4:].split()
        enhanced = words[0] if words else ""
        for known in KNOWN_REPLIES:
            same_code = reply.code == known.code or (  # Exim logs "5xx": the class only
                reply.code.endswith("xx") and reply.code[0] == known.code[0])
            if same_code and enhanced == known.enhanced and (
                    known.enhanced not in seen):
                seen.add(known.enhanced)
                out.add(index, L_REPLY, known.severity,
                        f"{known.code} {known.enhanced}: {known.meaning.split(':')[0]}",
                        f"The log records the reply '{reply.text}' ({_at(reply.ref)}): "
                        f"{known.meaning}.",
                        [reply.ref], known.fix)
