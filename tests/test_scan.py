"""The vectorised capture index (pyshark_tools.engine.scan) against real tshark.

For every capture it indexes, each packet of the SMTP-port conversations must carry
tshark's frame number and tcp.stream, its direction, lengths, timestamp and the bytes tshark
reads (checked through the addresses, ports and sequence number found at the offsets the
index gives), and the number of TCP conversations must be tshark's. A capture it declines
must be declined for a stated reason: the caller then runs the prefilter's own loop.
That loop (``prefilter(..., use_index=False)``) must number conversations the same way: the
edge cases of ``tcp.stream`` are run through it too and compared with tshark.
"""

from __future__ import annotations

import gzip
import mmap
import struct
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from fixtures.factory import pcapng
from fixtures.factory.tcp import Endpoints, TcpFlow, UdpExchange, dns_query
from pyshark_tools.engine import prefilter, scan
from pyshark_tools.engine.scan import CaptureIndex, Declined, _Pcapng, build_index, index_capture
from pyshark_tools.engine.tshark import find_tshark

from .corpus import CORPUS
from .helpers import FIXTURES

PORTS = (25, 587, 465)
T0 = 1_772_442_000_000_000  # µs

#: Captures the index declines on purpose, and why: the loop refuses the damaged file and
#: the ICMP errors too; it passes the embedded keys on to tshark.
DECLINED = {
    "cut-mid-file": "the file ends inside a block",
    "tls13-client-cert-empty-embedded": "decryption secrets block",
    "ipv6-extension-headers": "IPv6 extension headers",  # the per-packet loop reads those
    "zeek/Traces/smtp.pcap": "ICMP errors quoting TCP",  # "fragmentation needed" errors
}


# ------------------------------------------------------------------------------ tshark


