"""What the README promises a newcomer: two quick-start commands, fixture commands that give
what the fixture table says, a capture how-to, and a setup script that needs only python3."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections import Counter

from .helpers import FIXTURES, ROOT, fixture_truth

README = (ROOT / "README.md").read_text(encoding="utf-8")
SETUP = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, flags=re.M | re.S)
    assert match, title
    return match.group(1)


def test_quick_start_is_two_commands():
    block = re.search(r"```sh\n(.*?)```", _section("Quick start"), flags=re.S)
    assert block
    commands = [ln.split("#")[0].strip() for ln in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["bash scripts/setup.sh demo",
                                          "bash scripts/setup.sh test"]


def test_setup_installs_venv_support_and_the_runtime_only_for_demo():
    assert "import ensurepip" in SETUP and "python3-venv" in SETUP
    demo = SETUP.split("if [ \"$mode\" = \"test\" ]; then\n    .venv/bin/python -m pip", 1)
    assert len(demo) == 2 and 'pip install -q -e .\n' in demo[1]
    assert "--trust-store fixtures/pki/test-root-ca.pem" in SETUP  # the demo's fixture


def _fixture_commands() -> list[list[str]]:
    found = []
    for text in [README, *(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))]:
        for line in text.splitlines():
            line = line.strip().strip("`")
            if re.match(r"^(\.venv/bin/)?tls-smtp-report (follow )?fixtures/\S+\.pcapng", line):
                found.append(shlex.split(line.split(" #")[0]))
    return found


def test_every_fixture_command_passes_the_test_root_and_matches_the_table():
    commands = _fixture_commands()
    assert commands
    for argv in commands:
        assert "--trust-store" in argv, argv
        assert argv[argv.index("--trust-store") + 1].startswith("fixtures/pki/"), argv
        done = subprocess.run([sys.executable, "-m", "pyshark_tools.cli", *argv[1:],
                               "--format", "json"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode in (0, 1), done.stderr
        assert '"id": "W9"' not in done.stdout  # the test PKI is trusted: no false W9
    mixed = [a for a in commands if a[1] == "fixtures/mixed-traffic.pcapng"]
    assert mixed
    row = re.search(r"^\| `mixed-traffic` \|.*$", README, flags=re.M)
    assert row
    truth = Counter(c["client_cert_expected"]["without_keylog"]
                    for c in fixture_truth("mixed-traffic")["conversations"])
    for verdict, count in truth.items():
        assert f"`{verdict}` x{count}" in row.group(0)
    assert (FIXTURES / "pki" / "test-root-ca.pem").exists()


def test_how_to_capture_covers_windows_linux_and_key_logs():
    section = _section("How to capture")
    for needed in ("pktmon start --capture", "--pkt-size 0", "pktmon etl2pcap", "netsh trace",
                   "etl2pcapng", "tcpdump -i any -s 0", "Schannel cannot", "SSLKEYLOGFILE"):
        assert needed in section, needed
    assert "docs/capture.md" in section and (ROOT / "docs" / "capture.md").exists()


def test_fresh_debian_check_runs_both_readme_commands():
    script = (ROOT / "scripts" / "check-fresh-debian.sh").read_text(encoding="utf-8")
    assert "debootstrap --variant=minbase bookworm" in script
    assert "python3 git" in script and "python3-venv is present" in script
    assert "modes=(demo test)" in script and "bash scripts/setup.sh $mode" in script
    done = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "check-fresh-debian.sh")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
