"""Only the key-log lines of the capture's ClientHellos reach tshark, and the report says how
many matched: a key log of another capture is told apart from one that decrypts nothing."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from pyshark_tools.engine.keylog import capture_client_randoms, check_keylog, matching_keylog

from .helpers import FIXTURES, TRUST

TLS13 = FIXTURES / "tls13-client-cert-ok.pcapng"
TLS13_KEYS = FIXTURES / "tls13-client-cert-ok.keys"
OTHER_KEYS = FIXTURES / "tls12-client-cert-empty.keys"


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyshark_tools.cli", *map(str, args), "-q",
                           "--trust-store", str(TRUST)],
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_capture_s_client_randoms_are_those_of_its_key_log() -> None:
    randoms = capture_client_randoms(TLS13)
    in_log = {bytes.fromhex(line.split()[1]) for line in TLS13_KEYS.read_text().splitlines()
              if line and not line.startswith("#")}
    assert in_log and in_log <= randoms


def test_only_matching_lines_are_handed_on(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.keys"
    noise = [f"CLIENT_RANDOM {secrets.token_hex(32)} {secrets.token_hex(48)}" for _ in range(500)]
    own = [ln for ln in TLS13_KEYS.read_text().splitlines() if ln and not ln.startswith("#")]
    mixed.write_text("\n".join(noise[:250] + own + noise[250:]) + "\n")
    with matching_keylog(check_keylog(mixed), TLS13) as matched:
        assert matched is not None and matched.path is not None
        assert (matched.entries, matched.matching) == (500 + len(own), len(own))
        assert matched.path.read_text().split() == "\n".join(own).split()
        assert matched.path.stat().st_mode & 0o077 == 0  # a secret: private
        handed = matched.path
    assert not handed.exists()  # removed afterwards


def test_own_key_log_matches_and_decrypts() -> None:
    done = _run(TLS13, "--keylog", TLS13_KEYS)
    assert "key log: 5 secret(s), 5 match this capture" in done.stdout
    assert "presented" in done.stdout


def test_another_capture_s_key_log_is_named_as_such(tmp_path: Path) -> None:
    done = _run(TLS13, "--keylog", OTHER_KEYS)
    assert "key log: 1 secret(s), 0 match this capture" in done.stdout
    assert "none for a ClientHello of this capture" in done.stdout
    assert "Re-run with --keylog" not in done.stdout
    doc = json.loads(_run(TLS13, "--keylog", OTHER_KEYS, "--format", "json").stdout)
    assert doc["capture"]["keylog_entries"] == 1 and doc["capture"]["keylog_matching"] == 0
    assert doc["conversations"][0]["client_cert"] == "hidden_tls13"


def test_a_huge_key_log_of_other_sessions_costs_tshark_nothing(tmp_path: Path) -> None:
    """200,000 lines used to take tshark over ten minutes (it loads them in quadratic time);
    only the five lines of this capture reach it now."""
    huge = tmp_path / "huge.keys"
    own = TLS13_KEYS.read_text()
    with huge.open("w") as handle:
        for _ in range(200_000):
            handle.write(f"CLIENT_RANDOM {secrets.token_hex(32)} {secrets.token_hex(48)}\n")
        handle.write(own)
    done = subprocess.run(
        [sys.executable, "-m", "pyshark_tools.cli", str(TLS13), "--keylog", str(huge), "-q",
         "--trust-store", str(TRUST), "--format", "json", "--tshark-timeout", "60"],
        capture_output=True, text=True, timeout=240, check=False)
    doc = json.loads(done.stdout)
    assert doc["capture"]["complete"] is True
    assert doc["capture"]["keylog_matching"] == 5
    assert doc["conversations"][0]["client_cert"] == "presented"
    for line in own.splitlines():
        if line and not line.startswith("#"):
            assert line.split()[2] not in done.stdout + done.stderr


def test_a_damaged_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    """A key log is written while the server runs: a cut last line must not cost the rest."""
    keys = tmp_path / "cut.keys"
    secret_start = "CLIENT_RANDOM 0011"
    keys.write_text(TLS13_KEYS.read_text() + f"{secret_start}\n")
    info = check_keylog(keys)
    assert info.entries == 5 and len(info.skipped_lines) == 1
    done = _run(TLS13, "--keylog", keys, "--format", "json")
    doc = json.loads(done.stdout)
    assert doc["conversations"][0]["client_cert"] == "presented"
    assert any("1 line(s) are not NSS key log lines" in w for w in doc["capture"]["warnings"])
    assert secret_start not in done.stdout + done.stderr
