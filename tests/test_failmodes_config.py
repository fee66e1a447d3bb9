"""tshark runs with our settings, not the user's; what it cannot reassemble is "cannot see".

Real tshark, real captures (the fixtures, and one made by the fixtures factory with real
OpenSSL: tests/failmodes/make_captures.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import FIXTURES, TRUST

CAPTURES = Path(__file__).parent / "failmodes" / "captures"
ENGINES = {"reference": ["--no-prefilter"], "fast": [], "fast-tshark": ["--no-native"]}


def _json(capture: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "pyshark_tools.cli", str(capture), "--format", "json", "-q",
         "--trust-store", str(TRUST), *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def hostile_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A HOME whose Wireshark preferences switch reassembly off (a common Wireshark tip)."""
    home = tmp_path_factory.mktemp("home")
    config = home / ".config" / "wireshark"
    config.mkdir(parents=True)
    (config / "preferences").write_text(
        "tcp.desegment_tcp_streams: FALSE\ntls.desegment_ssl_records: FALSE\n"
        "tls.desegment_ssl_application_data: FALSE\nsmtp.desegment_lines: FALSE\n")
    (config / "disabled_protos").write_text("tls\n")
    return dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))


def test_the_hostile_preferences_do_change_what_plain_tshark_reads(hostile_home) -> None:
    """The premise: with these preferences tshark alone no longer sees the Certificate."""
    cmd = ["tshark", "-r", str(FIXTURES / "tls12-client-cert-ok.pcapng"), "-Y",
           "tls.handshake.type == 11"]
    plain = subprocess.run(cmd, capture_output=True, text=True, check=False)
    hostile = subprocess.run(cmd, capture_output=True, text=True, env=hostile_home,
                             check=False)
    assert plain.stdout.strip() and not hostile.stdout.strip()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("scenario", "keys"), [("tls12-client-cert-ok", False),
                                                ("tls13-client-cert-ok", True)])
def test_user_preferences_never_change_a_verdict(hostile_home, engine: str, scenario: str,
                                                 keys: bool) -> None:
    capture = FIXTURES / f"{scenario}.pcapng"
    extra = ["--keylog", str(FIXTURES / f"{scenario}.keys")] if keys else []
    clean = _json(capture, *ENGINES[engine], *extra)
    hostile = _json(capture, *ENGINES[engine], *extra, env=hostile_home)
    assert [c["client_cert"] for c in hostile["conversations"]] == ["presented"]
    assert hostile["conversations"] == clean["conversations"]
    assert hostile["findings"] == clean["findings"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_certificate_message_tshark_cannot_reassemble_is_not_captured(engine: str) -> None:
    truth = json.loads((CAPTURES / "client-cert-over-64k.json").read_text())
    assert truth["client_sent"] == "certificate" and truth["client_certificates"] == 101
    doc = _json(CAPTURES / "client-cert-over-64k.pcapng", *ENGINES[engine])
    conv = doc["conversations"][0]
    assert conv["client_cert"] == "not_captured", conv["verdict_reason"]
    assert "could not be read" in conv["verdict_reason"]
    assert "W6" not in (conv["finding_ids"] or "")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_certificate_refused_while_it_arrives_is_not_captured(engine: str) -> None:
    """1,600 certificates: the server refuses the message as it arrives (a fatal alert, an
    RST) and the client's key exchange never comes. "Cannot see", not "the handshake ended
    before the certificate was due" (the generator sent one)."""
    name = "client-cert-refused-mid-flight"
    truth = json.loads((CAPTURES / f"{name}.json").read_text())
    assert truth["client_sent"] == "certificate" and truth["client_certificates"] == 1600
    doc = _json(CAPTURES / f"{name}.pcapng", *ENGINES[engine])
    conv = doc["conversations"][0]
    assert conv["client_cert"] == "not_captured", conv["verdict_reason"]
    assert "could not be read" in conv["verdict_reason"]
    assert "alert illegal_parameter" in conv["verdict_reason"]
    assert not {"W6", "W7"} & set(conv["finding_ids"] or [])
