"""Named bad inputs and hostile captures at the command line: one line, a documented exit
code, never a traceback; output files written safely; nothing from a capture controls the
terminal or a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import pyshark_tools.pipeline as pipeline_module
from pyshark_tools import cli

from .helpers import FIXTURES, TRUST

EMPTY = FIXTURES / "tls12-client-cert-empty.pcapng"


def run(*args: object, **kwargs) -> subprocess.CompletedProcess[str]:
    quiet = [] if args[0] in ("follow", "--help") else ["-q"]
    return subprocess.run([sys.executable, "-m", "pyshark_tools.cli", *map(os.fsdecode, args),
                           *quiet], capture_output=True, text=True, timeout=300, check=False,
                          errors="replace", **kwargs)


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def mutated(tmp_path: Path, old: bytes, new: bytes, name: str = "mutant.pcapng") -> Path:
    """The seed capture with one cleartext string replaced by another of the same length
    (tshark does not check TCP checksums, so the packets stay valid)."""
    assert len(old) == len(new)
    data = EMPTY.read_bytes()
    assert data.count(old) == 1
    target = tmp_path / name
    target.write_bytes(data.replace(old, new))
    return target


# --- one place for unexpected exceptions ------------------------------------------------


def _explode(*_args, **_kwargs):
    raise RuntimeError("a bug\nwith two lines")


def test_an_internal_error_is_one_line_and_exit_5(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "analyze", _explode)
    result = CliRunner().invoke(cli.main, [str(EMPTY), "-q"])
    assert result.exit_code == 5
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "internal error (RuntimeError: a bug with two lines" in lines[0]
    assert "--debug" in lines[0] and "pyshark_tools/" in lines[0]


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "analyze", _explode)
    result = CliRunner().invoke(cli.main, [str(EMPTY), "-q", "--debug"])
    assert isinstance(result.exception, RuntimeError)  # not turned into one line


def test_exit_5_is_documented() -> None:
    assert "5  internal error" in run("--help").stdout


def test_sender_ip_that_is_no_network_is_a_usage_error() -> None:
    done = run(EMPTY, "--sender-ip", "not-a-cidr")
    assert done.returncode == 2 and "not an IP address or network" in done.stderr
    assert "Traceback" not in done.stderr


# --- captures that are not files --------------------------------------------------------


def test_a_device_as_capture_is_refused_at_once() -> None:
    assert "not a regular file" in one_line(run("/dev/zero"), 4)


def test_a_fifo_as_capture_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "capture.pcapng"
    os.mkfifo(fifo)
    assert "not a regular file" in one_line(run(fifo), 4)


def test_a_file_name_with_any_bytes_is_printed_escaped(tmp_path: Path) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xffname\n\x1b]0;x\x07.pcapng"))
    odd.write_bytes(EMPTY.read_bytes())
    done = run(odd)
    assert done.returncode == 1, done.stderr
    assert "bad\\xffname\\x0a\\x1b]0;x\\x07.pcapng" in done.stdout
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    doc = json.loads(run(odd, "--format", "json").stdout)
    assert doc["capture"]["file"].endswith("bad\udcffname\n\x1b]0;x\x07.pcapng")


# --- output files -------------------------------------------------------------------------


def test_output_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o600)
    run(EMPTY, "--format", "json", "-o", target)
    assert json.loads(target.read_text())["conversations"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    if os.geteuid() == 0:  # root replacing a user's report keeps it the user's
        os.chown(target, 65534, 65534)
        run(EMPTY, "--format", "json", "-o", target)
        assert (target.stat().st_uid, target.stat().st_gid) == (65534, 65534)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left


def test_output_through_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    run(EMPTY, "--format", "json", "-o", link)
    assert link.is_symlink() and json.loads(real.read_text())["conversations"]


def test_output_to_devices_is_written_in_place() -> None:
    before = os.stat("/dev/null")
    done = run(EMPTY, "--format", "json", "-o", "/dev/null")
    assert done.returncode == 1, done.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    done = run(EMPTY, "--format", "json", "-o", "/dev/stdout")
    assert json.loads(done.stdout)["conversations"]


def test_output_to_a_fifo_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    done = run(EMPTY, "--format", "json", "-o", fifo)
    reader.join(60)
    assert done.returncode == 1, done.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert json.loads(got[0])["conversations"]


@pytest.mark.parametrize("where", ["long", "no-folder", "unwritable"])
def test_output_that_cannot_be_written_is_one_line(tmp_path: Path, where: str) -> None:
    target = {"long": tmp_path / ("x" * 300), "no-folder": tmp_path / "nope" / "r.json",
              "unwritable": Path("/proc/report.json")}[where]
    line = one_line(run(EMPTY, "--format", "json", "-o", target), 2)
    assert line.startswith("Error: cannot write")


# --- hostile text in the capture -------------------------------------------------------


def test_escape_sequences_in_a_banner_never_reach_the_terminal(tmp_path: Path) -> None:
    capture = mutated(tmp_path, b"Microsoft ESMTP MAIL Service ready",
                      b"\x1b]0;owned\x07\x1b[2J\x1b[31mESMTP ready no\x9b")
    done = run(capture, "--trust-store", TRUST)
    assert done.returncode == 1, done.stderr
    follow = run("follow", capture, "--stream", "0")
    assert "\\x1b]0;owned\\x07\\x1b[2J" in follow.stdout
    for output in (done.stdout, follow.stdout, run(capture, "--format", "markdown").stdout):
        for control in ("\x1b", "\x07", "\x9b"):
            assert control not in output


def test_a_formula_as_ehlo_name_is_quoted_in_csv(tmp_path: Path) -> None:
    formula = b"=1+1+cmd|'/C'!A0"
    capture = mutated(tmp_path, b"EHLO mail.contoso.com", b"EHLO " + formula)
    done = run(capture, "--format", "csv", "--trust-store", TRUST)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert rows[0]["ehlo"] == "'" + formula.decode()
    events = run(capture, "--format", "csv", "--table", "events", "--trust-store", TRUST)
    for row in csv.reader(io.StringIO(events.stdout)):
        assert not any(cell.startswith(("=", "+", "@")) for cell in row), row
    doc = json.loads(run(capture, "--format", "json", "--trust-store", TRUST).stdout)
    assert doc["conversations"][0]["ehlo"] == formula.decode()  # JSON keeps the data as is
