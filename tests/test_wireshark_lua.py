"""smtptls.lua, the Wireshark post-dissector, against the fixtures' ground truth and the
peer corpus (real tshark, nothing mocked).

The Lua decides the client-certificate verdict on its own; these tests hold it to the
fixtures' ``client_cert_expected`` (with and without the key log), check that a single
pass never contradicts two passes, compare its certificate parsing with ``cryptography``
and make sure damaged packets never raise a Lua error.

``lua_verdicts`` (pyshark_tools.wireshark.install) is the helper for the Lua-vs-Python comparison.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest

from pyshark_tools.core.schema import ClientCert
from pyshark_tools.engine.tshark import AGGREGATOR, find_tshark
from pyshark_tools.wireshark.install import (
    field_is_true,
    lua_verdicts,
    plugin_source,
    tshark_with_plugin,
    unescape_field,
)

from .helpers import FIXTURES, fixture_path, fixture_scenarios, fixture_truth

pytestmark = [
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
    pytest.mark.personal_lua,  # tshark 4.2+ runs the plugin only for a user other than root
]

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
VERDICTS = {v.value for v in ClientCert}
MODES = ("without_keylog", "with_keylog")


def _keylog(truth: dict, mode: str) -> Path | None:
    if mode == "with_keylog" and truth.get("keylog"):
        return FIXTURES / truth["keylog"]
    return None  # embedded secrets (pcapng DSB) are used by tshark anyway


@cache
def _client_streams(name: str, mode: str) -> tuple[dict[tuple[str, int], int], dict[int, str]]:
    """(client ip, client port) -> tcp.stream, and tcp.stream -> Lua verdict (two passes)."""
    truth = fixture_truth(name)
    rows = tshark_with_plugin(
        fixture_path(name),
        ["tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "smtptls.role", "smtptls.verdict"],
        keylog=_keylog(truth, mode),
    )
    endpoints: dict[tuple[str, int], int] = {}
    verdicts: dict[int, set[str]] = {}
    for stream, ip4, ip6, port, role, verdict in rows:
        if not stream:
            continue
        if role == "client":
            endpoints[(ip4 or ip6, int(port))] = int(stream)
        if verdict:
            verdicts.setdefault(int(stream), set()).add(verdict)
    for stream, seen in verdicts.items():
        assert len(seen) == 1, f"{name}: stream {stream} has several verdicts {seen}"
    return endpoints, {s: next(iter(v)) for s, v in verdicts.items()}


SCENARIOS = fixture_scenarios()
#: Scenarios with one connection per 4-tuple: the plugin's verdicts follow tcp.stream, and
#: tshark 4.0 numbers a connection restarted on the same 4-tuple as the old one's stream
#: (test_restarted_connection_follows_tcp_stream checks that scenario by version).
PER_4TUPLE = [n for n in SCENARIOS
              if not any("connection_on_4tuple" in c for c in fixture_truth(n)["conversations"])]


@pytest.mark.skipif(not SCENARIOS, reason="no fixtures yet")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", PER_4TUPLE)
def test_lua_verdict_matches_fixture_truth(name: str, mode: str) -> None:
    truth = fixture_truth(name)
    endpoints, verdicts = _client_streams(name, mode)
    assert set(verdicts.values()) <= VERDICTS
    checked = 0
    for conv in truth["conversations"]:
        expected = conv["client_cert_expected"][mode]
        stream = endpoints.get((conv["client_ip"], conv["client_port"]))
        assert stream is not None, f"{name}: no client frames of {conv['client_ip']}"
        got = verdicts.get(stream)
        assert got == expected, (
            f"{name} ({mode}) {conv['client_ip']}:{conv['client_port']} -> "
            f"{conv['server_ip']}:{conv['server_port']}: Lua says {got}, expected {expected}"
        )
        checked += 1
    assert checked == len(truth["conversations"])


@pytest.mark.skipif(not SCENARIOS, reason="no fixtures yet")
@pytest.mark.parametrize("name", SCENARIOS)
def test_single_pass_never_contradicts_two_passes(name: str) -> None:
    """One pass: the verdict appears from its deciding frame on and equals the final one."""
    truth = fixture_truth(name)
    keylog = _keylog(truth, "with_keylog")
    final = lua_verdicts(fixture_path(name), keylog)
    rows = tshark_with_plugin(
        fixture_path(name),
        ["frame.number", "tcp.stream", "smtptls.verdict", "smtptls.client_cert"],
        keylog=keylog,
        two_pass=False,
    )
    first_seen: dict[int, int] = {}
    for frame, stream, verdict, decided_here in rows:
        if not stream:
            continue
        sid = int(stream)
        if verdict:
            assert verdict == final.get(sid), f"{name} frame {frame}: {verdict} != final"
            first_seen.setdefault(sid, int(frame))
        elif sid in first_seen:
            pytest.fail(f"{name}: stream {sid} lost its verdict at frame {frame}")
        if decided_here:
            assert decided_here == verdict
            assert first_seen[sid] == int(frame)


def test_lua_verdicts_helper_shape() -> None:
    name = "tls12-client-cert-empty"
    assert fixture_path(name).exists(), "fixture missing: run python -m fixtures.build"
    assert lua_verdicts(fixture_path(name)) == {0: "empty"}


# --------------------------------------------------------------------------------------
# The peer corpus (real captures from Zeek's and Arkime's test suites)
# --------------------------------------------------------------------------------------

CORPUS_VERDICTS: dict[str, dict[int, str]] = {
    "zeek/Traces/tls/certificate-request-failed.pcap": {0: "empty"},
    "zeek/Traces/tls/pop3-starttls.pcap": {0: "empty"},
    "zeek/Traces/mysql/tls-12-amazon-rds.pcap": {0: "empty"},
    "zeek/Traces/postgresql/psql-aws-ssl-require.pcap": {0: "empty"},
    "zeek/Traces/tls/smtp-starttls.pcap": {0: "not_requested"},
    "arkime/smtp-starttls.pcap": {0: "not_requested"},
    "zeek/Traces/tls/tls-expired-cert.pcap": {0: "not_requested", 1: "not_requested"},
    "zeek/Traces/tls/tls13_wolfssl.pcap": {0: "hidden_tls13"},
    "zeek/Traces/tls/hrr.pcap": {0: "hidden_tls13"},
    "arkime/curl-enabled-tls13.pcap": {0: "hidden_tls13"},
    "arkime/ssl-selfsign.pcap": {0: "presented"},
    "zeek/Traces/tls/client-certificate.pcap": {0: "presented"},
    "zeek/Traces/tls/xmpp-dialback-starttls.pcap": {0: "presented"},
    "zeek/Traces/globus-url-copy.pcap": {1: "presented"},
    "arkime/smtp-decrypted.pcap": {0: "no_tls", 3: "no_tls"},
    # Streams 3 and 4 are single mid-stream TLS frames.
    "zeek/Traces/smtp.pcap": {
        0: "no_tls",
        2: "no_tls",
        3: "not_captured",
        4: "not_captured",
        5: "not_requested",
    },
    # Ends after the server's flight: ServerHelloDone without CertificateRequest.
    "arkime/https-generalizedtime.pcap": {0: "not_requested"},
}

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="peer corpus not available")


@needs_corpus
@pytest.mark.parametrize("capture", sorted(CORPUS_VERDICTS))
def test_lua_verdicts_on_corpus(capture: str) -> None:
    assert lua_verdicts(CORPUS / capture) == CORPUS_VERDICTS[capture]


@needs_corpus
def test_lua_verdict_with_keylog_on_corpus() -> None:
    cap = CORPUS / "zeek/Traces/tls/tls12-decryption.pcap"
    keys = CORPUS / "zeek/Traces/tls/tls12-decryption.derived.keylog"
    if not keys.exists():
        pytest.skip("derived keylog missing")
    assert lua_verdicts(cap, keys) == {0: "not_requested"}


_NSTIME = re.compile(r"^(\w{3}) +(\d+), (\d{4}) (\d\d):(\d\d):(\d\d)")
#: tshark 4.6 prints absolute times with -T fields as ISO 8601 in UTC
_ISOTIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$")


def _parse_abs(text: str) -> datetime:
    iso = _ISOTIME.match(text)
    if iso:
        return datetime.strptime(iso[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    m = _NSTIME.match(text)
    assert m, text
    return datetime.strptime(" ".join(m.groups()), "%b %d %Y %H %M %S").replace(tzinfo=UTC)


def _all_captures() -> list[Path]:
    caps = sorted(CORPUS.rglob("*.pcap")) if CORPUS.is_dir() else []
    return caps + sorted(FIXTURES.glob("*.pcapng"))


@pytest.mark.skipif(not _all_captures(), reason="no captures")
def test_leaf_fields_agree_with_cryptography() -> None:
    """Subject (RFC 4514), issuer, notAfter, expired and self-signed of every leaf the
    Lua parsed equal what Python's cryptography reads from the same DER bytes.

    Read through ``unescape_field``: tshark 4.2+ doubles the backslash of an RFC 4514 name
    (``O=Amazon Web Services\\, Inc.`` in tls-12-amazon-rds.pcap) in ``-T fields`` output,
    4.0 does not; the plugin's value is the same on both."""
    from cryptography import x509

    version = find_tshark().version
    compared = 0
    for cap in _all_captures():
        rows = tshark_with_plugin(
            cap,
            [
                "frame.time_epoch",
                "tls.handshake.certificate",
                "smtptls.leaf_subject",
                "smtptls.leaf_issuer",
                "smtptls.leaf_not_after",
                "smtptls.expired",
                "smtptls.self_signed",
                "smtptls.parse_error",
            ],
            two_pass=False,
        )
        for epoch, certs, subject, issuer, not_after, expired, self_signed, error in rows:
            if not certs:
                continue
            der = bytes.fromhex(certs.split(AGGREGATOR)[0].replace(":", ""))
            try:
                cert = x509.load_der_x509_certificate(der)
                want_subject = cert.subject.rfc4514_string()
                want_after = cert.not_valid_after_utc
            except Exception:  # cryptography refuses some odd corpus certificates
                continue
            assert not error, f"{cap.name}: Lua could not parse a leaf: {error}"
            assert unescape_field(subject, version) == want_subject, cap.name
            assert unescape_field(issuer, version) == cert.issuer.rfc4514_string(), cap.name
            assert _parse_abs(not_after) == want_after, cap.name
            now = datetime.fromtimestamp(float(epoch), tz=UTC)
            assert field_is_true(expired) == (want_after < now), cap.name
            assert field_is_true(self_signed) == (cert.issuer == cert.subject), cap.name
            compared += 1
    assert compared >= 20, f"only {compared} leaves compared"


