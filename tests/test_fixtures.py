"""The capture fixtures: regenerated ground truth matches the committed one, and plain tshark
sees in every committed capture what its ground truth says it holds."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, ROOT, fixture_path, fixture_scenarios, fixture_truth

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
SCENARIOS = fixture_scenarios()
FIELDS = (
    "frame.number", "tcp.srcport", "tcp.dstport", "tls.handshake.type",
    "tls.handshake.certificates_length", "tls.handshake.certificate", "tls.alert_message.desc",
    "smtp.response.code", "smtp.rsp.parameter",
)


# ---- (1) the generator reproduces the committed ground truth -------------------------------

@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fixtures")
    subprocess.run([sys.executable, "-m", "fixtures.build", "--out", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    return out


def test_scenario_set_is_complete() -> None:
    expected = {
        "tls12-client-cert-ok", "tls12-client-cert-empty", "tls12-no-cert-request",
        "tls12-client-cert-expired", "tls12-client-cert-self-signed",
        "tls12-client-cert-leaf-only", "tls12-client-cert-name-mismatch",
        "tls12-client-cert-sha1", "tls12-client-cert-rsa1024",
        "tls12-client-cert-no-clientauth-eku", "tls13-client-cert-ok",
        "tls13-client-cert-empty", "tls13-client-cert-empty-embedded", "tls12-resumed",
        "starttls-not-offered", "starttls-not-used", "plaintext-550", "handshake-alert",
        "legacy-tls10", "port-587", "port-2525", "implicit-tls-465", "ipv6",
        "truncated-snaplen", "cut-mid-file", "mixed-traffic", "tls12-no-shared-cipher",
        "tls12-client-cert-not-yet-valid",
    }
    assert expected <= set(SCENARIOS)


def test_regenerated_set_matches(regenerated: Path) -> None:
    assert fixture_scenarios(regenerated) == SCENARIOS
    for name in ("test-root-ca.pem", "contoso-test-root-ca.pem"):
        assert (regenerated / "pki" / name).read_bytes() == (FIXTURES / "pki" / name).read_bytes()


#: Ground-truth keys whose values come from the bytes the TLS stack wrote, not from what the
#: scenario must show: another OpenSSL build (Debian 13's 3.5 against Debian 12's 3.0) sends
#: other record and ticket sizes, so the capture has another number of packets, the server's
#: time stamp in a reply moves by a millisecond and a cut falls at another byte.
BYTE_DEPENDENT_KEYS = frozenset({"packets"})
#: ... and, per conversation, the frame number a later connection starts at
BYTE_DEPENDENT_CONVERSATION_KEYS = frozenset({"first_frame"})
_REPLY_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_CUT_BYTE = re.compile(r"cut at byte \d+")


def shown(truth: dict) -> dict:
    """What a fixture must show (verdicts, certificates, SMTP messages, alerts, findings),
    without what depends on the OpenSSL build (counts, a reply's time stamp, a byte offset)."""
    out = {k: v for k, v in truth.items() if k not in BYTE_DEPENDENT_KEYS}
    if out.get("damage_note"):
        out["damage_note"] = _CUT_BYTE.sub("cut at byte N", out["damage_note"])
    out["conversations"] = [
        {**{k: v for k, v in c.items() if k not in BYTE_DEPENDENT_CONVERSATION_KEYS},
         "smtp_replies": [{**r, "text": _REPLY_TIME.sub("TIME", r["text"])}
                          for r in c.get("smtp_replies", [])]}
        for c in truth["conversations"]]
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_regenerated_truth_matches_committed(regenerated: Path, name: str) -> None:
    # Keys are cached in fixtures/pki/keys and RSA signatures are deterministic, so every
    # verdict, certificate (fingerprints included), SMTP message and alert must be identical;
    # the packet count only with the same TLS stack. The TLS randoms (and so the .keys
    # contents and encrypted bytes) differ per run.
    new, old = fixture_truth(name, regenerated), fixture_truth(name)
    assert shown(new) == shown(old)
    assert new["packets"] > 0
    replies = [r["text"] for c in old["conversations"] for r in c.get("smtp_replies", [])]
    assert all(_REPLY_TIME.sub("TIME", t) != t or "TenantAttribution" not in t for t in replies)
    assert (regenerated / new["capture"]).exists()
    if new["keylog"]:
        assert (regenerated / new["keylog"]).stat().st_size > 0


@pytest.mark.parametrize("name", SCENARIOS)
def test_truth_shape(name: str) -> None:
    t = fixture_truth(name)
    assert t["scenario"] == name and t["capture"] in (f"{name}.pcapng", f"{name}.pcap")
    assert (FIXTURES / t["capture"]).exists()
    assert (FIXTURES / t["trust_store"]).exists()
    if t["keylog"]:
        assert (FIXTURES / t["keylog"]).exists()
    verdicts = {"presented", "empty", "not_requested", "hidden_tls13", "resumed", "no_tls",
                "handshake_failed", "not_captured"}
    for c in t["conversations"]:
        assert set(c["client_cert_expected"].values()) <= verdicts
        for cert in c["client_certificates"] + c["server_certificates"]:
            assert len(cert["sha256"]) == 64 and cert["sha1"] == cert["sha1"].upper()


# ---- (2) plain tshark agrees with the ground truth -----------------------------------------

def _tshark_version() -> tuple[int, ...]:
    from pyshark_tools.engine.tshark import find_tshark

    return tuple(find_tshark().version[:2])


@dataclass
class Frame:
    number: int
    sport: int
    dport: int
    hs_types: list[int]
    cert_lengths: list[int]
    certs: list[str]
    alerts: list[int]
    codes: list[int]
    params: list[str]


@dataclass
class Run:
    frames: list[Frame] = field(default_factory=list)
    stderr: str = ""
    returncode: int = 0

    def conv(self, port: int) -> list[Frame]:
        return [f for f in self.frames if port in (f.sport, f.dport)]


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split("|") if x != ""]


