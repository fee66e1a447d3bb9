"""The server's CertificateRequest, read from the TLS bytes the probe received.

TLS 1.2 sends it in clear. In TLS 1.3 it is encrypted under the server's handshake traffic
key, which the probe knows from its own key log: the records are decrypted here (RFC 8446
section 7: HKDF-Expand-Label, per-record nonce) with ``cryptography``'s AEADs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

# SignatureScheme / (hash, signature) code points (RFC 8446 4.2.3, RFC 5246 7.4.1.4.1).
SIGNATURE_SCHEMES: dict[int, str] = {
    0x0201: "rsa_pkcs1_sha1", 0x0203: "ecdsa_sha1", 0x0202: "dsa_sha1",
    0x0401: "rsa_pkcs1_sha256", 0x0501: "rsa_pkcs1_sha384", 0x0601: "rsa_pkcs1_sha512",
    0x0403: "ecdsa_secp256r1_sha256", 0x0503: "ecdsa_secp384r1_sha384",
    0x0603: "ecdsa_secp521r1_sha512", 0x0804: "rsa_pss_rsae_sha256",
    0x0805: "rsa_pss_rsae_sha384", 0x0806: "rsa_pss_rsae_sha512", 0x0807: "ed25519",
    0x0808: "ed448", 0x0809: "rsa_pss_pss_sha256", 0x080A: "rsa_pss_pss_sha384",
    0x080B: "rsa_pss_pss_sha512", 0x0301: "rsa_sha224", 0x0303: "ecdsa_sha224",
    0x0101: "rsa_md5",
}
# ClientCertificateType (RFC 5246 7.4.4, RFC 8422 5.5).
CERTIFICATE_TYPES: dict[int, str] = {
    1: "rsa_sign", 2: "dss_sign", 3: "rsa_fixed_dh", 4: "dss_fixed_dh", 64: "ecdsa_sign",
    65: "rsa_fixed_ecdh", 66: "ecdsa_fixed_ecdh",
}

_HANDSHAKE, _APPLICATION_DATA, _CHANGE_CIPHER_SPEC = 22, 23, 20
_SERVER_HELLO, _CERTIFICATE_REQUEST, _FINISHED = 2, 13, 20
_EXT_SIGNATURE_ALGORITHMS, _EXT_CERTIFICATE_AUTHORITIES, _EXT_SIGNATURE_ALGORITHMS_CERT = (
    13, 47, 50)

# TLS 1.3 suites: (hash, key length, AEAD).
_SUITES = {
    "TLS_AES_128_GCM_SHA256": (hashes.SHA256(), 16, AESGCM),
    "TLS_AES_256_GCM_SHA384": (hashes.SHA384(), 32, AESGCM),
    "TLS_CHACHA20_POLY1305_SHA256": (hashes.SHA256(), 32, ChaCha20Poly1305),
}


@dataclass(frozen=True)
class CertificateRequest:
    """What the server asked for."""

    tls13: bool
    certificate_types: tuple[int, ...] = ()  # TLS 1.2 only
    signature_algorithms: tuple[int, ...] = ()
    signature_algorithms_cert: tuple[int, ...] = ()  # TLS 1.3, when the server sends it
    ca_names: tuple[bytes, ...] = field(default=(), repr=False)  # DER DistinguishedNames

    @property
    def ca_name_strings(self) -> list[str]:
        return [dn_string(dn) for dn in self.ca_names]


def scheme_name(code: int) -> str:
    return SIGNATURE_SCHEMES.get(code, f"0x{code:04x}")


def certificate_type_name(code: int) -> str:
    return CERTIFICATE_TYPES.get(code, f"type_{code}")


# --- DER DistinguishedName to text -------------------------------------------------------------

def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    items, i = [], 0
    while i < len(data):
        tag, length = data[i], data[i + 1]
        i += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[i:i + n], "big")
            i += n
        items.append((tag, data[i:i + length]))
        i += length
    return items


def _oid(body: bytes) -> str:
    parts, value = [], 0
    for byte in body:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = min(parts[0] // 40, 2)
    return ".".join(map(str, [first, parts[0] - 40 * first, *parts[1:]]))


def dn_string(der: bytes) -> str:
    """RFC 4514 text of a DER Name (the form tshark and Windows show, most specific first)."""
    try:
        (_tag, body), = _der_items(der)
        attributes = []
        for _, rdn in _der_items(body):
            for _, pair in _der_items(rdn):
                (_, oid), (vtag, value) = _der_items(pair)[:2]
                text = value.decode("utf-16-be" if vtag == 0x1E else "utf-8", "replace")
                attributes.append(x509.NameAttribute(x509.ObjectIdentifier(_oid(oid)), text))
        return x509.Name(attributes).rfc4514_string()
    except (ValueError, IndexError):
        return "(unreadable name) " + der.hex()



# --- TLS records ---------------------------------------------------------------------------------

def _records(stream: bytes) -> list[tuple[int, bytes, bytes]]:
    """(content type, 5-byte header, fragment) for each complete record."""
    out, i = [], 0
    while i + 5 <= len(stream):
        ctype, _, length = struct.unpack("!BHH", stream[i:i + 5])
        if i + 5 + length > len(stream):
            break
        out.append((ctype, stream[i:i + 5], stream[i + 5:i + 5 + length]))
        i += 5 + length
    return out


def _messages(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i + 4 <= len(data):
        mtype = data[i]
        length = int.from_bytes(data[i + 1:i + 4], "big")
        if i + 4 + length > len(data):
            break
        out.append((mtype, data[i + 4:i + 4 + length]))
        i += 4 + length
    return out


def _expand_label(algorithm: hashes.HashAlgorithm, secret: bytes, label: str,
                  length: int) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(algorithm, length, info).derive(secret)


def _decrypt_tls13(fragments: list[tuple[bytes, bytes]], cipher: str,
                   secret: bytes) -> bytes:
    """Handshake bytes from the server's encrypted handshake records."""
    algorithm, key_length, aead_class = _SUITES[cipher]
    key = _expand_label(algorithm, secret, "key", key_length)
    iv = _expand_label(algorithm, secret, "iv", 12)
    aead = aead_class(key)
    out = bytearray()
    for seq, (header, fragment) in enumerate(fragments):
        nonce = bytes(a ^ b for a, b in zip(iv, seq.to_bytes(12, "big"), strict=True))
        try:
            inner = aead.decrypt(nonce, fragment, header).rstrip(b"\x00")
        except Exception:  # InvalidTag: not this key (e.g. already application data)
            break
        if not inner or inner[-1] != _HANDSHAKE:
            break
        out += inner[:-1]
        if any(m == _FINISHED for m, _ in _messages(bytes(out))):
            break
    return bytes(out)


