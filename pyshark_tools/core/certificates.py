"""DER bytes in, certificate facts and trust verdicts out.

Everything here is a pure function of its arguments (plus the trust store you hand in), so
the capture stages can call it on any certificate list tshark gives them and the renderers
can trust the column names: :func:`certificate_rows` emits exactly
:data:`pyshark_tools.core.schema.CERTIFICATE_COLUMNS`.

Trust status vocabulary (:attr:`TrustResult.status`), checked in this order; the first
problem found is the status and ``detail`` lists every problem found, so a user fixing the
first one learns about the next one too:

``empty``
    no certificate at all.
``invalid``
    a certificate could not be parsed, or the verifier rejected the chain for a reason
    none of the statuses below explains (``detail`` = the verifier's message).
``expired``
    the leaf's notAfter, or the notAfter of a certificate on its issuer path, is before
    ``at``.
``not_yet_valid``
    the leaf's (or a path certificate's) notBefore is after ``at``.
``self_signed``
    the leaf is self-issued (issuer == subject, signature verifies with its own key) and
    is not itself in the trust store.
``missing_intermediate``
    the sender sent only its leaf and the leaf's issuer is neither in the presented chain
    nor among the store's roots: the sender did not send its intermediate. (When the sender
    did send intermediates and only the top one's issuer is unknown, the status is
    ``untrusted``: that is what a private CA looks like.) Exchange Online
    does not fetch intermediates (AIA), so this fails there (450 4.4.317 / 5.7.64). A
    private CA whose root was not sent looks the same; the detail says so.
``untrusted``
    the chain builds up to a self-signed root that was presented but is not in the store
    (a private or enterprise CA).
``weak_signature``
    the verifier rejected the chain and a certificate on the path is signed with
    SHA-1/MD5 (Exchange Online refuses SHA-1 since 2016).
``trusted``
    ``cryptography.x509.verification`` built and verified a path to a store root at
    ``at``. A client leaf whose EKU lacks clientAuth is still ``trusted`` (the EKU is
    finding W15, reported elsewhere); the detail then says the strict verifier objected.

Verification policy: for ``role="client"`` we use ``build_client_verifier()``; if it
rejects only because of the EKU we verify again with an end-entity policy that lets the
EKU extension be anything. For ``role="server"`` we go straight to that relaxed client
verifier: no host name and no EKU check, because the question we answer about a server
chain is "does it chain to a public root", not "is it valid for this name".
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import certifi
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ..errors import CertificateParseError, TrustStoreError
from .schema import CERTIFICATE_COLUMNS, TrustStatus

__all__ = [
    "TRUST_STATUSES",
    "CertInfo",
    "CertificateParseError",
    "TrustResult",
    "TrustStore",
    "TrustStoreError",
    "certificate_rows",
    "load_trust_store",
    "matching_name",
    "name_matches",
    "parse_certificate",
    "validate_chain",
]

#: The trust vocabulary in its order (``schema.TrustStatus``).
TRUST_STATUSES: tuple[str, ...] = tuple(status.value for status in TrustStatus)

#: Signature hashes Exchange Online (and every current verifier) refuses.
WEAK_HASHES = frozenset({"sha1", "md5", "md4", "md2"})

# OpenSSL's short names, which is what mail engineers see in `openssl x509 -text`.
_EKU_NAMES: dict[str, str] = {
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string: "anyExtendedKeyUsage",
    "1.3.6.1.5.5.7.3.5": "ipsecEndSystem",
    "1.3.6.1.5.5.7.3.6": "ipsecTunnel",
    "1.3.6.1.5.5.7.3.7": "ipsecUser",
    "1.3.6.1.5.5.7.3.17": "ipsecIKE",
    "1.3.6.1.4.1.311.10.3.3": "msSGC",
    "2.16.840.1.113730.4.1": "nsSGC",
    "1.3.6.1.4.1.311.20.2.2": "msSmartcardLogin",
}


@dataclass(frozen=True)
class CertInfo:
    """Facts about one certificate, named like the CERTIFICATE_COLUMNS they fill.

    ``sans`` holds DNS names as they are, IP addresses as ``IP:<addr>`` and e-mail
    addresses as ``email:<addr>``; the prefix keeps an IP or mailbox from ever being taken
    for a host name (``dns_names`` gives the DNS ones only). ``self_signed`` is True only
    when issuer == subject AND the signature verifies with the certificate's own key, so a
    CA-issued certificate that merely repeats its issuer's name is not called self-signed.
    ``serial`` is upper-case hex of the serial's magnitude, padded to whole bytes like
    OpenSSL and Zeek print it (serial 0 -> ``"00"``; a negative serial gets a ``-``).
    ``key_size`` is None where bit size is not meaningful (EdDSA) or the key is unreadable.
    """

    subject: str
    cn: str | None
    sans: tuple[str, ...]
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    self_signed: bool
    key_type: str
    key_size: int | None
    signature_algorithm: str
    signature_hash: str | None
    ekus: tuple[str, ...]
    sha256: str
    sha1: str
    der: bytes = field(repr=False)

    @property
    def dns_names(self) -> tuple[str, ...]:
        """The DNS SANs: the only SANs TlsSenderCertificateName can match."""
        return tuple(n for n in self.sans if ":" not in n)

    def valid_at(self, when: datetime) -> bool:
        """notBefore <= when <= notAfter (a naive ``when`` is taken as UTC)."""
        when = _utc(when)
        return self.not_before <= when <= self.not_after


@dataclass(frozen=True)
class TrustResult:
    """A status from :data:`TRUST_STATUSES` and a sentence a mail engineer can act on."""

    status: str
    detail: str


@dataclass(frozen=True)
class TrustStore:
    """The verifier's Store plus the root certificates, for issuer-name lookups."""

    store: Store
    roots: tuple[x509.Certificate, ...]
    source: str = ""
    _by_subject: dict[x509.Name, tuple[x509.Certificate, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def from_certificates(cls, roots: Iterable[x509.Certificate], source: str = "") -> TrustStore:
        """Build a store from already-loaded root certificates."""
        roots = tuple(roots)
        if not roots:
            raise TrustStoreError(f"trust store {source or '(certificates)'} holds no certificate")
        by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        for root in roots:
            by_subject.setdefault(root.subject, []).append(root)
        return cls(
            store=Store(list(roots)),
            roots=roots,
            source=source,
            _by_subject={k: tuple(v) for k, v in by_subject.items()},
        )

    def find(self, name: x509.Name) -> tuple[x509.Certificate, ...]:
        """Roots whose subject is ``name``."""
        return self._by_subject.get(name, ())

    def contains(self, cert: x509.Certificate) -> bool:
        """The exact certificate (same DER) is a root of this store."""
        return any(root == cert for root in self.find(cert.subject))


# --------------------------------------------------------------------------- parsing


#: What ``cryptography`` raises on a certificate field it cannot read (read lazily).
_UNREADABLE = (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
               x509.InvalidVersion)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    where = re.search(r'location: \[([^\]]*)\]', text)
    if where and "ParseError" in text:
        # cryptography's ParseError names the DER field: say it in words
        fields = " ".join(part.strip(' "') for part in where[1].split(",") if part.strip())
        text = f"its {fields or 'DER'} field is not valid DER ({text.split(':', 1)[0]})"
    return text if len(text) <= 300 else text[:297] + "..."


def _serial_hex(serial: int) -> str:
    sign = "-" if serial < 0 else ""
    digits = f"{abs(serial):X}"
    if len(digits) % 2:
        digits = "0" + digits
    return sign + digits


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    name = getattr(oid, "_name", None)
    return name if name and name != "Unknown OID" else oid.dotted_string


def _key_facts(cert: x509.Certificate) -> tuple[str, int | None]:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return _oid_name(cert.public_key_algorithm_oid), None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", None
    return type(key).__name__.removesuffix("PublicKey") or "unknown", None


def _signature_hash(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        # e.g. md2WithRSAEncryption: cryptography has no hash object, the OID name does.
        name = _oid_name(cert.signature_algorithm_oid).lower()
        return next((h for h in ("md2", "md4", "md5", "sha1") if name.startswith(h)), None)
    return algorithm.name if algorithm is not None else None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer``'s key verifies ``cert``'s signature, SHA-1/MD5 included.

    ``verify_directly_issued_by`` refuses SHA-1, but a self-signed SHA-1 certificate is
    still self-signed: this checks the signature with the public-key primitives instead.
    """
    try:
        key = issuer.public_key()
        algorithm = cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey):
            padding = cert.signature_algorithm_parameters
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding, algorithm)  # type: ignore[arg-type]
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))  # type: ignore[arg-type]
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, algorithm)  # type: ignore[arg-type]
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signed_by(cert, cert)


def _names(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sans, ekus); raises ValueError/UnsupportedAlgorithm on malformed extensions."""
    sans: list[str] = []
    ekus: tuple[str, ...] = ()
    for ext in cert.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            for gn in value:
                if isinstance(gn, x509.DNSName):
                    sans.append(gn.value)
                elif isinstance(gn, x509.IPAddress):
                    sans.append(f"IP:{gn.value}")
                elif isinstance(gn, x509.RFC822Name):
                    sans.append(f"email:{gn.value}")
        elif isinstance(value, x509.ExtendedKeyUsage):
            ekus = tuple(_EKU_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in value)
    return tuple(sans), ekus


def _common_name(name: x509.Name) -> str | None:
    # The most specific CN: the last one in DER order, i.e. the first one RFC 4514 prints.
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[-1].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _info(cert: x509.Certificate, der: bytes) -> CertInfo:
    sans, ekus = _names(cert)
    key_type, key_size = _key_facts(cert)
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        cn=_common_name(cert.subject),
        sans=sans,
        issuer=cert.issuer.rfc4514_string(),
        serial=_serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        self_signed=_is_self_signed(cert),
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=_oid_name(cert.signature_algorithm_oid),
        signature_hash=_signature_hash(cert),
        ekus=ekus,
        sha256=hashlib.sha256(der).hexdigest(),
        sha1=hashlib.sha1(der).hexdigest().upper(),
        der=der,
    )


def _load(der: bytes) -> x509.Certificate:
    try:
        with warnings.catch_warnings():
            # Serial 0 / negative serials exist in real captures; parse them quietly.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_der_x509_certificate(bytes(der))
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        raise CertificateParseError(f"not a DER certificate: {_one_line(exc)}") from exc


@functools.lru_cache(maxsize=4096)
def parse_certificate(der: bytes) -> CertInfo:
    """Parse one DER certificate; CertificateParseError (one line) when it cannot be read.

    Cached: the same chains come back in every conversation with the same peer.

    Malformed extensions and undecodable names count as parse errors too: a half-read
    certificate would show empty SANs/EKUs that look like facts.
    """
    der = bytes(der)
    cert = _load(der)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return _info(cert, der)
    except _UNREADABLE as exc:
        raise CertificateParseError(f"unreadable certificate field: {_one_line(exc)}") from exc


def certificate_rows(
    chain: Sequence[bytes],
    *,
    stream: int,
    frame: int,
    role: str,
    capture_time: datetime | None,
    trust: TrustResult | None,
) -> list[dict]:
    """One CERTIFICATE_COLUMNS dict per certificate, leaf (position 0) first.

    A certificate that does not parse still gets its row (parse_error set, facts None) so
    the count matches what was on the wire. ``trust`` belongs to the chain and is written
    on the leaf row only.
    """
    rows: list[dict] = []
    for position, der in enumerate(chain):
        row: dict = dict.fromkeys(CERTIFICATE_COLUMNS)
        row.update(stream=stream, frame=frame, role=role, position=position)
        try:
            info = parse_certificate(der)
        except CertificateParseError as exc:
            # Fingerprints need no parsing: keep them so the row can still be matched
            # against Windows thumbprints and other tools' logs.
            row.update(
                parse_error=str(exc),
                sha256=hashlib.sha256(der).hexdigest(),
                sha1=hashlib.sha1(der).hexdigest().upper(),
            )
        else:
            row.update(
                subject=info.subject,
                cn=info.cn,
                sans="; ".join(info.sans),
                issuer=info.issuer,
                serial=info.serial,
                not_before=info.not_before,
                not_after=info.not_after,
                valid_at_capture=None if capture_time is None else info.valid_at(capture_time),
                self_signed=info.self_signed,
                key_type=info.key_type,
                key_size=info.key_size,
                signature_algorithm=info.signature_algorithm,
                signature_hash=info.signature_hash,
                ekus="; ".join(info.ekus),
                sha256=info.sha256,
                sha1=info.sha1,
            )
        if position == 0 and trust is not None:
            row["trust"] = trust.status
            row["trust_detail"] = trust.detail
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- trust


def load_trust_store(path: str | os.PathLike[str] | None) -> TrustStore:
    """Roots to judge chains against: certifi's Mozilla bundle, or a PEM bundle you give.

    Exchange Online trusts the Microsoft root programme; Mozilla's is the closest public
    list that ships with Python. A custom bundle lets a user test a private CA.
    """
    source = certifi.where() if path is None else os.fspath(path)
    try:
        with open(source, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise TrustStoreError(
            f"cannot read trust store {source}: {exc.strerror or _one_line(exc)}"
        ) from exc
    if not data.strip():
        raise TrustStoreError(f"trust store {source} is empty")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise TrustStoreError(
            f"trust store {source} is not a PEM bundle (no '-----BEGIN CERTIFICATE-----' line)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            roots = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TrustStoreError(
            f"trust store {source} holds a certificate that cannot be read: {_one_line(exc)}"
        ) from exc
    return TrustStore.from_certificates(roots, source)


# Trust is about the path to a root; EKU (finding W15) and names (W11) are judged
# elsewhere, and Exchange Online matches a CN-only certificate, so neither may decide it.
_RELAXED_EE = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
)


def _strict_objection(message: str, leaf: x509.Certificate) -> str | None:
    """What a failed strict client verification objected to, if it was EKU or SAN only."""
    if "EKU" in message or "2.5.29.37" in message:
        ekus = ", ".join(_names(leaf)[1]) or "none"
        return f"the leaf's EKU ({ekus}: no clientAuth)"
    if "2.5.29.17" in message:
        return "the leaf having no subjectAltName"
    return None


def _verify(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    at: datetime,
    store: TrustStore,
    relaxed: bool,
) -> str | None:
    """None when the verifier accepts the chain, else its message."""
    builder = PolicyBuilder().store(store.store).time(at)
    if relaxed:
        builder = builder.extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_RELAXED_EE
        )
    try:
        builder.build_client_verifier().verify(leaf, intermediates)
    except VerificationError as exc:
        return _one_line(exc)
    return None


def _describe(position: int, cert: x509.Certificate) -> str:
    what = "leaf" if position == 0 else f"chain certificate {position}"
    return f"{what} ({cert.subject.rfc4514_string() or 'empty subject'})"


def _window_problem(position: int, cert: x509.Certificate, at: datetime) -> tuple[str, str] | None:
    if at > cert.not_valid_after_utc:
        when = cert.not_valid_after_utc.isoformat()
        return "expired", f"{_describe(position, cert)} expired {when} (notAfter)"
    if at < cert.not_valid_before_utc:
        when = cert.not_valid_before_utc.isoformat()
        return "not_yet_valid", f"{_describe(position, cert)} is not valid before {when}"
    return None


def _walk(
    certs: list[x509.Certificate], store: TrustStore
) -> tuple[list[int], str, x509.Name | None]:
    """Follow issuer names from the leaf through the presented chain.

    Returns (positions on the path, how it ended, the issuer name that was not found).
    End: "store" (an issuer is a store root, or the leaf is one), "self_signed" (a
    presented self-signed certificate that is not in the store), "missing".
    """
    path = [0]
    current = certs[0]
    if store.contains(current):
        return path, "store", None
    while True:
        if store.find(current.issuer):
            return path, "store", None
        if _is_self_signed(current):
            return path, "self_signed", None
        candidates = [
            i for i, c in enumerate(certs) if i not in path and c.subject == current.issuer
        ]
        if not candidates:
            return path, "missing", current.issuer
        signed = [i for i in candidates if _signed_by(current, certs[i])]
        nxt = (signed or candidates)[0]
        path.append(nxt)
        current = certs[nxt]


def validate_chain(
    chain: Sequence[bytes], *, at: datetime, store: TrustStore, role: str = "client"
) -> TrustResult:
    """Judge a presented chain (leaf first) the way Exchange Online would, at time ``at``.

    The explainable reasons (validity window, self-signed, missing intermediate, private
    root) are found by our own issuer-name walk so the detail can name the certificate;
    cryptography's verifier makes the final ``trusted`` call. See the module docstring
    for the statuses and the verification policy.
    """
    if not chain:
        return TrustResult("empty", "no certificate was presented")
    at = _utc(at)
    certs: list[x509.Certificate] = []
    for position, der in enumerate(chain):
        try:
            certs.append(_load(der))
        except CertificateParseError as exc:
            what = "leaf" if position == 0 else f"chain certificate {position}"
            return TrustResult("invalid", f"{what} could not be parsed: {exc}")
    try:
        return _judge(certs, at, store, role)
    except _UNREADABLE as exc:
        # x509 reads names and extensions lazily: a damaged one fails here, not at load
        return TrustResult("invalid", f"the chain could not be read: {_one_line(exc)}")


def _judge(certs: list[x509.Certificate], at: datetime, store: TrustStore,
           role: str) -> TrustResult:
    """``validate_chain`` on the loaded certificates (may raise on a damaged field)."""
    leaf = certs[0]
    leaf_in_store = store.contains(leaf)
    path, end, missing = _walk(certs, store)
    problems: list[tuple[str, str]] = []
    for position in path:
        problem = _window_problem(position, certs[position], at)
        if problem:
            problems.append(problem)
    if _is_self_signed(leaf) and not leaf_in_store:
        problems.append(
            (
                "self_signed",
                "the leaf is self-signed (issuer = subject, signed by its own key) "
                "and is not in the trust store",
            )
        )
    elif end == "missing" and missing is not None and path[-1] > 0:
        # The sender did send intermediates; what is unknown is the root above them.
        top = certs[path[-1]]
        problems.append(
            (
                "untrusted",
                f"the chain ends at {top.subject.rfc4514_string()}, whose issuer "
                f"{missing.rfc4514_string()} is not in the trust store: a private or "
                "enterprise CA, or a further intermediate CA the sender did not send",
            )
        )
    elif end == "missing" and missing is not None:
        last = path[-1]
        whose = "the leaf's" if last == 0 else f"{_describe(last, certs[last])}'s"
        problems.append(
            (
                "missing_intermediate",
                f"{whose} issuer {missing.rfc4514_string()} is neither in the presented chain nor "
                "in the trust store: the sender did not send its intermediate certificate(s) "
                "(Exchange Online does not fetch them), or the CA is private",
            )
        )
    elif end == "self_signed":
        root = certs[path[-1]]
        problems.append(
            (
                "untrusted",
                f"the chain ends at the self-signed root {root.subject.rfc4514_string()}, "
                "which is not in the trust store (private or enterprise CA)",
            )
        )
    if problems:
        return TrustResult(problems[0][0], "; ".join(detail for _, detail in problems))

    if leaf_in_store:
        return TrustResult("trusted", f"the leaf itself is a root in {_store_name(store)}")
    intermediates = certs[1:]
    trusted = f"chain verifies to a root in {_store_name(store)}"
    if role == "client":
        message = _verify(leaf, intermediates, at, store, relaxed=False)
        if message is None:
            return TrustResult("trusted", trusted)
        objection = _strict_objection(message, leaf)
        if objection:
            relaxed = _verify(leaf, intermediates, at, store, relaxed=True)
            if relaxed is None:
                return TrustResult(
                    "trusted",
                    f"{trusted}; the strict client verifier objected to {objection}: {message}",
                )
            message = relaxed
    else:
        message = _verify(leaf, intermediates, at, store, relaxed=True)
        if message is None:
            return TrustResult("trusted", trusted)

    weak = [
        (position, certs[position], _signature_hash(certs[position]))
        for position in path
        if _signature_hash(certs[position]) in WEAK_HASHES
    ]
    if weak and "signature algorithm" in message.lower():
        position, cert, hash_name = weak[0]
        return TrustResult(
            "weak_signature",
            f"{_describe(position, cert)} is signed with {hash_name}, which verifiers and "
            f"Exchange Online refuse: {message}",
        )
    return TrustResult("invalid", message)


def _store_name(store: TrustStore) -> str:
    return store.source or "the trust store"


# --------------------------------------------------------------------------- names


def _normalise(name: str) -> str:
    """Case-fold, drop surrounding blanks and trailing dots, IDN U-labels to A-labels."""
    name = name.strip().rstrip(".").lower()
    if not name.isascii():
        with contextlib.suppress(UnicodeError):
            name = name.encode("idna").decode("ascii")
    return name


def _wildcard_base(name: str) -> str | None:
    """``contoso.com`` for ``*.contoso.com``; None when ``name`` has no wildcard."""
    return name[2:] if name.startswith("*.") else None


def _has_bad_wildcard(name: str) -> bool:
    """A ``*`` anywhere but as the whole leftmost label (``mail*.x``, ``*``, ``a.*.x``)."""
    rest = name[2:] if name.startswith("*.") else name
    return "*" in rest or not rest


def _matches_one(expected: str, cert_name: str) -> bool:
    if ":" in cert_name or not cert_name or _has_bad_wildcard(cert_name):
        return False  # IP:/email: SANs and embedded wildcards never match
    base = _wildcard_base(expected)
    if base is not None:
        # Connector value *.contoso.com: the domain itself and every subdomain, at any
        # depth. A certificate wildcard inside that domain is a name in it too.
        cert_plain = _wildcard_base(cert_name) or cert_name
        if _wildcard_base(cert_name) is not None:
            return cert_plain == base or cert_plain.endswith("." + base)
        return cert_name == base or cert_name.endswith("." + base)
    if cert_name == expected:
        return True
    cert_base = _wildcard_base(cert_name)
    if cert_base is None or cert_base.count(".") < 1:
        return False  # no wildcard, or *.com: too broad to stand for anyone's domain
    label, _, rest = expected.partition(".")
    return bool(label) and rest == cert_base


def name_matches(expected: str, names: Iterable[str]) -> bool:
    """Does a certificate name satisfy the connector's ``TlsSenderCertificateName``?

    Accepted, all case-insensitive with trailing dots ignored:

    * exact equality: expected ``mail.contoso.com`` and a name ``mail.contoso.com``;
    * expected ``*.contoso.com`` (Exchange Online's domain wildcard) matches
      ``contoso.com`` and any name under it at any depth (``a.b.contoso.com``), including
      a certificate wildcard under it (``*.contoso.com``, ``*.mail.contoso.com``);
    * a certificate wildcard ``*.contoso.com`` matches an expected ``mail.contoso.com``
      (exactly one label, RFC 6125 6.4.3) but not ``contoso.com`` or ``a.b.contoso.com``,
      and a certificate ``*.com`` (a single label after the star) matches nothing.

    Never accepted: embedded or partial wildcards on either side (``mail*.contoso.com``,
    ``*mail.contoso.com``, ``a.*.contoso.com``), ``IP:``/``email:`` SANs, empty names.
    """
    exp = _normalise(expected)
    if not exp or _has_bad_wildcard(exp):
        return False
    return any(_matches_one(exp, _normalise(name)) for name in names if name)


def matching_name(expected: str, info: CertInfo) -> str | None:
    """The CN or DNS SAN (as written on the certificate) that satisfies ``expected``."""
    for name in ((info.cn,) if info.cn else ()) + info.dns_names:
        if name_matches(expected, (name,)):
            return name
    return None
