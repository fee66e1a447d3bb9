"""pyshark's tshark (the notebook drill-down) reads no personal Wireshark configuration.

Our own tshark runs get an empty configuration folder of their own; pyshark's run must too,
or a user's ``disabled_protos`` or ``decode_as_entries`` silently empties the drill-down.
Real pyshark and real tshark, over a fixture whose TLS handshake the generator recorded, with
a user profile (HOME and XDG_CONFIG_HOME in a temporary folder) that hides it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyshark_tools.notebook import read_packets, tls_handshakes

from .helpers import FIXTURES, fixture_truth, smtp_ports

FIXTURE = "tls12-client-cert-ok"

def _user_profile(home: Path, files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A personal Wireshark folder where tshark looks for one (``$XDG_CONFIG_HOME/wireshark``
    and the older ``~/.wireshark``), and nothing that would point tshark elsewhere."""
    for folder in (home / ".config" / "wireshark", home / ".wireshark"):
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("WIRESHARK_CONFIG_DIR", raising=False)


def _handshake_names(packets: list) -> set[str]:
    return {message["name"] for packet in packets for message in tls_handshakes(packet)}


@pytest.mark.parametrize("profile", [
    {"disabled_protos": "tls\n"},
    {"decode_as_entries": "decode_as_entry: tcp.port,25,SMTP,TELNET\n"},
    {"disabled_protos": "tls\nsmtp\n", "heuristic_protos": "tls_tcp,0\n"},
], ids=["disabled-tls", "decode-as-telnet", "disabled-smtp-and-heuristic"])
def test_a_user_profile_does_not_change_the_drill_down(
        profile: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = fixture_truth(FIXTURE)
    _user_profile(tmp_path / "home", profile, monkeypatch)
    packets = read_packets(FIXTURES / f"{FIXTURE}.pcapng", "tls.handshake",
                           ports=smtp_ports(truth), timeout=60)
    names = _handshake_names(packets)
    # the generator's server asked for a certificate and its client sent one (the fixture's
    # ground truth): the drill-down shows that handshake whatever the profile says
    conversation, = truth["conversations"]
    assert conversation["cert_requested"] and conversation["client_sent"] == "certificate"
    assert {"ClientHello", "ServerHello", "CertificateRequest", "Certificate"} <= names, names


def test_the_profile_would_hide_tls_from_a_tshark_that_reads_it(tmp_path: Path) -> None:
    """The profile above is one tshark obeys (so the test above can fail): the same tshark,
    run with that home and no folder of ours, dissects no TLS."""
    import os
    import subprocess

    from pyshark_tools.engine.tshark import find_tshark

    home = tmp_path / "home"
    folder = home / ".config" / "wireshark"
    folder.mkdir(parents=True)
    (folder / "disabled_protos").write_text("tls\n")
    env = {k: v for k, v in os.environ.items() if k != "WIRESHARK_CONFIG_DIR"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    out = subprocess.run([find_tshark().path, "-n", "-r", str(FIXTURES / f"{FIXTURE}.pcapng"),
                          "-Y", "tls.handshake"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
