"""pyshark's tshark (the notebook drill-down, ``conversation(n).packets()``) is supervised like
our own tshark runs: a time limit, killed when the read is abandoned, killed by the signals
that end a run, and no ``tshark -v`` of pyshark's own without a time limit.

Real pyshark, real tshark behind the misbehaving wrapper (tests/failmodes/fake_tshark.py,
mode "hang": every row, then it never exits; "stall": half of them, then nothing more).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import FIXTURES, ROOT

FAKE = Path(__file__).parent / "failmodes" / "fake_tshark.py"
CAPTURE = FIXTURES / "tls12-client-cert-ok.pcapng"

_SCRIPT = """
import os, sys
if sys.argv[1] == "install":
    from pyshark_tools.engine import signals
    signals.install()
from pyshark_tools.notebook import read_packets
print("ready", flush=True)
read_packets(sys.argv[2], "tcp", timeout=300)
"""


@pytest.fixture(scope="module")
def fake_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake under the name ``tshark``: pyshark runs the ``tshark`` of the folder it is
    given, whatever the file is called."""
    folder = tmp_path_factory.mktemp("fake-tshark")
    (folder / "tshark").symlink_to(FAKE)
    return folder


def _env(mode: str, folder: Path) -> dict[str, str]:
    return dict(os.environ, TSHARK=str(folder / "tshark"),
                REAL_TSHARK=shutil.which("tshark") or "tshark", FAKE_TSHARK_MODE=mode,
                PYTHONPATH=str(ROOT))


def _children_running_fake(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` and that run pyshark's tshark over the capture."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == parent and b"tshark" in cmdline and bytes(CAPTURE) in cmdline \
                and b"fields" not in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.parametrize("mode", ["hang", "stall"])
def test_a_pyshark_tshark_that_never_exits_is_killed(monkeypatch, mode: str,
                                                    fake_folder: Path) -> None:
    """It writes every packet and then hangs: the read ends (pyshark has its whole output, or
    the time limit stops it) and the process is killed, not left behind."""
    from pyshark_tools.engine.tshark import live_children
    from pyshark_tools.errors import PacketReadError
    from pyshark_tools.notebook import read_packets

    for key, value in _env(mode, fake_folder).items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    try:
        packets = read_packets(CAPTURE, "tls.handshake.type == 11", timeout=20)
    except PacketReadError as exc:
        assert "did not finish within 20 s" in str(exc)
    else:
        assert mode == "hang" and len(packets) == 2
    assert time.monotonic() - started < 60
    assert _wait_for(lambda: not _children_running_fake(os.getpid()), 10)
    assert not live_children()


@pytest.mark.parametrize(("how", "signum"), [("install", signal.SIGTERM),
                                             ("install", signal.SIGHUP),
                                             ("plain", signal.SIGINT)])
def test_a_signal_kills_pyshark_tshark(how: str, signum: int, fake_folder: Path) -> None:
    """SIGTERM/SIGHUP with the command line's handlers; Ctrl-C (a notebook's interrupt)
    without them: either way pyshark's tshark does not outlive the read."""
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, how, str(CAPTURE)],
                            env=_env("stall", fake_folder), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        found: list[int] = []
        assert _wait_for(lambda: found.extend(_children_running_fake(proc.pid)) or found, 60)
        proc.send_signal(signum)
        proc.wait(timeout=60)
        for pid in found:
            assert _wait_for(lambda pid=pid: not _alive(pid), 10), f"tshark {pid} still runs"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _children_running_fake(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_pyshark_runs_no_version_probe_of_its_own(monkeypatch) -> None:
    """pyshark's ``tshark -v`` has no time limit (the fake would hang on it): ours is used."""
    import pyshark.tshark.tshark as pyshark_tshark

    from pyshark_tools.notebook import read_packets

    def refuse(*_args, **_kwargs):
        raise AssertionError("pyshark asked tshark's version itself")

    monkeypatch.setattr(pyshark_tshark, "get_tshark_version", refuse)
    monkeypatch.setattr("pyshark.capture.capture.get_tshark_version", refuse)
    packets = read_packets(CAPTURE, "tls.handshake.type == 11", timeout=120)
    assert len(packets) == 2  # the server's and the client's Certificate messages
