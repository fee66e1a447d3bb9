"""Every parser is total: damaged certificates and rows give a row that says what could not
be read, never an exception."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pyshark_tools.core.certificates import certificate_rows, load_trust_store, validate_chain

from .helpers import FIXTURES

STORE_PEM = FIXTURES / "pki" / "test-root-ca.pem"


def _damaged(field: str) -> bytes:
    """A real certificate with one byte of a name's string value made invalid, lengths kept."""
    cert = x509.load_pem_x509_certificates(STORE_PEM.read_bytes())[0]
    der = bytearray(cert.public_bytes(Encoding.DER))
    name = getattr(cert, field).public_bytes()
    # tbsCertificate holds the issuer before the subject; a root has both equal
    at = der.find(name)
    if field == "subject":
        at = der.find(name, at + 1)
    der[at + len(name) - 2] = 0xFF  # not a PrintableString/UTF8String character
    return bytes(der)


@pytest.mark.parametrize("field", ["issuer", "subject"])
def test_a_damaged_name_gives_an_invalid_chain_not_an_exception(field: str) -> None:
    store = load_trust_store(STORE_PEM)
    result = validate_chain([_damaged(field)], at=datetime(2026, 3, 2, tzinfo=UTC), store=store)
    assert result.status == "invalid"
    assert f"{field} field is not valid DER" in result.detail


@pytest.mark.parametrize("field", ["issuer", "subject"])
def test_a_damaged_name_still_gets_its_row(field: str) -> None:
    der = _damaged(field)
    (row,) = certificate_rows([der], stream=0, frame=1, role="client",
                              capture_time=datetime(2026, 3, 2, tzinfo=UTC), trust=None)
    assert field in row["parse_error"] and row["subject"] is None
    assert row["sha1"] and row["sha256"]  # the thumbprint needs no parsing
