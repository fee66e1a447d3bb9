"""smtptls.lua knows the analyzer's newer verdicts (real tshark, the plugin inside it).

A TLS 1.2 renegotiation inside the session: without the key log the second handshake is
encrypted, so "not requested" from the first one no longer holds (``hidden_renegotiation``);
with it, the second handshake's Certificate decides. A TLS 1.3 CompressedCertificate (RFC
8879, OpenSSL 3.5 sends the client's so): opened by Wireshark's own decompression, its
certificates counted and its leaf read. Ground truth from the fixtures' generators (both
ends' logs), never from an analyzer.
"""

from __future__ import annotations

import shutil

import pytest

from pyshark_tools.engine.tshark import AGGREGATOR, find_tshark
from pyshark_tools.wireshark.install import lua_verdicts, tshark_with_plugin, unescape_field

from .helpers import FIXTURES, fixture_scenarios, fixture_truth

pytestmark = [
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
    pytest.mark.personal_lua,  # tshark 4.2+ runs the plugin only for a user other than root
]

RENEGOTIATION = FIXTURES / "renegotiation"
REALSTACK = FIXTURES / "realstack"
COMPRESSED = "pyexo-smtplib-tls13-compressed-presented"
MODES = ("without_keylog", "with_keylog")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", fixture_scenarios(RENEGOTIATION))
def test_renegotiation_verdict_matches_truth(name: str, mode: str) -> None:
    truth = fixture_truth(name, RENEGOTIATION)
    keylog = RENEGOTIATION / truth["keylog"] if mode == "with_keylog" else None
    got = lua_verdicts(RENEGOTIATION / truth["capture"], keylog)
    assert sorted(got.values()) == sorted(c["client_cert_expected"][mode]
                                          for c in truth["conversations"])


def test_compressed_client_certificate_is_opened() -> None:
    truth = fixture_truth(COMPRESSED, REALSTACK)
    (conv,) = truth["conversations"]
    rows = tshark_with_plugin(
        REALSTACK / truth["capture"],
        ["tls.handshake.type", "smtptls.role", "smtptls.client_cert_count",
         "smtptls.leaf_subject", "smtptls.verdict"],
        keylog=REALSTACK / truth["keylog"],
    )
    compressed = [r for r in rows if "25" in r[0].split(AGGREGATOR) and r[1] == "client"]
    assert len(compressed) == 1, "the fixture holds one client CompressedCertificate"
    _types, _role, count, subject, verdict = compressed[0]
    assert verdict == conv["client_cert_expected"]["with_keylog"] == "presented"
    assert int(count) == len(conv["client_certificates"])
    leaf = unescape_field(subject, find_tshark().version)
    assert leaf == conv["client_certificates"][0]["subject"]
