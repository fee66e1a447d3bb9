"""SIGTERM, SIGHUP and SIGINT end every child and worker and remove the temporary files.

The run is held up by a tshark that never ends (tests/failmodes/fake_tshark.py in "hang"
mode, after the real tshark's rows) in forked workers of the fast engine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .helpers import FIXTURES

FAKE = Path(__file__).parent / "failmodes" / "fake_tshark.py"


def _marked(marker: str, passes_only: bool = False) -> list[int]:
    """Processes whose environment carries ``marker`` (this run's children); ``passes_only``:
    not the short ``tshark --version`` the command line asks ahead of its passes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes() and not (
                    passes_only and b"--version" in (entry / "cmdline").read_bytes()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
@pytest.mark.parametrize("engine", [["--no-native", "-j", "2"], ["--no-prefilter"]])
def test_a_signal_ends_every_child_and_removes_temporary_files(
        tmp_path: Path, signum: int, engine: list[str]) -> None:
    marker = f"FAILMODES_MARKER={uuid.uuid4().hex}"
    temp = tmp_path / "tmp"
    temp.mkdir()
    key, value = marker.split("=")
    env = dict(os.environ, TSHARK=str(FAKE), REAL_TSHARK=shutil.which("tshark") or "tshark",
               FAKE_TSHARK_MODE="hang", TMPDIR=str(temp), **{key: value})
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyshark_tools.cli", str(FIXTURES / "mixed-traffic.pcapng"),
         "-q", "--format", "json", *engine],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    # wait until the fake tshark(s) hang: their children (the real tshark) are done then
    while time.monotonic() < deadline and \
            len(_marked(marker, passes_only=True)) < 2 + (len(engine) > 1):
        time.sleep(0.2)
    time.sleep(1.0)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        f"stopped by {signal.Signals(signum).name}: child processes ended, temporary files "
        "removed"]
    time.sleep(0.5)
    assert _marked(marker) == []
    assert [p.name for p in temp.iterdir()] == []
