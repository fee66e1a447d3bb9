"""TCP as real networks deliver it, on the link layers real captures come with.

The fixtures (``fixtures/tcp-*``, ``vlan-8021q``, ``linux-cooked-*``, ``pktmon-*``,
``pcap-nanosecond``, ``ipv6-extension-headers``) are checked against their ground truth by
``test_analyzer_fixtures`` and lever by lever by ``test_levers_identical``. Here: which
engine and reader took each one (nothing of them goes to the reference engine, a
conversation with an irregular segment alone is kept whole for tshark), the same on
generated captures with impairments and other link layers, and the gap counting.
"""

from __future__ import annotations

import pytest

from pyshark_tools import analyze
from pyshark_tools.core.tcpgaps import SequenceGaps
from pyshark_tools.engine.prefilter import IRREGULAR

from .helpers import analyze_fixture, fixture_truth
from .test_levers_identical import assert_same_report

#: fixture -> conversations the native reader reads (the others are kept whole for tshark):
#: segments sent again, duplicated or reordered are put back in sequence order
#: (``reassembly.InOrder``), a hole after the handshake stops its direction's reading; a hole
#: inside the handshake or a zero-window probe keeps the conversation whole
NATIVE = {
    "tcp-retransmissions": 1, "tcp-duplicates-reordered": 1, "tcp-lost-in-handshake": 1,
    "tcp-lost-after-handshake": 1, "tcp-zero-window-keepalive": 0, "vlan-8021q": 1,
    "linux-cooked-sll": 1, "linux-cooked-sll2": 1, "pktmon-multi-interface": 2,
    "pcap-nanosecond": 1, "ipv6-extension-headers": 1,
}
#: impairments the in-order reading does not take (the conversation is kept whole)
KEPT_WHOLE_KINDS = {"zero-window"}


def _kept_whole_by_truth(conversation: dict) -> bool:
    """The generator's word: a zero-window probe, or a segment lost inside the handshake."""
    kinds = {i["kind"] for i in conversation.get("tcp_impairments") or []}
    return bool(kinds & KEPT_WHOLE_KINDS) or \
        ("lost" in kinds and bool(conversation.get("lost_inside_handshake")))


def _kept_whole(truth: dict) -> int:
    return sum(1 for c in truth["conversations"] if _kept_whole_by_truth(c))


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_fast_engine_reads_each_variant(name: str) -> None:
    truth = fixture_truth(name)
    fast = analyze_fixture(name, False, progress=False, jobs=2)
    cap = fast.capture
    assert cap["engine"] == "fast", cap["engine_note"]
    assert cap["native_conversations"] == NATIVE[name]
    whole = cap["native_demoted"].get(IRREGULAR, 0)
    assert whole == _kept_whole(truth)
    in_order = sum(1 for c in truth["conversations"] if c.get("tcp_impairments")
                   and not _kept_whole_by_truth(c))
    assert cap["native_conversations"] >= in_order


def test_a_hole_found_inside_the_handshake_only_at_the_end_goes_to_tshark(monkeypatch) -> None:
    """A hole further from the start than ``EARLY_HOLE_BYTES`` is read in order; when the
    reading ends with a direction stuck before its handshake's end, tshark reads the
    conversation (all its packets were held back): the report stays the reference's."""
    from pyshark_tools.engine import prefilter

    monkeypatch.setattr(prefilter, "EARLY_HOLE_BYTES", 0)
    name = "tcp-lost-in-handshake"
    fast = analyze_fixture(name, False, progress=False, jobs=1)
    assert fast.capture["native_demoted"] == {prefilter.HOLE_IN_HANDSHAKE: 1}
    assert fast.capture["native_conversations"] == 1
    assert_same_report(analyze_fixture(name, False, progress=False, prefilter=False), fast)
    # the generator lost the first conversation's Certificate segment: cannot see it
    assert fixture_truth(name)["conversations"][0]["lost_inside_handshake"]
    assert fast.conversations["client_cert"].tolist() == ["not_captured", "presented"]


@pytest.fixture(scope="module", params=[{"impair": 0.005}, {"impair": 0.005, "link_layer": "sll2"},
                                        {"link_layer": "vlan"}],
                ids=["impaired", "impaired-sll2", "vlan"])
def variant_capture(request, tmp_path_factory):
    from benchmarks.generate import generate

    path = tmp_path_factory.mktemp("variant") / "capture.pcapng"
    meta = generate(path, scale=0.01, seed=5, **request.param)
    return path, meta