@needs_corpus
def test_expired_server_certificate_flagged() -> None:
    rows = tshark_with_plugin(
        CORPUS / "zeek/Traces/tls/tls-expired-cert.pcap",
        ["smtptls.leaf_subject", "smtptls.expired", "smtptls.problem"],
        two_pass=False,
    )
    flagged = [r for r in rows if field_is_true(r[1])]
    assert any("spidh" in r[0] for r in flagged)
    assert all("expired at capture time" in r[2] for r in flagged)


# --------------------------------------------------------------------------------------
# Robustness and compatibility
# --------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap not installed")
@pytest.mark.parametrize("damage", [["-E", "0.02", "--seed", "7"], ["-s", "90"], ["-C", "60"]])
def test_damaged_packets_never_raise(tmp_path: Path, damage: list[str]) -> None:
    sources = [fixture_path(n) for n in ("tls12-client-cert-empty", "tls13-client-cert-ok")]
    sources += [CORPUS / "arkime/ssl-selfsign.pcap", CORPUS / "zeek/Traces/smtp.pcap"]
    done_any = False
    for src in sources:
        if not src.exists():
            continue
        out = tmp_path / f"{src.stem}.pcapng"
        subprocess.run(["editcap", *damage, str(src), str(out)], check=True, capture_output=True)
        rows = tshark_with_plugin(
            out, ["frame.number", "smtptls", "_ws.expert.message"], extra_args=["-V"]
        )
        assert not any("internal error" in " ".join(r) for r in rows), src.name
        done_any = True
    if not done_any:
        pytest.skip("no captures")


