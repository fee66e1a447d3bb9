"""pyshark_tools.core.certificates against certificates built here with cryptography."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyshark_tools.core.certificates import (
    TRUST_STATUSES,
    CertInfo,
    TrustResult,
    TrustStore,
    certificate_rows,
    load_trust_store,
    matching_name,
    name_matches,
    parse_certificate,
    validate_chain,
)
from pyshark_tools.core.schema import CERTIFICATE_COLUMNS
from pyshark_tools.errors import CertificateParseError, TrustStoreError

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CLIENT = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
SHA256 = hashes.SHA256()


def _name(cn: str | None = None, o: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _build(
    subject: x509.Name,
    issuer: x509.Name,
    key,
    issuer_key,
    *,
    ca: bool = False,
    eku=CLIENT,
    sans=None,
    not_before: datetime = NOW - 30 * DAY,
    not_after: datetime = NOW + 60 * DAY,
    serial: int = 0x1234,
    algorithm: hashes.HashAlgorithm | None = SHA256,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        if sans is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, algorithm)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _content(tlv: bytes) -> bytes:
    first = tlv[1]
    start = 2 if first < 0x80 else 2 + (first & 0x7F)
    return tlv[start:]


SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")  # OID 1.2.840.113549.1.1.11
SHA1_RSA = bytes.fromhex("06092a864886f70d010105")  # OID 1.2.840.113549.1.1.5


def _resign_rsa(
    cert: x509.Certificate, key: rsa.RSAPrivateKey, *, sha1: bool = False, serial0: bool = False
) -> bytes:
    """Rebuild a certificate cryptography will not make (SHA-1 signed, serial 0) by hand.

    cryptography 50 refuses to sign with SHA-1 and to set serial 0; DER is simple enough
    to patch the TBS and sign it with the raw RSA primitive.
    """
    tbs = _content(cert.tbs_certificate_bytes)
    if serial0:
        serial = _tlv(0x02, cert.serial_number.to_bytes(2, "big"))
        assert tbs.count(serial) == 1
        tbs = tbs.replace(serial, _tlv(0x02, b"\x00"))
    algorithm = hashes.SHA256()
    if sha1:
        assert tbs.count(SHA256_RSA) == 1
        tbs = tbs.replace(SHA256_RSA, SHA1_RSA)
        algorithm = hashes.SHA1()
    tbs = _tlv(0x30, tbs)
    oid = SHA1_RSA if sha1 else SHA256_RSA
    signature = key.sign(tbs, padding.PKCS1v15(), algorithm)
    return _tlv(0x30, tbs + _tlv(0x30, oid + b"\x05\x00") + _tlv(0x03, b"\x00" + signature))


class PKI:
    """A public-looking root/intermediate, a private root and a set of leaves."""

    def __init__(self) -> None:
        self.root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.root = _build(
            _name("Test Root", "Test"),
            _name("Test Root", "Test"),
            self.root_key,
            self.root_key,
            ca=True,
            not_before=NOW - 3650 * DAY,
            not_after=NOW + 3650 * DAY,
        )
        self.int_key = _ec()
        self.inter = _build(
            _name("Test Issuing CA", "Test"),
            self.root.subject,
            self.int_key,
            self.root_key,
            ca=True,
            not_before=NOW - 365 * DAY,
            not_after=NOW + 365 * DAY,
        )
        self.priv_key = _ec()
        self.private_root = _build(
            _name("Contoso Private Root", "Contoso"),
            _name("Contoso Private Root", "Contoso"),
            self.priv_key,
            self.priv_key,
            ca=True,
        )
        self.leaf_key = _ec()
        self.store = TrustStore.from_certificates([self.root], "test store")

    def leaf(self, cn: str | None = "mail.contoso.com", **kw) -> x509.Certificate:
        kw.setdefault("sans", [x509.DNSName("mail.contoso.com")])
        subject = _name(cn, "Contoso") if cn else _name(None, "Contoso Ltd")
        return _build(subject, self.inter.subject, self.leaf_key, self.int_key, **kw)

    def chain(self, leaf: x509.Certificate, *more: x509.Certificate) -> list[bytes]:
        return [_der(leaf), *(_der(c) for c in more or (self.inter,))]


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


# --------------------------------------------------------------------------- parsing


def test_parse_fields_of_a_normal_leaf(pki: PKI) -> None:
    leaf = pki.leaf(
        sans=[
            x509.DNSName("mail.contoso.com"),
            x509.DNSName("smtp.contoso.com"),
            x509.IPAddress(ipaddress.ip_address("192.0.2.25")),
            x509.RFC822Name("postmaster@contoso.com"),
        ]
    )
    der = _der(leaf)
    info = parse_certificate(der)
    assert info.subject == "CN=mail.contoso.com,O=Contoso,C=US"
    assert info.issuer == "CN=Test Issuing CA,O=Test,C=US"
    assert info.cn == "mail.contoso.com"
    assert info.sans == (
        "mail.contoso.com",
        "smtp.contoso.com",
        "IP:192.0.2.25",
        "email:postmaster@contoso.com",
    )
    assert info.dns_names == ("mail.contoso.com", "smtp.contoso.com")
    assert info.serial == "1234"
    assert info.not_before == NOW - 30 * DAY
    assert info.not_after == NOW + 60 * DAY
    assert info.not_before.tzinfo is not None
    assert info.self_signed is False
    assert (info.key_type, info.key_size) == ("EC", 256)
    assert info.signature_algorithm == "ecdsa-with-SHA256"
    assert info.signature_hash == "sha256"
    assert info.ekus == ("serverAuth", "clientAuth")
    assert info.sha256 == hashlib.sha256(der).hexdigest()
    assert info.sha1 == hashlib.sha1(der).hexdigest().upper()
    assert info.sha1 == info.sha1.upper() and info.sha256 == info.sha256.lower()
    assert info.der == der
    assert "der=" not in repr(info)


def test_valid_at_bounds_and_naive_time(pki: PKI) -> None:
    info = parse_certificate(_der(pki.leaf()))
    assert info.valid_at(NOW)
    assert info.valid_at(info.not_before) and info.valid_at(info.not_after)
    assert not info.valid_at(info.not_after + timedelta(seconds=1))
    assert not info.valid_at(info.not_before - timedelta(seconds=1))
    assert info.valid_at(NOW.replace(tzinfo=None))  # naive = UTC


def test_self_signed_needs_own_signature(pki: PKI) -> None:
    assert parse_certificate(_der(pki.root)).self_signed is True
    # Same issuer and subject name, but signed by another key: not self-signed.
    impostor = _build(_name("Lookalike"), _name("Lookalike"), pki.leaf_key, pki.int_key, eku=None)
    assert impostor.issuer == impostor.subject
    assert parse_certificate(_der(impostor)).self_signed is False


def test_rsa_1024_and_rsa_root_facts(pki: PKI) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert = _build(_name("old.contoso.com"), pki.inter.subject, small, pki.int_key)
    info = parse_certificate(_der(cert))
    assert (info.key_type, info.key_size) == ("RSA", 1024)
    root = parse_certificate(_der(pki.root))
    assert (root.key_type, root.key_size) == ("RSA", 2048)
    assert root.signature_algorithm == "sha256WithRSAEncryption"


def test_ed25519_key_has_no_size(pki: PKI) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = _build(_name("ed.contoso.com"), _name("ed.contoso.com"), key, key, algorithm=None)
    info = parse_certificate(_der(cert))
    assert (info.key_type, info.key_size, info.signature_hash) == ("Ed25519", None, None)
    assert info.signature_algorithm == "ed25519"
    assert info.self_signed is True


def test_no_cn_no_san_no_eku(pki: PKI) -> None:
    leaf = pki.leaf(cn=None, sans=None, eku=None)
    info = parse_certificate(_der(leaf))
    assert info.cn is None
    assert info.subject == "O=Contoso Ltd,C=US"
    assert info.sans == () and info.ekus == ()


def test_unknown_eku_is_dotted(pki: PKI) -> None:
    leaf = pki.leaf(eku=[ExtendedKeyUsageOID.SERVER_AUTH, x509.ObjectIdentifier("1.2.3.4.5")])
    assert parse_certificate(_der(leaf)).ekus == ("serverAuth", "1.2.3.4.5")


def test_serial_formatting(pki: PKI) -> None:
    assert parse_certificate(_der(pki.leaf(serial=0xABC))).serial == "0ABC"
    assert parse_certificate(_der(pki.leaf(serial=0x80FF))).serial == "80FF"
    cert = _build(_name("zero"), pki.root.subject, pki.leaf_key, pki.root_key, serial=0x4242)
    zero = _resign_rsa(cert, pki.root_key, serial0=True)
    with pytest.warns(CryptographyDeprecationWarning):
        assert x509.load_der_x509_certificate(zero).serial_number == 0
    assert parse_certificate(zero).serial == "00"


def test_sha1_signed_certificate_facts(pki: PKI) -> None:
    cert = _build(_name("sha1.contoso.com"), pki.root.subject, pki.leaf_key, pki.root_key)
    der = _resign_rsa(cert, pki.root_key, sha1=True)
    info = parse_certificate(der)
    assert info.signature_algorithm == "sha1WithRSAEncryption"
    assert info.signature_hash == "sha1"
    # A self-signed SHA-1 certificate is still recognised as self-signed.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    selfish = _build(_name("old-root"), _name("old-root"), key, key, ca=True)
    assert parse_certificate(_resign_rsa(selfish, key, sha1=True)).self_signed is True


@pytest.mark.parametrize(
    "der",
    [b"", b"\x00", b"not a certificate", b"\x30\x82\xff\xff" + b"\x00" * 10],
    ids=["empty", "nul", "text", "truncated"],
)
def test_malformed_der_raises_one_line(der: bytes) -> None:
    with pytest.raises(CertificateParseError) as caught:
        parse_certificate(der)
    assert "\n" not in str(caught.value) and str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_truncated_real_certificate(pki: PKI) -> None:
    with pytest.raises(CertificateParseError):
        parse_certificate(_der(pki.leaf())[:-20])


# --------------------------------------------------------------------------- rows


def test_certificate_rows_shape_and_values(pki: PKI) -> None:
    trust = TrustResult("trusted", "ok")
    chain = [*pki.chain(pki.leaf()), b"garbage"]
    rows = certificate_rows(chain, stream=7, frame=42, role="client", capture_time=NOW, trust=trust)
    assert len(rows) == 3
    for position, row in enumerate(rows):
        assert tuple(row) == CERTIFICATE_COLUMNS
        assert (row["stream"], row["frame"], row["role"], row["position"]) == (
            7,
            42,
            "client",
            position,
        )
    leaf, inter, bad = rows
    assert (leaf["trust"], leaf["trust_detail"]) == ("trusted", "ok")
    assert inter["trust"] is None and inter["trust_detail"] is None
    assert leaf["sans"] == "mail.contoso.com"
    assert leaf["ekus"] == "serverAuth; clientAuth"
    assert leaf["valid_at_capture"] is True
    assert leaf["parse_error"] is None
    assert inter["cn"] == "Test Issuing CA" and inter["ekus"] == ""
    assert bad["parse_error"] and bad["parse_error"].startswith("not a DER certificate")
    # The fingerprints of the raw bytes survive a parse error; nothing else is guessed.
    assert bad["sha256"] == hashlib.sha256(b"garbage").hexdigest()
    assert bad["sha1"] == hashlib.sha1(b"garbage").hexdigest().upper()
    other = set(CERTIFICATE_COLUMNS) - {"stream", "frame", "role", "position", "parse_error",
                                        "sha256", "sha1"}
    assert all(bad[column] is None for column in other)


def test_certificate_rows_capture_time_and_join(pki: PKI) -> None:
    leaf = pki.leaf(
        sans=[x509.DNSName("a.contoso.com"), x509.IPAddress(ipaddress.ip_address("192.0.2.1"))]
    )
    rows = certificate_rows(
        [_der(leaf)], stream=1, frame=2, role="server", capture_time=None, trust=None
    )
    assert rows[0]["valid_at_capture"] is None and rows[0]["trust"] is None
    assert rows[0]["sans"] == "a.contoso.com; IP:192.0.2.1"
    late = certificate_rows(
        [_der(leaf)], stream=1, frame=2, role="server", capture_time=NOW + 365 * DAY, trust=None
    )
    assert late[0]["valid_at_capture"] is False
    assert (
        certificate_rows([], stream=1, frame=2, role="client", capture_time=NOW, trust=None) == []
    )


# --------------------------------------------------------------------------- trust store


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_load_trust_store_default_is_certifi() -> None:
    store = load_trust_store(None)
    assert len(store.roots) > 100
    assert "cacert.pem" in store.source


def test_load_trust_store_from_pem(pki: PKI, tmp_path) -> None:
    path = tmp_path / "roots.pem"
    path.write_bytes(_pem(pki.root, pki.private_root))
    store = load_trust_store(path)
    assert store.roots == (pki.root, pki.private_root)
    assert store.contains(pki.private_root) and not store.contains(pki.inter)
    assert store.find(pki.root.subject) == (pki.root,)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"", "empty"),
        (b"hello\n", "not a PEM bundle"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cannot be read"),
    ],
    ids=["missing", "empty", "not-pem", "bad-pem"],
)
def test_load_trust_store_errors(tmp_path, content: bytes | None, message: str) -> None:
    path = tmp_path / "roots.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TrustStoreError, match=message):
        load_trust_store(path)


def test_load_trust_store_rejects_der(pki: PKI, tmp_path) -> None:
    path = tmp_path / "root.der"
    path.write_bytes(_der(pki.root))
    with pytest.raises(TrustStoreError, match="not a PEM bundle"):
        load_trust_store(path)


# --------------------------------------------------------------------------- trust


def _status(pki: PKI, chain: list[bytes], role: str = "client", at: datetime = NOW) -> TrustResult:
    result = validate_chain(chain, at=at, store=pki.store, role=role)
    assert result.status in TRUST_STATUSES
    assert result.detail
    return result


def test_trusted_chain(pki: PKI) -> None:
    result = _status(pki, pki.chain(pki.leaf()))
    assert result.status == "trusted"
    assert "EKU" not in result.detail


def test_trusted_with_root_also_sent(pki: PKI) -> None:
    assert _status(pki, pki.chain(pki.leaf(), pki.inter, pki.root)).status == "trusted"


def test_trusted_with_out_of_order_chain(pki: PKI) -> None:
    # Root first, then the intermediate: the walk follows names, not positions.
    chain = pki.chain(pki.leaf(), pki.root, pki.inter)
    assert _status(pki, chain).status == "trusted"


def test_empty_chain(pki: PKI) -> None:
    assert _status(pki, []).status == "empty"


def test_expired_leaf(pki: PKI) -> None:
    leaf = pki.leaf(not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    result = _status(pki, pki.chain(leaf))
    assert result.status == "expired"
    assert "leaf" in result.detail and "expired" in result.detail


def test_not_yet_valid_leaf(pki: PKI) -> None:
    leaf = pki.leaf(not_before=NOW + DAY, not_after=NOW + 90 * DAY)
    result = _status(pki, pki.chain(leaf))
    assert result.status == "not_yet_valid"


def test_expired_intermediate(pki: PKI) -> None:
    old_inter = _build(
        pki.inter.subject,
        pki.root.subject,
        pki.int_key,
        pki.root_key,
        ca=True,
        not_before=NOW - 400 * DAY,
        not_after=NOW - DAY,
    )
    result = _status(pki, pki.chain(pki.leaf(), old_inter))
    assert result.status == "expired"
    assert "chain certificate 1" in result.detail


def test_expiry_judged_at_given_time(pki: PKI) -> None:
    leaf = pki.leaf()
    assert _status(pki, pki.chain(leaf), at=NOW + 61 * DAY).status == "expired"
    assert _status(pki, pki.chain(leaf), at=NOW).status == "trusted"


def test_self_signed_leaf(pki: PKI) -> None:
    leaf = _build(
        _name("mail.contoso.com"),
        _name("mail.contoso.com"),
        pki.leaf_key,
        pki.leaf_key,
        sans=[x509.DNSName("mail.contoso.com")],
    )
    result = _status(pki, [_der(leaf)])
    assert result.status == "self_signed"
    # ...unless that very certificate is a root of the store.
    own = TrustStore.from_certificates([leaf])
    assert validate_chain([_der(leaf)], at=NOW, store=own).status == "trusted"


def test_expired_and_self_signed_lists_both(pki: PKI) -> None:
    leaf = _build(
        _name("x.contoso.com"),
        _name("x.contoso.com"),
        pki.leaf_key,
        pki.leaf_key,
        not_before=NOW - 10 * DAY,
        not_after=NOW - DAY,
    )
    result = _status(pki, [_der(leaf)])
    assert result.status == "expired"
    assert "self-signed" in result.detail


def test_missing_intermediate(pki: PKI) -> None:
    result = _status(pki, [_der(pki.leaf())])
    assert result.status == "missing_intermediate"
    assert "CN=Test Issuing CA" in result.detail


def test_missing_intermediate_higher_up(pki: PKI) -> None:
    # leaf -> issuing CA -> (policy CA, not sent) -> root
    mid_key = _ec()
    mid_name = _name("Test Policy CA", "Test")
    inter = _build(pki.inter.subject, mid_name, pki.int_key, mid_key, ca=True)
    result = _status(pki, pki.chain(pki.leaf(), inter))
    # Intermediates were sent: an unknown issuer above them reads as a private CA, and the
    # detail names the other possibility.
    assert result.status == "untrusted"
    assert "Test Policy CA" in result.detail and "intermediate CA the sender did not send" \
        in result.detail


def test_private_root_untrusted(pki: PKI) -> None:
    inter = _build(
        _name("Contoso Issuing", "Contoso"),
        pki.private_root.subject,
        pki.int_key,
        pki.priv_key,
        ca=True,
    )
    leaf = _build(_name("mail.contoso.com"), inter.subject, pki.leaf_key, pki.int_key)
    result = _status(pki, [_der(leaf), _der(inter), _der(pki.private_root)])
    assert result.status == "untrusted"
    assert "Contoso Private Root" in result.detail
    # Trusted once the private root is in the store.
    store = TrustStore.from_certificates([pki.private_root])
    chain = [_der(leaf), _der(inter), _der(pki.private_root)]
    assert validate_chain(chain, at=NOW, store=store).status == "trusted"


def test_private_root_not_sent_is_missing(pki: PKI) -> None:
    leaf = _build(_name("mail.contoso.com"), pki.private_root.subject, pki.leaf_key, pki.priv_key)
    assert _status(pki, [_der(leaf)]).status == "missing_intermediate"


def test_server_auth_only_leaf_is_trusted_with_eku_note(pki: PKI) -> None:
    leaf = pki.leaf(eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    result = _status(pki, pki.chain(leaf))
    assert result.status == "trusted"
    assert "EKU" in result.detail and "serverAuth" in result.detail
    server = _status(pki, pki.chain(leaf), role="server")
    assert server.status == "trusted" and "EKU" not in server.detail


def test_leaf_without_eku_is_trusted(pki: PKI) -> None:
    result = _status(pki, pki.chain(pki.leaf(eku=None)))
    assert result.status == "trusted" and "EKU" not in result.detail


def test_sha1_signed_leaf_is_weak(pki: PKI) -> None:
    cert = _build(_name("sha1.contoso.com"), pki.root.subject, pki.leaf_key, pki.root_key)
    der = _resign_rsa(cert, pki.root_key, sha1=True)
    result = _status(pki, [der])
    assert result.status == "weak_signature"
    assert "sha1" in result.detail and "leaf" in result.detail


def test_bad_signature_is_invalid(pki: PKI) -> None:
    # Issuer name right, signed by the wrong key: names walk fine, the verifier says no.
    leaf = _build(
        _name("mail.contoso.com"),
        pki.inter.subject,
        pki.leaf_key,
        pki.priv_key,
        sans=[x509.DNSName("mail.contoso.com")],
    )
    result = _status(pki, pki.chain(leaf))
    assert result.status == "invalid"
    assert "validation failed" in result.detail


def test_unparseable_chain_member_is_invalid(pki: PKI) -> None:
    result = _status(pki, [_der(pki.leaf()), b"junk"])
    assert result.status == "invalid"
    assert "chain certificate 1" in result.detail
    assert _status(pki, [b"junk"]).status == "invalid"


def test_rsa_1024_leaf_still_judged_on_trust(pki: PKI) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    leaf = _build(
        _name("old.contoso.com"),
        pki.inter.subject,
        small,
        pki.int_key,
        sans=[x509.DNSName("old.contoso.com")],
    )
    # Key size is W14's business; the chain itself is sound.
    assert _status(pki, pki.chain(leaf)).status == "trusted"


def test_certifi_store_does_not_trust_test_root(pki: PKI) -> None:
    chain = pki.chain(pki.leaf(), pki.inter, pki.root)
    assert validate_chain(chain, at=NOW, store=load_trust_store(None)).status == "untrusted"


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("expected", "names", "result"),
    [
        ("mail.contoso.com", ["mail.contoso.com"], True),
        ("MAIL.Contoso.COM", ["mail.contoso.com"], True),
        ("mail.contoso.com.", ["Mail.Contoso.Com"], True),
        ("mail.contoso.com", ["mail.contoso.com."], True),
        ("mail.contoso.com", ["smtp.contoso.com"], False),
        ("mail.contoso.com", ["contoso.com"], False),
        ("contoso.com", ["mail.contoso.com"], False),
        # connector wildcard: the domain and every subdomain at any depth
        ("*.contoso.com", ["contoso.com"], True),
        ("*.contoso.com", ["mail.contoso.com"], True),
        ("*.contoso.com", ["a.b.mail.contoso.com"], True),
        ("*.contoso.com", ["*.contoso.com"], True),
        ("*.contoso.com", ["*.mail.contoso.com"], True),
        ("*.contoso.com", ["notcontoso.com"], False),
        ("*.contoso.com", ["contoso.com.evil.net"], False),
        ("*.contoso.com", ["*.com"], False),
        ("*.mail.contoso.com", ["contoso.com"], False),
        # certificate wildcard: exactly one label
        ("mail.contoso.com", ["*.contoso.com"], True),
        ("contoso.com", ["*.contoso.com"], False),
        ("a.mail.contoso.com", ["*.contoso.com"], False),
        ("contoso.com", ["*.com"], False),
        ("mail.com", ["*.com"], False),
        # embedded wildcards never match, on either side
        ("mail*.contoso.com", ["mail1.contoso.com"], False),
        ("mail*.contoso.com", ["mail*.contoso.com"], False),
        ("mail1.contoso.com", ["mail*.contoso.com"], False),
        ("mail.contoso.com", ["*mail.contoso.com"], False),
        ("x.mail.contoso.com", ["x.*.contoso.com"], False),
        ("*", ["contoso.com"], False),
        ("mail.contoso.com", ["*"], False),
        # IP / e-mail SANs and empty values
        ("192.0.2.1", ["IP:192.0.2.1"], False),
        ("contoso.com", ["email:postmaster@contoso.com"], False),
        ("", ["contoso.com"], False),
        ("contoso.com", [""], False),
        ("contoso.com", [], False),
        # several names: any one is enough
        ("mail.contoso.com", ["www.fabrikam.com", "mail.contoso.com"], True),
        # IDN: U-label expected, A-label on the certificate
        ("mail.bücher.example", ["mail.xn--bcher-kva.example"], True),
    ],
)
def test_name_matches(expected: str, names: list[str], result: bool) -> None:
    assert name_matches(expected, names) is result


def test_matching_name_prefers_cn_then_sans(pki: PKI) -> None:
    leaf = pki.leaf(
        cn="mail.contoso.com",
        sans=[
            x509.DNSName("*.fabrikam.com"),
            x509.DNSName("mail.contoso.com"),
            x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        ],
    )
    info = parse_certificate(_der(leaf))
    assert matching_name("mail.contoso.com", info) == "mail.contoso.com"
    assert matching_name("smtp.fabrikam.com", info) == "*.fabrikam.com"
    assert matching_name("*.contoso.com", info) == "mail.contoso.com"
    assert matching_name("192.0.2.1", info) is None
    assert matching_name("tailspin.com", info) is None


def test_matching_name_without_cn(pki: PKI) -> None:
    info = parse_certificate(_der(pki.leaf(cn=None, sans=[x509.DNSName("relay.contoso.com")])))
    assert info.cn is None
    assert matching_name("*.contoso.com", info) == "relay.contoso.com"


def test_certinfo_is_frozen(pki: PKI) -> None:
    info: CertInfo = parse_certificate(_der(pki.leaf()))
    with pytest.raises(AttributeError):
        info.cn = "other"  # type: ignore[misc]


def test_leaf_without_san_is_trusted_with_note(pki: PKI) -> None:
    # Exchange Online matches a CN-only certificate; the strict verifier wants a SAN.
    result = _status(pki, pki.chain(pki.leaf(sans=None)))
    assert result.status == "trusted"
    assert "subjectAltName" in result.detail
