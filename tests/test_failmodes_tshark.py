"""tshark as a supervised child: a tshark that hangs, floods stderr, prints garbage or
crashes gives one warning, a report marked incomplete where it is, and never a traceback.

The misbehaving tshark (tests/failmodes/fake_tshark.py) runs the real tshark and misbehaves
around it; the rows themselves are always the real tshark's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import FIXTURES, TRUST

FAKE = Path(__file__).parent / "failmodes" / "fake_tshark.py"
SCENARIO = "tls12-client-cert-empty"
CAPTURE = FIXTURES / f"{SCENARIO}.pcapng"
# the reference engine, and the fast engine with tshark reading the conversation
ENGINES = {"reference": ["--no-prefilter"], "fast": ["--no-native"]}


def _report(mode: str, engine: str, *extra: str, timeout: float = 240):
    env = dict(os.environ, TSHARK=str(FAKE), REAL_TSHARK=shutil.which("tshark") or "tshark",
               FAKE_TSHARK_MODE=mode)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pyshark_tools.cli", str(CAPTURE), "--format", "json", "-q",
         "--trust-store", str(TRUST), *ENGINES[engine], *extra],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done, time.monotonic() - started


def _client_certs(done) -> list[str]:
    return [c["client_cert"] for c in json.loads(done.stdout)["conversations"]]



@pytest.mark.parametrize("engine", ENGINES)
def test_hanging_tshark_is_stopped_and_what_it_gave_is_kept(engine: str) -> None:
    done, took = _report("hang", engine, "--tshark-timeout", "3")
    assert took < 60
    doc = json.loads(done.stdout)
    assert doc["capture"]["complete"] is False
    assert any("did not finish within 3 s" in w for w in doc["capture"]["warnings"])
    assert "did not finish within" in done.stderr
    assert _client_certs(done) == ["empty"]  # every row came before the hang


@pytest.mark.parametrize("engine", ENGINES)
def test_tshark_flooding_stderr_cannot_block_the_report(engine: str) -> None:
    done, _took = _report("flood", engine, timeout=120)
    assert done.returncode == 1, done.stderr[-500:]
    assert _client_certs(done) == ["empty"]
    assert json.loads(done.stdout)["capture"]["complete"] is True


@pytest.mark.parametrize("engine", ENGINES)
def test_garbage_lines_are_counted_and_skipped(engine: str) -> None:
    done, _took = _report("garbage", engine)
    assert done.returncode == 1, done.stderr[-500:]
    doc = json.loads(done.stdout)
    assert _client_certs(done) == ["empty"]
    warning = next(w for w in doc["capture"]["warnings"] if "not rows of fields" in w)
    assert int(warning.split("printed ")[1].split(" ")[0]) >= 3


@pytest.mark.parametrize("engine", ENGINES)
def test_crashing_tshark_leaves_a_partial_report_marked_incomplete(engine: str) -> None:
    done, _took = _report("crash", engine)
    assert done.returncode in (0, 1), done.stderr[-500:]
    doc = json.loads(done.stdout)
    assert doc["capture"]["complete"] is False
    assert any("killed by SIGSEGV" in w for w in doc["capture"]["warnings"])
    assert len(doc["conversations"]) == 1  # the first half of the rows: the conversation


def test_the_time_limit_scales_with_the_capture_size(tmp_path: Path) -> None:
    from pyshark_tools.engine.tshark import SECONDS_PER_MIB, Tshark

    big = tmp_path / "big.pcapng"
    with big.open("wb") as handle:
        handle.truncate(100 << 20)
    tshark = Tshark("tshark", (4, 0, 0), time_limit=30)
    assert tshark.limit_for(big) == pytest.approx(30 + 100 * SECONDS_PER_MIB)
    assert tshark.limit_for(tmp_path / "missing") == 30
    assert Tshark("tshark", (4, 0, 0), time_limit=0).limit_for(big) is None


def test_a_damaged_file_is_called_damaged_not_cut(tmp_path: Path) -> None:
    """tshark's "damaged or corrupt" is not "cut short": the report says which, and marks the
    analysis incomplete (it stopped at the damage, not at the end of the file)."""
    capture = Path(__file__).parent / "fuzz" / "regressions" / \
        "tls13-client-cert-empty-embedded.block_length.s1.i2.pcapng"
    done = subprocess.run(
        [sys.executable, "-m", "pyshark_tools.cli", str(capture), "--format", "json", "-q"],
        capture_output=True, text=True, timeout=240, check=False)
    doc = json.loads(done.stdout)
    assert doc["capture"]["complete"] is False and doc["capture"]["truncated_file"] is False
    assert any("is damaged" in w for w in doc["capture"]["warnings"])
    assert not any("middle of a packet" in w for w in doc["capture"]["warnings"])
