"""The stable vocabulary and column names shared by every stage and renderer.

Everything a user can filter on (JSON keys, CSV headers, DataFrame columns, the Lua
dissector's verdict strings) is named here once, so the stages cannot drift apart.
"""

from __future__ import annotations

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
    {ClientCert.HIDDEN_TLS13, ClientCert.RESUMED, ClientCert.NOT_CAPTURED, ClientCert.NOT_LOGGED}
)


class Severity(StrEnum):
    ERROR = "error"  # mail will fail (or is failing) because of this
    WARNING = "warning"  # likely to fail, or will fail soon
    INFO = "info"  # inconclusive, or worth knowing


class Role(StrEnum):
    CLIENT = "client"
    SERVER = "server"


CONVERSATION_COLUMNS: tuple[str, ...] = (
    "stream",  # conversation number: tcp.stream, as Wireshark numbers it, except for a
    # connection restarted on the same 4-tuple that this tshark numbers as the same stream
    # (then a number after the capture's last tcp.stream, see restarts.py)
    "tcp_stream",  # tcp.stream as the tshark that read the capture numbers it
    "client",  # "ip:port" ([ip]:port for IPv6)
    "server",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "start_time",  # UTC
    "end_time",
    "duration_s",
    "frames",
    "first_frame",
    "protocol",  # "smtp" or the TLS application when --all-tls ("tls")
    "implicit_tls",  # port 465 style: TLS from the first byte
    "banner",  # text of the first 220 reply
    "server_host",  # host name from the banner or the EHLO reply
    "exchange_online",  # the server named itself *.mail.protection.outlook.com
    "ehlo",  # name the client gave in EHLO/HELO
    "starttls_offered",
    "starttls_requested",
    "starttls_accepted",
    "tls_offered",  # versions the ClientHello offered, e.g. "TLS 1.3,TLS 1.2"
    "tls_version",  # "TLS 1.2", "TLS 1.3" ... (negotiated, from ServerHello)
    "cipher",  # IANA name of the negotiated cipher suite
    "sni",
    "cert_requested",  # a CertificateRequest was seen (None when it could not be seen)
    "client_cert",  # ClientCert vocabulary
    "client_cert_count",
    "client_leaf_subject",
    "client_chain_trust",  # trust result of the client chain (certificates.trust vocabulary)
    "server_leaf_subject",
    "reply_codes",  # SMTP reply codes in order, clear or decrypted, space separated
    "last_reply",  # last SMTP reply line seen (clear or decrypted)
    "tls_alerts",  # "server:bad_certificate(42)" ..., space separated
    "decrypted",  # the key log decrypted records of this conversation
    "ja3",
    "ja3s",
    "verdict_reason",  # one sentence: why client_cert has its value
    "severity",  # worst finding: error/warning/info/"" (no finding)
    "finding_ids",  # "W6 W7" ...
    # Wireshark display filter selecting this conversation by addresses and ports (and frame
    # numbers where the 4-tuple is reused): the same in every Wireshark version
    "wireshark_filter",
    # Evidence: the frame numbers to open in Wireshark (empty when not seen).
    "frame_banner",
    "frame_ehlo_reply",
    "frame_starttls",
    "frame_client_hello",
    "frame_server_hello",
    "frame_server_certificate",
    "frame_certificate_request",
    "frame_client_certificate",
    "frame_alert",
    "frame_last_reply",
)

CERTIFICATE_COLUMNS: tuple[str, ...] = (
    "stream",
    "frame",
    "role",  # server/client: who sent the Certificate message
    "position",  # 0 = leaf
    "subject",  # RFC 4514
    "cn",
    "sans",  # DNS/IP/email names, "; " separated
    "issuer",
    "serial",  # upper-case hex
    "not_before",  # UTC
    "not_after",
    "valid_at_capture",  # not_before <= capture time <= not_after
    "self_signed",
    "key_type",  # RSA, EC, Ed25519 ...
    "key_size",
    "signature_algorithm",  # e.g. sha256WithRSAEncryption
    "signature_hash",  # sha256, sha1 ...
    "ekus",  # "serverAuth; clientAuth"
    "sha256",  # lower-case hex, no colons
    "sha1",  # upper-case hex: the thumbprint Windows / Get-ExchangeCertificate shows
    "trust",  # for leaves: trusted/untrusted/expired/not_yet_valid/missing_intermediate/self_signed
    "trust_detail",
    "parse_error",  # set when the DER could not be parsed (the other fields are then empty)
)

