"""The analyzer against captures of real mail software (``fixtures/realstack``).

Postfix (OpenSSL), Exim (GnuTLS), swaks, Python smtplib and an Exchange Online-like asyncio
server talked on loopback and tcpdump recorded them (``python -m fixtures.realstack``). The
ground truth beside each capture comes from the servers' own logs and configuration, never
from this analyzer. Every capture is analysed with both engines (the fast default and the
reference ``prefilter=False``), without and with its key log, and with the Lua plugin.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from fixtures.realstack import exim, postfix
from pyshark_tools import analyze
from pyshark_tools.report import Report

from .helpers import FIXTURES, fixture_scenarios, fixture_truth

REALSTACK = FIXTURES / "realstack"
NAMES = fixture_scenarios(REALSTACK)
ENGINES = {"fast": True, "reference": False}
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
pytestmark = needs_tshark


def _truth(name: str) -> dict:
    return fixture_truth(name, REALSTACK)


def _keylog(truth: dict) -> Path | None:
    return REALSTACK / truth["keylog"] if truth["keylog"] else None


@cache
def _report(name: str, with_keys: bool, engine: str) -> Report:
    truth = _truth(name)
    return analyze(
        REALSTACK / truth["capture"],
        keylog=_keylog(truth) if with_keys else None,
        ports=(25,),
        trust_store=(REALSTACK / truth["trust_store"]).resolve(),
        expect_cert_name=truth["expect_cert_name"],
        prefilter=ENGINES[engine],
        progress=False,
    )


CASES = [
    pytest.param(name, keys, engine, id=f"{name}-{'keylog' if keys else 'nokeys'}-{engine}")
    for name in NAMES
    for keys in (False, True)
    if not keys or _truth(name)["keylog"]
    for engine in ENGINES
]


def _row(report: Report, tc: dict) -> pd.Series:
    conv = report.conversations
    match = conv[(conv["client_ip"] == tc["client_ip"]) & (conv["client_port"] == tc["client_port"])
                 & (conv["server_port"] == tc["server_port"])]
    assert len(match) == 1, f"conversation from port {tc['client_port']} not reported once"
    return match.iloc[0]


def _verdict(tc: dict, with_keys: bool) -> str:
    return tc["client_cert_expected"]["with_keylog" if with_keys else "without_keylog"]


def test_every_stack_and_scenario_is_there() -> None:
    """The issue's matrix: both MTAs as server and client, swaks, the three verdicts, both
    TLS versions, PIPELINING, 550 5.7.64, the one-line-per-segment EHLO reply, key logs."""
    assert len(NAMES) >= 15
    truths = [_truth(n) for n in NAMES]
    stacks = {(t["stack"]["server"], t["stack"]["client"]) for t in truths}
    assert {("postfix", "swaks"), ("exim", "swaks"), ("exim", "postfix"), ("postfix", "exim"),
            ("pyexo", "smtplib")} <= stacks
    convs = [t["conversations"][0] for t in truths]
    assert {"certificate", "empty", "nothing_requested", "no_tls"} <= {c["client_sent"]
                                                                       for c in convs}
    assert {"TLS 1.2", "TLS 1.3"} <= {c["tls_version"] for c in convs}
    assert any(" 5.7.64 " in r["text"] for c in convs for r in c["smtp_replies"])
    assert any(t["keylog"] for t in truths) and any(not t["keylog"] for t in truths)
    for t in truths:
        assert t["keylog"] or t["keylog_note"], f"{t['scenario']}: no key log and no reason"


@pytest.mark.parametrize(("name", "with_keys", "engine"), CASES)
def test_conversation_matches_the_server_log(name: str, with_keys: bool, engine: str) -> None:
    truth = _truth(name)
    report = _report(name, with_keys, engine)
    assert len(report.conversations) == len(truth["conversations"])
    for tc in truth["conversations"]:
        row = _row(report, tc)
        expected = _verdict(tc, with_keys)
        assert row["client_cert"] == expected, row["verdict_reason"]
        assert row["server_ip"] == tc["server_ip"]
        assert bool(row["exchange_online"]) == tc["exchange_online"]
        assert row["ehlo"] == tc["ehlo"]
        if tc["banner"]:
            assert row["banner"] == tc["banner"]
        else:
            assert str(row["banner"]).startswith(tc["banner_prefix"])
        assert bool(row["starttls_offered"]) == tc["starttls_offered"]
        assert bool(row["starttls_requested"]) == tc["starttls_requested"]
        if tc["starttls_requested"]:
            assert bool(row["starttls_accepted"]) == tc["starttls_accepted"]
        if tc["tls_version"]:
            assert row["tls_version"] == tc["tls_version"]
            assert row["cipher"] == tc["cipher"]
        if expected in ("presented", "empty", "not_requested"):
            assert bool(row["cert_requested"]) == tc["cert_requested"]


@pytest.mark.parametrize(("name", "with_keys", "engine"), CASES)
def test_certificates_are_those_the_stacks_sent(name: str, with_keys: bool, engine: str) -> None:
    truth = _truth(name)
    report = _report(name, with_keys, engine)
    certs = report.certificates
    for tc in truth["conversations"]:
        row = _row(report, tc)
        mine = certs[certs["stream"] == row["stream"]]
        client = mine[mine["role"] == "client"].sort_values("position")
        if row["client_cert"] == "presented":
            assert list(client["sha256"]) == [c["sha256"] for c in tc["client_certificates"]]
        else:
            assert client.empty
        if row["client_cert"] in ("presented", "empty", "not_requested"):
            server = mine[mine["role"] == "server"].sort_values("position")
            assert list(server["sha256"]) == [c["sha256"] for c in tc["server_certificates"]]


def _required(tc: dict, verdict: str, with_keys: bool) -> set[str]:
    """The findings the facts call for in this mode (without keys TLS 1.3 hides the
    certificate rules, and a 5.7.64 reply inside TLS is unreadable)."""
    wanted = set(tc["expected_findings"])
    if verdict == "hidden_tls13":
        wanted = (wanted - {"W6", "W7", "W8", "W9", "W10", "W11"}) | {"W4"}
    else:
        wanted.discard("W4")
    if not with_keys and all(r["encrypted"] for r in tc["smtp_replies"]
                             if " 5.7.64 " in f" {r['text']} "):
        wanted.discard("X3")
    return wanted


@pytest.mark.parametrize(("name", "with_keys", "engine"), CASES)
def test_expected_findings_are_raised(name: str, with_keys: bool, engine: str) -> None:
    truth = _truth(name)
    report = _report(name, with_keys, engine)
    for tc in truth["conversations"]:
        row = _row(report, tc)
        got = set(report.findings.loc[report.findings["stream"] == row["stream"], "id"])
        missing = _required(tc, row["client_cert"], with_keys) - got
        assert not missing, f"missing {missing}; got {sorted(got)}"


@pytest.mark.parametrize(("name", "with_keys", "engine"), CASES)
def test_no_finding_contradicts_the_facts(name: str, with_keys: bool, engine: str) -> None:
    """No W1 when the server's configuration offers STARTTLS, no W2 when the server's log
    shows STARTTLS, no W6/W7/W4 unless the verdict is theirs, and no other problem at all."""
    truth = _truth(name)
    report = _report(name, with_keys, engine)
    for tc in truth["conversations"]:
        row = _row(report, tc)
        mine = report.findings[report.findings["stream"] == row["stream"]]
        got = set(mine["id"])
        verdict = _verdict(tc, with_keys)
        if tc["starttls_offered"]:
            assert "W1" not in got, "W1 'STARTTLS not offered' but the server offered it"
        if tc["starttls_requested"]:
            assert "W2" not in got, "W2 'STARTTLS not used' but the client sent STARTTLS"
        if verdict != "empty":
            assert "W6" not in got
        if verdict != "not_requested" or tc["tls_version"] != "TLS 1.2":
            assert "W7" not in got
        if verdict != "hidden_tls13":
            assert "W4" not in got
        problems = set(mine.loc[mine["severity"].isin(["error", "warning"]), "id"])
        unexpected = problems - set(tc["expected_findings"]) - {"X2"}
        assert not unexpected, f"false alarms {unexpected}"


LUA_CASES = [
    pytest.param(name, mode, id=f"{name}-{mode}")
    for name in NAMES
    for mode in ("without_keylog", "with_keylog")
    if mode == "without_keylog" or _truth(name)["keylog"]
]


@pytest.mark.personal_lua  # tshark 4.2+ runs the plugin only for a user other than root
@pytest.mark.parametrize(("name", "mode"), LUA_CASES)
def test_lua_plugin_verdict(name: str, mode: str) -> None:
    from pyshark_tools.wireshark.install import lua_verdicts

    truth = _truth(name)
    keylog = _keylog(truth) if mode == "with_keylog" else None
    got = lua_verdicts(REALSTACK / truth["capture"], keylog)
    assert sorted(got.values()) == sorted(c["client_cert_expected"][mode]
                                          for c in truth["conversations"])


# --- the captures themselves (real tshark, not the analyzer) --------------------------------

def _tshark(capture: Path, fields: list[str], *extra: str) -> list[list[str]]:
    argv = ["tshark", "-r", str(capture), "-o", "tcp.check_checksum:TRUE",
            "-o", "ip.check_checksum:TRUE", *extra,
            "-T", "fields", *[a for f in fields for a in ("-e", f)], "-E", "separator=\t"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.parametrize("name", NAMES)
def test_capture_is_resegmented_with_good_checksums(name: str) -> None:
    truth = _truth(name)
    rows = _tshark(REALSTACK / truth["capture"], ["tcp.len", "tcp.checksum.status",
                                                  "ip.checksum.status", "tcp.options.mss_val"])
    assert len(rows) == truth["packets"]
    assert all(int(r[0]) <= 1460 for r in rows)
    assert {r[1] for r in rows} == {"1"} and {r[2] for r in rows} == {"1"}
    assert {r[3] for r in rows if r[3]} == {"1460"}


def test_a_certificate_spans_segments() -> None:
    """After re-segmentation the server's flight is longer than one MSS (as on a network)."""
    truth = _truth("postfix-swaks-tls12-leaf-only")
    rows = _tshark(REALSTACK / truth["capture"], ["tcp.srcport", "tcp.len"],
                   "-o", "tcp.desegment_tcp_streams:FALSE")
    assert sum(1 for port, size in rows if port == "25" and size == "1460") >= 1


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("pyexo-")])
def test_exchange_like_ehlo_reply_is_split_over_segments(name: str) -> None:
    """The issue's case: the EHLO reply arrives one line per TCP segment."""
    truth = _truth(name)
    rows = _tshark(REALSTACK / truth["capture"], ["tcp.srcport", "tcp.payload"],
                   "-o", "tcp.desegment_tcp_streams:FALSE", "-Y", "tcp.len > 0")
    lines = [bytes.fromhex(p).decode(errors="replace") for port, p in rows if port == "25"]
    ehlo = [ln for ln in lines if ln.startswith("250-") or ln.startswith("250 ")][:4]
    assert len(ehlo) == 4 and all(ln.count("\r\n") == 1 for ln in ehlo)
    assert any("STARTTLS" in ln for ln in lines)


