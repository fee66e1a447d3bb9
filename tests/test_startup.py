"""Start-up: ``--help`` imports none of the heavy libraries; tshark's version is asked once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("pandas", "numpy", "cryptography", "rich", "pyshark")


def test_command_line_imports_nothing_heavy() -> None:
    code = ("import sys, pyshark_tools.cli\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
    helped = subprocess.run([sys.executable, "-m", "pyshark_tools.cli", "--help"],
                            capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "CAPTURE" in helped.stdout


def test_default_ports_agree() -> None:
    from pyshark_tools import cli
    from pyshark_tools.core import events

    assert cli.DEFAULT_PORTS == events.DEFAULT_PORTS


def test_tshark_version_asked_once(tmp_path: Path, monkeypatch) -> None:
    from pyshark_tools.engine import tshark

    calls = tmp_path / "calls"
    fake = tmp_path / "tshark"
    fake.write_text(f"#!/bin/sh\necho run >> {calls}\n"
                    "echo 'TShark (Wireshark) 4.0.17 (Git v4.0.17)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TSHARK", str(fake))
    first = tshark.find_tshark()
    assert tshark.find_tshark() == first and first.version == (4, 0, 17)
    assert calls.read_text().count("run") == 1
    fake.write_text(fake.read_text().replace("4.0.17", "4.2.9"))  # another tshark there
    os.utime(fake, ns=(1, 10**9))
    assert tshark.find_tshark().version == (4, 2, 9)
    assert calls.read_text().count("run") == 2


def test_tshark_version_asked_ahead_is_the_one_used(tmp_path: Path, monkeypatch) -> None:
    """The report command starts ``tshark --version`` before importing the analysis; the
    answer is read once, and no second tshark is started for it."""
    from pyshark_tools.engine import tshark

    calls = tmp_path / "calls"
    fake = tmp_path / "tshark"
    fake.write_text(f"#!/bin/sh\necho run >> {calls}\n"
                    "echo 'TShark (Wireshark) 4.0.11 (Git v4.0.11)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TSHARK", str(fake))
    tshark.ask_version_early()
    tshark.ask_version_early()  # asked once, however often called
    found = tshark.find_tshark()
    assert found.version == (4, 0, 11)
    assert calls.read_text().count("run") == 1  # the early answer was the one read


def test_an_early_version_nobody_reads_is_not_left_behind(tmp_path: Path, monkeypatch) -> None:
    """A command that stops before it needs tshark (a usage error, another tshark) leaves no
    ``tshark --version`` running or counted among the children a signal must kill."""
    from pyshark_tools.engine import tshark

    quick = tmp_path / "quick" / "tshark"
    slow = tmp_path / "slow" / "tshark"
    answers = "sleep 1; echo 'TShark (Wireshark) 4.0.11'"
    for fake, body in ((quick, answers), (slow, "exec sleep 300")):
        fake.parent.mkdir()
        fake.write_text(f"#!/bin/sh\n{body}\n")
        fake.chmod(0o755)
    monkeypatch.setenv("TSHARK", str(quick))
    tshark.ask_version_early()
    early = next(proc for proc in tshark.live_children() if proc.args[0] == str(quick))
    early.wait(timeout=30)
    assert early not in tshark.live_children()  # it ended: reaped, not counted
    monkeypatch.setenv("TSHARK", str(slow))
    tshark.ask_version_early()
    (hanging,) = [proc for proc in tshark.live_children() if proc.args[0] == str(slow)]
    tshark.forget_early_versions()
    assert hanging.returncode is not None and not tshark.live_children()