def _vector(data: bytes, i: int, size: int) -> tuple[bytes, int]:
    length = int.from_bytes(data[i:i + size], "big")
    return data[i + size:i + size + length], i + size + length


def _codes(data: bytes) -> tuple[int, ...]:
    return tuple(struct.unpack(f"!{len(data) // 2}H", data[:len(data) // 2 * 2]))


def _dn_list(data: bytes) -> tuple[bytes, ...]:
    names, i = [], 0
    while i + 2 <= len(data):
        dn, i = _vector(data, i, 2)
        names.append(dn)
    return tuple(names)


def parse_certificate_request(body: bytes, tls13: bool) -> CertificateRequest:
    if not tls13:
        types, i = _vector(body, 0, 1)
        algs, i = _vector(body, i, 2)
        cas, _ = _vector(body, i, 2)
        return CertificateRequest(False, tuple(types), _codes(algs), (), _dn_list(cas))
    _, i = _vector(body, 0, 1)  # certificate_request_context
    extensions, _ = _vector(body, i, 2)
    algs = algs_cert = b""
    cas = b""
    j = 0
    while j + 4 <= len(extensions):
        ext_type = int.from_bytes(extensions[j:j + 2], "big")
        ext, j = _vector(extensions, j + 2, 2)
        if ext_type == _EXT_SIGNATURE_ALGORITHMS:
            algs, _ = _vector(ext, 0, 2)
        elif ext_type == _EXT_SIGNATURE_ALGORITHMS_CERT:
            algs_cert, _ = _vector(ext, 0, 2)
        elif ext_type == _EXT_CERTIFICATE_AUTHORITIES:
            cas, _ = _vector(ext, 0, 2)
    return CertificateRequest(True, (), _codes(algs), _codes(algs_cert), _dn_list(cas))


def keylog_secret(keylog: bytes, label: str) -> bytes | None:
    for line in keylog.decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == label:
            return bytes.fromhex(parts[2])
    return None


def find_certificate_request(server_tls: bytes, version: str | None, cipher: str | None,
                             keylog: bytes) -> CertificateRequest | None:
    """The CertificateRequest in the bytes the server sent after TLS started, or None."""
    records = _records(server_tls)
    clear = b"".join(f for t, _, f in records if t == _HANDSHAKE)
    if version != "TLSv1.3":
        for mtype, body in _messages(clear):
            if mtype == _CERTIFICATE_REQUEST:
                return parse_certificate_request(body, tls13=False)
        return None
    secret = keylog_secret(keylog, "SERVER_HANDSHAKE_TRAFFIC_SECRET")
    if secret is None or cipher not in _SUITES:
        return None
    encrypted = [(h, f) for t, h, f in records if t == _APPLICATION_DATA]
    for mtype, body in _messages(_decrypt_tls13(encrypted, cipher, secret)):
        if mtype == _CERTIFICATE_REQUEST:
            return parse_certificate_request(body, tls13=True)
    return None