def _tshark(capture: Path, display_filter: str, fields: Sequence[str]) -> list[list[str]]:
    out = subprocess.run(
        [find_tshark().path, "-n", "-r", str(capture), "-Y", display_filter, "-T", "fields",
         *(a for f in fields for a in ("-e", f))],
        capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


_FIELDS = ("frame.number", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst",
           "ipv6.dst", "tcp.dstport", "tcp.seq_raw", "tcp.flags", "frame.len", "frame.cap_len",
           "frame.time_epoch", "tcp.ack_raw")


def _ns(epoch: str) -> int:
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


def _ip(raw: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(raw))


def assert_like_tshark(capture: Path, ports: Sequence[int] = PORTS) -> CaptureIndex:
    """Index ``capture`` and compare every indexed packet with tshark's reading of it."""
    idx = build_index(capture, ports)
    port_list = ",".join(map(str, ports))
    rows = _tshark(capture, f"tcp.port in {{{port_list}}}", _FIELDS)
    assert [int(r[0]) for r in rows] == idx.frame.tolist()
    assert [int(r[1]) for r in rows] == idx.stream.tolist()
    every = _tshark(capture, "", ("frame.number", "tcp.stream"))
    assert idx.packets_total == len(every)
    assert idx.tcp_streams == len({r[1] for r in every if r[1]})
    first_end: dict[int, tuple[str, str]] = {}
    ns = idx.ns.tolist()
    with capture.open("rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                  access=mmap.ACCESS_READ) as mm:
        for i, r in enumerate(rows):
            frame, stream = int(r[0]), int(r[1])
            src, dst = (r[2] or r[3], r[4]), (r[5] or r[6], r[7])
            where = f"frame {frame}"
            # direction: 0 for the direction of the conversation's first packet
            first_end.setdefault(stream, src)
            assert idx.direction[i] == (0 if src == first_end[stream] else 1), where
            assert int(r[10]) == idx.origlen[i], where
            assert int(r[11]) == idx.caplen[i], where
            assert _ns(r[12]) == ns[i], where
            # the bytes at the offset are the packet tshark read
            data = mm[int(idx.offset[i]):int(idx.offset[i] + idx.caplen[i])]
            l3, l4 = int(idx.l3[i]), int(idx.l4[i])
            n = 4 if idx.ip_version[i] == 4 else 16
            at = 12 if n == 4 else 8
            assert (_ip(data[l3 + at:l3 + at + n]), str(int.from_bytes(data[l4:l4 + 2], "big"))
                    ) == src, where
            assert (_ip(data[l3 + at + n:l3 + at + 2 * n]),
                    str(int.from_bytes(data[l4 + 2:l4 + 4], "big"))) == dst, where
            assert int(r[8]) == idx.seq[i] == int.from_bytes(data[l4 + 4:l4 + 8], "big"), where
            assert int(r[9], 16) & 0xFF == idx.flags[i], where
            # (tshark shows the acknowledgement number only with the ACK flag)
            assert idx.ack[i] == int.from_bytes(data[l4 + 8:l4 + 12], "big"), where
            assert not r[13] or int(r[13]) == idx.ack[i], where
    return idx


def assert_loop_like_tshark(capture: Path, out: Path,
                            ports: Sequence[int] = PORTS) -> prefilter.Prefiltered:
    """Run the prefilter's loop over every packet (the index's fallback) on ``capture``:
    each packet it hands on (those of the conversations on ``ports``) must carry tshark's
    frame number, tcp.stream and direction, and its totals must be tshark's."""
    handed: list[tuple[int, int, int]] = []
    packet = prefilter._Pass.packet

    def spy(self, conv, direction, frame, *args):  # records, then the loop's own call
        handed.append((frame, conv.stream, direction))
        return packet(self, conv, direction, frame, *args)

    out.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prefilter._Pass, "packet", spy)
        # the numbering itself is checked here: on 4.0 the loop would otherwise leave a
        # restarted connection to the reference engine (tests/test_restarts.py checks that)
        patch.setattr(prefilter, "LEAVE_RESTARTS", False)
        pre = prefilter.prefilter(capture, out, ports=ports, implicit_tls_ports=(),
                                  use_index=False)
    port_list = ",".join(map(str, ports))
    rows = _tshark(capture, f"tcp.port in {{{port_list}}}",
                   ("frame.number", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport"))
    first_end: dict[int, tuple[str, str]] = {}
    truth = []
    for r in rows:
        stream, src = int(r[1]), (r[2] or r[3], r[4])
        first_end.setdefault(stream, src)
        truth.append((int(r[0]), stream, 0 if src == first_end[stream] else 1))
    # a conversation kept whole is read again: its packets are handed on twice, alike
    assert list(dict.fromkeys(handed)) == truth, pre.kept_whole
    every = _tshark(capture, "", ("frame.number", "tcp.stream"))
    assert pre.packets_total == len(every)
    assert pre.tcp_streams == len({r[1] for r in every if r[1]})
    assert pre.packets_matched == len(rows)
    assert sorted(pre.streams) == sorted(first_end)
    by_frame = {frame: stream for frame, stream, _ in truth}
    for shard in pre.shards:
        assert [by_frame[f] for f in shard.frames] == list(shard.streams)
    return pre


def _declined(capture: Path, reason: str) -> None:
    with pytest.raises(Declined, match=reason):
        build_index(capture, PORTS)
    assert index_capture(capture, PORTS) is None


def test_both_readers_read_one_declaration_of_the_format() -> None:
    """The index and the loop decline the same tunnels and ICMP errors and read the same link
    types: both take them from ``engine.capture_format``, not from copies."""
    from pyshark_tools.engine import capture_format

    assert prefilter._TUNNEL_PROTOS is scan._TUNNEL_PROTOS is capture_format.TUNNEL_PROTOS
    assert prefilter._TUNNEL_UDP_PORTS is scan._TUNNEL_UDP_PORTS
    assert prefilter._ICMP4_ERRORS is scan._ICMP4_ERRORS
    assert prefilter._ICMP6_ERRORS is scan._ICMP6_ERRORS
    assert prefilter._SUPPORTED_LINKTYPES is scan.LINKTYPES
    assert capture_format.LT_SLL2 in scan.LINKTYPES and 47 in scan._TUNNEL_PROTOS


# --------------------------------------------------------------------- real captures


@pytest.mark.parametrize("capture", sorted(FIXTURES.glob("*.pcapng")), ids=lambda p: p.stem)
def test_fixture_captures(capture: Path) -> None:
    if capture.stem in DECLINED:
        _declined(capture, DECLINED[capture.stem])
    else:
        assert_like_tshark(capture)


CORPUS_CAPTURES = sorted(CORPUS.rglob("*.pcap")) if CORPUS.is_dir() else []


@pytest.mark.skipif(not CORPUS_CAPTURES, reason=f"peer corpus not found at {CORPUS}")
@pytest.mark.parametrize("capture", CORPUS_CAPTURES,
                         ids=lambda p: str(p.relative_to(CORPUS)) if CORPUS.is_dir() else "")
def test_corpus_captures(capture: Path) -> None:
    """Every corpus trace (those without SMTP still check the conversation count); two are
    on the BSD loopback link type, the others Ethernet."""
    name = str(capture.relative_to(CORPUS))
    if name in DECLINED:
        _declined(capture, DECLINED[name])
    else:
        assert_like_tshark(capture)


def test_corpus_has_smtp_captures() -> None:
    if not CORPUS_CAPTURES:
        pytest.skip(f"peer corpus not found at {CORPUS}")
    with_smtp = [p for p in CORPUS_CAPTURES if str(p.relative_to(CORPUS)) not in DECLINED
                 and len(build_index(p, PORTS))]
    assert len(with_smtp) >= 3, with_smtp


def test_generated_benchmark_capture(tmp_path: Path) -> None:
    from benchmarks.generate import generate

    capture = tmp_path / "bench.pcapng"
    generate(capture, scale=0.02, seed=7)
    idx = assert_like_tshark(capture)
    assert 0 < len(idx) < idx.packets_total
    assert idx.tcp_streams > 200


@pytest.mark.parametrize("fmt", ["pcap", "nsecpcap", "big-endian"])
def test_pcap_files(fmt: str, tmp_path: Path) -> None:
    capture = tmp_path / f"mixed.{fmt}"
    subprocess.run(["editcap", "-F", "pcap" if fmt == "big-endian" else fmt,
                    str(FIXTURES / "mixed-traffic.pcapng"), str(capture)], check=True)
    if fmt == "big-endian":  # as written on a big-endian machine
        data = capture.read_bytes()
        out = bytearray(struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", data)))
        pos = 24
        while pos < len(data):
            head = struct.unpack_from("<IIII", data, pos)
            out += struct.pack(">IIII", *head) + data[pos + 16:pos + 16 + head[2]]
            pos += 16 + head[2]
        capture.write_bytes(bytes(out))
    idx = assert_like_tshark(capture)
    assert idx.interfaces[0].tsres == (9 if fmt == "nsecpcap" else 6)


# ------------------------------------------------------------------ capture building


def _block(btype: int, body: bytes, endian: str = "<") -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack(endian + "II", btype, 12 + len(body)) + body + \
        struct.pack(endian + "I", 12 + len(body))


def _shb(endian: str = "<") -> bytes:
    return _block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def _idb(linktype: int = 1, snaplen: int = 262144, options: bytes = b"") -> bytes:
    return _block(1, struct.pack("<HHI", linktype, 0, snaplen) + options)


def _epb(ts_us: int, data: bytes, ifid: int = 0, orig: int | None = None) -> bytes:
    return _block(6, struct.pack("<IIIII", ifid, ts_us >> 32, ts_us & 0xFFFFFFFF, len(data),
                                 len(data) if orig is None else orig) + data)


def _pcapng(frames: Iterable[bytes], linktype: int = 1, start: int = T0) -> bytes:
    out = bytearray(_shb() + _idb(linktype))
    for i, data in enumerate(frames):
        out += _epb(start + i * 1000, data)
    return bytes(out)


def _pcap(frames: Iterable[bytes], linktype: int, start: int = T0) -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
    for i, data in enumerate(frames):
        ts = start + i * 1000
        out += struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), len(data))
        out += data
    return bytes(out)


def _flow(client: str, cport: int, server: str, sport: int, start: int, isn_c: int = 1000,
          isn_s: int = 2000) -> list[bytes]:
    flow = TcpFlow(client, cport, server, sport, start_us=start, isn_c=isn_c, isn_s=isn_s)
    flow.add(start + 40_000, "s2c", b"220 mx.example ESMTP\r\n")
    flow.add(start + 60_000, "c2s", b"EHLO client.example\r\n")
    return [p.data for p in flow.packets()]


def _smtp_and_web() -> list[bytes]:
    """Two SMTP conversations (IPv4 and IPv6) interleaved with HTTPS and DNS."""
    a = _flow("192.0.2.10", 40000, "198.51.100.25", 25, T0)
    b = _flow("192.0.2.11", 40001, "198.51.100.80", 443, T0 + 5)
    c = _flow("2001:db8::10", 40002, "2001:db8::25", 587, T0 + 9)
    dns = [p.data for p in UdpExchange("192.0.2.10", 5353, "198.51.100.53", 53, T0,
                                       dns_query(1, "mx.example"), b"\x00" * 12).packets()]
    out = []
    for i in range(max(len(a), len(b), len(c))):
        out += [x[i] for x in (a, b, c) if i < len(x)]
        if i == 3:
            out += dns
    return out


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _ip4(frame: bytes) -> tuple[bytes, bytes]:
    """(IPv4 header, rest) of an untagged Ethernet frame."""
    ihl = (frame[14] & 15) * 4
    return frame[14:14 + ihl], frame[14 + ihl:]


def _with_ip(frame: bytes, header: bytes, payload: bytes) -> bytes:
    total = struct.pack("!H", len(header) + len(payload))
    return frame[:14] + header[:2] + total + header[4:] + payload


def _vlan(frame: bytes, *vids: int) -> bytes:
    """802.1Q tags (an outer 802.1ad tag first when there are two)."""
    tpids = (0x88A8, 0x8100) if len(vids) == 2 else (0x8100,)
    tags = b"".join(struct.pack("!HH", t, v) for t, v in zip(tpids, vids, strict=True))
    return frame[:12] + tags + frame[12:]


# ---------------------------------------------------------- what the index reads right


def test_reused_ports_get_new_streams_on_smtp_and_other_ports(tmp_path: Path) -> None:
    frames = []
    for port in (25, 8080):
        first = _flow("192.0.2.1", 40000, "198.51.100.25", port, T0, 1000, 5000)
        # a retransmitted SYN (same sequence number) keeps the conversation
        frames += [*first, first[0]]
        # the same ports again with other initial sequence numbers: a new conversation
        frames += _flow("192.0.2.1", 40000, "198.51.100.25", port, T0 + 10**6, 777, 999)
        # once more, only the SYN-ACK differing: 4.0 keeps the conversation, 4.4 starts one
        frames += _flow("192.0.2.1", 40000, "198.51.100.25", port, T0 + 2 * 10**6, 777, 4)
    capture = _write(tmp_path / "reuse.pcapng", _pcapng(frames))
    numbering = _numbering_at_hand()
    if numbering == scan.Numbering.EITHER:
        _declined(capture, "number these conversations differently")
        return
    # 4.4: each flow ends with FIN+ACK, so the retransmitted SYN and the third flow's SYN
    # (the second flow's ISN) start conversations too
    per_port = 2 if numbering == scan.Numbering.V4_0 else 4
    idx = assert_like_tshark(capture)
    assert idx.tcp_streams == 2 * per_port
    assert sorted(set(idx.stream.tolist())) == list(range(per_port))
    assert sorted(assert_loop_like_tshark(capture, tmp_path / "loop").streams) == \
        list(range(per_port))


def test_conversation_seen_mid_stream_then_reopened(tmp_path: Path) -> None:
    """The first packets are not a SYN: the first sequence number of each direction is
    the one a later SYN is compared with."""
    full = _flow("192.0.2.1", 40000, "198.51.100.25", 25, T0, 1000, 5000)
    again = _flow("192.0.2.1", 40000, "198.51.100.25", 25, T0 + 10**6, 1000, 5000)
    capture = _write(tmp_path / "mid.pcapng", _pcapng(full[3:] + again + full[3:]))
    assert_like_tshark(capture)
    assert_loop_like_tshark(capture, tmp_path / "loop")


def _segment(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
             payload: bytes = b"") -> bytes:
    """An Ethernet frame with one TCP segment (checksums left zero: tshark does not check)."""
    import ipaddress

    a, b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 8192, 0, 0) + payload
    if len(a) == 4:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0) + a + b
        return bytes(12) + b"\x08\x00" + ip + tcp
    ip = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + a + b
    return bytes(12) + b"\x86\xdd" + ip + tcp