# --- the ground truth is what the committed logs say -----------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_truth_agrees_with_the_committed_server_log(name: str) -> None:
    truth = _truth(name)
    tc = truth["conversations"][0]
    log = (REALSTACK / truth["server_log"]).read_text()
    server = truth["stack"]["server"]
    if server == "postfix":
        (session,) = postfix.smtpd_sessions(log)
        assert session["client_port"] == tc["client_port"]
        tls = session["tls"]
        assert (tls is None) == (tc["tls_version"] is None)
        if tls:
            assert tls["cipher"] == tc["cipher_as_logged"]
            assert (tls["trust"] != "Anonymous") == (tc["client_sent"] == "certificate")
    elif server == "exim":
        first = exim.received(log)[0]
        assert first["client_port"] == tc["client_port"]
        assert first["tls"]["cipher"] == tc["cipher_as_logged"]
        assert bool(first["tls"]["dn"]) == (tc["client_sent"] == "certificate")
    else:
        assert f'"client_port": {tc["client_port"]}' in log
    for line in tc["evidence"]:
        assert line in log


def test_pipelining_client_sends_several_commands_in_one_segment() -> None:
    """swaks --pipeline against Postfix in clear: MAIL, RCPT and DATA leave in one segment."""
    truth = _truth("postfix-swaks-cleartext-550")
    rows = _tshark(REALSTACK / truth["capture"], ["tcp.dstport", "tcp.payload"],
                   "-o", "tcp.desegment_tcp_streams:FALSE", "-Y", "tcp.len > 0")
    sent = [bytes.fromhex(p).decode(errors="replace") for port, p in rows if port == "25"]
    assert any("MAIL FROM:" in s and "RCPT TO:" in s and "DATA" in s for s in sent)
    assert "PIPELINING" in "".join(bytes.fromhex(p).decode(errors="replace")
                                   for port, p in rows if port != "25")


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith(("postfix-", "exim-"))])
def test_mta_servers_write_each_reply_in_one_segment(name: str) -> None:
    """Postfix and Exim send their whole EHLO reply in one segment: only pyexo splits it."""
    truth = _truth(name)
    rows = _tshark(REALSTACK / truth["capture"], ["tcp.srcport", "tcp.payload"],
                   "-o", "tcp.desegment_tcp_streams:FALSE", "-Y", "tcp.len > 0")
    replies = [bytes.fromhex(p).decode(errors="replace") for port, p in rows if port == "25"]
    ehlo = next(r for r in replies if r.startswith("250-"))
    assert "250-STARTTLS" in ehlo and "\r\n250 " in ehlo


