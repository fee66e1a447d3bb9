"""Many captures in one report: a conversation is (capture, stream) in every output.

Two of the fixtures both hold a conversation numbered tcp.stream 0 (the seed's empty
certificate and an expired one); each single-capture report is the ground truth for its part
of the merged report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from pyshark_tools import analyze

from .helpers import TRUST, fixture_path

SEED = fixture_path("tls12-client-cert-empty")
EXPIRED = fixture_path("tls12-client-cert-expired")
MIXED = fixture_path("mixed-traffic")


def run(*args: object) -> subprocess.CompletedProcess[str]:
    # env: os.environ, not the C environment (readline, once imported, exports COLUMNS=80)
    return subprocess.run([sys.executable, "-m", "pyshark_tools.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={k: v for k, v in os.environ.items() if k != "COLUMNS"})


@cache
def single(path: Path):
    return analyze(path, trust_store=TRUST)


@cache
def merged():
    return analyze([SEED, EXPIRED, MIXED], trust_store=TRUST)


def test_every_table_names_the_capture_of_each_row() -> None:
    report = merged()
    for name in ("conversations", "certificates", "findings", "events"):
        table = getattr(report, name)
        want = sum(len(getattr(single(p), name)) for p in (SEED, EXPIRED, MIXED))
        assert len(table) == want, name
        assert set(table["capture"]) == {str(SEED), str(EXPIRED), str(MIXED)}, name
    keys = list(zip(report.conversations["capture"], report.conversations["stream"],
                    strict=True))
    assert len(keys) == len(set(keys))
    assert sum(1 for _c, s in keys if s == 0) == 2  # stream 0 twice: the stream is no key


def test_conversation_is_capture_and_stream() -> None:
    report = merged()
    with pytest.raises(KeyError, match="2 captures"):
        report.conversation(0)
    for path in (SEED, EXPIRED):
        view = report.conversation(0, capture=path.name)
        alone = single(path).conversation(0)
        assert view.events["frame"].tolist() == alone.events["frame"].tolist()
        assert view.events["detail"].tolist() == alone.events["detail"].tolist()
        assert view.certificates["sha1"].tolist() == alone.certificates["sha1"].tolist()
        assert view.report.capture["file"] == str(path)  # packets() reads this one file
        assert view.ladder().svg == alone.ladder().svg
        assert view.follow().lines == alone.follow().lines
    # a stream only one capture has needs no capture
    assert report.conversation(31).report.capture["file"] == str(MIXED)


def test_packets_of_a_merged_report_read_the_conversations_own_file() -> None:
    view = merged().conversation(0, capture=str(EXPIRED))
    packets = view.packets(limit=3)
    assert len(packets) == 3
    assert {int(p.tcp.stream) for p in packets} == {0}
    # the expired fixture's own first frames, not the seed capture's
    ports = {int(p.tcp.srcport) for p in packets} | {int(p.tcp.dstport) for p in packets}
    assert int(view.info["client_port"]) in ports


def _blocks(text: str) -> dict[str, str]:
    """Text output split at each 'Capture: FILE' header."""
    parts = re.split(r"^Capture: (\S+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_text_report_has_one_section_per_capture() -> None:
    done = run(SEED, EXPIRED, MIXED, "--trust-store", TRUST)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    blocks = _blocks(done.stdout)
    assert list(blocks) == [str(SEED), str(EXPIRED), str(MIXED)]
    for path, block in blocks.items():
        alone = single(Path(path))
        streams = sorted(set(alone.findings["stream"]))
        assert re.findall(r"^Stream (\d+):", block, flags=re.M) == [str(s) for s in streams]
        for rule in alone.findings["id"]:
            assert f" {rule} " in block
    assert "W6" in blocks[str(SEED)] and "W10" not in blocks[str(SEED)]
    assert "W10" in blocks[str(EXPIRED)] and "W6 " not in blocks[str(EXPIRED)]
    total = len(merged().conversations)
    assert f"All 3 captures: {total} conversation(s)" in done.stdout


def test_follow_on_a_folder_shows_each_captures_stream(tmp_path: Path) -> None:
    for path in (SEED, EXPIRED):
        (tmp_path / path.name).symlink_to(path)
    done = run("follow", tmp_path, "--stream", "0", "--no-color")
    assert "Traceback" not in done.stderr, done.stderr
    blocks = _blocks(done.stdout)
    assert sorted(Path(p).name for p in blocks) == sorted([SEED.name, EXPIRED.name])
    for path, block in blocks.items():
        frames = single(Path(path).resolve()).conversation(0).events["frame"].tolist()
        shown = [int(m) for m in re.findall(r"^\s+(\d+)\s+[CS]->[CS]", block, flags=re.M)]
        assert sorted(set(shown)) == sorted(set(frames)), path


def test_json_markdown_and_html_keep_the_captures_apart(tmp_path: Path) -> None:
    done = run(SEED, EXPIRED, "--trust-store", TRUST, "--format", "json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    pairs = [(c["capture"], c["stream"]) for c in doc["conversations"]]
    assert pairs == [(str(SEED), 0), (str(EXPIRED), 0)]
    assert {(f["capture"], f["id"]) for f in doc["findings"]} >= {(str(SEED), "W6"),
                                                                   (str(EXPIRED), "W10")}
    markdown = run(SEED, EXPIRED, "--trust-store", TRUST, "--format", "markdown").stdout
    sections = re.split(r"^## tls-smtp-report: ", markdown, flags=re.M)[1:]
    assert [s.splitlines()[0] for s in sections] == [str(SEED), str(EXPIRED)]
    assert "W6" in sections[0] and "W10" not in sections[0] and "W10" in sections[1]
    page = run(SEED, EXPIRED, "--trust-store", TRUST, "--format", "html")
    assert page.returncode == 1 and "Traceback" not in page.stderr, page.stderr
    ids = re.findall(r'id="([^"]+)"', page.stdout)
    assert len(ids) == len(set(ids))  # stream 0 twice, element ids still unique
    assert page.stdout.count('<section class="capture"') == 2
    assert "capture-0-ladder-0" in ids and "capture-1-ladder-0" in ids
