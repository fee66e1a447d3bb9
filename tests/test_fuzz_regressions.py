"""What the fuzzer's regression captures were about, checked closer than "both engines agree".

- A STARTTLS command split across two segments (tshark reassembles the line): the fast
  engine must still see TLS begin after the 220 and read the handshake itself, not lose the
  ClientHello to the cleartext reader, nor merely hand the conversation to tshark.
- A packet time stamp no date can hold (a flipped byte in a block header): the reference
  engine reads the frame (it was dropped silently before) and says so; the fast engine
  declines the capture instead of counting it differently.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pyshark_tools import analyze
from pyshark_tools.engine.native import Demote, NativeConversation

from .fuzz import tcpip
from .fuzz.pcapng import EPB, Packet, as_packet, read_blocks, write_blocks
from .fuzz.run import REGRESSIONS, Mutant, judge, mutant_of_regression
from .helpers import FIXTURES, fixture_truth, smtp_ports

SPLIT_STARTTLS = ("legacy-tls10.coalesce.s17.i87", "tcp-lost-in-handshake.split.s17.i262")
DAMAGED_TIME = "vlan-8021q.split.s17.i295"


@pytest.mark.parametrize("name", SPLIT_STARTTLS)
def test_split_starttls_regression_is_read_natively(name: str) -> None:
    capture = REGRESSIONS / f"{name}.pcapng"
    verdict = judge(mutant_of_regression(capture), capture)
    assert verdict.outcome == "ok", verdict.detail
    assert verdict.fast_engine == "fast", verdict.detail


def _split_starttls(cut: int, out: Path) -> Path:
    """legacy-tls10 with the client's ``STARTTLS\\r\\n`` segment cut after ``cut`` bytes."""
    blocks = read_blocks((FIXTURES / "legacy-tls10.pcapng").read_bytes())
    found = []
    for at, block in enumerate(blocks):
        packet = as_packet(block) if block.kind == EPB else None
        seg = tcpip.parse(packet.data) if packet else None
        if seg and seg.payload(packet.data) == b"STARTTLS\r\n":
            found.append((at, packet, seg))
    assert len(found) == 1, "the fixture has one STARTTLS segment"
    i, packet, seg = found[0]
    payload = seg.payload(packet.data)
    first = tcpip.with_payload(packet.data, seg, payload[:cut])
    second = tcpip.with_payload(packet.data, seg, payload[cut:], seq=seg.seq + cut)
    blocks[i:i + 1] = [
        Packet(packet.interface, packet.ts_high, packet.ts_low, len(first), first,
               packet.options).to_block(),
        Packet(packet.interface, packet.ts_high, packet.ts_low + 1, len(second), second,
               packet.options).to_block()]
    out.write_bytes(write_blocks(blocks))
    return out


@pytest.mark.parametrize("cut", [1, 4, 8, 9])
def test_starttls_split_anywhere_reads_like_tshark(cut: int, tmp_path: Path) -> None:
    capture = _split_starttls(cut, tmp_path / f"split-{cut}.pcapng")
    verdict = judge(Mutant(cut, 0, "legacy-tls10", "split", False), capture)
    assert verdict.outcome == "ok", verdict.detail
    assert verdict.fast_engine == "fast", verdict.detail
    report = analyze(capture, ports=(25,), progress=False)
    names = set(report.events["name"].astype(str))
    assert {"ClientHello", "protocol_version"} <= names, sorted(names)


def test_tls_record_handed_over_as_text_demotes() -> None:
    """The native reader's safety net: TLS bytes that reach its cleartext reader after an
    accepted STARTTLS go to tshark rather than being lost."""
    conv = NativeConversation(0, ("192.0.2.1:40000", "192.0.2.2:25"), 0, False)
    conv.clear(1, 4, 0, b"220 mx ready\r\n", 1000, 14)
    conv.clear(0, 5, 0, b"EHLO a.example\r\n", 5000, 16)
    conv.clear(1, 6, 0, b"250-mx\r\n250 STARTTLS\r\n", 1014, 22)
    conv.clear(0, 7, 0, b"STARTTLS\r\n", 5016, 10)
    conv.clear(1, 8, 0, b"220 go ahead\r\n", 1036, 14)
    assert conv.dialogue.starttls_accepted
    hello = b"\x16\x03\x01\x00\x04\x01\x00\x00\x00"
    with pytest.raises(Demote, match="read as text"):
        conv.clear(0, 9, 0, hello, 5026, len(hello))


def _frames_in(capture: Path) -> list[tuple[int, int]]:
    """(frame number, time stamp units) of every packet block, read from the file itself."""
    out = []
    for block in read_blocks(capture.read_bytes()):
        if block.kind == EPB:
            _iface, high, low = struct.unpack_from("<III", block.body)
            out.append((len(out) + 1, (high << 32) | low))
    return out


def test_damaged_time_stamp_frame_is_read_and_named() -> None:
    capture = REGRESSIONS / f"{DAMAGED_TIME}.pcapng"
    frames = _frames_in(capture)
    # microsecond units (the fixture's interface): past the year 9999
    damaged = [n for n, units in frames if units // 1_000_000 > 253_402_300_799]
    assert damaged == [29]
    truth = fixture_truth("vlan-8021q")
    options = {"ports": smtp_ports(truth), "trust_store": FIXTURES / truth["trust_store"],
               "progress": False}
    reference = analyze(capture, prefilter=False, **options)
    # every frame of the one conversation, the damaged one too
    assert reference.conversations["frames"].tolist() == [len(frames)]
    warning = [w for w in reference.capture["warnings"] if "time stamp" in w]
    assert len(warning) == 1 and "frame 29;" in warning[0], reference.capture["warnings"]
    fast = analyze(capture, prefilter=True, **options)
    assert fast.capture["engine"] != "fast"
    assert "time stamp" in fast.capture["engine_note"]
    assert fast.conversations["frames"].tolist() == [len(frames)]
