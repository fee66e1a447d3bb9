"""Conformance: the analyzer against what Zeek and Arkime expect from the same captures.

For every Zeek ``ssl.log`` baseline in the peer corpus (../shared/corpus, see its README),
each logged connection is looked up by its 5-tuple in our report and compared: TLS version,
cipher, SNI, the server chain and the client chain (SHA-256 fingerprints, leaf first), and
the client-certificate verdict implied by Zeek's ``ssl_history`` and chain columns. Arkime's
SMTP sessions are compared for EHLO and certificate SHA-1 hashes. Nothing is copied here.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from pyshark_tools import analyze
from pyshark_tools.report import Report

from .corpus import CORPUS, baseline_traces, zeek_rows

if not CORPUS.is_dir():
    pytest.skip(f"peer corpus not found at {CORPUS}", allow_module_level=True)

ZEEK_VERSIONS = {"SSLv3": "SSL 3.0", "TLSv10": "TLS 1.0", "TLSv11": "TLS 1.1",
                 "TLSv12": "TLS 1.2", "TLSv13": "TLS 1.3"}


BASELINES = {name: traces for name, traces in baseline_traces().items()
             if (CORPUS / "zeek" / "Baseline" / name / "ssl.log").is_file()}


@cache
def _report(trace: Path) -> Report:
    keylog = trace.with_suffix(".derived.keylog")
    return analyze(trace, all_tls=True, keylog=keylog if keylog.is_file() else None)


def _find(reports: list[Report], row: dict[str, str]) -> pd.Series | None:
    for report in reports:
        conv = report.conversations
        hit = conv[(conv["client_ip"] == row["id.orig_h"])
                   & (conv["client_port"] == int(row["id.orig_p"]))
                   & (conv["server_ip"] == row["id.resp_h"])
                   & (conv["server_port"] == int(row["id.resp_p"]))]
        if len(hit):
            return hit.iloc[0]
    return None


def _chain(report_certs: pd.DataFrame, stream: int, frame: object, role: str) -> list[str]:
    if frame is None or pd.isna(frame):
        return []
    rows = report_certs[(report_certs["stream"] == stream) & (report_certs["frame"] == frame)
                        & (report_certs["role"] == role)]
    return list(rows.sort_values("position")["sha256"])


def _fps(value: str) -> list[str] | None:
    if value in ("-", ""):
        return None
    return [] if value == "(empty)" else value.split(",")


@pytest.mark.parametrize("baseline", sorted(BASELINES))
def test_zeek_ssl_log(baseline: str) -> None:
    traces = BASELINES[baseline]
    reports = [_report(t) for t in traces]
    rows = zeek_rows(CORPUS / "zeek" / "Baseline" / baseline / "ssl.log")
    matched = 0
    for row in rows:
        conv = _find(reports, row)
        if conv is None:
            continue  # a trace of this baseline that is not in the corpus, or not TLS to tshark
        matched += 1
        report = next(r for r in reports if conv["stream"] in set(r.conversations["stream"])
                      and (r.conversations["client_port"] == conv["client_port"]).any())
        where = f"{row['id.orig_h']}:{row['id.orig_p']} -> {row['id.resp_h']}:{row['id.resp_p']}"
        if row["version"] in ZEEK_VERSIONS and row.get("established") == "T":
            assert conv["tls_version"] == ZEEK_VERSIONS[row["version"]], where
        if row["cipher"] not in ("-", "") and not str(conv["cipher"]).startswith("0x"):
            assert conv["cipher"] == row["cipher"], where
        if row["server_name"] not in ("-", ""):
            assert conv["sni"] == row["server_name"], where
        history = row.get("ssl_history", "")
        server_fps, client_fps = _fps(row["cert_chain_fps"]), _fps(row["client_cert_chain_fps"])
        certs = report.certificates
        if server_fps is not None and conv["client_cert"] != "hidden_tls13":
            assert _chain(certs, conv["stream"], conv["frame_server_certificate"], "server") \
                == server_fps, where
        if row["version"] == "TLSv13":
            assert conv["client_cert"] in ("hidden_tls13", "resumed", "handshake_failed"), where
        elif client_fps:
            assert conv["client_cert"] == "presented", where
            assert _chain(certs, conv["stream"], conv["frame_client_certificate"], "client") \
                == client_fps, where
        elif client_fps == [] and "X" in history:
            assert conv["client_cert"] == "empty", where
        elif client_fps == [] and "R" not in history and "N" in history:
            assert conv["client_cert"] == "not_requested", where
        if row.get("resumed") == "T":
            assert conv["client_cert"] == "resumed", where
    assert matched, f"no connection of {baseline} found in our report"


ARKIME_SMTP = [p for p in sorted((CORPUS / "arkime").glob("smtp-*.test"))
               if p.with_suffix(".pcap").is_file()]


@pytest.mark.parametrize("test_file", ARKIME_SMTP, ids=lambda p: p.stem)
def test_arkime_smtp_sessions(test_file: Path) -> None:
    sessions = [s["body"] for s in json.loads(test_file.read_text())["sessions3"]]
    report = analyze(test_file.with_suffix(".pcap"))
    for body in sessions:
        src, dst = body.get("source", {}), body.get("destination", {})
        if dst.get("port") not in (25, 587):
            continue
        hit = report.conversations[(report.conversations["client_port"] == src.get("port"))
                                   & (report.conversations["server_port"] == dst.get("port"))]
        assert len(hit) == 1, (src, dst)
        conv = hit.iloc[0]
        hello = (body.get("email") or {}).get("smtpHello")
        if hello:
            assert conv["ehlo"].lower() in [h.lower() for h in hello]
        hashes = {c["hash"].replace(":", "").upper() for c in body.get("cert", [])}
        mine = set(report.certificates.loc[report.certificates["stream"] == conv["stream"],
                                           "sha1"])
        assert hashes <= mine
        if hashes:
            assert conv["tls_version"] is not None


def test_malformed_certificate_row_reports_the_error_and_the_rest_goes_on() -> None:
    """A real-world certificate that strict DER parsing refuses (an encoded default)."""
    trace = CORPUS / "zeek" / "Traces" / "tls" / "missing-intermediate.pcap"
    if not trace.is_file():
        pytest.skip("missing-intermediate.pcap is not in this corpus")
    report = _report(trace)
    certs = report.certificates
    broken = certs[certs["parse_error"].notna()]
    assert len(broken) >= 1
    assert broken["subject"].isna().all()
    assert broken["sha256"].str.len().eq(64).all()  # still matchable by fingerprint
    fine = certs[certs["parse_error"].isna()]
    assert len(fine) >= 3 and fine["subject"].notna().all()
    assert len(report.conversations) == 3


def test_legacy_tls_offer_is_flagged_as_w3() -> None:
    """Arkime's SMTP STARTTLS to Google (2014): the client offers TLS 1.0 only."""
    trace = CORPUS / "arkime" / "smtp-starttls.pcap"
    if not trace.is_file():
        pytest.skip("arkime/smtp-starttls.pcap is not in this corpus")
    report = analyze(trace)
    conv = report.conversations.iloc[0]
    assert conv["tls_offered"] == ["TLS 1.0"]
    assert conv["tls_version"] == "TLS 1.0"
    w3 = report.findings[report.findings["id"] == "W3"].iloc[0]
    assert w3["severity"] == "warning"  # not Exchange Online, and the handshake went through
    assert "would fail" in w3["explanation"]
