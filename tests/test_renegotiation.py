"""A TLS 1.2 renegotiation inside SMTP, recorded from real OpenSSL on both ends.

``fixtures/renegotiation`` (``python -m fixtures.realstack.renegotiation``): the server's first
handshake asks for no certificate, then it renegotiates inside TLS asking for one; s_client
presents its chain (or an empty Certificate) in that encrypted second handshake. The ground
truth comes from the server's log and s_client's own ``-msg`` trace. Without the key log the
report must say "cannot see", never "not requested"; with it, the second handshake's
Certificate decides.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cache

import pytest

from fixtures.realstack.renegotiation import client_handshakes
from pyshark_tools import analyze
from pyshark_tools.core.invariants import violations
from pyshark_tools.report import Report

from .helpers import FIXTURES, ROOT, fixture_scenarios, fixture_truth

FOLDER = FIXTURES / "renegotiation"
NAMES = fixture_scenarios(FOLDER)
ENGINES = {"fast": True, "reference": False}
pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
CASES = [pytest.param(n, k, e, id=f"{n}-{'keylog' if k else 'nokeys'}-{e}")
         for n in NAMES for k in (False, True) for e in ENGINES]


def _truth(name: str) -> dict:
    return fixture_truth(name, FOLDER)


@cache
def _report(name: str, with_keys: bool, engine: str) -> Report:
    truth = _truth(name)
    return analyze(FOLDER / truth["capture"],
                   keylog=FOLDER / truth["keylog"] if with_keys else None,
                   trust_store=(FOLDER / truth["trust_store"]).resolve(),
                   expect_cert_name=truth["expect_cert_name"], prefilter=ENGINES[engine],
                   progress=False)


def test_both_outcomes_of_the_second_handshake_are_recorded() -> None:
    assert NAMES == ["pyopenssl-sclient-tls12-renegotiation-empty",
                     "pyopenssl-sclient-tls12-renegotiation-presented"]
    sent = {_truth(n)["conversations"][0]["client_sent"] for n in NAMES}
    assert sent == {"certificate", "empty"}


@pytest.mark.parametrize("name", NAMES)
def test_truth_is_what_both_ends_logged(name: str) -> None:
    """Two handshakes in the server's log and in s_client's trace; only the second asked."""
    truth = _truth(name)
    tc = truth["conversations"][0]
    log = [json.loads(line) for line in (FOLDER / truth["server_log"]).read_text().splitlines()]
    shakes = [e for e in log if e["event"] == "handshake"]
    assert [h["cert_requested"] for h in shakes] == [False, True]
    assert shakes[1]["client_chain_sha256"] == [c["sha256"] for c in tc["client_certificates"]]
    trace = client_handshakes((FOLDER / truth["client_log"]).read_text())
    assert [[m["type"] for m in h["messages"] if m["type"] == "CertificateRequest"]
            for h in trace] == [[], ["CertificateRequest"]]
    client_cert = [m for m in trace[1]["messages"]
                   if m["from"] == "client" and m["type"] == "Certificate"]
    # an empty Certificate message is 3 bytes of (zero) list length after its 4-byte header
    assert (client_cert[0]["length"] > 7) == (tc["client_sent"] == "certificate")
    assert [h["messages"] for h in tc["handshakes"]] == [h["messages"] for h in trace]
    keys = (FOLDER / truth["keylog"]).read_text().split()
    assert keys.count("CLIENT_RANDOM") == 2  # one secret per handshake


@pytest.mark.parametrize("name", NAMES)
def test_the_capture_holds_an_encrypted_second_handshake(name: str) -> None:
    """Real tshark, no key log: two ChangeCipherSpec records from each side, one
    CertificateRequest-free clear handshake, and nothing of the second one readable."""
    capture = FOLDER / _truth(name)["capture"]
    out = subprocess.run(["tshark", "-r", str(capture), "-Y", "tls", "-T", "fields",
                          "-e", "tcp.srcport", "-e", "tls.record.content_type",
                          "-e", "tls.handshake.type"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    ccs = [port for port, types, _ in rows if "20" in types.split(",")]
    assert ccs.count("25") == 2 and len(ccs) == 4
    handshake_types = {t for _, _, hs in rows for t in hs.split(",") if t}
    assert "13" not in handshake_types  # CertificateRequest: only inside the encrypted part
    assert "0" not in handshake_types  # HelloRequest: encrypted too


@pytest.mark.parametrize(("name", "with_keys", "engine"), CASES)
def test_verdict_matches_what_the_second_handshake_carried(name: str, with_keys: bool,
                                                           engine: str) -> None:
    tc = _truth(name)["conversations"][0]
    report = _report(name, with_keys, engine)
    (row,) = report.conversations.to_dict("records")
    mode = "with_keylog" if with_keys else "without_keylog"
    assert row["client_cert"] == tc["client_cert_expected"][mode], row["verdict_reason"]
    assert row["client_port"] == tc["client_port"]
    assert row["tls_version"] == tc["tls_version"] and row["cipher"] == tc["cipher"]
    assert row["ehlo"] == tc["ehlo"] and row["banner"] == tc["banner"]
    assert "renegotiated inside TLS" in row["verdict_reason"]
    ids = set(report.findings["id"])
    assert "W7" not in ids  # "the server never asked" is false: it asked, in the renegotiation
    assert not violations(report.conversations.to_dict("records"),
                          report.findings.to_dict("records"))
    final = [r["text"][:3] for r in tc["smtp_replies"] if r["text"][3:4] != "-"]
    if with_keys:
        assert bool(row["cert_requested"]) is True
        # the replies after the second handshake too: its secret is in the (short) key log
        assert [str(c) for c in row["reply_codes"]][-3:] == final[-3:]
        assert row["last_reply"] == tc["smtp_replies"][-1]["text"]
        assert ids == set(tc["expected_findings"])
        assert "X8" not in ids
    else:
        assert pd_isna(row["cert_requested"])  # unknown, not False
        assert [str(c) for c in row["reply_codes"]] == final[:3]  # the clear-text part
        assert ids == {"X8"}
        finding = report.findings.iloc[0]
        assert finding["severity"] == "info" and "cannot see" in finding["explanation"]


def pd_isna(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


@pytest.mark.parametrize(("name", "engine"), [(n, e) for n in NAMES for e in ENGINES])
def test_with_keys_the_certificates_are_those_of_the_second_handshake(name: str,
                                                                      engine: str) -> None:
    tc = _truth(name)["conversations"][0]
    report = _report(name, True, engine)
    certs = report.certificates
    (row,) = report.conversations.to_dict("records")
    client = certs[certs["role"] == "client"].sort_values("position")
    assert list(client["sha256"]) == [c["sha256"] for c in tc["client_certificates"]]
    if tc["client_certificates"]:
        assert set(client["frame"]) == {row["frame_client_certificate"]}
        assert row["client_leaf_subject"] == tc["client_certificates"][0]["subject"]
        assert row["client_chain_trust"] == "trusted"
    # the server sent its chain in both handshakes: twice, the second time decrypted
    server = certs[certs["role"] == "server"]
    assert server["frame"].nunique() == 2
    first = server[server["frame"] == row["frame_server_certificate"]].sort_values("position")
    assert list(first["sha256"]) == [c["sha256"] for c in tc["server_certificates"]]


@pytest.mark.parametrize("name", NAMES)
def test_without_keys_no_certificate_is_claimed_absent(name: str) -> None:
    """The CLI, end to end: the text report says "cannot see", never that nothing was sent."""
    truth = _truth(name)
    done = subprocess.run(
        [sys.executable, "-m", "pyshark_tools.cli", str(FOLDER / truth["capture"]),
         "--trust-store", str((FOLDER / truth["trust_store"]).resolve())],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr  # an info finding only
    assert "cannot see (renegotiated inside TLS)" in done.stdout
    assert "X8" in done.stdout
    for absent in ("not requested by server", "EMPTY", "no certificate sent", "W7", "W6"):
        assert absent not in done.stdout


def test_table_in_fixtures_readme_lists_them() -> None:
    text = (FIXTURES / "README.md").read_text()
    for name in NAMES:
        assert f"renegotiation/{name}.pcapng" in text


@pytest.mark.parametrize("name", NAMES)
def test_a_short_key_log_reaches_tshark_whole(name: str) -> None:
    """The renegotiation's ClientHello is encrypted, so only one of the two secrets matches a
    clear ClientHello; the other must reach tshark all the same."""
    from pyshark_tools.engine.keylog import check_keylog, matching_keylog

    truth = _truth(name)
    with matching_keylog(check_keylog(FOLDER / truth["keylog"]),
                         FOLDER / truth["capture"]) as matched:
        assert matched is not None and matched.path is not None
        assert (matched.entries, matched.matching) == (2, 1)
        lines = [ln for ln in (FOLDER / truth["keylog"]).read_text().splitlines()
                 if ln.startswith("CLIENT_RANDOM ")]
        assert matched.path.read_text().splitlines() == lines
