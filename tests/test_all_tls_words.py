"""--all-tls: words and fixes fit the protocol seen (no SMTP talk about HTTPS), and a server's
fatal alert after its ServerHello is in a finding.

Ground truth: the fixture generator's JSON (which conversations are HTTPS) and, for the
refused handshake, Zeek's ssl.log of the same trace in the peer corpus.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from pyshark_tools import analyze

from .corpus import CORPUS, zeek_rows
from .helpers import TRUST, fixture_path, fixture_truth

SMTP_WORDS = re.compile(r"EHLO|Exchange|Set-SendConnector|SMTP|sending server|connector|"
                        r"Postfix|Exim|mail", re.I)
REFUSED = CORPUS / "zeek" / "Traces" / "tls" / "certificate-request-failed.pcap"
REFUSED_LOG = (CORPUS / "zeek" / "Baseline" / "scripts.policy.protocols.ssl."
               "certificate-request-info" / "ssl.log")


def test_findings_about_https_speak_of_tls_not_smtp():
    report = analyze(fixture_path("mixed-traffic"), trust_store=TRUST, all_tls=True)
    https_ports = {c["server_port"] for c in fixture_truth("mixed-traffic")["conversations"]
                   if c["server_port"] == 443}
    conv = report.conversations
    other = conv[conv["server_port"].isin(https_ports | {443})]
    assert len(other) > 10 and set(other["protocol"]) == {"https"}
    findings = report.findings[report.findings["stream"].isin(set(other["stream"]))]
    assert set(findings["id"]) >= {"W4", "W7"}
    for _, f in findings.iterrows():
        for text in (f["title"], f["explanation"], f["fix"]):
            assert not SMTP_WORDS.search(text), (f["id"], text)


def test_text_report_names_the_protocol_and_what_was_read():
    done = subprocess.run([sys.executable, "-m", "pyshark_tools.cli",
                           fixture_path("mixed-traffic"), "--all-tls", "--details",
                           "--trust-store", TRUST],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={k: v for k, v in os.environ.items() if k != "COLUMNS"})
    assert done.returncode == 1, done.stderr
    assert "TLS on any port (--all-tls)" in done.stdout.splitlines()[1]
    blocks = re.split(r"^Stream \d+: ", done.stdout, flags=re.M)[1:]
    https = [b for b in blocks if b.split("\n", 1)[0].split(" -> ")[1].endswith(":443")]
    assert https
    for block in https:
        assert "EHLO" not in block and "HTTPS, server name (SNI) " in block


@pytest.mark.skipif(not REFUSED.is_file(), reason=f"peer corpus not found at {CORPUS}")
def test_server_refusing_the_empty_certificate_is_in_the_finding():
    zeek = zeek_rows(REFUSED_LOG)
    assert [r["last_alert"] for r in zeek] == ["handshake_failure"]
    assert [r["established"] for r in zeek] == ["F"]
    report = analyze(REFUSED, all_tls=True)
    conv = report.conversations.iloc[0]
    assert str(conv["client_cert"]) == "empty"
    assert str(conv["protocol"]) != "smtp"
    (w6,) = [f for _, f in report.findings.iterrows() if f["id"] == "W6"]
    assert str(w6["severity"]) == "error"  # the connection failed
    assert "fatal alert handshake_failure" in w6["explanation"]
    assert int(conv["frame_alert"]) in w6["evidence_frames"]
    assert not SMTP_WORDS.search(w6["explanation"] + w6["fix"])
    doc = json.loads(report_json(report))
    assert doc["findings"][0]["id"] == "W6"


def report_json(report) -> str:
    from pyshark_tools.render.data import to_json

    return to_json(report)