_EMPTY_CONFIG = tempfile.mkdtemp(prefix="fixtures-wireshark-config-")


@cache
def tshark(name: str, keys: bool) -> Run:
    truth = fixture_truth(name)
    args = [TSHARK or "tshark", "-n", "-r", str(fixture_path(name)),
            "-o", "tcp.desegment_tcp_streams:TRUE"]
    if truth["damaged"] != "snaplen":  # as the analyzer does (tcpgaps.tcp_preferences)
        args += ["-o", "tcp.reassemble_out_of_order:TRUE"]
    for c in truth["conversations"]:
        if c["server_port"] not in (25, 465, 587):
            args += ["-d", f"tcp.port=={c['server_port']},smtp"]
    if keys and truth["keylog"]:
        args += ["-o", f"tls.keylog_file:{FIXTURES / truth['keylog']}"]
    args += ["-T", "fields", "-E", "separator=/t", "-E", "aggregator=|", "-E", "occurrence=a"]
    for f in FIELDS:
        args += ["-e", f]
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=_EMPTY_CONFIG)  # no personal preferences
    p = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    run = Run(stderr=p.stderr, returncode=p.returncode)
    for line in p.stdout.splitlines():
        num, sp, dp, ht, cl, certs, al, codes, params = (line.split("\t") + [""] * 9)[:9]
        run.frames.append(Frame(
            int(num), int(sp or 0), int(dp or 0), _ints(ht), _ints(cl),
            [c for c in certs.split("|") if c], _ints(al), _ints(codes),
            [x for x in params.split("|") if x],
        ))
    return run


def _sha256s(frames: list[Frame], sender_port: int) -> list[str]:
    return [hashlib.sha256(bytes.fromhex(c.replace(":", ""))).hexdigest()
            for f in frames if f.sport == sender_port for c in f.certs]


def _views(truth: dict) -> list[tuple[str, bool]]:
    """(label, keys-visible) for each way of reading the capture."""
    if truth["embedded_secrets"]:
        return [("embedded", True)]
    if truth["keylog"]:
        return [("plain", False), ("keylog", True)]
    return [("plain", False)]


