"""What the fuzzer's regression captures were about, checked closer than "both engines agree".

- A STARTTLS command split across two segments (tshark reassembles the line): the fast
  engine must still see TLS begin after the 220 and read the handshake itself, not lose the
  ClientHello to the cleartext reader, nor merely hand the conversation to tshark.
- A packet time stamp no date can hold (a flipped byte in a block header): the reference
  engine reads the frame (it was dropped silently before) and says so; the fast engine
  declines the capture instead of counting it differently.
- A SYN of the client's with a new sequence number and other flags besides (seed 41): the
  reference splits the tcp.stream there (a restart), so the index must suspect one.
- An IPv6 header whose version nibble is not 6 (seed 41): tshark reads no TCP in it, and
  the fast engine's loop must not either.
- An interface block's option running past the block (seed 41): tshark calls the file
  damaged; the fast engine's loop read on (only packet options were checked there).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pyshark_tools import analyze
from pyshark_tools.engine.native import Demote, NativeConversation
from pyshark_tools.engine.restarts import ConnectionSplitter, restart_suspected
from pyshark_tools.engine.scan import Numbering, build_index
from pyshark_tools.engine.tshark import find_tshark

from .fuzz import tcpip
from .fuzz.pcapng import EPB, Block, Packet, as_packet, read_blocks, write_blocks
from .fuzz.run import REGRESSIONS, Mutant, judge, mutant_of_regression
from .helpers import FIXTURES, fixture_path, fixture_truth, smtp_ports

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


# --- the long run of seed 41 -------------------------------------------------------------

ODD_SYN = "smtp-pipelining-auth.cert_name.s41.i48"
BOGUS_IPV6 = "ipv6-extension-headers.flip.s41.i231.keys"
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def _splits(rows: list[tuple[int, str, int, int]]) -> bool:
    splitter = ConnectionSplitter()
    for stream, src, flags, seq in rows:
        splitter.key(stream, src, flags, seq)
    return splitter.split


@pytest.mark.parametrize("flags", [SYN, SYN | ACK | RST | PSH, SYN | ACK],
                         ids=["syn", "syn-ack-rst-psh", "syn-ack"])
def test_a_syn_with_a_new_sequence_number_is_a_suspected_restart(flags: int) -> None:
    """The reference (tshark 4.0 rows, ConnectionSplitter) starts a new connection at a SYN
    of the client's whose sequence number is not the client's base, whatever other flags it
    carries; the index must suspect it, or the fast engine keeps one conversation."""
    c, s = "192.0.2.1:40000", "198.51.100.25:25"
    rows = [(0, c, SYN, 100), (0, s, SYN | ACK, 500), (0, c, ACK, 101), (0, c, flags, 160)]
    assert _splits(rows)
    stream = np.zeros(4, np.int64)
    direction = np.array([0, 1, 0, 0], np.uint8)
    seq = np.array([r[3] for r in rows], np.uint32)
    assert restart_suspected(stream, direction, seq, np.array([r[2] for r in rows], np.uint8))


def _tshark_rows(capture: Path) -> list[tuple[int, str, int, int]]:
    out = subprocess.run(
        [find_tshark().path, "-n", "-r", str(capture), "-Y", "tcp", "-T", "fields",
         "-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
         "-e", "tcp.flags", "-e", "tcp.seq_raw"],
        capture_output=True, text=True, timeout=120, check=False).stdout
    rows = []
    for line in out.splitlines():
        stream, ip4, ip6, port, flags, seq = line.split("\t")
        rows.append((int(stream), f"{ip4 or ip6}:{port}", int(flags, 16), int(seq)))
    return rows


@pytest.mark.parametrize("capture", [REGRESSIONS / f"{ODD_SYN}.pcapng",
                                     REGRESSIONS / "pcap-nanosecond.cert_name.s41.i1214.pcap",
                                     fixture_path("tcp-port-reuse-restart"),
                                     fixture_path("tls12-client-cert-ok")], ids=lambda p: p.stem)
def test_restart_suspected_wherever_the_reference_splits(capture: Path) -> None:
    """On the capture's own packets: the index's quick test never says no where the
    reference's ConnectionSplitter (over tshark's rows) splits a tcp.stream. (tshark 4.2
    and later number the restart as a tcp.stream of its own: nothing is left to split.)"""
    index = build_index(capture, (25,), numbering=Numbering.V4_0)
    suspected = restart_suspected(index.stream, index.direction, index.seq, index.flags)
    splits = _splits(_tshark_rows(capture))
    assert suspected or not splits
    if tuple(find_tshark().version[:2]) < (4, 2):
        assert splits == (capture.stem != "tls12-client-cert-ok")


def test_odd_syn_regression_goes_to_the_reference() -> None:
    """On tshark 4.0 the fast engine leaves the restart to the reference (which splits it);
    4.4 numbers it as a conversation of its own, and the fast engine does the same."""
    capture = REGRESSIONS / f"{ODD_SYN}.pcapng"
    verdict = judge(mutant_of_regression(capture), capture)
    assert verdict.outcome == "ok", verdict.detail
    if tuple(find_tshark().version[:2]) < (4, 2):
        assert verdict.fast_engine == "reference" and "restarted" in verdict.detail


def _with_bogus_ipv6_version(fixture: str, out: Path) -> tuple[Path, int]:
    """The fixture with the IP version nibble of its 14th frame (the client's Finished
    flight, mid-conversation) made 11: tshark reads no TCP in that frame."""
    blocks = read_blocks(fixture_path(fixture).read_bytes())
    packets = [i for i, b in enumerate(blocks) if b.kind == EPB]
    at = packets[13]
    packet = as_packet(blocks[at])
    assert packet.data[12:14] == b"\x86\xdd" and packet.data[14] >> 4 == 6
    packet.data = packet.data[:14] + bytes([0xB0 | packet.data[14] & 0x0F]) + packet.data[15:]
    blocks[at] = packet.to_block()
    out.write_bytes(write_blocks(blocks))
    return out, len(packets)


@pytest.mark.parametrize("fixture", ["ipv6", "ipv6-extension-headers"])
def test_a_bogus_ipv6_version_frame_is_no_tcp_in_either_engine(fixture: str,
                                                               tmp_path: Path) -> None:
    capture, frames = _with_bogus_ipv6_version(fixture, tmp_path / f"{fixture}.pcapng")
    verdict = judge(Mutant(0, 0, fixture, "flip", False), capture)
    assert verdict.outcome == "ok", verdict.detail
    assert verdict.fast_engine == "fast", verdict.detail
    truth = fixture_truth(fixture)
    report = analyze(capture, ports=smtp_ports(truth), progress=False)
    assert report.conversations["frames"].tolist() == [frames - 1]


def test_bogus_ipv6_regression_is_read_natively() -> None:
    capture = REGRESSIONS / f"{BOGUS_IPV6}.pcapng"
    verdict = judge(mutant_of_regression(capture), capture)
    assert verdict.outcome == "ok" and verdict.fast_engine == "fast", verdict.detail


DAMAGED_OPTION = "pktmon-multi-interface.flip.s41.i638"


def _with_option_length(where: str, olen: int, out: Path) -> Path:
    """tls12-client-cert-ok with the first option of its section header or interface block
    given length ``olen``, or an interface statistics block (start time option of length
    ``olen``) added at its end."""
    blocks = read_blocks((FIXTURES / "tls12-client-cert-ok.pcapng").read_bytes())
    if where == "statistics":
        blocks.append(Block(5, struct.pack("<IIIHH", 0, 0, 0, 2, olen) + bytes(12)))
    else:
        at, first_option = {"section": (0, 16), "interface": (1, 8)}[where]
        body = bytearray(blocks[at].body)
        struct.pack_into("<H", body, first_option + 2, olen)
        blocks[at] = Block(blocks[at].kind, bytes(body))
    out.write_bytes(write_blocks(blocks))
    return out


@pytest.mark.parametrize("where", ["section", "interface", "statistics"])
def test_an_option_past_its_block_goes_to_the_reference(where: str, tmp_path: Path) -> None:
    """tshark calls the file damaged where a block's option runs past the block (the seed 41
    mutant: an interface's); the fast engine must not read such a file as whole."""
    capture = _with_option_length(where, 0x100, tmp_path / f"{where}.pcapng")
    refused = subprocess.run([find_tshark().path, "-n", "-r", str(capture)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert "damaged or corrupt" in refused.stderr
    verdict = judge(Mutant(0, 0, "tls12-client-cert-ok", "flip", False), capture)
    assert verdict.outcome == "ok", verdict.detail
    assert verdict.fast_engine != "fast" and "option runs past" in verdict.detail


def test_a_sound_statistics_block_is_still_read_natively(tmp_path: Path) -> None:
    capture = _with_option_length("statistics", 8, tmp_path / "statistics.pcapng")
    verdict = judge(Mutant(0, 0, "tls12-client-cert-ok", "flip", False), capture)
    assert verdict.outcome == "ok" and verdict.fast_engine == "fast", verdict.detail


def test_damaged_option_regression_goes_to_the_reference() -> None:
    capture = REGRESSIONS / f"{DAMAGED_OPTION}.pcapng"
    verdict = judge(mutant_of_regression(capture), capture)
    assert verdict.outcome == "ok", verdict.detail
    assert verdict.fast_engine == "reference", verdict.detail