@pytest.mark.parametrize("seed", range(6))
def test_random_reuse_of_ports_like_tshark(seed: int, tmp_path: Path) -> None:
    """Random SYN / SYN-ACK / ACK / RST / FIN packets with colliding sequence and
    acknowledgement numbers, both directions, IPv4 and IPv6, a connection to itself: every
    packet's tcp.stream is tshark's (the vectorised pairs and the replayed ones)."""
    import random

    rng = random.Random(seed)
    flag_sets = [0x02, 0x02, 0x12, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x06, 0x01, 0x00]
    numbers = [0, 1, 999, 1000, 1001, 4999, 5000, 5001, 0xFFFFFFFF]
    frames = []
    for scenario in range(25):
        one, two = ((f"2001:db8::{scenario}:1", f"2001:db8::{scenario}:2")
                    if scenario % 5 == 4 else (f"10.{scenario}.0.1", f"10.{scenario}.0.2"))
        ends = [(one, 40000), (two, 25), (one, 40001)]
        pairs = [(ends[0], ends[1]), (ends[0], ends[2]), (ends[2], ends[2])]
        for _ in range(30):
            a, b = rng.choice(pairs)
            if rng.random() < 0.5:
                a, b = b, a
            frames.append(_segment(a[0], b[0], a[1], b[1], rng.choice(numbers),
                                   rng.choice(numbers), rng.choice(flag_sets)))
    capture = _write(tmp_path / f"random-{seed}.pcapng", _pcapng(frames))
    idx = assert_like_tshark(capture, ports=(25, 40000, 40001))
    assert len(idx) == idx.packets_total == len(frames)
    pre = assert_loop_like_tshark(capture, tmp_path / "loop", ports=(25, 40000, 40001))
    assert pre.packets_matched == len(frames)