@pytest.mark.parametrize("version", ["5.2", "5.3", "5.4"])
def test_lua_syntax_for_every_lua_version(version: str) -> None:
    luac = shutil.which(f"luac{version}")
    if luac is None:
        pytest.skip(f"luac{version} not installed")
    done = subprocess.run([luac, "-p", str(plugin_source())], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_lua_uses_no_bit_library() -> None:
    code = plugin_source().read_text()
    assert not re.search(r"\bbit32?\.", code)
    assert "\r" not in code


# --------------------------------------------------------------------------------------
# Two implementations that must agree: smtptls.lua and the Python analyzer
# --------------------------------------------------------------------------------------


def _python_verdicts(capture: Path, keylog: Path | None, ports: tuple[int, ...]) -> dict:
    from pyshark_tools import analyze

    report = analyze(capture, keylog=keylog, ports=ports)
    conv = report.conversations
    return {int(s): str(v) for s, v in zip(conv["stream"], conv["client_cert"], strict=True)}


def _usable(keylog: Path | None) -> Path | None:
    from pyshark_tools.engine.keylog import check_keylog
    from pyshark_tools.errors import KeylogError

    if keylog is None:
        return None
    try:
        check_keylog(keylog)
    except KeylogError:
        return None
    return keylog


# Only the pairs that exist: a scenario whose handshake died before any secret has no keys.
ANALYZER_PAIRS = [
    pytest.param(name, mode, id=f"{name}-{mode}")
    for name in PER_4TUPLE
    for mode in MODES
    if mode == "without_keylog" or _usable(_keylog(fixture_truth(name), mode)) is not None
]


@pytest.mark.parametrize(("name", "mode"), ANALYZER_PAIRS)
def test_lua_agrees_with_python_analyzer(name: str, mode: str) -> None:
    truth = fixture_truth(name)
    keylog = _usable(_keylog(truth, mode))
    ports = tuple(sorted({c["server_port"] for c in truth["conversations"]} - {53, 80, 443}))
    python = _python_verdicts(fixture_path(name), keylog, ports)
    lua = _client_streams(name, mode)[1]  # the same tshark run as the ground-truth test
    assert python, "the analyzer reported no conversation"
    disagree = {s: (v, lua.get(s)) for s, v in python.items() if lua.get(s) != v}
    assert not disagree, f"stream: (python, lua) {disagree}"


def test_restarted_connection_follows_tcp_stream() -> None:
    """The plugin keeps its verdict per tcp.stream, as Wireshark's own analysis does: 4.2+
    numbers the restarted connection as a stream of its own and the plugin gets both right;
    4.0 numbers one stream and dissects the second handshake as retransmissions, so the
    plugin shows the first connection's verdict for both (docs/wireshark-versions.md; the
    report splits them on every version, tests/test_restarts.py)."""
    name = "tcp-port-reuse-restart"
    truth = fixture_truth(name)
    expected = [c["client_cert_expected"]["without_keylog"] for c in truth["conversations"]]
    got = lua_verdicts(fixture_path(name))
    if find_tshark().version[:2] >= (4, 2):
        assert [got[s] for s in sorted(got)] == expected
    else:
        assert got == {0: expected[0]}