# --- the generator's pure parts ----------------------------------------------------------------

def test_resegment_cuts_a_loopback_super_segment() -> None:
    import struct

    from fixtures.realstack import capture

    payload = bytes(range(256)) * 16  # 4096 bytes, as one loopback segment
    tcp = bytearray(struct.pack("!HHIIBBHHH", 44000, 25, 1000, 7, 5 << 4, 0x18, 512, 0, 0))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 20 + len(payload), 9, 0x4000, 64,
                               6, 0, bytes([127, 0, 10, 1]), bytes([127, 0, 10, 25])))
    frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + bytes(tcp) + payload
    out = capture.resegment([(1_000_000, frame)])
    assert [len(p.data) - 54 for p in out] == [1460, 1460, 1176]
    seqs = [struct.unpack_from("!I", p.data, 38)[0] for p in out]
    assert seqs == [1000, 2460, 3920]
    assert [p.data[47] & capture.PSH for p in out] == [0, 0, capture.PSH]
    assert b"".join(p.data[54:] for p in out) == payload
    for p in out:
        ip_hdr, seg = p.data[14:34], p.data[34:]
        assert capture.checksum(ip_hdr) == 0
        pseudo = ip_hdr[12:20] + struct.pack("!BBH", 0, 6, len(seg))
        assert capture.checksum(pseudo + seg) == 0
    assert sorted(p.ts_us for p in out) == [p.ts_us for p in out]


def test_log_names_map_to_iana() -> None:
    from fixtures.realstack import truth

    assert truth.version("TLSv1.3") == truth.version("TLS1.3") == "TLS 1.3"
    assert truth.iana_openssl("ECDHE-RSA-AES256-GCM-SHA384") == \
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    gnutls = "ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM"
    assert truth.iana_gnutls(gnutls, "TLS 1.2") == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    assert truth.iana_gnutls(gnutls, "TLS 1.3") == "TLS_AES_256_GCM_SHA384"
    with pytest.raises(truth.TruthError):
        truth.iana_openssl("RC4-MD5")
    assert truth.verdicts("TLS 1.3", "empty", True) == {"without_keylog": "hidden_tls13",
                                                        "with_keylog": "empty"}
    assert truth.verdicts("TLS 1.3", "empty", False)["with_keylog"] == "hidden_tls13"