_C, _S = ("192.0.2.1", 40000), ("198.51.100.25", 25)


def _c2s(seq: int, ack: int, flags: int) -> bytes:
    return _segment(_C[0], _S[0], _C[1], _S[1], seq, ack, flags)


def _s2c(seq: int, ack: int, flags: int) -> bytes:
    return _segment(_S[0], _C[0], _S[1], _C[1], seq, ack, flags)


_SYN, _SYN_ACK, _ACK = 0x02, 0x12, 0x10
_FIN_ACK, _RST, _RST_ACK, _FIN, _SYN_RST = 0x11, 0x04, 0x14, 0x01, 0x06
_HANDSHAKE = [_c2s(1000, 0, _SYN), _s2c(5000, 1001, _SYN_ACK), _c2s(1001, 5001, _ACK)]

#: Where Wireshark's base sequence numbers matter (tshark's tcp.stream of each packet, as
#: 4.0.17 and 4.4.19 gave them): a direction's base is its first packet's sequence number
#: (minus one unless a SYN) or the other direction's first acknowledgement number minus one,
#: if that came first. A SYN without ACK other than the base starts a new conversation; a
#: SYN-ACK other than the base moves the base in 4.0 and starts a new conversation in 4.4;
#: 4.4 also starts one on a SYN or SYN-ACK after a RST or FIN+ACK.
NUMBERING_CASES: dict[str, tuple[list[bytes], dict[str, list[int]]]] = {
    # the client ISN reused with a new server ISN: 4.0 moves the base, 4.4 splits there
    "new-server-isn": ([*_HANDSHAKE, _c2s(1000, 0, _SYN), _s2c(9000, 1001, _SYN_ACK),
                        _c2s(1001, 9001, _ACK)],
                       {"4.0": [0, 0, 0, 0, 0, 0], "4.4": [0, 0, 0, 0, 1, 1]}),
    # seen mid-connection: the base is the first sequence number minus one
    "mid-connection-syn": ([_c2s(1001, 5001, _ACK), _s2c(5001, 1001, _ACK),
                            _c2s(1000, 0, _SYN), _s2c(5000, 1001, _SYN_ACK)],
                           {"4.0": [0, 0, 0, 0], "4.4": [0, 0, 0, 0]}),
    # a server packet first: its acknowledgement number sets the client's base
    "server-first": ([_s2c(5001, 1001, _ACK), _c2s(1000, 0, _SYN),
                      _s2c(5000, 1001, _SYN_ACK), _c2s(1001, 5001, _ACK)],
                     {"4.0": [0, 0, 0, 0], "4.4": [0, 0, 0, 0]}),
    "server-first-then-data": ([_s2c(5001, 1001, _ACK), _c2s(1001, 5001, _ACK),
                                _c2s(1000, 0, _SYN)], {"4.0": [0, 0, 0], "4.4": [0, 0, 0]}),
    # a SYN-ACK first: its acknowledgement number sets the client's base...
    "syn-ack-first": ([_s2c(5000, 1001, _SYN_ACK), _c2s(1001, 5001, _ACK),
                       _c2s(1000, 0, _SYN)], {"4.0": [0, 0, 0], "4.4": [0, 0, 0]}),
    # ... which a SYN with another sequence number does not match
    "syn-ack-first-other-syn": ([_s2c(5000, 1001, _SYN_ACK), _c2s(777, 0, _SYN),
                                 _s2c(6000, 778, _SYN_ACK)],
                                {"4.0": [0, 1, 1], "4.4": [0, 1, 1]}),
    "syn-ack-first-new-syn-ack": ([_s2c(5000, 1001, _SYN_ACK), _c2s(1000, 0, _SYN),
                                   _s2c(6000, 1001, _SYN_ACK), _c2s(1001, 6001, _ACK)],
                                  {"4.0": [0, 0, 0, 0], "4.4": [0, 0, 1, 1]}),
    # the same SYN again after both FIN+ACKs (a quick reconnect): 4.4 splits
    "same-syn-after-fin": ([*_HANDSHAKE, _c2s(1001, 5001, _FIN_ACK),
                            _s2c(5001, 1002, _FIN_ACK), _c2s(1002, 5002, _ACK),
                            _c2s(1000, 0, _SYN), _s2c(5000, 1001, _SYN_ACK)],
                           {"4.0": [0] * 8, "4.4": [0] * 6 + [1, 1]}),
    # ... but a FIN without ACK does not count as closing
    "same-syn-after-bare-fin": ([*_HANDSHAKE, _c2s(1001, 5001, _FIN), _c2s(1000, 0, _SYN)],
                                {"4.0": [0] * 5, "4.4": [0] * 5}),
    # a RST (with or without ACK, either side) does
    "same-syn-after-rst": ([*_HANDSHAKE, _s2c(5001, 0, _RST), _c2s(1000, 0, _SYN)],
                           {"4.0": [0] * 5, "4.4": [0, 0, 0, 0, 1]}),
    "same-syn-ack-after-rst": ([*_HANDSHAKE, _s2c(5001, 1001, _RST_ACK),
                                _s2c(5000, 1001, _SYN_ACK)],
                               {"4.0": [0] * 5, "4.4": [0, 0, 0, 0, 1]}),
    # a SYN that keeps the conversation makes 4.4 forget the RST it saw
    "syn-forgets-the-rst": ([_s2c(5000, 0, _SYN_RST), _c2s(1000, 0, _SYN),
                             _s2c(5000, 1001, _SYN_ACK)],
                            {"4.0": [0, 0, 0], "4.4": [0, 0, 0]}),
}


