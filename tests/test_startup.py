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


def _run_python(code: str, tmp_path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    return done.stdout.strip()


def test_the_analysis_is_imported_with_the_collector_paused_then_frozen(tmp_path: Path) -> None:
    """The report command imports the analysis with the cyclic collector off, leaves it as it
    found it, and freezes what the imports built (later collections skip the modules)."""
    code = ("import gc, sys\nfrom pyshark_tools import cli\n"
            "assert 'pyshark_tools.pipeline' not in sys.modules\n"
            "{before}cli._import_analysis()\n"
            "print('pyshark_tools.pipeline' in sys.modules, gc.isenabled(), "
            "gc.get_freeze_count() > 1000)")
    assert _run_python(code.format(before=""), tmp_path) == "True True True"
    assert _run_python(code.format(before="gc.disable()\n"), tmp_path) == "True False True"


def test_a_fork_waits_for_a_background_import(tmp_path: Path) -> None:
    """A child forked while the text renderer is imported in the background (the engine's
    workers) gets the module whole, never half imported."""
    (tmp_path / "slow_module.py").write_text("import time\ntime.sleep(0.5)\nDONE = True\n")
    code = ("import os, sys, time\nsys.path.insert(0, '.')\nfrom pyshark_tools import cli\n"
            "cli._import_in_background('slow_module')\ntime.sleep(0.1)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os._exit(0 if getattr(sys.modules.get('slow_module'), 'DONE', False) else 3)\n"
            "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))")
    assert _run_python(code, tmp_path) == "0"


def test_objects_alive_at_exit_are_left_out_of_the_last_collections(tmp_path: Path) -> None:
    """The command line freezes the collector at exit (its last collections cost ~0.25 s with
    pandas loaded): a cycle still alive then is not walked, so its finalizer does not run; a
    plain interpreter does run it."""
    cycle = ("class Node:\n    def __del__(self):\n        print('collected')\n"
             "node = Node()\nnode.me = node\n")  # alive at exit, in a cycle
    assert _run_python(cycle, tmp_path) == "collected"
    assert _run_python("import pyshark_tools.cli\n" + cycle, tmp_path) == ""