def test_generated_variants_same_report_with_every_lever(variant_capture) -> None:
    path, meta = variant_capture
    reference = analyze(path, prefilter=False, progress=False)
    assert len(reference.conversations) >= 100
    fast = analyze(path, jobs=2, progress=False)
    assert fast.capture["engine"] == "fast", fast.capture["engine_note"]
    assert_same_report(reference, fast)
    assert_same_report(reference, analyze(path, jobs=2, progress=False, native=False))
    whole = fast.capture["native_demoted"].get(IRREGULAR, 0)
    if meta["impair"]:
        assert sum(meta["impairments"].values()) > 0 and whole > 0
        assert fast.capture["native_conversations"] > len(reference.conversations) // 2
    else:
        assert whole == 0


def _row(seq: int, length: int, flags: int = 0x010) -> dict[str, str]:
    return {"tcp.seq_raw": str(seq), "tcp.len": str(length), "tcp.flags": f"0x{flags:03x}"}


def test_gaps_count_only_bytes_never_captured() -> None:
    gaps = SequenceGaps()
    for seq, n, flags in ((100, 0, 0x002), (101, 50, 0x018), (251, 50, 0x018),
                          (151, 100, 0x018), (151, 100, 0x018), (301, 0, 0x011)):
        gaps.add(0, "a", _row(seq, n, flags))  # reordered and retransmitted: no gap
    assert gaps.holes(0) == 0
    for seq, n in ((2**32 - 10, 20), (40, 10), (50, 0)):
        gaps.add(1, "b", _row(seq, n))  # a hole of 30 bytes across the wrap, then an ACK
    assert gaps.holes(1) == 1
    gaps.add(2, "c", _row(500, 10))
    gaps.add(2, "c", _row(530, 0, 0x011))  # the last data lost: the FIN is beyond
    gaps.add(2, "d", _row(9, 0, 0x010))
    gaps.add(2, "c", _row(509, 0, 0x010))  # a keep-alive: one byte back, no gap
    assert gaps.holes(2) == 1
    assert gaps.holes(3) == 0


def test_out_of_order_reassembly_unless_packets_may_be_cut(tmp_path) -> None:
    from fixtures.factory import pcapng
    from pyshark_tools.core.tcpgaps import OUT_OF_ORDER, tcp_preferences

    from .helpers import fixture_path

    assert tcp_preferences(fixture_path("truncated-snaplen")) == ()  # IDB snaplen 200
    assert tcp_preferences(fixture_path("tcp-duplicates-reordered")) == (OUT_OF_ORDER,)
    assert tcp_preferences(fixture_path("linux-cooked-sll")) == (OUT_OF_ORDER,)  # pcap
    small = tmp_path / "small.pcap"
    small.write_bytes(pcapng.write_pcap([(10**9, b"\x00" * 60)], 1, False, snaplen=96))
    assert tcp_preferences(small) == ()
    assert tcp_preferences(tmp_path / "missing.pcap") == ()


@pytest.fixture(scope="module")
def impaired_capture(tmp_path_factory):
    from benchmarks.generate import generate

    path = tmp_path_factory.mktemp("impaired") / "capture.pcapng"
    generate(path, scale=0.01, seed=6, impair=0.005)
    return path


@pytest.mark.parametrize("whole_shard_packets", [100_000, 1], ids=["one-whole-shard",
                                                                   "a-whole-shard-per-worker"])
def test_conversations_kept_whole_are_read_alongside_the_others(
        impaired_capture, tmp_path, monkeypatch, whole_shard_packets: int) -> None:
    """With forked workers, the conversations the index keeps whole go to shards of their own
    that tshark reads while the other conversations are read: the report stays the
    reference's."""
    import pyshark_tools.engine.prefilter as prefilter_module

    monkeypatch.setattr(prefilter_module, "FORK_MIN_PACKETS", 0)
    monkeypatch.setattr(prefilter_module, "WHOLE_SHARD_PACKETS", whole_shard_packets)
    log = tmp_path / "whole-shards"
    write = prefilter_module._write_packets

    def spy(path_, columns, positions, ifaces, mm):
        shard = write(path_, columns, positions, ifaces, mm)
        with log.open("a") as out:  # (in a forked worker: a file tells the test)
            out.write(f"{path_.name} {shard.packets}\n")
        return shard

    monkeypatch.setattr(prefilter_module, "_write_packets", spy)
    reference = analyze(impaired_capture, prefilter=False, progress=False)
    fast = analyze(impaired_capture, jobs=2, progress=False)
    assert fast.capture["engine"] == "fast", fast.capture["engine_note"]
    assert_same_report(reference, fast)
    shards = [line.split() for line in log.read_text().splitlines()]
    assert len(shards) == (1 if whole_shard_packets > 1 else 2), shards
    assert all(int(packets) > 0 for _name, packets in shards)
    assert fast.capture["native_demoted"].get(IRREGULAR, 0) > 0