@needs_tshark
@pytest.mark.parametrize("name", SCENARIOS)
def test_tshark_agrees(name: str) -> None:
    truth = fixture_truth(name)
    damaged = truth["damaged"]
    for label, keys in _views(truth):
        run = tshark(name, keys and not truth["embedded_secrets"])
        if damaged == "cut":
            assert "cut short in the middle of a packet" in run.stderr
        else:
            assert run.returncode == 0, run.stderr
        assert len(run.frames) == truth["packets"], label
        starts = sorted(c["first_frame"] for c in truth["conversations"] if "first_frame" in c)
        for c in truth["conversations"]:
            frames = run.conv(c["client_port"])
            if "connection_on_4tuple" in c:  # a connection restarted on the same 4-tuple
                if c["connection_on_4tuple"] and _tshark_version() < (4, 2):
                    # tshark 4.0 numbers it as the first one's tcp.stream and dissects it as
                    # retransmissions (docs/wireshark-versions.md); test_restarts.py checks
                    # that the report reads it on its own
                    continue
                end = next((s for s in starts if s > c["first_frame"]), len(run.frames) + 1)
                frames = [f for f in frames if c["first_frame"] <= f.number < end]
            cport, sport = c["client_port"], c["server_port"]
            types = {t for f in frames for t in f.hs_types}
            codes = [x for f in frames if f.sport == sport for x in f.codes]
            # tshark reads SMTP frame by frame: a reply written one line per segment (or per
            # TLS record) is one response code per line to it
            per_line = "line-per-segment" in c.get("wire", [])
            want = [r["code"] for r in c["smtp_replies"] if (keys or not r["encrypted"])
                    and (not keys or r.get("readable_with_keylog", True))
                    for _ in range(r.get("lines", 1) if (per_line and not r["encrypted"])
                                   or r.get("one_line_per_record") else 1)]
            if damaged != "snaplen":
                assert codes == want, (label, c["client_port"])
            # the 220 banner, in clear unless implicit TLS
            if c["banner"] and (keys or not c["implicit_tls"]):
                first = next(f for f in frames if f.sport == sport and f.codes)
                assert f"{first.codes[0]} {first.params[0]}" == c["banner"]
            if c["tls_version"] is None:
                assert 2 not in types
                if c["client_sent"] == "no_tls":
                    assert not types
                continue
            assert 1 in types or damaged == "snaplen"  # ClientHello
            tls13 = c["tls_version"] == "TLS 1.3"
            sees_certs = (keys or not tls13) and damaged != "snaplen"
            if c["client_sent"] == "resumed":
                assert 11 not in types and 13 not in types
                continue
            if sees_certs:
                srv = _sha256s(frames, sport)
                assert srv == [x["sha256"] for x in c["server_certificates"]], label
                if c.get("lost_inside_handshake"):  # the client's flight is not all there
                    continue
                assert _sha256s(frames, cport) == [x["sha256"] for x in c["client_certificates"]]
                assert (13 in types) == c["cert_requested"]
                client_cert_msgs = [f for f in frames if f.sport == cport and 11 in f.hs_types]
                if c["client_sent"] == "empty":
                    assert [f.cert_lengths for f in client_cert_msgs] == [[0]]
                elif c["client_sent"] == "nothing_requested":
                    assert not client_cert_msgs
            else:
                assert _sha256s(frames, cport) != [x["sha256"] for x in c["client_certificates"]] \
                    or not c["client_certificates"]
                if tls13:
                    assert 11 not in types and 13 not in types
            alerts = [(f.sport, a) for f in frames for a in f.alerts if a != 0]
            if c["tls_alert"]:
                sender = sport if c["tls_alert"]["sender"] == "server" else cport
                assert (sender, c["tls_alert"]["description"]) in alerts
            else:
                assert alerts == []


@needs_tshark
def test_seed_case_550_needs_the_keylog() -> None:
    name = "tls12-client-cert-empty"
    plain, dec = tshark(name, False), tshark(name, True)
    assert 550 not in [x for f in plain.frames for x in f.codes]
    rejected = [p for f in dec.frames if 550 in f.codes for p in f.params]
    assert rejected and rejected[0].startswith("5.7.64 TenantAttribution; Relay Access Denied")
    empty = [f for f in plain.frames if f.sport == 49152 and 11 in f.hs_types]
    assert [f.cert_lengths for f in empty] == [[0]]


@needs_tshark
def test_tls13_certificates_need_keys() -> None:
    ok = fixture_truth("tls13-client-cert-ok")["conversations"][0]
    want = [x["sha256"] for x in ok["client_certificates"]]
    assert _sha256s(tshark("tls13-client-cert-ok", False).frames, 49152) == []
    assert _sha256s(tshark("tls13-client-cert-ok", True).frames, 49152) == want
    # the embedded-secrets capture decrypts with no key file at all
    emb = tshark("tls13-client-cert-empty-embedded", False)
    client = [f for f in emb.frames if f.sport == 49152 and 11 in f.hs_types]
    assert [f.cert_lengths for f in client] == [[0]]
    assert 550 in [x for f in emb.frames for x in f.codes]
    plain = tshark("tls13-client-cert-empty", False)
    assert not [f for f in plain.frames if 11 in f.hs_types]


@needs_tshark
def test_handshake_alert_and_cut() -> None:
    alert = tshark("handshake-alert", False)
    assert (25, 48) in [(f.sport, a) for f in alert.frames for a in f.alerts]
    cut = tshark("cut-mid-file", False)
    assert cut.returncode != 0 and "cut short" in cut.stderr
    assert [f.number for f in cut.frames] == list(range(1, 14))
    mixed = fixture_truth("mixed-traffic")
    assert 1500 <= mixed["packets"] <= 2500


def test_fixture_set_is_small() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file()
                and "__pycache__" not in p.parts)
    assert total < 3_000_000


def test_json_is_plain() -> None:
    for name in SCENARIOS:
        json.dumps(fixture_truth(name))
