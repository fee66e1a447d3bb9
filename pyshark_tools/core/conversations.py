"""Events -> one summary row per conversation, with the client-certificate verdict.

The verdict says what the capture shows the client sent, and keeps "sent nothing" apart
from "cannot see" (see ``schema.ClientCert``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .details import certificate_count, detail_fields
from .events import IMPLICIT_TLS_PORTS, Extraction, StreamFacts
from .schema import CLIENT_CERT_ABSENT, CONVERSATION_COLUMNS, ClientCert
from .tables import Record, records_by_stream, tuples_by_stream

EXO_SUFFIX = ".mail.protection.outlook.com"
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+\.?$")

#: Well-known ports of the TLS applications ``--all-tls`` reports besides SMTP.
APP_PORTS = {
    21: "ftp",
    110: "pop3",
    143: "imap",
    443: "https",
    465: "smtp",
    993: "imaps",
    995: "pop3s",
    389: "ldap",
    636: "ldaps",
    5222: "xmpp",
    5269: "xmpp",
    3306: "mysql",
    5432: "postgresql",
}


@dataclass
class _Tls:
    """What the TLS handshake of one conversation showed, with frame numbers."""

    client_hello: int | None = None
    offered: str = ""
    sni: str | None = None
    ja3: str | None = None
    server_hello: int | None = None
    version: str | None = None
    cipher: str | None = None
    ja3s: str | None = None
    psk: bool = False  # TLS 1.3 ServerHello accepted a pre-shared key: a resumption
    hello_retry: int | None = None
    server_cert: int | None = None
    cert_request: int | None = None
    server_hello_done: int | None = None
    client_cert: int | None = None
    client_cert_count: int | None = None
    #: the detail of a client CompressedCertificate that could not be decompressed here
    client_cert_unread: dict[str, str] | None = None
    client_key_exchange: int | None = None
    server_ccs: int | None = None
    client_ccs: int | None = None
    server_finished: int | None = None
    decrypted_handshake: bool = False
    app_data: bool = False
    # TLS 1.2 renegotiation: the frame where a second handshake first shows (its ClientHello
    # when decrypted, else a second ChangeCipherSpec from one side), and whether it is readable.
    renegotiation: int | None = None
    renegotiation_readable: bool = False
    alerts: list[tuple[int, str, str, str]] = field(default_factory=list)  # frame,sender,name,lvl


@dataclass
class _Smtp:
    banner: str | None = None
    banner_frame: int | None = None
    ehlo: str | None = None
    ehlo_verb: str | None = None
    ehlo_reply_frame: int | None = None
    capabilities: list[str] = field(default_factory=list)
    ehlo_host: str | None = None
    starttls_frame: int | None = None
    starttls_reply: str | None = None
    commands_after_starttls_in_clear: bool = False
    gap_frame: int | None = None  # the SMTP text is incomplete from this frame on
    replies: list[tuple[int, str, str]] = field(default_factory=list)  # frame, code, first line


def _scan(stream_events: list[Any]) -> tuple[_Smtp, _Tls, bool]:
    smtp, tls = _Smtp(), _Tls()
    decrypted_any = False
    awaiting_starttls_reply = False
    for ev in stream_events:
        frame, sender, kind, name, detail = int(ev.frame), ev.sender, ev.kind, ev.name, ev.detail
        decrypted_any = decrypted_any or bool(ev.decrypted)
        if kind == "smtp_reply" and sender == "server":
            first = detail.split("\n", 1)[0]
            smtp.replies.append((frame, name, first))
            if awaiting_starttls_reply:
                smtp.starttls_reply = first
                awaiting_starttls_reply = False
            if name == "220" and smtp.banner is None and not smtp.replies[:-1]:
                smtp.banner, smtp.banner_frame = first, frame
            if name == "250" and smtp.ehlo_reply_frame is None and smtp.ehlo_verb == "EHLO":
                smtp.ehlo_reply_frame = frame
                lines = detail.split("\n")
                smtp.capabilities = [ln[4:].strip().upper() for ln in lines[1:]]
                smtp.ehlo_host = first[4:].split(" ", 1)[0] or None
        elif kind == "smtp_command" and sender == "client":
            if name in ("EHLO", "HELO") and smtp.ehlo is None:
                smtp.ehlo = detail.split(" ", 1)[1].strip() if " " in detail else ""
                smtp.ehlo_verb = name  # HELO gets no capability list: STARTTLS unknown
            if name == "STARTTLS" and smtp.starttls_frame is None:
                smtp.starttls_frame = frame
                awaiting_starttls_reply = True
            elif smtp.starttls_frame is not None and not ev.decrypted and tls.client_hello is None:
                smtp.commands_after_starttls_in_clear = True
        elif kind == "tls_handshake":
            tls.decrypted_handshake = tls.decrypted_handshake or bool(ev.decrypted)
            _handshake(tls, frame, sender, name, detail)
        elif kind == "tls_ccs":
            note_repeated_ccs(tls, frame, sender)
            if sender == "server" and tls.server_ccs is None:
                tls.server_ccs = frame
            if sender == "client" and tls.client_ccs is None:
                tls.client_ccs = frame
        elif kind == "tls_alert":
            level = detail.split(" ", 1)[0] if detail else "encrypted"
            tls.alerts.append((frame, sender, name, level))
        elif kind == "tls_appdata":
            tls.app_data = True
        elif kind == "smtp_gap" and smtp.gap_frame is None:
            smtp.gap_frame = frame
    return smtp, tls, decrypted_any


def note_repeated_ccs(tls: _Tls, frame: int, sender: str) -> None:
    """A second ChangeCipherSpec from the same side in TLS 1.2 or older ends a second
    handshake: a renegotiation, even when its messages are encrypted (no key log)."""
    earlier = tls.server_ccs if sender == "server" else tls.client_ccs
    if earlier is not None and tls.version != "TLS 1.3" and tls.renegotiation is None:
        tls.renegotiation = frame


def _handshake(tls: _Tls, frame: int, sender: str, name: str, detail: str) -> None:
    if name == "ClientHello" and tls.server_hello is not None:
        # a ClientHello after the ServerHello (not after a HelloRetryRequest): renegotiation,
        # readable because tshark decrypted it
        if tls.renegotiation is None or not tls.renegotiation_readable:
            tls.renegotiation, tls.renegotiation_readable = frame, True
    elif name == "ClientHello" and tls.client_hello is None:
        kv = detail_fields(detail)
        tls.client_hello = frame
        tls.offered = kv.get("versions", "")
        tls.sni, tls.ja3 = kv.get("sni"), kv.get("ja3")
    elif name == "HelloRetryRequest" and tls.hello_retry is None:
        tls.hello_retry = frame  # the real ServerHello follows the second ClientHello
    elif name == "ServerHello" and tls.server_hello is None:
        kv = detail_fields(detail)
        tls.psk = "psk" in kv
        tls.server_hello = frame
        version = kv.get("version")
        tls.version = version if version and version != "None" else None
        tls.cipher = kv.get("cipher") if kv.get("cipher") != "None" else None
        tls.ja3s = kv.get("ja3s")
    elif name in ("Certificate", "CompressedCertificate"):
        count = certificate_count(detail)  # None: compressed, and not decompressible here
        if sender == "server" and tls.server_cert is None:
            tls.server_cert = frame
        elif sender == "client" and (tls.client_cert is None or tls.renegotiation_readable):
            # after a renegotiation the latest handshake's Certificate is the one that counts
            tls.client_cert, tls.client_cert_count = frame, count
            tls.client_cert_unread = None if count is not None else detail_fields(detail)
    elif name == "CertificateRequest" and sender == "server" and (
            tls.cert_request is None or tls.renegotiation_readable):
        tls.cert_request = frame
    elif name == "ServerHelloDone" and tls.server_hello_done is None:
        tls.server_hello_done = frame
    elif name == "ClientKeyExchange" and tls.client_key_exchange is None:
        tls.client_key_exchange = frame
    elif name == "Finished" and sender == "server" and tls.server_finished is None:
        tls.server_finished = frame


@dataclass(frozen=True)
class Verdict:
    value: ClientCert
    reason: str


#: A TLS 1.3 Certificate body longer than this holds a certificate whatever its request
#: context: 1 + 255 context bytes + a 3-byte list length.
_LONGEST_EMPTY_TLS13_CERTIFICATE = 259


def _unread_compressed(frame: int, detail: dict[str, str]) -> Verdict:
    """A client CompressedCertificate this machine could not decompress: its declared size
    still tells whether it holds a certificate; its contents stay unknown."""
    algorithm = detail.get("compressed", "an unknown algorithm")
    size = detail.get("uncompressed", "")
    sent = (f"the client sent its Certificate compressed with {algorithm} (RFC 8879) in frame "
            f"{frame}")
    if size.isdigit() and int(size) > _LONGEST_EMPTY_TLS13_CERTIFICATE:
        return Verdict(ClientCert.PRESENTED,
                       f"{sent}: {size} bytes uncompressed, so at least one certificate; "
                       "they could not be decompressed here (see the warning)")
    return Verdict(ClientCert.NOT_CAPTURED,
                   f"{sent} and it could not be decompressed here (see the warning): cannot "
                   "see whether it holds a certificate")


def decide_client_cert(
    smtp: _Smtp, tls: _Tls, facts: StreamFacts, *, implicit_tls: bool, file_cut: bool
) -> Verdict:
    """The client-certificate verdict of one conversation (see ``schema.ClientCert``)."""
    damaged = facts.truncated_frames > 0 or facts.lost_segments > 0
    unfinished = file_cut and not (facts.fin or facts.rst)
    closed = bool(tls.alerts) or facts.fin or facts.rst
    damage_note = (
        "packets were cut by the capture's snap length"
        if facts.truncated_frames
        else "segments are missing from the capture"
        if facts.lost_segments
        else "the capture file ends before the conversation does"
    )

    if tls.client_hello is None:
        if tls.version or facts.has_tls:
            return Verdict(
                ClientCert.NOT_CAPTURED,
                "TLS records are present but the ClientHello is not in the capture",
            )
        if implicit_tls:
            return Verdict(
                ClientCert.NOT_CAPTURED, "no TLS handshake captured on an implicit-TLS port"
            )
        if smtp.starttls_reply and smtp.starttls_reply.startswith("220"):
            if smtp.commands_after_starttls_in_clear:
                return Verdict(
                    ClientCert.NO_TLS,
                    "STARTTLS was accepted but SMTP went on in clear "
                    "(the capture holds traffic already decrypted or stripped)",
                )
            if damaged or unfinished or not closed:
                return Verdict(
                    ClientCert.NOT_CAPTURED,
                    "STARTTLS was accepted but the TLS "
                    f"handshake is not in the capture: {damage_note}",
                )
            return Verdict(
                ClientCert.HANDSHAKE_FAILED,
                "STARTTLS was accepted, then the connection closed before any TLS handshake",
            )
        if smtp.gap_frame is not None and not (
                smtp.starttls_reply and not smtp.starttls_reply.startswith("220")):
            # the SMTP text breaks off (a lost segment, a cut packet): whatever followed,
            # STARTTLS and a handshake included, may be in what the capture lacks
            return Verdict(
                ClientCert.NOT_CAPTURED,
                f"the SMTP dialogue is incomplete from frame {smtp.gap_frame} on: "
                f"{damage_note if damaged else 'segments are missing from the capture'}",
            )
        if smtp.starttls_frame is not None:
            return Verdict(
                ClientCert.NO_TLS,
                "the client asked for STARTTLS but the server "
                f"refused it ({smtp.starttls_reply or 'no reply seen'})",
            )
        return Verdict(ClientCert.NO_TLS, "the conversation never started TLS")

    if tls.server_hello is None:
        if closed and not (damaged or unfinished):
            return Verdict(
                ClientCert.HANDSHAKE_FAILED,
                "the server never answered the ClientHello with a ServerHello" + _alert_text(tls),
            )
        return Verdict(ClientCert.NOT_CAPTURED, f"no ServerHello in the capture: {damage_note}")

    if tls.version == "TLS 1.3" and tls.psk:
        return Verdict(
            ClientCert.RESUMED,
            "the server accepted a pre-shared key (a session ticket) in its ServerHello "
            f"(frame {tls.server_hello}): a resumed TLS 1.3 handshake exchanges no "
            "certificates; look at the full handshake it resumes",
        )

    if tls.version == "TLS 1.3" and not tls.decrypted_handshake:
        return Verdict(
            ClientCert.HIDDEN_TLS13,
            "TLS 1.3 encrypts the Certificate and "
            "CertificateRequest messages; a key log is needed to see them",
        )

    if tls.client_cert is not None and tls.client_cert_unread is not None:
        return _unread_compressed(tls.client_cert, tls.client_cert_unread)
    if tls.client_cert is not None:
        if tls.client_cert_count:
            return Verdict(
                ClientCert.PRESENTED,
                f"the client sent {tls.client_cert_count} "
                f"certificate(s) in frame {tls.client_cert}",
            )
        asked = (
            f" after the server asked for one in frame {tls.cert_request}"
            if tls.cert_request
            else ""
        )
        return Verdict(
            ClientCert.EMPTY,
            f"the client's Certificate message in frame {tls.client_cert} is empty{asked}",
        )

    if (
        tls.server_cert is None
        and tls.cert_request is None
        and (
            (
                tls.server_ccs is not None
                and tls.client_key_exchange is None
                and tls.version != "TLS 1.3"
            )
            or (tls.version == "TLS 1.3" and tls.server_finished is not None)
        )
    ):
        return Verdict(
            ClientCert.RESUMED,
            "the session was resumed (abbreviated handshake): "
            "no certificates are exchanged; look at the full handshake it resumes",
        )

    client_flight_seen = tls.client_key_exchange is not None or (
        tls.version == "TLS 1.3" and tls.client_ccs is not None and tls.app_data
    )
    if tls.cert_request is not None:
        if tls.client_key_exchange is not None:
            # TLS 1.0-1.2 require the Certificate message (empty or not) before the key
            # exchange: when none was read, tshark could not reassemble it (e.g. a message
            # over 64 KiB): "cannot see", never "did not send"
            return Verdict(
                ClientCert.NOT_CAPTURED,
                "the server asked for a certificate in frame "
                f"{tls.cert_request} and the client's key exchange is in frame "
                f"{tls.client_key_exchange}, but the client's Certificate message before it "
                "could not be read (tshark did not reassemble it: e.g. larger than 64 KiB)",
            )
        refused = _unread_answer_refused(tls)
        if refused is not None:
            # the server ended the handshake in answer to what the client sent after its
            # CertificateRequest, and none of that could be read: "cannot see", not "failed
            # before the certificate was due"
            return Verdict(
                ClientCert.NOT_CAPTURED,
                f"the server asked for a certificate in frame {tls.cert_request} and ended "
                f"the handshake with alert {refused[1]} in frame {refused[0]} in answer to "
                "what the client sent next, which could not be read (tshark did not "
                "reassemble it: e.g. a Certificate message larger than 64 KiB)",
            )
        if damaged or unfinished:
            return Verdict(
                ClientCert.NOT_CAPTURED,
                "the client's answer to the "
                f"CertificateRequest is not in the capture: {damage_note}",
            )
        if closed:
            return Verdict(
                ClientCert.HANDSHAKE_FAILED,
                "the handshake ended before the client's "
                "Certificate message was due" + _alert_text(tls),
            )
        return Verdict(
            ClientCert.NOT_CAPTURED,
            "the capture ends before the client's answer to the CertificateRequest",
        )

    server_flight_done = tls.server_hello_done is not None or tls.server_finished is not None
    if damaged or unfinished:
        return Verdict(
            ClientCert.NOT_CAPTURED,
            f"no CertificateRequest seen, but the capture is incomplete here: {damage_note}",
        )
    if server_flight_done or client_flight_seen:
        return Verdict(
            ClientCert.NOT_REQUESTED,
            "the server never sent a CertificateRequest, "
            "so the client had no chance to present a certificate",
        )
    if closed:
        return Verdict(
            ClientCert.HANDSHAKE_FAILED,
            "the handshake ended before the server finished its hello" + _alert_text(tls),
        )
    return Verdict(ClientCert.NOT_CAPTURED, "the capture ends inside the server's hello")


def with_renegotiation(tls: _Tls, verdict: Verdict) -> Verdict:
    """The verdict once a renegotiation is taken into account. Without keys the second
    handshake is encrypted: "no certificate" from the first one no longer holds (the
    certificate may have travelled in the second), so it becomes "cannot see"."""
    if tls.renegotiation is None:
        return verdict
    if tls.renegotiation_readable:
        if verdict.value in (ClientCert.PRESENTED, ClientCert.EMPTY) and (
                tls.client_cert or 0) > tls.renegotiation:
            return Verdict(verdict.value, f"{verdict.reason}, in the second handshake (the "
                           f"session was renegotiated inside TLS from frame "
                           f"{tls.renegotiation}, decrypted with the key log)")
        return Verdict(verdict.value, f"{verdict.reason}; the session was renegotiated inside "
                       f"TLS from frame {tls.renegotiation} (decrypted with the key log)")
    hidden = (f"the session was renegotiated inside TLS (a second ChangeCipherSpec in frame "
              f"{tls.renegotiation}); that second handshake is encrypted, and so is any "
              "certificate the client sent in it: a key log is needed to see it")
    if verdict.value in CLIENT_CERT_ABSENT:
        first = (f"the client's Certificate message in the first handshake (frame "
                 f"{tls.client_cert}) was empty" if verdict.value == ClientCert.EMPTY else
                 "the first handshake had no CertificateRequest")
        return Verdict(ClientCert.HIDDEN_RENEGOTIATION, f"{first}; then {hidden}")
    return Verdict(verdict.value, f"{verdict.reason} (first handshake); then {hidden}")


def _unread_answer_refused(tls: _Tls) -> tuple[int, str] | None:
    """(frame, name) of the server's fatal alert after its ServerHelloDone when no message or
    alert of the client was read in between (TLS 1.0-1.2): a server does not end a handshake
    unprompted there, so it refused client bytes that tshark could not read."""
    if tls.server_hello_done is None or tls.version == "TLS 1.3" or tls.client_ccs is not None:
        return None
    for frame, sender, name, level in tls.alerts:
        if frame > tls.server_hello_done:
            return (frame, name) if sender == "server" and level == "fatal" else None
    return None


def _alert_text(tls: _Tls) -> str:
    if not tls.alerts:
        return ""
    frame, sender, name, _level = tls.alerts[0]
    return f" ({sender} sent alert {name} in frame {frame})"


def _host_from_banner(banner: str | None) -> str | None:
    if not banner:
        return None
    parts = banner.split()
    if len(parts) >= 2 and _HOST.match(parts[1]):
        return parts[1].rstrip(".").lower()
    return None


def _is_smtp_stream(facts: StreamFacts, ports: Sequence[int]) -> bool:
    server_port = int(facts.server.rsplit(":", 1)[1]) if facts.server else 0
    return facts.has_smtp or server_port in set(ports) | set(IMPLICIT_TLS_PORTS)


def summarise(
    extraction: Extraction,
    certificates: pd.DataFrame,
    *,
    ports: Sequence[int],
    all_tls: bool = False,
) -> pd.DataFrame:
    """One row per conversation (CONVERSATION_COLUMNS), in stream order."""
    events_by_stream = tuples_by_stream(
        extraction.events, ("frame", "sender", "kind", "name", "detail", "decrypted"))
    certs_by_stream = records_by_stream(certificates)
    rows = []
    for stream in sorted(extraction.streams):
        facts = extraction.streams[stream]
        is_smtp = _is_smtp_stream(facts, ports)
        if not is_smtp and not (all_tls and facts.has_tls):
            continue
        rows.append(_row(facts, events_by_stream.get(stream, []),
                         certs_by_stream.get(stream, []), extraction.truncated_file, is_smtp))
    df = pd.DataFrame(rows, columns=list(CONVERSATION_COLUMNS))
    return _types(df)


def _row(
    facts: StreamFacts,
    stream_events: list[Any],
    certificates: list[Record],
    file_cut: bool,
    is_smtp: bool,
) -> dict[str, object]:
    smtp, tls, decrypted = _scan(stream_events)
    client_ip, client_port = facts.client.rsplit(":", 1)
    server_ip, server_port = facts.server.rsplit(":", 1)
    implicit = int(server_port) in IMPLICIT_TLS_PORTS
    verdict = with_renegotiation(
        tls, decide_client_cert(smtp, tls, facts, implicit_tls=implicit, file_cut=file_cut))
    server_host = _host_from_banner(smtp.banner) or (
        smtp.ehlo_host.lower().rstrip(".")
        if smtp.ehlo_host and _HOST.match(smtp.ehlo_host)
        else None
    )
    exo = bool(
        (server_host and server_host.endswith(EXO_SUFFIX))
        or (smtp.banner and EXO_SUFFIX[1:] in smtp.banner.lower())
    )
    client_leaf = _leaf(certificates, "client", tls.client_cert)
    server_leaf = _leaf(certificates, "server", tls.server_cert)
    # Inside implicit TLS the banner is encrypted: the SNI or the server's certificate says it.
    exo = exo or any(
        isinstance(name, str) and name.lower().rstrip(".").endswith(EXO_SUFFIX[1:])
        for name in (tls.sni, server_leaf.get("cn"))
    )
    starttls_offered = ("STARTTLS" in smtp.capabilities) if smtp.ehlo_reply_frame else None
    if implicit or (starttls_offered is False and facts.truncated_frames):
        starttls_offered = None  # inside TLS already, or the reply may have been cut
    accepted = None
    if smtp.starttls_frame is not None:
        accepted = bool(smtp.starttls_reply and smtp.starttls_reply.startswith("220"))
    alert_frame = tls.alerts[0][0] if tls.alerts else None
    last = smtp.replies[-1] if smtp.replies else None
    return {
        "stream": facts.stream,
        "tcp_stream": facts.stream if facts.tcp_stream is None else facts.tcp_stream,
        "client": facts.client,
        "server": facts.server,
        "client_ip": client_ip.strip("[]"),
        "client_port": int(client_port),
        "server_ip": server_ip.strip("[]"),
        "server_port": int(server_port),
        "start_time": facts.first_time,
        "end_time": facts.last_time,
        "duration_s": ((facts.last_time or facts.first_time) - facts.first_time).total_seconds(),
        "frames": facts.frames,
        "first_frame": facts.first_frame,
        "protocol": "smtp" if is_smtp else APP_PORTS.get(int(server_port), "tls"),
        "implicit_tls": implicit,
        "banner": smtp.banner,
        "server_host": server_host,
        "exchange_online": exo,
        "ehlo": smtp.ehlo,
        "starttls_offered": starttls_offered,
        "starttls_requested": smtp.starttls_frame is not None if is_smtp and not implicit else None,
        "starttls_accepted": accepted,
        "tls_offered": tls.offered or None,
        "tls_version": tls.version,
        "cipher": tls.cipher,
        "sni": tls.sni,
        "cert_requested": _cert_requested(tls, verdict),
        "client_cert": verdict.value.value,
        "client_cert_count": tls.client_cert_count,
        "client_leaf_subject": client_leaf.get("subject"),
        "client_chain_trust": client_leaf.get("trust"),
        "server_leaf_subject": server_leaf.get("subject"),
        "reply_codes": " ".join(code for _f, code, _t in smtp.replies) or None,
        "last_reply": last[2] if last else None,
        "tls_alerts": " ".join(f"{s}:{n}" for _f, s, n, _l in tls.alerts) or None,
        "decrypted": decrypted,
        "ja3": tls.ja3,
        "ja3s": tls.ja3s,
        "verdict_reason": verdict.reason,
        "severity": "",
        "finding_ids": "",
        "frame_banner": smtp.banner_frame,
        "frame_ehlo_reply": smtp.ehlo_reply_frame,
        "frame_starttls": smtp.starttls_frame,
        "frame_client_hello": tls.client_hello,
        "frame_server_hello": tls.server_hello,
        "frame_server_certificate": tls.server_cert,
        "frame_certificate_request": tls.cert_request,
        "frame_client_certificate": tls.client_cert,
        "frame_alert": alert_frame,
        "frame_last_reply": last[0] if last else None,
    }


def _cert_requested(tls: _Tls, verdict: Verdict) -> bool | None:
    if tls.cert_request is not None:
        return True
    if verdict.value in (ClientCert.NOT_REQUESTED,):
        return False
    if verdict.value in (ClientCert.PRESENTED, ClientCert.EMPTY):
        return None  # a client Certificate without a visible request: the request was missed
    return None


def _leaf(certs: list[Record], role: str, frame: int | None) -> Record:
    if frame is None:
        return {}
    for cert in certs:
        if cert["role"] == role and cert["frame"] == frame and cert["position"] == 0:
            return cert
    return {}


def _types(df: pd.DataFrame) -> pd.DataFrame:
    frame_columns = [c for c in df.columns if c.startswith("frame_")]
    counts = ["stream", "tcp_stream", "client_port", "server_port", "frames", "first_frame",
              "client_cert_count"]
    for name in counts + frame_columns:
        df[name] = df[name].astype("Int64")
    for name in (
        "starttls_offered",
        "starttls_requested",
        "starttls_accepted",
        "cert_requested",
        "implicit_tls",
        "exchange_online",
        "decrypted",
    ):
        df[name] = df[name].astype("boolean")
    for name in ("start_time", "end_time"):
        df[name] = pd.to_datetime(df[name], utc=True)
    df["client_cert"] = pd.Categorical(df["client_cert"], categories=[v.value for v in ClientCert])
    return df
