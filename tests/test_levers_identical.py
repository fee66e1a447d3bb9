"""Every performance lever gives the reference engine's report, to the frame number.

The reference engine is one tshark pass over the whole capture (``prefilter=False``). The
fast engine (prefilter, conversation shards, merge) must give the same conversations,
certificates, verdicts, findings and events on every fixture (with and without its key log)
and on a generated capture with thousands of packets of noise.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pyshark_tools import analyze
from pyshark_tools.report import Report

from .helpers import analyze_fixture, fixture_scenarios, fixture_truth, usable_keylog

TABLES = ("conversations", "certificates", "findings", "events")
#: capture facts that must not depend on the engine
FACTS = ("packets_analysed", "first_packet_time", "last_packet_time", "truncated_file",
         "warnings")


@pytest.fixture(scope="session")
def generated_capture(tmp_path_factory: pytest.TempPathFactory):
    """A small benchmark capture: ~260 SMTP sessions among bulk TCP and DNS noise."""
    from benchmarks.generate import generate

    path = tmp_path_factory.mktemp("generated") / "small.pcapng"
    generate(path, scale=0.02, seed=11)
    return path


def assert_same_report(a: Report, b: Report) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True,
                                      obj=name)
    for key in FACTS:
        assert a.capture[key] == b.capture[key], key
    assert a.to_dict()["conversations"] == b.to_dict()["conversations"]


def _run(name: str, with_keys: bool, **levers: object) -> Report:
    return analyze_fixture(name, with_keys, progress=False, **levers)


CASES = [
    pytest.param(name, keys, id=f"{name}-{'keylog' if keys else 'nokeys'}")
    for name in fixture_scenarios()
    for keys in (False, True)
    if not keys or usable_keylog(fixture_truth(name))
]


@pytest.mark.parametrize(("name", "with_keys"), CASES)
def test_fixture_same_report_with_every_lever(name: str, with_keys: bool) -> None:
    reference = _run(name, with_keys, prefilter=False)
    assert reference.capture["engine"] == "reference"
    fast = _run(name, with_keys, prefilter=True, jobs=2)
    assert_same_report(reference, fast)
    if name != "cut-mid-file" and not _restart_on_one_stream(name):
        # (a damaged file, or a restarted connection tshark 4.0 numbers as one tcp.stream:
        # the fast engine hands them to the reference)
        assert fast.capture["engine"] == "fast", fast.capture["engine_note"]
    # the same conversations through tshark shards instead of the native reader
    assert_same_report(reference, _run(name, with_keys, prefilter=True, jobs=2, native=False))


def test_mixed_traffic_three_shards() -> None:
    reference = _run("mixed-traffic", False, prefilter=False)
    assert_same_report(reference, _run("mixed-traffic", False, jobs=3))


def test_generated_capture_same_report(generated_capture) -> None:
    reference = analyze(generated_capture, prefilter=False, progress=False)
    assert len(reference.conversations) >= 200
    assert reference.capture["packets_analysed"] > 5000
    fast = analyze(generated_capture, jobs=2, progress=False)
    assert fast.capture["engine"] == "fast", fast.capture["engine_note"]
    assert_same_report(reference, fast)
    assert_same_report(reference, analyze(generated_capture, jobs=2, progress=False,
                                          native=False))


def test_generated_capture_read_by_forked_workers(generated_capture, monkeypatch) -> None:
    """The index's conversations spread over 3 processes (2 forked) give the same report."""
    import pyshark_tools.engine.prefilter as prefilter_module

    monkeypatch.setattr(prefilter_module, "FORK_MIN_PACKETS", 0)
    reference = analyze(generated_capture, prefilter=False, progress=False)
    for native in (True, False):
        fast = analyze(generated_capture, jobs=3, progress=False, native=native)
        assert fast.capture["engine"] == "fast", fast.capture["engine_note"]
        assert_same_report(reference, fast)


@pytest.mark.parametrize("name", [n for n in fixture_scenarios() if n != "cut-mid-file"])
def test_fixture_same_report_without_the_index(name: str, monkeypatch) -> None:
    """The per-packet loop (what runs when the vectorised index declines a capture) with the
    native reader gives the reference report too."""
    import pyshark_tools.engine.scan as scan_module

    reference = _run(name, False, prefilter=False)
    monkeypatch.setattr(scan_module, "index_capture", lambda *_args, **_kw: None)
    fast = _run(name, False, prefilter=True, jobs=2)
    if not _restart_on_one_stream(name):
        assert fast.capture["engine"] == "fast", fast.capture["engine_note"]
    assert_same_report(reference, fast)


def _restart_on_one_stream(name: str) -> bool:
    """A fixture with a connection restarted on the same 4-tuple, read by a tshark before
    4.2 (one tcp.stream for both: the reference engine reads the restart on its own)."""
    from pyshark_tools.engine.tshark import find_tshark

    restarted = any("connection_on_4tuple" in c for c in fixture_truth(name)["conversations"])
    return restarted and tuple(find_tshark().version[:2]) < (4, 2)
