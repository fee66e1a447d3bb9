"""CompressedCertificate (RFC 8879): decompression bounded by the declared length, the TLS 1.3
Certificate body inside it, and the verdict when it cannot be read here.

The captures with a real CompressedCertificate (OpenSSL 3.5 compresses the client's certificate
whenever the server offers it) are tested end to end in test_probe.py and
test_compressed_certificate.py; these are the pure parts on bytes built here.
"""

from __future__ import annotations

import importlib.util
import zlib

import pytest
from cryptography import x509

from pyshark_tools.core.cert_compression import (
    CertificateCompression,
    decompress_certificate_message,
    tls13_certificate_list,
)
from pyshark_tools.core.details import certificate_count, certificate_detail

from .helpers import FIXTURES, fixture_truth


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _leaf_der() -> bytes:
    pem = (FIXTURES / "pki" / "test-root-ca.pem").read_bytes()
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def _tls13_body(ders: list[bytes], context: bytes = b"") -> bytes:
    entries = b"".join(len(d).to_bytes(3, "big") + d + b"\x00\x00" for d in ders)
    return bytes([len(context)]) + context + len(entries).to_bytes(3, "big") + entries


def test_a_zlib_certificate_is_read_back_whole() -> None:
    der = _leaf_der()
    body = _tls13_body([der, der], context=b"\x01\x02")
    read = decompress_certificate_message(1, len(body), zlib.compress(body))
    assert read.algorithm == "zlib" and read.body == body and not read.problem
    declared, ders = tls13_certificate_list(read.body)
    assert ders == (der, der) and declared == len(body) - 6


def test_an_empty_certificate_list_is_empty_not_unreadable() -> None:
    body = _tls13_body([])
    read = decompress_certificate_message(1, len(body), zlib.compress(body))
    assert tls13_certificate_list(read.body) == (0, ())


def test_a_message_that_expands_past_its_declared_length_is_refused() -> None:
    bomb = zlib.compress(b"\x00" * 5_000_000)  # a few KB that inflate to 5 MB
    read = decompress_certificate_message(1, 2000, bomb)
    assert read.body is None and "to more, not the 2000 bytes it declares" in read.problem


@pytest.mark.parametrize("length", [None, 0, 1 << 24])
def test_an_impossible_declared_length_is_refused(length) -> None:
    read = decompress_certificate_message(1, length, zlib.compress(b"x"))
    assert read.body is None and "uncompressed length" in read.problem


def test_damaged_data_and_unknown_algorithms_say_why() -> None:
    damaged = decompress_certificate_message(1, 100, b"\x78\x9c not zlib at all")
    assert damaged.body is None and "does not decompress" in damaged.problem
    unknown = decompress_certificate_message(9, 100, b"anything")
    assert unknown.body is None and unknown.algorithm == "algorithm 9"


@pytest.mark.parametrize("algorithm,module", [(CertificateCompression.BROTLI, "brotli"),
                                              (CertificateCompression.ZSTD, "zstandard")])
def test_brotli_and_zstd_need_their_module(algorithm, module) -> None:
    """Without the library the message is "not readable here", with it the body comes back."""
    body = _tls13_body([_leaf_der()])
    if not _importable(module) and not (module == "zstandard" and _importable("compression.zstd")):
        read = decompress_certificate_message(algorithm, len(body), b"\x00" * 40)
        assert read.body is None and module in read.problem
    else:
        lib = importlib.import_module(module)
        data = lib.compress(body) if module == "brotli" else lib.ZstdCompressor().compress(body)
        assert decompress_certificate_message(algorithm, len(body), data).body == body


def test_a_damaged_tls13_list_gives_what_it_holds_before_the_damage() -> None:
    der = _leaf_der()
    body = _tls13_body([der, der])
    declared, ders = tls13_certificate_list(body[:-40])  # the second entry cut short
    assert ders == (der,) and declared == len(body) - 4
    assert tls13_certificate_list(b"") == (None, ())
    assert tls13_certificate_list(b"\x05ab") == (None, ())


def test_detail_codec_keeps_compression_and_unknown_counts() -> None:
    text = certificate_detail(None, None, compressed="brotli", uncompressed=1845)
    assert certificate_count(text) is None
    assert certificate_count(certificate_detail(2, 900, compressed="zlib",
                                                uncompressed=950)) == 2
    assert certificate_count(certificate_detail(0, 0)) == 0