FINDING_COLUMNS: tuple[str, ...] = (
    "stream",
    "id",  # W1 ... W17 (shared/reference/exchange-online.md), or X* for extra checks
    "severity",
    "title",
    "explanation",
    "evidence_frames",  # frame numbers to open in Wireshark, space separated
    "fix",
)

#: One row per session a mail server's log recorded (``pyshark_tools.serverlogs``): the
#: conversations' vocabulary where the log knows the same fact, plus where it came from.
LOG_SESSION_COLUMNS: tuple[str, ...] = (
    "session",  # row number in this table (findings refer to it)
    "log_format",  # exchange / postfix / exim
    "role",  # which end wrote the log: client (sending side) / server
    "file",  # the log file's name
    "session_id",  # Exchange session-id, Postfix program[pid]@line, Exim message id@line
    "connector",  # Exchange connector-id
    "client",
    "server",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "start_time",  # UTC, the log's clock
    "end_time",
    "duration_s",
    "banner",
    "server_host",
    "exchange_online",
    "ehlo",
    "starttls_offered",
    "starttls_requested",
    "starttls_accepted",
    "tls_version",
    "cipher",  # as the log names it (Schannel CALG_* names for Exchange)
    "tls_error",  # NoCredentials, UnknownCredentials, SocketError, or the logged text
    "client_cert",  # ClientCert vocabulary (not_logged: the log level cannot tell)
    "client_leaf_subject",
    "client_leaf_issuer",
    "client_leaf_serial",
    "client_leaf_sha1",  # the logged thumbprint
    "client_leaf_not_before",
    "client_leaf_not_after",
    "client_leaf_sans",  # "; " separated
    "server_leaf_subject",
    "reply_codes",
    "last_reply",
    "verdict_reason",
    "severity",
    "finding_ids",
    # Evidence: "file:line" of the log lines that show each fact (empty when not logged).
    "line_first",
    "line_banner",
    "line_ehlo_reply",
    "line_starttls",
    "line_tls",
    "line_client_certificate",
    "line_tls_error",
    "line_last_reply",
    "stream",  # the capture conversation this session was joined to (--log), else empty
    "skew_s",  # log clock minus capture clock for that conversation, seconds
)

LOG_FINDING_COLUMNS: tuple[str, ...] = (
    "session",
    "stream",  # joined capture conversation, else empty
    "id",
    "severity",
    "title",
    "explanation",
    "evidence_lines",  # "file:line" of the log lines, space separated
    "fix",
)

#: Every line of the log sessions joined to a conversation, for showing beside its packets.
LOG_LINE_COLUMNS: tuple[str, ...] = (
    "session",
    "stream",
    "line",  # "file:line"
    "time",  # UTC, the log's clock
    "capture_time",  # the same moment on the capture's clock (log time minus the skew)
    "text",  # the event and its data/context as the log has them
)

EVENT_COLUMNS: tuple[str, ...] = (
    "frame",
    "time",  # UTC
    "stream",
    "src",
    "dst",
    "sender",  # client/server
    "kind",  # smtp_command, smtp_reply, smtp_gap, tls_handshake, tls_alert, tls_ccs,
    # tls_appdata
    "name",  # command verb, reply code, handshake message name, alert name
    "detail",  # full command/reply line(s), certificate count, version ...
    "decrypted",  # seen only thanks to the key log
    "last_frame",  # cleartext SMTP: the frame that carried the item's last byte (``frame``
    # the first); null for the other kinds
)

#: Version of the JSON document and table shapes: 2 = list columns are arrays (1: separated
#: strings), severity/trust categorical, ``schema_version`` present. Bump on any change a
#: reader of the JSON would notice.
SCHEMA_VERSION = 2

EXIT_OK = 0  # nothing wrong found
EXIT_PROBLEMS = 1  # at least one finding of severity error or warning
EXIT_USAGE = 2  # bad arguments (click's own code)
EXIT_TSHARK = 3  # tshark missing or too old
EXIT_UNREADABLE = 4  # capture (or key log) unreadable
