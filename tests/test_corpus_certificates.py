"""parse_certificate against what Zeek and Arkime expect from the same public captures.

The peer corpus (../shared/corpus beside the repo, see its README.md) holds captures from
Zeek's and Arkime's test suites with the x509.log / .test outputs those projects expect.
Certificates are pulled out with plain tshark and every one whose fingerprint appears in
a baseline is compared field by field. Nothing is copied into this repository.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pyshark_tools.core.certificates import CertInfo, parse_certificate

from .corpus import ARKIME, CORPUS, ZEEK, baseline_traces, zeek_rows

if not CORPUS.is_dir():
    pytest.skip(f"peer corpus not found at {CORPUS}", allow_module_level=True)
TSHARK = shutil.which("tshark")
if TSHARK is None:
    pytest.skip(
        "tshark is not installed: cannot extract corpus certificates", allow_module_level=True
    )


def _zeek_traces() -> dict[str, list[Path]]:
    """capture (relative to zeek/Traces) -> x509.log files of the baselines that read it."""
    traces: dict[str, list[Path]] = {}
    for name, present in baseline_traces().items():
        logs = sorted((ZEEK / "Baseline" / name).glob("*x509.log"))
        for trace in present:
            if logs:
                traces.setdefault(str(trace.relative_to(ZEEK / "Traces")), []).extend(logs)
    return traces


ZEEK_TRACES = _zeek_traces()
ARKIME_TESTS = sorted(p.stem for p in ARKIME.glob("*.test") if p.with_suffix(".pcap").is_file())


def _extract(capture: Path) -> list[tuple[int, int, bytes]]:
    """(tcp.stream, frame, DER) for every certificate tshark decodes in the capture."""
    cmd = [
        TSHARK,
        "-n",
        "-r",
        str(capture),
        "-Y",
        "tls.handshake.certificate",
        "-T",
        "fields",
        "-e",
        "tcp.stream",
        "-e",
        "frame.number",
        "-e",
        "tls.handshake.certificate",
        "-E",
        "aggregator=|",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    found = []
    for line in out.splitlines():
        stream, frame, certs = [*line.split("\t"), "", "", ""][:3]
        for hexed in filter(None, certs.split("|")):
            found.append((int(stream or -1), int(frame), bytes.fromhex(hexed.replace(":", ""))))
    return found


def _zeek_unescape(value: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


# Zeek (OpenSSL) and cryptography spell a few attribute types differently.
_ATTR_ALIASES = {
    "1.2.840.113549.1.9.1": "emailAddress",
    "2.5.4.5": "serialNumber",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.9": "street",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "2.5.4.97": "organizationIdentifier",
}


def _dn_key(dn: str) -> str:
    """Normalise an RFC 4514 string enough to compare Zeek's with cryptography's."""
    dn = _zeek_unescape(dn)
    for oid, name in _ATTR_ALIASES.items():
        dn = dn.replace(oid + "=", name + "=")
    dn = re.sub(r"(^|,)STREET=", r"\1street=", dn)
    return dn.replace("\\", "")


def _cn_of(dn: str) -> str | None:
    match = re.match(r"(?:^|.*?,)CN=((?:[^,\\]|\\.)*)", dn)
    return match.group(1).replace("\\", "") if match else None


def _compare_zeek(info: CertInfo, row: dict[str, str]) -> list[str]:
    problems = []
    if info.serial.lstrip("0") != row["certificate.serial"].lstrip("0"):
        problems.append(f"serial {info.serial} != {row['certificate.serial']}")
    for ours, theirs, what in (
        (info.subject, row["certificate.subject"], "subject"),
        (info.issuer, row["certificate.issuer"], "issuer"),
    ):
        if _cn_of(ours) != _cn_of(_zeek_unescape(theirs)):
            problems.append(f"{what} CN {_cn_of(ours)!r} != {_cn_of(theirs)!r}")
        elif _dn_key(ours) != _dn_key(theirs):
            problems.append(f"{what} {ours!r} != {theirs!r}")
    for ours_dt, theirs_s, what in (
        (info.not_before, row["certificate.not_valid_before"], "not_before"),
        (info.not_after, row["certificate.not_valid_after"], "not_after"),
    ):
        if ours_dt != datetime.fromtimestamp(float(theirs_s), UTC):
            problems.append(f"{what} {ours_dt.isoformat()} != {theirs_s}")
    theirs_dns = (
        [] if row["san.dns"] == "-" else [_zeek_unescape(n) for n in row["san.dns"].split(",")]
    )
    if list(info.dns_names) != theirs_dns:
        problems.append(f"san.dns {info.dns_names} != {theirs_dns}")
    return problems


@pytest.mark.parametrize("trace", sorted(ZEEK_TRACES), ids=str)
def test_zeek_x509_baseline(trace: str) -> None:
    expected: dict[str, dict[str, str]] = {}
    for log in ZEEK_TRACES[trace]:
        for row in zeek_rows(log):
            expected.setdefault(row["fingerprint"], row)
    certs = _extract(ZEEK / "Traces" / trace)
    if not certs:
        pytest.skip(f"tshark decodes no TLS Certificate message in {trace}")
    compared = 0
    problems = []
    for _stream, frame, der in certs:
        info = parse_certificate(der)
        row = expected.get(info.sha256)
        if row is None:
            problems.append(f"frame {frame}: {info.sha256} ({info.subject}) not in the baseline")
            continue
        compared += 1
        problems += [f"frame {frame} {info.cn}: {p}" for p in _compare_zeek(info, row)]
    print(f"{trace}: {compared} certificates compared with Zeek")
    assert not problems, "\n".join(problems)
    assert compared > 0


@pytest.mark.parametrize("name", ARKIME_TESTS, ids=str)
def test_arkime_cert_baseline(name: str) -> None:
    body_certs = [
        cert
        for session in json.loads((ARKIME / f"{name}.test").read_text(encoding="utf-8"))[
            "sessions3"
        ]
        for cert in session["body"].get("cert", [])
    ]
    expected = {cert["hash"]: cert for cert in body_certs}
    certs = _extract(ARKIME / f"{name}.pcap")
    if not expected:
        # Arkime records no certificate here (TLS 1.3, or no handshake): nothing to compare
        # field by field, but whatever tshark extracts must still parse.
        assert certs == [] or all(parse_certificate(d) for _, _, d in certs)
        return
    compared = 0
    problems: list[str] = []
    unrecorded: list[str] = []
    seen: set[str] = set()
    for _stream, frame, der in certs:
        info = parse_certificate(der)
        seen.add(":".join(re.findall("..", info.sha1.lower())))
        colon_sha1 = ":".join(re.findall("..", info.sha1.lower()))
        cert = expected.get(colon_sha1)
        if cert is None:
            # Arkime records the server's chain only: a client certificate is not in .test.
            unrecorded.append(f"frame {frame}: {info.subject}")
            continue
        compared += 1
        got = {
            "serial": info.serial.lower().lstrip("0"),
            "notBefore": int(info.not_before.timestamp() * 1000),
            "notAfter": int(info.not_after.timestamp() * 1000),
            "subjectCN": [info.cn.lower()] if info.cn else None,
            "issuerCN": [_cn_of(info.issuer).lower()] if _cn_of(info.issuer) else None,
            "alt": list(info.dns_names) or None,
        }
        want = {
            "serial": cert["serial"].lower().lstrip("0"),
            "notBefore": cert["notBefore"],
            "notAfter": cert["notAfter"],
            "subjectCN": cert.get("subjectCN"),
            "issuerCN": cert.get("issuerCN"),
            "alt": cert.get("alt"),
        }
        problems += [
            f"frame {frame} {info.cn}: {key} {got[key]!r} != {want[key]!r}"
            for key in got
            if got[key] != want[key]
        ]
    print(f"{name}: {compared} certificates compared with Arkime; not in .test: {unrecorded}")
    assert not problems, "\n".join(problems)
    assert set(expected) <= seen, f"Arkime certificates tshark did not find: {set(expected) - seen}"
    assert compared > 0
