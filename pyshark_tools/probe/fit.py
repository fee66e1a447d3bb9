"""Does the chain the probe offered fit what the server's CertificateRequest asked for?

Three questions, each answered with a plain sentence: is one of the chain's issuers among the
CA names the server listed, can the leaf's key sign with one of the server's signature
algorithms (and are the chain's own signatures among those it accepts), and (TLS 1.2) is the
leaf's key type among the certificate types it asked for. OpenSSL sends the configured chain
even when it does not fit, so a mismatch here explains a rejection the server decides later.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .handshake import CertificateRequest, certificate_type_name, dn_string, scheme_name


class FitAspect(StrEnum):
    CA_NAMES = "ca_names"
    SIGNATURE_ALGORITHMS = "signature_algorithms"
    CERTIFICATE_TYPES = "certificate_types"


@dataclass(frozen=True)
class FitCheck:
    aspect: FitAspect
    fits: bool
    detail: str


_RSA_PKCS1 = {0x0201, 0x0401, 0x0501, 0x0601}
_RSA_PSS_RSAE = {0x0804, 0x0805, 0x0806}
_EC_BY_CURVE = {"secp256r1": 0x0403, "secp384r1": 0x0503, "secp521r1": 0x0603}
_EC_TLS12 = {0x0203, 0x0403, 0x0503, 0x0603}

# Certificate signature algorithm OIDs -> the SignatureScheme that names them.
_CERT_SIGNATURES = {
    "1.2.840.113549.1.1.5": 0x0201, "1.2.840.113549.1.1.11": 0x0401,
    "1.2.840.113549.1.1.12": 0x0501, "1.2.840.113549.1.1.13": 0x0601,
    "1.2.840.10045.4.1": 0x0203, "1.2.840.10045.4.3.2": 0x0403,
    "1.2.840.10045.4.3.3": 0x0503, "1.2.840.10045.4.3.4": 0x0603,
    "1.3.101.112": 0x0807, "1.3.101.113": 0x0808,
}


def _key_schemes(key: object, tls13: bool) -> set[int]:
    """The signature schemes a key of this type can sign a CertificateVerify with."""
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_PSS_RSAE if tls13 else _RSA_PKCS1 | _RSA_PSS_RSAE
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {_EC_BY_CURVE[key.curve.name]} if tls13 and key.curve.name in _EC_BY_CURVE \
            else _EC_TLS12
    if isinstance(key, ed25519.Ed25519PublicKey):
        return {0x0807}
    if isinstance(key, ed448.Ed448PublicKey):
        return {0x0808}
    return set()


def _key_types(key: object) -> set[int]:
    if isinstance(key, rsa.RSAPublicKey):
        return {1}
    if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey |
                  ed448.Ed448PublicKey):
        return {64}
    return set()


def _key_label(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__.removesuffix("PublicKey")


def _ca_names(request: CertificateRequest, chain: tuple[x509.Certificate, ...]) -> FitCheck:
    if not request.ca_names:
        return FitCheck(FitAspect.CA_NAMES, True,
                        "the server named no certificate authorities: any issuer may do")
    listed = set(request.ca_names)
    for cert in chain:
        for name in (cert.issuer, cert.subject):
            if name.public_bytes() in listed:
                return FitCheck(FitAspect.CA_NAMES, True,
                                f"{dn_string(name.public_bytes())} is among the "
                                f"{len(listed)} CA name(s) the server accepts")
    issuers = "; ".join(dict.fromkeys(c.issuer.rfc4514_string() for c in chain))
    return FitCheck(FitAspect.CA_NAMES, False,
                    f"none of the offered chain's issuers ({issuers}) is among the "
                    f"{len(listed)} CA name(s) the server accepts: send the intermediate(s) "
                    "up to a listed CA, or a certificate from one of them")


def _signatures(request: CertificateRequest, chain: tuple[x509.Certificate, ...]) -> FitCheck:
    offered = set(request.signature_algorithms)
    leaf_key = chain[0].public_key()
    usable = _key_schemes(leaf_key, request.tls13) & offered
    if not usable:
        wanted = ", ".join(scheme_name(c) for c in request.signature_algorithms) or "none"
        return FitCheck(FitAspect.SIGNATURE_ALGORITHMS, False,
                        f"the leaf's {_key_label(leaf_key)} key cannot sign with any algorithm "
                        f"the server accepts ({wanted})")
    for_certs = set(request.signature_algorithms_cert or request.signature_algorithms)
    for cert in chain:
        code = _CERT_SIGNATURES.get(cert.signature_algorithm_oid.dotted_string)
        if code is not None and code not in for_certs:
            return FitCheck(FitAspect.SIGNATURE_ALGORITHMS, False,
                            f"{cert.subject.rfc4514_string()} is signed with "
                            f"{scheme_name(code)}, which the server does not list")
    names = ", ".join(scheme_name(c) for c in sorted(usable))
    return FitCheck(FitAspect.SIGNATURE_ALGORITHMS, True,
                    f"the leaf's {_key_label(leaf_key)} key can sign with {names}")


def _types(request: CertificateRequest, chain: tuple[x509.Certificate, ...]) -> FitCheck:
    key = chain[0].public_key()
    wanted = ", ".join(certificate_type_name(t) for t in request.certificate_types)
    fits = bool(_key_types(key) & set(request.certificate_types))
    verb = "is" if fits else "is not"
    return FitCheck(FitAspect.CERTIFICATE_TYPES, fits,
                    f"the leaf's {_key_label(key)} key {verb} among the types asked for "
                    f"({wanted or 'none'})")


def assess_fit(request: CertificateRequest,
               chain: tuple[x509.Certificate, ...]) -> list[FitCheck]:
    """One check per aspect the request constrains (empty when nothing was offered)."""
    if not chain:
        return []
    checks = [_ca_names(request, chain), _signatures(request, chain)]
    if not request.tls13:
        checks.append(_types(request, chain))
    return checks
