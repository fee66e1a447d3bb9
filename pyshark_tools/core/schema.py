"""The stable vocabulary and column names shared by every stage and renderer.

Everything a user can filter on (JSON keys, CSV headers, DataFrame columns, the Lua
dissector's verdict strings) is named here once, so the stages cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ClientCert(StrEnum):
    """What the capture shows about the SMTP client's TLS certificate.

    "absent" and "cannot see" never share a value: only ``empty`` and ``not_requested``
    say that no certificate was sent.
    """

    PRESENTED = "presented"  # the client sent a Certificate message with at least one cert
    EMPTY = "empty"  # CertificateRequest seen, client Certificate message had no certs
    NOT_REQUESTED = "not_requested"  # full TLS 1.2 handshake, the server never asked
    HIDDEN_TLS13 = "hidden_tls13"  # TLS 1.3 without usable keys: certificates encrypted
    # TLS 1.2 renegotiated inside the session without usable keys: the second handshake, and
    # any certificate it carried, is encrypted (the first one showed none).
    HIDDEN_RENEGOTIATION = "hidden_renegotiation"
    RESUMED = "resumed"  # abbreviated handshake: no certificates are exchanged
    NO_TLS = "no_tls"  # the conversation never started TLS
    HANDSHAKE_FAILED = "handshake_failed"  # handshake ended before the client's Certificate
    NOT_CAPTURED = "not_captured"  # packets missing or cut: the capture cannot tell
    # Server logs only (pyshark_tools.serverlogs): the session is in the log, but its logging
    # level (or format) does not record whether a client certificate was sent.
    NOT_LOGGED = "not_logged"


#: Verdicts that say "the client did not send a certificate" (as opposed to "unknown").
CLIENT_CERT_ABSENT = frozenset({ClientCert.EMPTY, ClientCert.NOT_REQUESTED})
#: Verdicts that mean "the capture cannot tell" (never report these as absent).
CLIENT_CERT_UNKNOWN = frozenset(
    {ClientCert.HIDDEN_TLS13, ClientCert.RESUMED, ClientCert.NOT_CAPTURED, ClientCert.NOT_LOGGED,
     ClientCert.HIDDEN_RENEGOTIATION}
)


class Severity(StrEnum):
    ERROR = "error"  # mail will fail (or is failing) because of this
    WARNING = "warning"  # likely to fail, or will fail soon
    INFO = "info"  # inconclusive, or worth knowing


class Role(StrEnum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True)
class Column:
    """One column of a report table: its name, its pandas dtype in a ``Report`` and what it
    means. ``"list"``: Python lists (JSON arrays) whose items the stages join with ``sep``
    (and CSV writes joined); ``"category"``: a closed vocabulary; None: not fixed (the server
    log readers build these as the log gives them)."""

    name: str
    dtype: str | None
    meaning: str
    sep: str | None = None


def names(columns: tuple[Column, ...]) -> tuple[str, ...]:
    return tuple(column.name for column in columns)


class TrustStatus(StrEnum):
    """What the trust check says of a certificate chain (``certificates.trust``)."""

    TRUSTED = "trusted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    SELF_SIGNED = "self_signed"
    MISSING_INTERMEDIATE = "missing_intermediate"
    UNTRUSTED = "untrusted"
    WEAK_SIGNATURE = "weak_signature"
    INVALID = "invalid"
    EMPTY = "empty"


class EventKind(StrEnum):
    """The ``kind`` of an event row."""

    SMTP_COMMAND = "smtp_command"
    SMTP_REPLY = "smtp_reply"
    SMTP_GAP = "smtp_gap"
    TLS_HANDSHAKE = "tls_handshake"
    TLS_ALERT = "tls_alert"
    TLS_CCS = "tls_ccs"
    TLS_APPDATA = "tls_appdata"


class Engine(StrEnum):
    """Which engine read a capture (``capture.engine``)."""

    FAST = "fast"  # index/prefilter, native reader, sharded tshark
    REFERENCE = "reference"  # one tshark pass over the whole capture


CONVERSATIONS: tuple[Column, ...] = (
    Column("stream", "Int64",
           "conversation number: tcp.stream, as Wireshark numbers it, except for a connection "
           "restarted on the same 4-tuple that this tshark numbers as the same stream (then a "
           "number after the capture's last tcp.stream, see restarts.py)"),
    Column("tcp_stream", "Int64", "tcp.stream as the tshark that read the capture numbers it"),
    Column("client", "str", "\"ip:port\" ([ip]:port for IPv6)"),
    Column("server", "str", "\"ip:port\" of the SMTP server"),
    Column("client_ip", "str", "the client's address"),
    Column("client_port", "Int64", "the client's TCP port"),
    Column("server_ip", "str", "the server's address"),
    Column("server_port", "Int64", "the server's TCP port (25, 587, 465 ...)"),
    Column("start_time", "datetime64[us, UTC]", "UTC"),
    Column("end_time", "datetime64[us, UTC]", "UTC time of the last frame"),
    Column("duration_s", "float64", "end_time minus start_time, seconds"),
    Column("frames", "Int64", "frames of this conversation in the capture"),
    Column("first_frame", "Int64", "frame number of its first frame"),
    Column("protocol", "str", "\"smtp\" or the TLS application when --all-tls (\"tls\")"),
    Column("implicit_tls", "boolean", "port 465 style: TLS from the first byte"),
    Column("banner", "str", "text of the first 220 reply"),
    Column("server_host", "str", "host name from the banner or the EHLO reply"),
    Column("exchange_online", "boolean", "the server named itself *.mail.protection.outlook.com"),
    Column("ehlo", "str", "name the client gave in EHLO/HELO"),
    Column("starttls_offered", "boolean",
           "the EHLO reply listed STARTTLS (None: the reply was not read whole)"),
    Column("starttls_requested", "boolean", "the client sent STARTTLS"),
    Column("starttls_accepted", "boolean", "the server answered STARTTLS with 220"),
    Column("tls_offered", "list", "versions the ClientHello offered, e.g. \"TLS 1.3,TLS 1.2\"",
           sep=","),
    Column("tls_version", "str", "\"TLS 1.2\", \"TLS 1.3\" ... (negotiated, from ServerHello)"),
    Column("cipher", "str", "IANA name of the negotiated cipher suite"),
    Column("sni", "str", "server name the ClientHello asked for"),
    Column("cert_requested", "boolean",
           "a CertificateRequest was seen (None when it could not be seen)"),
    Column("client_cert", "category", "ClientCert vocabulary"),
    Column("client_cert_count", "Int64", "certificates in the client Certificate message"),
    Column("client_leaf_subject", "str", "the client certificate's subject (RFC 4514)"),
    Column("client_chain_trust", "category",
           "trust result of the client chain (certificates.trust vocabulary)"),
    Column("server_leaf_subject", "str", "the server certificate's subject (RFC 4514)"),
    Column("reply_codes", "list", "SMTP reply codes in order, clear or decrypted, space separated",
           sep=" "),
    Column("last_reply", "str", "last SMTP reply line seen (clear or decrypted)"),
    Column("tls_alerts", "list", "\"server:bad_certificate(42)\" ..., space separated", sep=" "),
    Column("decrypted", "boolean", "the key log decrypted records of this conversation"),
    Column("ja3", "str", "JA3 fingerprint of the ClientHello"),
    Column("ja3s", "str", "JA3S fingerprint of the ServerHello"),
    Column("verdict_reason", "str", "one sentence: why client_cert has its value"),
    Column("severity", "category", "worst finding: error/warning/info/\"\" (no finding)"),
    Column("finding_ids", "list", "\"W6 W7\" ...", sep=" "),
    Column("wireshark_filter", "str",
           "Wireshark display filter selecting this conversation by addresses and ports (and "
           "frame numbers where the 4-tuple is reused): the same in every Wireshark version"),
    # Evidence: the frame numbers to open in Wireshark (empty when not seen).
    Column("frame_banner", "Int64", "frame of the 220 banner"),
    Column("frame_ehlo_reply", "Int64", "frame of the EHLO reply"),
    Column("frame_starttls", "Int64", "frame of the STARTTLS command"),
    Column("frame_client_hello", "Int64", "frame of the ClientHello"),
    Column("frame_server_hello", "Int64", "frame of the ServerHello"),
    Column("frame_server_certificate", "Int64", "frame of the server's Certificate"),
    Column("frame_certificate_request", "Int64", "frame of the CertificateRequest"),
    Column("frame_client_certificate", "Int64", "frame of the client's Certificate"),
    Column("frame_alert", "Int64", "frame of the first TLS alert"),
    Column("frame_last_reply", "Int64", "frame of the last SMTP reply"),
)
CONVERSATION_COLUMNS: tuple[str, ...] = names(CONVERSATIONS)

CERTIFICATES: tuple[Column, ...] = (
    Column("stream", "Int64", "tcp.stream of the conversation that carried it"),
    Column("frame", "Int64", "frame of the Certificate message"),
    Column("role", "category", "server/client: who sent the Certificate message"),
    Column("position", "Int64", "0 = leaf"),
    Column("subject", "str", "RFC 4514"),
    Column("cn", "str", "subject common name"),
    Column("sans", "list", "DNS/IP/email names, \"; \" separated", sep="; "),
    Column("issuer", "str", "issuer (RFC 4514)"),
    Column("serial", "str", "upper-case hex"),
    Column("not_before", "datetime64[us, UTC]", "UTC"),
    Column("not_after", "datetime64[us, UTC]", "UTC"),
    Column("valid_at_capture", "boolean", "not_before <= capture time <= not_after"),
    Column("self_signed", "boolean",
           "issuer equals subject and the own key verifies the signature"),
    Column("key_type", "str", "RSA, EC, Ed25519 ..."),
    Column("key_size", "Int64", "key size in bits"),
    Column("signature_algorithm", "str", "e.g. sha256WithRSAEncryption"),
    Column("signature_hash", "str", "sha256, sha1 ..."),
    Column("ekus", "list", "\"serverAuth; clientAuth\"", sep="; "),
    Column("sha256", "str", "lower-case hex, no colons"),
    Column("sha1", "str", "upper-case hex: the thumbprint Windows / Get-ExchangeCertificate shows"),
    Column("trust", "category",
           "for leaves: trusted/untrusted/expired/not_yet_valid/missing_intermediate/self_signed"),
    Column("trust_detail", "str", "one sentence: why the chain has its trust status"),
    Column("parse_error", "str",
           "set when the DER could not be parsed (the other fields are then empty)"),
)
CERTIFICATE_COLUMNS: tuple[str, ...] = names(CERTIFICATES)

FINDINGS: tuple[Column, ...] = (
    Column("stream", "Int64", "tcp.stream of the conversation the finding is about"),
    Column("id", "str", "W1 ... W17 (shared/reference/exchange-online.md), or X* for extra checks"),
    Column("severity", "category", "error / warning / info"),
    Column("title", "str", "one line"),
    Column("explanation", "str", "what the evidence shows and why it matters"),
    Column("evidence_frames", "list", "frame numbers to open in Wireshark, space separated",
           sep=" "),
    Column("fix", "str", "what to change (commands as code spans)"),
)
FINDING_COLUMNS: tuple[str, ...] = names(FINDINGS)

#: One row per session a mail server's log recorded (``pyshark_tools.serverlogs``): the
#: conversations' vocabulary where the log knows the same fact, plus where it came from.
LOG_SESSIONS: tuple[Column, ...] = (
    Column("session", None, "row number in this table (findings refer to it)"),
    Column("log_format", None, "exchange / postfix / exim"),
    Column("role", None, "which end wrote the log: client (sending side) / server"),
    Column("file", None, "the log file's name"),
    Column("session_id", None,
           "Exchange session-id, Postfix program[pid]@line, Exim message id@line"),
    Column("connector", None, "Exchange connector-id"),
    Column("client", None, "\"ip:port\" as the log has it"),
    Column("server", None, "\"ip:port\" as the log has it"),
    Column("client_ip", None, "the client's address"),
    Column("client_port", None, "the client's TCP port"),
    Column("server_ip", None, "the server's address"),
    Column("server_port", None, "the server's TCP port (25, 587, 465 ...)"),
    Column("start_time", None, "UTC, the log's clock"),
    Column("end_time", None, "UTC time of the last frame"),
    Column("duration_s", None, "end_time minus start_time, seconds"),
    Column("banner", None, "the logged 220 banner"),
    Column("server_host", None, "host name the server gave"),
    Column("exchange_online", None, "the server named itself *.mail.protection.outlook.com"),
    Column("ehlo", None, "name the client gave in EHLO/HELO"),
    Column("starttls_offered", None,
           "the EHLO reply listed STARTTLS (None: the reply was not read whole)"),
    Column("starttls_requested", None, "the client sent STARTTLS"),
    Column("starttls_accepted", None, "the server answered STARTTLS with 220"),
    Column("tls_version", None, "as the log names it"),
    Column("cipher", None, "as the log names it (Schannel CALG_* names for Exchange)"),
    Column("tls_error", None, "NoCredentials, UnknownCredentials, SocketError, or the logged text"),
    Column("client_cert", None, "ClientCert vocabulary (not_logged: the log level cannot tell)"),
    Column("client_leaf_subject", None, "the client certificate's subject (RFC 4514)"),
    Column("client_leaf_issuer", None, "the logged client certificate's issuer"),
    Column("client_leaf_serial", None, "the logged client certificate's serial number"),
    Column("client_leaf_sha1", None, "the logged thumbprint"),
    Column("client_leaf_not_before", None, "UTC"),
    Column("client_leaf_not_after", None, "UTC"),
    Column("client_leaf_sans", None, "\"; \" separated"),
    Column("server_leaf_subject", None, "the server certificate's subject (RFC 4514)"),
    Column("reply_codes", None, "logged SMTP reply codes in order, space separated"),
    Column("last_reply", None, "last logged SMTP reply"),
    Column("verdict_reason", None, "one sentence: why client_cert has its value"),
    Column("severity", None, "worst log finding"),
    Column("finding_ids", None, "\"L1 L3\" ..."),
    # Evidence: "file:line" of the log lines that show each fact (empty when not logged).
    Column("line_first", None, "\"file:line\" of the session's first log line"),
    Column("line_banner", None, "\"file:line\" of the banner"),
    Column("line_ehlo_reply", None, "\"file:line\" of the EHLO reply"),
    Column("line_starttls", None, "\"file:line\" of STARTTLS"),
    Column("line_tls", None, "\"file:line\" of the TLS negotiation"),
    Column("line_client_certificate", None, "\"file:line\" of the client certificate"),
    Column("line_tls_error", None, "\"file:line\" of the TLS error"),
    Column("line_last_reply", None, "\"file:line\" of the last reply"),
    Column("stream", None,
           "the capture conversation this session was joined to (--log), else empty"),
    Column("skew_s", None, "log clock minus capture clock for that conversation, seconds"),
)
LOG_SESSION_COLUMNS: tuple[str, ...] = names(LOG_SESSIONS)

LOG_FINDINGS: tuple[Column, ...] = (
    Column("session", None, "the log session (log_sessions.session)"),
    Column("stream", None, "joined capture conversation, else empty"),
    Column("id", None, "L1 ... or the W rule it repeats"),
    Column("severity", None, "error / warning / info"),
    Column("title", None, "one line"),
    Column("explanation", None, "what the evidence shows and why it matters"),
    Column("evidence_lines", None, "\"file:line\" of the log lines, space separated"),
    Column("fix", None, "what to change (commands as code spans)"),
)
LOG_FINDING_COLUMNS: tuple[str, ...] = names(LOG_FINDINGS)

#: Every line of the log sessions joined to a conversation, for showing beside its packets.
LOG_LINES: tuple[Column, ...] = (
    Column("session", None, "the log session (log_sessions.session)"),
    Column("stream", None, "the joined capture conversation"),
    Column("line", None, "\"file:line\""),
    Column("time", None, "UTC, the log's clock"),
    Column("capture_time", None,
           "the same moment on the capture's clock (log time minus the skew)"),
    Column("text", None, "the event and its data/context as the log has them"),
)
LOG_LINE_COLUMNS: tuple[str, ...] = names(LOG_LINES)

EVENTS: tuple[Column, ...] = (
    Column("frame", "Int64", "frame number (cleartext SMTP: the frame of its first byte)"),
    Column("time", "datetime64[us, UTC]", "UTC"),
    Column("stream", "Int64", "tcp.stream"),
    Column("src", "str", "\"ip:port\" of the sender"),
    Column("dst", "str", "\"ip:port\" of the receiver"),
    Column("sender", "category", "client/server"),
    Column("kind", "category",
           "smtp_command, smtp_reply, smtp_gap, tls_handshake, tls_alert, tls_ccs, tls_appdata"),
    Column("name", "str", "command verb, reply code, handshake message name, alert name"),
    Column("detail", "str", "full command/reply line(s), certificate count, version ..."),
    Column("decrypted", "boolean", "seen only thanks to the key log"),
    Column("last_frame", "Int64",
           "cleartext SMTP: the frame that carried the item's last byte (``frame`` the first); "
           "null for the other kinds"),
)
EVENT_COLUMNS: tuple[str, ...] = names(EVENTS)


#: Every table of a ``Report`` by its attribute name, as declared above.
TABLES: dict[str, tuple[Column, ...]] = {
    "conversations": CONVERSATIONS,
    "certificates": CERTIFICATES,
    "findings": FINDINGS,
    "events": EVENTS,
    "log_sessions": LOG_SESSIONS,
    "log_findings": LOG_FINDINGS,
    "log_lines": LOG_LINES,
}

#: Version of the JSON document and table shapes: 3 = conversations gain ``tcp_stream`` (a
#: connection restarted on its 4-tuple is a conversation of its own) and the verdict
#: ``hidden_renegotiation``; 2 = list columns are arrays (1: separated strings),
#: severity/trust categorical, ``schema_version`` present. Bump on any change a reader of the
#: JSON would notice.
SCHEMA_VERSION = 3

EXIT_OK = 0  # nothing wrong found
EXIT_PROBLEMS = 1  # at least one finding of severity error or warning
EXIT_USAGE = 2  # bad arguments (click's own code)
EXIT_TSHARK = 3  # tshark missing or too old
EXIT_UNREADABLE = 4  # capture (or key log) unreadable