def _numbering_at_hand() -> scan.Numbering:
    return scan.numbering_for(find_tshark().version)


@pytest.mark.parametrize("case", sorted(NUMBERING_CASES))
def test_conversation_numbering_edge_cases(case: str, tmp_path: Path) -> None:
    """The index and the loop number these conversations as the tshark at hand does
    (checked against it, and against the numbers its version gave when the cases were
    written); a version whose rules were not measured gets them declined where 4.0 and 4.4
    differ."""
    frames, expected = NUMBERING_CASES[case]
    capture = _write(tmp_path / f"{case}.pcapng", _pcapng(frames))
    got = [int(r[0]) for r in _tshark(capture, "tcp", ("tcp.stream",))]
    numbering = _numbering_at_hand()
    if numbering == scan.Numbering.EITHER:
        if expected["4.0"] != expected["4.4"]:
            _declined(capture, "number these conversations differently")
            return
        assert got == expected["4.0"]
    else:
        assert got == expected[numbering.value]
    assert assert_like_tshark(capture).stream.tolist() == got
    assert_loop_like_tshark(capture, tmp_path / "loop")


@pytest.mark.parametrize("case", sorted(NUMBERING_CASES))
def test_numbering_rules_of_each_version(case: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Both rule sets whatever tshark is installed: the index and the loop number each case
    as that version of tshark did (the numbers recorded above), and a version not measured
    is declined exactly where the two differ."""
    # the numbering itself is checked: on 4.0 the loop would leave a restarted connection to
    # the reference engine (tests/test_restarts.py checks that)
    monkeypatch.setattr(prefilter, "LEAVE_RESTARTS", False)
    frames, expected = NUMBERING_CASES[case]
    capture = _write(tmp_path / f"{case}.pcapng", _pcapng(frames))
    for numbering in (scan.Numbering.V4_0, scan.Numbering.V4_4):
        idx = build_index(capture, PORTS, numbering=numbering)
        assert idx.stream.tolist() == expected[numbering.value], numbering
        assert idx.tcp_streams == len(set(expected[numbering.value]))
        out = tmp_path / f"loop-{numbering.value}"
        out.mkdir()
        pre = prefilter.prefilter(capture, out, ports=PORTS, implicit_tls_ports=(),
                                  use_index=False, numbering=numbering)
        assert pre.tcp_streams == len(set(expected[numbering.value])), numbering
    if expected["4.0"] == expected["4.4"]:
        assert build_index(capture, PORTS, numbering=scan.Numbering.EITHER).stream.tolist() \
            == expected["4.0"]
    else:
        with pytest.raises(Declined, match="differently"):
            build_index(capture, PORTS, numbering=scan.Numbering.EITHER)
        out = tmp_path / "loop-either"
        out.mkdir()
        with pytest.raises(prefilter.Unsupported, match="differently"):
            prefilter.prefilter(capture, out, ports=PORTS, implicit_tls_ports=(),
                                use_index=False, numbering=scan.Numbering.EITHER)


def test_numbering_follows_the_version() -> None:
    assert scan.numbering_for((4, 0, 17)) == scan.Numbering.V4_0
    assert scan.numbering_for((3, 6, 2)) == scan.Numbering.V4_0
    assert scan.numbering_for((4, 4, 19)) == scan.Numbering.V4_4
    # 4.6 measured against tshark 4.6.9 (Debian unstable): 4.4's rules, every case of this file
    assert scan.numbering_for((4, 6, 9)) == scan.Numbering.V4_4
    assert scan.numbering_for((4, 2, 2)) == scan.Numbering.EITHER  # not measured
    assert scan.numbering_for((4, 8, 0)) == scan.Numbering.EITHER


def _ip_options(frame: bytes) -> bytes:
    """The same IPv4 frame with a 4-byte IP option (NOP NOP NOP EOL)."""
    ip, rest = _ip4(frame)
    return _with_ip(frame, bytes([ip[0] + 1]) + ip[1:] + b"\x01\x01\x01\x00", rest)


def test_vlan_tags_ip_options_padding_ipv6_and_non_ip_frames(tmp_path: Path) -> None:
    frames = [_ip_options(f) if i % 5 == 2 and f[12:14] == b"\x08\x00" else
              f + bytes(max(0, 60 - len(f))) if i % 5 == 3 else f
              for i, f in enumerate(_smtp_and_web())]
    tagged = [_vlan(f, 100) if i % 3 == 0 else _vlan(f, 10, 20) if i % 3 == 1 else f
              for i, f in enumerate(frames)]
    arp = bytes(6 * [0xFF]) + bytes(6) + b"\x08\x06" + bytes(28)
    stp = bytes.fromhex("0180c2000000") + bytes(6) + b"\x00\x26" + b"\x42\x42\x03" + bytes(35)
    capture = _write(tmp_path / "vlan.pcapng", _pcapng([arp, stp, *tagged, b"\x00" * 10]))
    idx = assert_like_tshark(capture)
    assert set(idx.ip_version.tolist()) == {4, 6}
    assert set(idx.l3.tolist()) == {14, 18, 22}


@pytest.mark.parametrize("linktype", [101, 228, 0, 108, 113, 276])
def test_other_link_layers(linktype: int, tmp_path: Path) -> None:
    """Raw IP, BSD loopback (both byte orders), Linux cooked capture v1 and v2."""
    def relink(frame: bytes) -> bytes:
        ip, etype = frame[14:], frame[12:14]
        v6 = etype == b"\x86\xdd"
        if linktype in (101, 228):
            return ip
        if linktype == 0:
            return struct.pack("<I", 30 if v6 else 2) + ip
        if linktype == 108:
            return struct.pack(">I", 30 if v6 else 2) + ip
        if linktype == 113:
            return struct.pack("!HHH8s", 0, 1, 6, frame[6:12]) + etype + ip
        return etype + b"\x00\x00" + struct.pack("!IHBB8s", 2, 1, 0, 6, frame[6:12]) + ip

    frames = [relink(f) for f in _smtp_and_web()
              if linktype != 228 or f[12:14] == b"\x08\x00"]
    capture = _write(tmp_path / f"lt{linktype}.pcap", _pcap(frames, linktype))
    idx = assert_like_tshark(capture)
    assert len(idx) and idx.interfaces[0].linktype == linktype


def test_sections_interfaces_and_inert_blocks(tmp_path: Path) -> None:
    """Two sections, Ethernet and raw-IP interfaces, nanosecond timestamps, an interface
    described after packets, statistics and name-resolution blocks between packets."""
    frames = _smtp_and_web()
    nrb = _block(4, struct.pack("<HH", 1, 8) + bytes([192, 0, 2, 10]) + b"mx\x00\x00"
                 + bytes(4))
    isb = _block(5, struct.pack("<III", 0, 0, 0))
    ns_idb = _idb(101, 65535, struct.pack("<HHB3x", 9, 1, 9) + bytes(4))
    out = bytearray(_shb() + _idb(1))
    for i, f in enumerate(frames[:20]):
        out += _epb(T0 + i, f)
        if i == 5:
            out += nrb + ns_idb
        if i > 5 and i % 2:
            out += _epb(T0 * 1000 + i, f[14:], ifid=1)
        if i == 9:
            out += isb
    out += _shb() + _idb(101) + _idb(1)
    for i, f in enumerate(frames[20:]):
        out += _epb(T0 + 100 + i, f, ifid=1) + _epb(T0 + 200 + i, f[14:], ifid=0)
    out += isb
    capture = _write(tmp_path / "sections.pcapng", bytes(out))
    idx = assert_like_tshark(capture)
    assert [(i.section, i.ifid, i.linktype, i.tsres) for i in idx.interfaces] == [
        (0, 0, 1, 6), (0, 1, 101, 9), (1, 0, 101, 6), (1, 1, 1, 6)]
    assert set(idx.iface.tolist()) == {0, 1, 2, 3}


def test_icmp_errors_quoting_udp_and_snaplen_cut_payloads(tmp_path: Path) -> None:
    frames = _smtp_and_web()
    udp_frame = next(f for f in frames if f[23] == 17)
    ip, _rest = _ip4(udp_frame)
    quoted = udp_frame[14:14 + 28]  # the IP header and UDP header of the lookup
    icmp = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + quoted
    frames.insert(6, _with_ip(udp_frame, ip[:9] + b"\x01" + ip[10:], icmp))
    out = bytearray(pcapng.shb() + pcapng.idb(snaplen=80))
    for i, f in enumerate(frames):
        out += pcapng.epb(T0 + i * 100, f, 80)
    capture = _write(tmp_path / "icmp-snaplen.pcapng", bytes(out))
    idx = assert_like_tshark(capture)
    assert bool((idx.caplen < idx.origlen).any())


def test_false_packet_block_marks_inside_packets(tmp_path: Path) -> None:
    """Payload words that look like the start of a packet block (type 6 and a plausible
    length) must not be taken for blocks: the chained walk equals the sequential one."""
    fake = struct.pack("<II", 6, 32) * 40 + struct.pack("<II", 6, 64) + bytes(56)
    frames = _smtp_and_web()
    flow = TcpFlow("192.0.2.50", 41000, "198.51.100.25", 25, start_us=T0)
    flow.add(T0 + 1000, "c2s", b"MAIL FROM:<a@b>\r\n" + fake)
    flow.add(T0 + 2000, "s2c", fake + b"250 ok\r\n")
    frames += [p.data for p in flow.packets()]
    out = bytearray(_shb() + _idb(1))
    for i, f in enumerate(frames):
        for pad in range(4):  # the fake words at every alignment
            out += _epb(T0 + i, f + bytes(pad))
        if i % 7 == 0:
            out += _block(5, struct.pack("<III", 0, 0, 0))
    capture = _write(tmp_path / "fake-blocks.pcapng", bytes(out))
    with capture.open("rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                  access=mmap.ACCESS_READ) as mm:
        reader = _Pcapng(mm, len(mm))
        assert reader.walk().tolist() == reader.walk_sequential().tolist()
    assert_like_tshark(capture)


# ------------------------------------------------------------------ what it declines


def _ipv4_variant(tmp_path: Path, name: str, proto: int, payload: bytes,
                  frag: int = 0x4000) -> Path:
    frames = _smtp_and_web()
    template = frames[0]
    ip, _rest = _ip4(template)
    ip = ip[:6] + struct.pack("!HBB", frag, 64, proto) + ip[10:]
    frames.insert(4, _with_ip(template, ip, payload))
    return _write(tmp_path / f"{name}.pcapng", _pcapng(frames))


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def test_declines_ip_fragments(tmp_path: Path) -> None:
    _declined(_ipv4_variant(tmp_path, "frag", 17, _udp(5000, 53, b"x" * 40), 0x2000),
              "fragmented IP packets")
    _declined(_ipv4_variant(tmp_path, "frag2", 6, b"y" * 40, 0x0010), "fragmented IP packets")


def test_declines_tunnels(tmp_path: Path) -> None:
    inner = _smtp_and_web()[0]
    _declined(_ipv4_variant(tmp_path, "gre", 47, b"\x00\x00\x08\x00" + inner[14:]),
              r"tunnelled traffic \(IP protocol\)")
    _declined(_ipv4_variant(tmp_path, "ipip", 4, inner[14:]),
              r"tunnelled traffic \(IP protocol\)")
    _declined(_ipv4_variant(tmp_path, "vxlan", 17, _udp(50000, 4789, bytes(8) + inner)),
              r"tunnelled traffic \(UDP port\)")


def test_declines_icmp_errors_quoting_tcp(tmp_path: Path) -> None:
    tcp_frame = _smtp_and_web()[0]
    _declined(_ipv4_variant(tmp_path, "icmp", 1, bytes([3, 1, 0, 0, 0, 0, 0, 0])
                            + tcp_frame[14:14 + 28]), "ICMP errors quoting TCP")


def test_declines_ipv6_extension_headers(tmp_path: Path) -> None:
    ep = Endpoints("2001:db8::1", "2001:db8::2")
    frame = ep.frame("c2s", 0, b"\x06\x00" + bytes(6) + _flow("2001:db8::1", 1, "2001:db8::2",
                                                              25, T0)[0][54:])
    _declined(_write(tmp_path / "hbh.pcapng", _pcapng([*_smtp_and_web(), frame])),
              "IPv6 extension headers")


def test_declines_cut_tcp_headers_and_distrusted_lengths(tmp_path: Path) -> None:
    frames = _smtp_and_web()
    out = bytearray(_shb() + _idb(1, 40))
    for i, f in enumerate(frames):
        out += _epb(T0 + i, f[:40], orig=len(f))
    _declined(_write(tmp_path / "cut.pcapng", bytes(out)), "a TCP header is cut by the snap")
    tso = frames[0][:16] + b"\x00\x00" + frames[0][18:]  # total length 0 (TSO)
    _declined(_write(tmp_path / "tso.pcapng", _pcapng([*frames, tso])),
              "an IP length the loop would not trust")
    short = frames[0][:16] + struct.pack("!H", 30) + frames[0][18:]  # 10 bytes of "TCP"
    _declined(_write(tmp_path / "short.pcapng", _pcapng([*frames, short])),
              "a TCP header longer than its segment")


def test_declines_encapsulations_and_deep_vlan_stacks(tmp_path: Path) -> None:
    frame = _smtp_and_web()[0]
    mpls = frame[:12] + b"\x88\x47" + b"\x00\x01\x01\x40" + frame[14:]
    _declined(_write(tmp_path / "mpls.pcapng", _pcapng([frame, mpls])), "MPLS")
    snap = frame[:12] + struct.pack("!H", len(frame) - 6) + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" \
        + frame[14:]
    _declined(_write(tmp_path / "snap.pcapng", _pcapng([frame, snap])), "SNAP")
    deep = frame[:12] + b"\x81\x00\x00\x01" * 3 + frame[12:]
    _declined(_write(tmp_path / "qinqinq.pcapng", _pcapng([frame, deep])),
              "more than two VLAN tags")


def test_declines_files_it_cannot_read_exactly(tmp_path: Path) -> None:
    frames = _smtp_and_web()
    good = _pcapng(frames)
    _declined(_write(tmp_path / "short.pcapng", good[:100]), "ends inside a block")
    _declined(_write(tmp_path / "odd.pcapng", good + b"\x00\x00"), "ends inside a block")
    _declined(_write(tmp_path / "c.pcapng.gz", gzip.compress(good)), "not a pcap or pcapng")
    _declined(_write(tmp_path / "empty.pcap", b""), "too short")
    bad_tail = bytearray(good)
    bad_tail[-4:] = struct.pack("<I", 8)
    _declined(_write(tmp_path / "tail.pcapng", bytes(bad_tail)), "trailing length")
    _declined(_write(tmp_path / "user0.pcapng", _pcapng(frames, linktype=147)),
              "link type 147")
    _declined(_write(tmp_path / "ifid.pcapng", _shb() + _idb(1) + _epb(T0, frames[0], 1)),
              "interface not")
    tsoffset = _idb(1, options=struct.pack("<HHq", 14, 8, 5) + bytes(4))
    _declined(_write(tmp_path / "tsoffset.pcapng", _shb() + tsoffset + _epb(T0, frames[0])),
              "timestamp offset")
    _declined(_write(tmp_path / "spb.pcapng", good + _block(3, struct.pack("<I", 60)
                                                            + frames[0])), "simple packet")
    _declined(_write(tmp_path / "custom.pcapng", good + _block(0xBAD, bytes(8))),
              "block type 0x00000bad")
    _declined(_write(tmp_path / "be.pcapng", _shb(">") + _idb(1)), "big-endian")
    pcap = bytearray(_pcap(frames, 1))
    pcap[24 + 4:24 + 8] = struct.pack("<I", 1_000_000)  # microseconds out of range
    _declined(_write(tmp_path / "usec.pcap", bytes(pcap)), "fraction out of range")
    _declined(_write(tmp_path / "cut.pcap", _pcap(frames, 1)[:-3]),
              "ends inside a packet record")
    _declined(_write(tmp_path / "v3.pcap", _pcap(frames, 1)[:4] + b"\x03"
                     + _pcap(frames, 1)[5:]), "major version")


def test_declines_ip_versions_tshark_reads_otherwise(tmp_path: Path) -> None:
    """tshark reads an IPv6 packet behind the IPv4 ethertype (the loop skips it), and
    nothing but IPv6 on the raw IPv6 link type (the loop reads IPv4 there too)."""
    v6 = _segment("2001:db8::1", "2001:db8::2", 1234, 25, 1, 0, 0x02)
    v4 = _segment("10.0.0.1", "10.0.0.2", 1234, 25, 1, 0, 0x02)
    assert [r[0] for r in _tshark(_write(tmp_path / "probe.pcapng",
                                         _pcapng([v6[:12] + b"\x08\x00" + v6[14:]])),
                                  "tcp", ("tcp.stream",))] == ["0"]
    _declined(_write(tmp_path / "v6-as-v4.pcapng", _pcapng([v4, v6[:12] + b"\x08\x00"
                                                             + v6[14:]])),
              "IPv6 behind an IPv4 link-layer type")
    _declined(_write(tmp_path / "v4-raw6.pcap", _pcap([v6[14:], v4[14:]], 229)),
              "IPv4 on the raw IPv6 link type")


def test_empty_captures(tmp_path: Path) -> None:
    for capture in (_write(tmp_path / "empty.pcapng", _shb() + _idb(1)),
                    _write(tmp_path / "empty.pcap", _pcap([], 1))):
        idx = assert_like_tshark(capture)
        assert (idx.packets_total, idx.tcp_streams, len(idx)) == (0, 0, 0)


def test_declines_embedded_secrets(tmp_path: Path) -> None:
    data, _ = pcapng.write([], secrets=b"CLIENT_RANDOM 00 00\n")
    _declined(_write(tmp_path / "dsb.pcapng", data), "decryption secrets")
