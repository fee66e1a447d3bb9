"""Conversation shards: local processes, a Dask LocalCluster, many captures, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from pyshark_tools import analyze
from pyshark_tools.core.events import IMPLICIT_TLS_PORTS
from pyshark_tools.engine.parallel import fast_extract
from pyshark_tools.engine.tshark import find_tshark
from pyshark_tools.engine.tshark_rows import extract
from pyshark_tools.pipeline import capture_files, is_many

from .helpers import FIXTURES, fixture_path
from .test_levers_identical import assert_same_report

PORTS = (25, 587, *IMPLICIT_TLS_PORTS)


def _same_extraction(a, b) -> None:
    assert a.events.equals(b.events)
    assert {k: asdict(v) for k, v in a.streams.items()} == \
        {k: asdict(v) for k, v in b.streams.items()}
    assert [asdict(m) for m in a.certificate_messages] == \
        [asdict(m) for m in b.certificate_messages]
    for name in ("packets_read", "first_time", "last_time", "truncated_file", "warnings"):
        assert getattr(a, name) == getattr(b, name), name


def test_shards_merge_to_the_reference_extraction() -> None:
    ts = find_tshark()
    capture = fixture_path("mixed-traffic")
    reference = extract(ts, capture, ports=PORTS)
    for jobs in (1, 4):
        _same_extraction(reference, fast_extract(ts, capture, ports=PORTS, jobs=jobs))


def test_dask_local_cluster_same_report() -> None:
    distributed = pytest.importorskip("dask.distributed")
    capture = fixture_path("mixed-traffic")
    local = analyze(capture, jobs=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = analyze(capture, dask_client=client, progress=False)
    assert remote.capture["engine"] == "fast"
    assert_same_report(local, remote)


def test_many_captures_merge_into_one_report(tmp_path: Path) -> None:
    names = ["tls12-client-cert-empty", "tls13-client-cert-ok"]
    for name in names:
        shutil.copy(fixture_path(name), tmp_path / f"{name}.pcapng")
    (tmp_path / "notes.txt").write_text("not a capture")
    singles = [analyze(tmp_path / f"{n}.pcapng", progress=False) for n in sorted(names)]
    assert is_many(tmp_path) and is_many(str(tmp_path / "*.pcapng"))
    assert not is_many(fixture_path(names[0]))
    assert [p.name for p in capture_files(tmp_path)] == [f"{n}.pcapng" for n in sorted(names)]
    assert capture_files(str(tmp_path / "*.pcapng")) == capture_files(tmp_path)
    for spec in (tmp_path, [tmp_path / f"{n}.pcapng" for n in sorted(names)]):
        merged = analyze(spec, progress=False)
        assert len(merged.conversations) == sum(len(r.conversations) for r in singles)
        assert list(merged.conversations["capture"]) == [
            str(tmp_path / f"{n}.pcapng") for n, r in zip(sorted(names), singles, strict=True)
            for _ in range(len(r.conversations))]
        assert list(merged.conversations["client_cert"].astype(str)) == [
            v for r in singles for v in r.conversations["client_cert"].astype(str)]
        assert len(merged.findings) == sum(len(r.findings) for r in singles)
        assert merged.capture["packets_analysed"] == sum(
            r.capture["packets_analysed"] for r in singles)


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "tls-smtp-report"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)


def test_cli_levers_same_json(tmp_path: Path) -> None:
    capture = str(FIXTURES / "mixed-traffic.pcapng")
    docs = []
    for extra in ((), ("--no-prefilter",), ("--jobs", "2", "--quiet")):
        done = _cli(capture, "--format", "json", *extra)
        assert done.returncode in (0, 1), done.stderr
        assert "\x1b[" not in done.stderr  # no progress bar when not on a terminal
        docs.append(json.loads(done.stdout))
    for doc in docs[1:]:
        for key in ("conversations", "certificates", "findings"):
            assert doc[key] == docs[0][key]
    assert docs[0]["capture"]["engine"] == "fast"
    assert docs[1]["capture"]["engine"] == "reference"


def test_cli_several_captures_and_folder(tmp_path: Path) -> None:
    a, b = fixture_path("tls12-client-cert-empty"), fixture_path("tls13-client-cert-ok")
    done = _cli(str(a), str(b), "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    doc = json.loads(done.stdout)
    assert {c["capture"] for c in doc["conversations"]} == {str(a), str(b)}
    empty = _cli(str(tmp_path))
    assert empty.returncode == 4 and "folder" in empty.stderr and "Traceback" not in empty.stderr


def test_cli_unreachable_dask_scheduler_is_a_clean_error() -> None:
    pytest.importorskip("dask.distributed")
    done = _cli(str(fixture_path("tls12-client-cert-ok")), "--dask-scheduler",
                "bogus://nowhere", "--quiet")
    assert done.returncode == 2
    assert "Dask scheduler" in done.stderr and "Traceback" not in done.stderr


def test_chunks_give_the_unchunked_tables() -> None:
    import pandas as pd

    from pyshark_tools.core.cert_table import build_certificates
    from pyshark_tools.core.certificates import load_trust_store
    from pyshark_tools.core.findings import Options
    from pyshark_tools.engine.parallel import build_tables

    ex = extract(find_tshark(), fixture_path("mixed-traffic"), ports=PORTS)
    certs = build_certificates(ex.certificate_messages,
                               load_trust_store(FIXTURES / "pki" / "test-root-ca.pem"))
    options = Options(expect_cert_name="mail.contoso.com")
    whole = build_tables(ex, certs, ports=PORTS, all_tls=False, options=options, chunk=10**9)
    assert len(whole[0]) > 4
    for jobs in (1, 2):
        parts = build_tables(ex, certs, ports=PORTS, all_tls=False, options=options, chunk=2,
                             jobs=jobs)
        for a, b in zip(whole, parts, strict=True):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