def _verdict_for(detail: str) -> tuple[str, str]:
    """(verdict, reason) of a TLS 1.3 handshake, decrypted, whose client answered the
    CertificateRequest with a CompressedCertificate event of this detail."""
    from datetime import UTC, datetime

    from pyshark_tools.core.conversations import summarise
    from pyshark_tools.core.events import EventSink, Extraction, StreamFacts
    from pyshark_tools.core.schema import CERTIFICATES, names

    when = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
    client, server = "203.0.113.25:49152", "52.101.40.5:25"
    sink = EventSink()
    flight = [(1, client, "ClientHello", "versions=TLS 1.3,TLS 1.2", False),
              (2, server, "ServerHello", "version=TLS 1.3 cipher=TLS_AES_256_GCM_SHA384", False),
              (2, server, "EncryptedExtensions", "", True),
              (2, server, "CertificateRequest", "", True),
              (2, server, "Certificate", certificate_detail(1, 900), True),
              (2, server, "Finished", "", True),
              (3, client, "CompressedCertificate", detail, True),
              (3, client, "Finished", "", True)]
    for frame, src, name, text, decrypted in flight:
        sink.add(frame=frame, time=when, stream=0, src=src, dst=server if src == client else
                 client, sender="client" if src == client else "server", kind="tls_handshake",
                 name=name, detail=text, decrypted=decrypted)
    facts = StreamFacts(stream=0, first_src=client, first_dst=server, first_frame=1,
                        first_time=when, syn_from=client, has_tls=True, client=client,
                        server=server)
    extraction = Extraction(events=sink.frame(), streams={0: facts}, certificate_messages=[],
                            warnings=[], truncated_file=False, packets_read=3, first_time=when,
                            last_time=when, tshark_command=[])
    import pandas as pd

    row = summarise(extraction, pd.DataFrame(columns=list(names(CERTIFICATES))),
                    ports=(25,)).iloc[0]
    return row["client_cert"], row["verdict_reason"]


def test_an_unreadable_compressed_certificate_is_never_called_empty() -> None:
    verdict, reason = _verdict_for(certificate_detail(None, None, compressed="brotli",
                                                      uncompressed=1845))
    assert verdict == "presented" and "brotli" in reason
    verdict, reason = _verdict_for(certificate_detail(None, None, compressed="brotli",
                                                      uncompressed=4))
    assert verdict == "not_captured" and "cannot see" in reason
    verdict, _ = _verdict_for(certificate_detail(0, 0, compressed="zlib", uncompressed=4))
    assert verdict == "empty"
    verdict, _ = _verdict_for(certificate_detail(1, 900, compressed="zlib", uncompressed=905))
    assert verdict == "presented"


REALSTACK = FIXTURES / "realstack"
REAL = "pyexo-smtplib-tls13-compressed-presented"  # recorded with Debian 13's OpenSSL 3.5


def test_the_recorded_fixture_really_holds_a_compressed_client_certificate() -> None:
    """tshark itself (not the analyzer) sees the client answer with handshake type 25."""
    import shutil
    import subprocess

    truth = fixture_truth(REAL, REALSTACK)
    (conv,) = truth["conversations"]
    done = subprocess.run(
        [shutil.which("tshark") or "tshark", "-n", "-r", str(REALSTACK / truth["capture"]),
         "-o", f"tls.keylog_file:{REALSTACK / truth['keylog']}",
         "-Y", f"tcp.srcport == {conv['client_port']} && tls.handshake.type == 25",
         "-T", "fields", "-e", "tls.compress_certificate.algorithm"],
        capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["1"]  # one message, zlib


@pytest.mark.parametrize("native", [True, False])
def test_the_report_reads_the_certificates_inside_it(native: bool) -> None:
    from pyshark_tools import analyze

    truth = fixture_truth(REAL, REALSTACK)
    (conv,) = truth["conversations"]
    report = analyze(REALSTACK / truth["capture"], keylog=str(REALSTACK / truth["keylog"]),
                     trust_store=str(FIXTURES / "pki" / "test-root-ca.pem"), native=native)
    (row,) = report.conversations.itertuples()
    assert row.client_cert == conv["client_cert_expected"]["with_keylog"] == "presented"
    client = report.certificates[report.certificates["role"] == "client"].sort_values(
        "position")
    assert list(client["subject"]) == [c["subject"] for c in conv["client_certificates"]]
    assert list(client["issuer"]) == [c["issuer"] for c in conv["client_certificates"]]
    sent = report.events[(report.events["name"] == "CompressedCertificate")]
    assert list(sent["sender"]) == ["client"] and "compressed=zlib" in sent["detail"].iloc[0]
    assert not [w for w in report.warnings if "CompressedCertificate" in w]
