"""The probe's parts alone: CertificateRequest parsing, the fit checks, the TCP framing (read
back by real tshark), credentials and HOST[:PORT] parsing."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyshark_tools.errors import CredentialsError
from pyshark_tools.probe.command import ProbeFailure, parse_target
from pyshark_tools.probe.credentials import load_pem
from pyshark_tools.probe.fit import FitAspect, assess_fit
from pyshark_tools.probe.handshake import (
    CertificateRequest,
    dn_string,
    find_certificate_request,
    parse_certificate_request,
)
from pyshark_tools.probe.recorder import Direction, Recording, pcapng_bytes
from pyshark_tools.probe.session import printable

from .probe_server import make_chains, write_pem


@pytest.fixture(scope="module")
def chains():
    return make_chains()


def _vec(data: bytes, size: int) -> bytes:
    return len(data).to_bytes(size, "big") + data


def _dn(cert: x509.Certificate) -> bytes:
    return cert.subject.public_bytes()


def test_tls12_certificate_request_parsed(chains):
    root = chains.good[1].cert  # the issuing CA, as a listed name
    body = (_vec(bytes([1, 64]), 1) + _vec(struct.pack("!HH", 0x0401, 0x0804), 2)
            + _vec(_vec(_dn(root), 2), 2))
    req = parse_certificate_request(body, tls13=False)
    assert req.certificate_types == (1, 64)
    assert req.signature_algorithms == (0x0401, 0x0804)
    assert req.ca_name_strings == [root.subject.rfc4514_string()]


def test_tls12_request_found_in_record_stream(chains):
    body = _vec(bytes([1]), 1) + _vec(struct.pack("!H", 0x0401), 2) + _vec(b"", 2)
    message = bytes([13]) + len(body).to_bytes(3, "big") + body
    hello = bytes([2]) + (4).to_bytes(3, "big") + b"\x03\x03\x00\x00"
    # split over two records, the request straddling them
    data = hello + message
    records = b"".join(bytes([22, 3, 3]) + struct.pack("!H", len(part)) + part
                       for part in (data[:6], data[6:]))
    req = find_certificate_request(records, "TLSv1.2", None, b"")
    assert req is not None and req.certificate_types == (1,) and req.ca_names == ()
    assert find_certificate_request(records[:-3], "TLSv1.2", None, b"") is None  # cut short


def test_tls13_certificate_request_extensions(chains):
    ca = _dn(chains.good[1].cert)
    extensions = (struct.pack("!H", 13) + _vec(_vec(struct.pack("!HH", 0x0804, 0x0403), 2), 2)
                  + struct.pack("!H", 50) + _vec(_vec(struct.pack("!H", 0x0401), 2), 2)
                  + struct.pack("!H", 47) + _vec(_vec(_vec(ca, 2), 2), 2))
    req = parse_certificate_request(_vec(b"", 1) + _vec(extensions, 2), tls13=True)
    assert req.tls13 and req.signature_algorithms == (0x0804, 0x0403)
    assert req.signature_algorithms_cert == (0x0401,)
    assert req.ca_names == (ca,)


def test_dn_string_matches_cryptography(chains):
    for issued in (*chains.good, *chains.server):
        assert dn_string(_dn(issued.cert)) == issued.cert.subject.rfc4514_string()
    assert dn_string(b"\x30\x05garbage").startswith("(unreadable name)")


def _ec_leaf() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.contoso.com")])
    import datetime as dt
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))


def test_fit_ec_key_against_rsa_only_request():
    leaf = _ec_leaf()
    req = CertificateRequest(False, (1,), (0x0401, 0x0804), (), ())
    fit = {c.aspect: c for c in assess_fit(req, (leaf,))}
    assert fit[FitAspect.CA_NAMES].fits  # no names listed: any CA
    assert not fit[FitAspect.SIGNATURE_ALGORITHMS].fits
    assert "ECDSA secp256r1" in fit[FitAspect.SIGNATURE_ALGORITHMS].detail
    assert not fit[FitAspect.CERTIFICATE_TYPES].fits


def test_fit_tls13_rsa_needs_pss(chains):
    chain = tuple(i.cert for i in chains.good)
    pkcs1_only = CertificateRequest(True, (), (0x0401,), (), ())
    (_, sig) = assess_fit(pkcs1_only, chain)
    assert not sig.fits
    pss = CertificateRequest(True, (), (0x0804, 0x0401), (), ())
    assert all(c.fits for c in assess_fit(pss, chain))
    # the chain's own signatures (sha256WithRSA) must be acceptable for certificates
    strict = CertificateRequest(True, (), (0x0804,), (0x0403,), ())
    (_, sig) = assess_fit(strict, chain)
    assert not sig.fits and "rsa_pkcs1_sha256" in sig.detail


def test_fit_ca_names(chains):
    leaf, issuing = (i.cert for i in chains.good)
    root_name = issuing.issuer.public_bytes()  # Contoso Test Root CA
    req = CertificateRequest(False, (1,), (0x0401,), (), (root_name,))
    assert assess_fit(req, (leaf, issuing))[0].fits  # the intermediate is issued by the root
    assert not assess_fit(req, (leaf,))[0].fits  # the leaf alone names the intermediate


@pytest.mark.parametrize("client,server", [(("127.0.0.1", 40000), ("127.0.0.1", 25)),
                                            (("::1", 40001), ("::1", 25))])
def test_framing_reads_back_in_tshark(tmp_path, client, server):
    """A recording with multi-segment data both ways: tshark finds one clean TCP stream
    (no analysis warnings), the payload in order, and the probe's comments."""
    base = 1_700_000_000_000_000_000
    rec = Recording(client, server, base, base + 50_000)
    banner = b"220 mx.example.net ESMTP\r\n"
    big = bytes(range(256)) * 20  # 5120 bytes: four segments
    rec.add(base + 100_000, Direction.TO_CLIENT, banner)
    rec.add(base + 200_000, Direction.TO_SERVER, big, "probe: big")
    rec.add(base + 300_000, Direction.TO_CLIENT, big[::-1])
    rec.close(base + 400_000, Direction.TO_SERVER)
    rec.close(base + 500_000, Direction.TO_CLIENT)
    path = tmp_path / "framed.pcapng"
    path.write_bytes(pcapng_bytes(rec, b""))
    tshark = shutil.which("tshark") or "tshark"
    out = subprocess.run(
        [tshark, "-r", path, "-T", "fields", "-e", "tcp.stream", "-e", "tcp.analysis.flags",
         "-e", "tcp.checksum.status", "-e", "tcp.payload", "-e", "frame.comment",
         "-o", "tcp.check_checksum:TRUE", "-o", "tcp.desegment_tcp_streams:FALSE"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert {r[0] for r in rows} == {"0"}
    assert not any(r[1] for r in rows), out  # no retransmission/lost-segment warnings
    assert all(r[2] == "1" for r in rows)  # checksums good
    c2s = b"".join(bytes.fromhex(r[3]) for r in rows[3:] if r[3])
    assert c2s == banner + big + big[::-1]
    assert any(r[4] == "probe: big" for r in rows)
    assert len(rows) == 3 + 1 + 4 + 4 + 2  # handshake, banner, 2 x 4 segments, 2 FIN


def test_parse_target():
    assert parse_target("mx.example.net", False) == ("mx.example.net", 25)
    assert parse_target("mx.example.net", True) == ("mx.example.net", 465)
    assert parse_target("192.0.2.1:2525", False) == ("192.0.2.1", 2525)
    assert parse_target("[2001:db8::1]:587", False) == ("2001:db8::1", 587)
    assert parse_target("2001:db8::1", False) == ("2001:db8::1", 25)
    for bad in ("mx:0", "mx:x", ":25", "mx:70000"):
        with pytest.raises(ProbeFailure):
            parse_target(bad, False)


def test_credentials_errors(chains, tmp_path):
    cert, key = write_pem(tmp_path, "a", chains.good)
    other_cert, _ = write_pem(tmp_path, "b", chains.server)
    with pytest.raises(CredentialsError, match="does not belong"):
        load_pem(other_cert, key, None)
    with pytest.raises(CredentialsError, match="--key"):
        load_pem(cert, None, None)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(chains.good[0].key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(CredentialsError, match="--password-env"):
        load_pem(cert, encrypted, None)
    with pytest.raises(CredentialsError, match="wrong password"):
        load_pem(cert, encrypted, b"nope")
    encrypted.chmod(0o640)
    (warning,) = load_pem(cert, encrypted, b"pw").warnings
    assert "mode 0640" in warning and "chmod 600" in warning
    encrypted.chmod(0o600)
    loaded = load_pem(cert, encrypted, b"pw")
    assert loaded.leaf == chains.good[0].cert and len(loaded.chain) == 2
    assert loaded.warnings == ()
    # intermediates first in the file: the leaf is still found by its key
    reordered = tmp_path / "reordered.pem"
    reordered.write_bytes(chains.good[1].pem + chains.good[0].pem)
    assert load_pem(reordered, key, None).leaf == chains.good[0].cert
    with pytest.raises(CredentialsError, match="does not exist"):
        load_pem(tmp_path / "missing.pem", key, None)


def test_server_text_is_made_printable():
    hostile = "550 5.7.64 \x1b[2J\x1b[31mgotcha\r"
    assert printable(hostile) == "550 5.7.64 \\x1b[2J\\x1b[31mgotcha\\x0d"
    assert printable("250 Grüße") == "250 Grüße"
