"""A pure-Python pcap/pcapng reader that hands tshark only the packets it needs.

tshark's cost is dissecting every packet; reading a capture is cheap. ``prefilter`` reads the
capture once and writes a reduced pcapng holding only:

* the packets of the TCP conversations on the SMTP ports;
* of each direction of a TLS conversation, only the bytes up to (and including) the packet
  that completes the direction's first application-data record (the end of the handshake),
  unless a key log could decrypt the conversation (then everything is kept, so decrypted
  replies such as ``550 5.7.64`` are reported);
* the SYN, FIN and RST packets of those conversations.

While reading it counts what the dropped packets would have told tshark: frames, bytes,
first/last frame and time, SYN/FIN/RST, snap-length truncation per conversation, and the
TLS records that complete after the cut (an encrypted alert is an event the reference
reports). It numbers TCP conversations the way Wireshark does (``tcp.stream``: order of first
appearance of an address/port pair, a new conversation when a SYN reuses the ports with
another initial sequence number), so every frame number and stream index in the report is
the original capture's. Every kept packet carries a comment naming its original frame.

Whatever the reader is not sure to reproduce exactly for the whole capture raises
:class:`Unsupported`; the caller then runs the reference engine (one tshark pass over the
whole capture) instead: other link types, tunnels, IP fragments, ICMP errors quoting TCP,
damaged or compressed files. What concerns one conversation only (a retransmitted,
duplicated, reordered or missing segment, a snap-length cut, records it does not follow after
the handshake) never does: that conversation is *kept whole* (every packet goes to tshark,
nothing is cut or read natively), found ahead by :func:`irregular_streams` on the index, or,
when only the reading finds it, by reading the capture once more with it kept whole.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import socket
import struct
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..forking import can_fork, map_forked
from .capture_format import ACK as _ACK
from .capture_format import FIN as _FIN
from .capture_format import ICMP4_ERRORS as _ICMP4_ERRORS
from .capture_format import ICMP6_ERRORS as _ICMP6_ERRORS
from .capture_format import LINKTYPES as _SUPPORTED_LINKTYPES
from .capture_format import LT_ETHERNET, LT_IPV4, LT_IPV6, LT_LOOP, LT_NULL, LT_RAW, LT_SLL, LT_SLL2
from .capture_format import RST as _RST
from .capture_format import SYN as _SYN
from .capture_format import TUNNEL_PROTOS as _TUNNEL_PROTOS
from .capture_format import TUNNEL_UDP_PORTS as _TUNNEL_UDP_PORTS
from .native import Demote, NativeConversation, NativeResult, ns_to_datetime
from .reassembly import Holes, InOrder, readable_in_order
from .restarts import restart_suspected

if TYPE_CHECKING:
    from .scan import Numbering

__all__ = ["Prefiltered", "StreamTotals", "SyntheticEvent", "Unsupported", "prefilter"]


class Unsupported(Exception):
    """The prefilter cannot promise tshark's exact view of this capture."""


#: Why the fast engine leaves a capture to the reference engine on tshark 4.0: that engine
#: splits the tcp.stream into one conversation per connection (restarts.py).
RESTARTED = ("an SMTP connection restarted on the same addresses and ports, which this "
             "tshark numbers as one tcp.stream")
#: On tshark before 4.2 such captures go to the reference engine (it splits the tcp.stream);
#: False only where the loop's own 4.0 numbering is what is being checked (tests).
LEAVE_RESTARTS = True

_STARTTLS = re.compile(rb"(?:^|\n)STARTTLS[ \t]*\r?\n", re.IGNORECASE)

#: The latest packet time the reader takes (year 2255): a later one is a damaged time stamp
#: that nanoseconds in 64 bits cannot hold (the reference engine reads such a capture).
LATEST_NS = 9_000_000_000 * 1_000_000_000

# Direction modes of an SMTP conversation.
_CLEAR, _TLS, _CUT, _KEEP = 0, 1, 2, 3


@dataclass
class StreamTotals:
    """What the prefilter counted for one conversation on the SMTP ports (all its packets)."""

    stream: int
    first_src: str
    first_dst: str
    first_frame: int
    first_time: datetime
    last_frame: int
    last_time: datetime
    frames: int
    bytes: int
    syn_from: str | None
    fin: bool
    rst: bool
    truncated_frames: int
    shard: int
    cut: bool  # some of its packets were left out


@dataclass(frozen=True)
class SyntheticEvent:
    """An event the reference engine would report from a packet the prefilter left out."""

    frame: int
    time: datetime
    stream: int
    src: str
    dst: str
    kind: str
    name: str


@dataclass
class Shard:
    """One reduced capture and the way back to the original one."""

    path: Path
    frames: array  # reduced frame number - 1 -> original frame number
    streams: array  # reduced frame number - 1 -> original tcp.stream
    #: 1: tshark's row for this frame is not used (counted here instead, or its conversation
    #: read again kept whole, in another shard)
    post_cut: bytearray

    @property
    def packets(self) -> int:
        return len(self.frames)


@dataclass
class Prefiltered:
    shards: list[Shard]
    streams: dict[int, StreamTotals]
    synthetic: list[SyntheticEvent]
    packets_total: int  # every packet of the capture
    packets_matched: int  # packets the reference's display filter would keep
    first_time: datetime | None
    last_time: datetime | None
    tcp_streams: int  # TCP conversations in the whole capture
    bytes_read: int
    kept_packets: int = 0
    kept_bytes: int = 0
    secrets_embedded: bool = False
    native: NativeResult | None = None  # conversations read without tshark
    #: stream -> why tshark read it instead of the native reader
    demoted_streams: dict[int, str] = field(default_factory=dict)
    kept_whole: dict[int, str] = field(default_factory=dict)  # stream -> why (see module doc)
    redo: dict[int, str] = field(default_factory=dict)  # found while reading: read again
    #: what ``whole_reader`` gave for each shard of conversations kept whole from the start,
    #: read while the other conversations were (those shards are not in ``shards``)
    whole_results: list = field(default_factory=list)

    @property
    def demoted(self) -> dict[str, int]:
        """How many conversations tshark read instead of the native reader, by reason."""
        counts: dict[str, int] = {}
        for why in self.demoted_streams.values():
            counts[why] = counts.get(why, 0) + 1
        return counts


def _ip_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def _endpoint(raw_ip: bytes, port: int) -> str:
    ip = _ip_text(raw_ip)
    return f"[{ip}]:{port}" if len(raw_ip) == 16 else f"{ip}:{port}"


class _Records:
    """Incremental TLS record-layer parser over one direction's in-order bytes."""

    __slots__ = ("hdr", "need", "rlen", "rtype")

    def __init__(self) -> None:
        self.hdr = b""
        self.need = 0
        self.rtype = 0
        self.rlen = 0

    def feed(self, data: bytes) -> list[tuple[int, int]] | None:
        """Completed (type, length) records, or None when the bytes are not TLS records."""
        done = []
        pos, end = 0, len(data)
        while pos < end:
            if self.need:
                take = min(self.need, end - pos)
                self.need -= take
                pos += take
                if not self.need:
                    done.append((self.rtype, self.rlen))
                continue
            want = 5 - len(self.hdr)
            self.hdr += data[pos:pos + want]
            pos += min(want, end - pos)
            if len(self.hdr) < 5:
                break
            rtype, major, minor, rlen = self.hdr[0], self.hdr[1], self.hdr[2], \
                int.from_bytes(self.hdr[3:5], "big")
            self.hdr = b""
            if not (20 <= rtype <= 24) or major != 3 or minor > 4 or rlen > 18432:
                return None
            self.rtype, self.rlen, self.need = rtype, rlen, rlen
            if not rlen:
                done.append((rtype, 0))
        return done


class _Dir:
    __slots__ = ("acked", "line", "mode", "nextseq", "records")

    def __init__(self) -> None:
        self.mode = _CLEAR
        self.nextseq: int | None = None
        self.records: _Records | None = None
        self.line = b""  # the cleartext line still open at the end of the last segment
        self.acked: int | None = None  # the furthest ACK number this direction sent


def _records_after_handshake(done: list[tuple[int, int]] | None) -> tuple[bool, str]:
    """(an encrypted alert completed, why tshark must read the conversation instead: "" when
    nothing) for the TLS records completed after a direction's handshake: only application
    data and alerts may follow it."""
    if done is None:
        return False, "not TLS after the handshake"
    alert = False
    for rtype, rlen in done:
        if rtype == 21 and rlen != 2:
            alert = True
        elif rtype != 23:
            return alert, "TLS records other than data or alerts after the handshake"
    return alert, ""


def _acked_before_seen(conv: _Conv, direction: int, ack: int, seq: int, seglen: int,
                       flags: int) -> bool:
    """Note this packet's ACK number; True when its data was acknowledged by the other side
    before the capture shows it (an ACK captured ahead of the data it acknowledges): tshark
    flags such a segment a spurious retransmission and does not dissect it, and only with
    the pure ACKs kept does tshark see it so."""
    d = conv.dirs[direction]
    if flags & _ACK and (d.acked is None or 0 < (ack - d.acked) & 0xFFFFFFFF < 0x80000000):
        d.acked = ack
    acked = conv.dirs[1 - direction].acked
    return bool(seglen) and acked is not None and \
        (acked - (seq + seglen)) & 0xFFFFFFFF < 0x80000000


#: The longest unfinished line :func:`_starttls_line` keeps (a STARTTLS line is shorter).
_LINE_KEPT = 64


def _starttls_line(d: _Dir, payload: bytes) -> bool:
    """Whether a STARTTLS command line ends in ``payload``; the line may have begun in the
    direction's earlier segments (a command split across segments, as tshark reassembles
    it)."""
    text = d.line + payload if d.line else payload
    found = _STARTTLS.search(text) is not None
    rest = text[text.rfind(b"\n") + 1:]
    # a longer open line cannot be STARTTLS: a byte that is no line end stands for it
    d.line = rest if len(rest) <= _LINE_KEPT else b"\x00"
    return found


class _KeepWhole(Exception):
    """This conversation must go to tshark whole (the reason): read the capture again."""


#: Why a conversation is kept whole (the reasons the report counts).
IRREGULAR = "retransmitted, duplicated, reordered or missing TCP segments"
#: A conversation with a hole this close to a direction's start is kept whole from the start:
#: the hole most likely lies inside the handshake, where tshark reads it (the reading would
#: find that only at the conversation's end, and tshark would then read it after the others;
#: on the impaired benchmark 83 % of holes this early are, 4 % of later ones).
EARLY_HOLE_BYTES = 3072
SPURIOUS = "a segment tshark calls a spurious retransmission"
HOLE_IN_HANDSHAKE = "a segment missing from the capture before the handshake's end"
SNAPLEN_CUT = "packets cut by the snap length"


class _Conv:
    """State of one SMTP-port conversation."""

    __slots__ = ("bytes", "cut", "dirs", "elsewhere", "fin", "first_frame", "first_ns",
                 "frames", "held", "implicit", "key", "last_frame", "last_ns", "native",
                 "order", "retained", "rst", "settled", "shard", "starttls", "stream",
                 "syn_dir", "trunc", "whole")

    def __init__(self, stream: int, key: bytes, shard: int, implicit: bool) -> None:
        self.stream = stream
        self.key = key
        self.shard = shard
        self.implicit = implicit
        self.dirs = (_Dir(), _Dir())
        self.starttls = False
        self.frames = self.bytes = self.trunc = 0
        self.first_frame = self.last_frame = 0
        self.first_ns = self.last_ns = 0
        self.syn_dir: int | None = None
        self.fin = self.rst = False
        self.cut = False
        # read natively (no tshark) while this is set; its packets are held back in
        # ``retained`` until the native reader is sure (or gives the conversation to tshark)
        self.native: NativeConversation | None = None
        self.retained: list[tuple] | None = None
        self.whole = False  # every packet goes to tshark (see _Pass.whole)
        self.elsewhere = False  # ... into a shard written from the index (see _indexed)
        # read in sequence order (see _Pass.reordered): each direction's InOrder, and the
        # encrypted alerts found after the cut, held until the native reading is sure
        self.order: tuple[InOrder, InOrder] | None = None
        self.held: list[SyntheticEvent] | None = None
        # both directions are past their handshake and nothing can hand the conversation to
        # tshark whole any more: its later packets take _Pass.settled_packet
        self.settled = False


class _Writer:
    """A pcapng writer for one shard: interfaces copied on first use, packets commented."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = path.open("wb")
        self.limit = 1 << 22
        self.buf = bytearray(_SHB)
        self.ifaces: dict[tuple[int, int], int] = {}
        self.frames = array("Q")
        self.streams = array("I")
        self.post_cut = bytearray()

    def interface(self, key: tuple[int, int], linktype: int, snaplen: int, tsres: int) -> int:
        new = self.ifaces.get(key)
        if new is None:
            new = self.ifaces[key] = len(self.ifaces)
            opts = struct.pack("<HHB3x", 9, 1, tsres) + b"\x00\x00\x00\x00"
            body = struct.pack("<HHI", linktype, 0, snaplen) + opts
            self.buf += struct.pack("<II", 1, 12 + len(body)) + body + \
                struct.pack("<I", 12 + len(body))
        return new

    def packet(self, iface: int, ts: int, data: bytes, orig_len: int, frame: int, stream: int,
               post_cut: bool) -> None:
        comment = f"frame {frame}".encode()
        cpad = -len(comment) % 4
        dpad = -len(data) % 4
        total = 28 + len(data) + dpad + 4 + len(comment) + cpad + 4 + 4
        buf = self.buf
        buf += struct.pack("<IIIIIII", 6, total, iface, ts >> 32, ts & 0xFFFFFFFF, len(data),
                           orig_len)
        buf += data
        buf += b"\x00" * dpad
        buf += struct.pack("<HH", 1, len(comment)) + comment + b"\x00" * cpad
        buf += struct.pack("<HHI", 0, 0, total)
        self.frames.append(frame)
        self.streams.append(stream)
        self.post_cut.append(1 if post_cut else 0)
        if len(buf) > self.limit:
            self.flush()

    def raw_block(self, block: bytes) -> None:
        self.buf += block

    def flush(self) -> None:
        self.handle.write(self.buf)
        self.buf = bytearray()

    def close(self) -> Shard:
        self.flush()
        self.handle.close()
        return Shard(self.path, self.frames, self.streams, self.post_cut)


_SHB = (struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28))


_OPTION_LENGTHS = {2: (4,), 3: (3,), 4: (2,), 5: (10, 18, 26, 34), 8: (10,)}


def _plain_options(data: bytes, l4: int, thl: int) -> bool:
    """The TCP options are well-formed MSS/window/SACK/timestamp options (or none)."""
    pos, end = l4 + 20, l4 + thl
    if end > len(data):
        return False
    while pos < end:
        kind = data[pos]
        if kind == 0:
            return True
        if kind == 1:
            pos += 1
            continue
        if pos + 1 >= end or data[pos + 1] not in _OPTION_LENGTHS.get(kind, ()):
            return False
        pos += data[pos + 1]
    return pos == end


# long: runs per packet: the IPv4/IPv6 header checks inline (a call per check costs time on millions
#   of packets)
def _l3(linktype: int, data: bytes) -> tuple[int, int]:
    """(IP version 4/6 or 0, offset of the IP header) for one frame."""
    if linktype == LT_ETHERNET:
        off = 12
        etype = int.from_bytes(data[12:14], "big")
        while etype in (0x8100, 0x88A8, 0x9100):
            off += 4
            etype = int.from_bytes(data[off:off + 2], "big")
        off += 2
        if etype == 0x0800:
            return 4, off
        if etype == 0x86DD:
            return 6, off
        if etype in (0x8847, 0x8848, 0x8864, 0x88BE, 0x22EB, 0x6558):
            raise Unsupported(f"encapsulation 0x{etype:04x} (MPLS/PPPoE/ERSPAN) is not read")
        if etype < 0x600 and data[off:off + 3] == b"\xaa\xaa\x03":
            inner = int.from_bytes(data[off + 6:off + 8], "big")
            if inner in (0x0800, 0x86DD):
                raise Unsupported("802.2 SNAP-encapsulated IP is not read")
        return 0, 0
    if linktype in (LT_RAW, LT_IPV4, LT_IPV6):
        v = data[0] >> 4 if data else 0
        return (v, 0) if v in (4, 6) else (0, 0)
    if linktype in (LT_NULL, LT_LOOP):
        fam = data[0:4]
        value = int.from_bytes(fam, "big" if linktype == LT_LOOP else "little")
        if linktype == LT_NULL and value > 0xFFFF:
            value = int.from_bytes(fam, "big")
        if value == 2:
            return 4, 4
        if value in (10, 24, 28, 30):
            return 6, 4
        return 0, 0
    if linktype == LT_SLL:
        etype = int.from_bytes(data[14:16], "big")
        return (4, 16) if etype == 0x0800 else (6, 16) if etype == 0x86DD else (0, 0)
    if linktype == LT_SLL2:
        etype = int.from_bytes(data[0:2], "big")
        return (4, 20) if etype == 0x0800 else (6, 20) if etype == 0x86DD else (0, 0)
    raise Unsupported(f"link type {linktype} is not read")


def _packets(mm: mmap.mmap, size: int):
    """Yield (interface key, linktype, snaplen, tsres, ts units, ns, data, orig_len, offset,
    raw DSB block or None) for every record of a pcap or pcapng file."""
    if size < 24:
        raise Unsupported("file too short for a capture header")
    magic = mm[0:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        yield from _pcapng(mm, size)
        return
    for endian, res in (("<", 6), (">", 6)):
        m = struct.unpack(endian + "I", magic)[0]
        if m == 0xA1B2C3D4:
            break
        if m == 0xA1B23C4D:
            res = 9
            break
    else:
        raise Unsupported("not a pcap or pcapng file (compressed or another format)")
    _vmaj, _vmin, _zone, _sig, snaplen, linktype = struct.unpack_from(endian + "HHiIII", mm, 4)
    linktype &= 0x0FFFFFFF
    if linktype not in _SUPPORTED_LINKTYPES:
        raise Unsupported(f"link type {linktype} is not read")
    rec = struct.Struct(endian + "IIII")
    mult = 10 ** (9 - res)
    pos = 24
    key = (0, 0)
    while pos < size:
        if pos + 16 > size:
            raise Unsupported("the file ends inside a packet record")
        sec, frac, incl, orig = rec.unpack_from(mm, pos)
        start = pos + 16
        pos = start + incl
        if pos > size or incl > 0x4000000:
            raise Unsupported("the file ends inside a packet record")
        units = sec * 10**res + frac
        yield (key, linktype, snaplen, res, units, units * mult, mm[start:pos], orig, pos, None)


# long: runs per pcapng block: block types, options and the refusals tshark would make, read in file
#   order
def _pcapng(mm: mmap.mmap, size: int):
    pos = 0
    section = -1
    endian = "<"
    ifaces: list[tuple[int, int, int, int]] = []  # linktype, snaplen, res, multiplier
    hdr = struct.Struct("<II")
    epb = struct.Struct("<IIIIIII")
    trailer = struct.Struct("<I")  # tshark refuses a block whose two lengths differ
    while pos < size:
        if pos + 12 > size:
            raise Unsupported("the file ends inside a block")
        btype, blen = hdr.unpack_from(mm, pos)
        if btype == 6 and pos + 28 <= size:  # the common case first
            _t, _l, ifid, hi, lo, cap, orig = epb.unpack_from(mm, pos)
            if blen < 32 or blen % 4 or pos + blen > size or ifid >= len(ifaces) \
                    or 32 + cap > blen \
                    or trailer.unpack_from(mm, pos + blen - 4)[0] != blen:
                # (32: tshark's header, data and trailing length)
                raise Unsupported("the file ends inside a block (or a block is damaged)")
            if 32 + cap + (-cap % 4) < blen:  # options: tshark refuses damaged ones
                _packet_options(mm, pos + 28 + cap + (-cap % 4), pos + blen - 4, "<")
            linktype, snaplen, res, mult = ifaces[ifid]
            units = (hi << 32) | lo
            start = pos + 28
            pos += blen
            yield ((section, ifid), linktype, snaplen, res, units, units * mult,
                   mm[start:start + cap], orig, pos, None)
            continue
        if btype in (0x0A0D0D0A, 0x0D0D0A0A):
            bom = mm[pos + 8:pos + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" \
                else None
            if endian is None:
                raise Unsupported("damaged pcapng section header")
            if struct.unpack_from(endian + "HH", mm, pos + 12) not in ((1, 0), (1, 2)):
                raise Unsupported("a pcapng version tshark does not read (it reads 1.0, 1.2)")
            hdr = struct.Struct(endian + "II")
            epb = struct.Struct(endian + "IIIIIII")
            trailer = struct.Struct(endian + "I")
            section += 1
            ifaces = []
            btype, blen = hdr.unpack_from(mm, pos)
        if blen < 12 or blen % 4 or pos + blen > size \
                or trailer.unpack_from(mm, pos + blen - 4)[0] != blen:
            raise Unsupported("the file ends inside a block (or a block is damaged)")
        body = pos + 8
        if btype == 6:
            ifid, hi, lo, cap, orig = struct.unpack_from(endian + "IIIII", mm, body)
            if ifid >= len(ifaces) or 32 + cap > blen:
                raise Unsupported("damaged enhanced packet block")
            if 32 + cap + (-cap % 4) < blen:
                _packet_options(mm, body + 20 + cap + (-cap % 4), pos + blen - 4, endian)
            linktype, snaplen, res, mult = ifaces[ifid]
            units = (hi << 32) | lo
            start = body + 20
            yield ((section, ifid), linktype, snaplen, res, units, units * mult,
                   mm[start:start + cap], orig, pos + blen, None)
        elif btype == 1:
            linktype, _r, snaplen = struct.unpack_from(endian + "HHI", mm, body)
            if linktype not in _SUPPORTED_LINKTYPES:
                raise Unsupported(f"link type {linktype} is not read")
            res = 6
            opos, oend = body + 8, pos + blen - 4
            _block_options(mm, opos, oend, endian)
            while opos + 4 <= oend:
                code, olen = struct.unpack_from(endian + "HH", mm, opos)
                if code == 0:
                    break
                if code == 9:
                    raw = mm[opos + 4]
                    if raw & 0x80:
                        raise Unsupported("binary timestamp resolution is not read")
                    res = raw
                elif code == 14:
                    raise Unsupported("interface timestamp offsets are not read")
                opos += 4 + olen + (-olen % 4)
            if res > 9:
                raise Unsupported("timestamp resolution finer than nanoseconds is not read")
            ifaces.append((linktype, snaplen, res, 10 ** (9 - res)))
        elif btype in (0x0A0D0D0A, 0x0D0D0A0A):  # after byte order, version, section length
            _block_options(mm, body + 16, pos + blen - 4, endian)
        elif btype == 5:  # interface statistics: after interface id and time stamp
            _block_options(mm, body + 12, pos + blen - 4, endian)
        elif btype == 10:
            yield (None, 0, 0, 0, 0, 0, b"", 0, pos + blen, bytes(mm[pos:pos + blen]))
        elif btype in (2, 3):
            raise Unsupported("obsolete or simple packet blocks are not read")
        pos += blen


# long: the loop's set-up in order: the index first, then the per-packet loop or its forked workers,
#   then the shards
def prefilter(
    capture: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    ports: Sequence[int],
    implicit_tls_ports: Sequence[int] = (465,),
    shards: int = 1,
    keep_all_tls: bool = False,
    native: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    use_index: bool = True,
    numbering: Numbering | None = None,
    whole_reader: Callable[[Shard], object] | None = None,
) -> Prefiltered:
    """Read ``capture`` once; write ``shards`` reduced pcapng files into ``out_dir``.

    ``keep_all_tls``: a key log may decrypt the conversations, keep every byte of them.
    ``native``: read the conversations :mod:`pyshark_tools.engine.native` is sure of in Python
    (their events in ``Prefiltered.native``); only the others go into the shards.
    ``use_index``: find the SMTP conversations' packets with :mod:`pyshark_tools.engine.scan`
    (vectorised) when it can promise the loop's exact reading, and spread the conversations
    over ``workers`` forked processes; otherwise one loop over every packet.
    ``numbering``: whose ``tcp.stream`` rules (:class:`~pyshark_tools.engine.scan.Numbering`;
    default: those of the tshark on the PATH).
    ``whole_reader``: reads a shard of conversations kept whole (tshark, for the caller) while
    the others are read, when the index finds such conversations ahead and workers read the
    capture (``Prefiltered.whole_results``); otherwise they are in ``shards``.
    Raises :class:`Unsupported` when the exact reference view cannot be promised.
    """
    path = Path(capture)
    size = path.stat().st_size
    if size == 0:
        raise Unsupported("empty file")
    portset = frozenset(ports) | frozenset(implicit_tls_ports)
    index = None
    whole: dict[int, str] = {}
    reordered: dict[int, Holes] = {}
    if numbering is None:
        from .scan import tshark_numbering

        numbering = tshark_numbering()
    if use_index and not keep_all_tls:
        from .scan import index_capture

        index = index_capture(path, tuple(portset), progress, numbering)
        if index is not None and numbering == "4.0" and restart_suspected(
                index.stream, index.direction, index.seq, index.flags):
            index = None  # the loop tells whether a connection restarted (it then declines)
        if index is not None:
            whole = irregular_streams(index)
            if native:
                reordered = {s: holes for s, holes in readable_in_order(
                    index, [s for s, why in whole.items() if why == IRREGULAR]).items()
                    if not 0 <= holes.first_at < EARLY_HOLE_BYTES}
                whole = {s: why for s, why in whole.items() if s not in reordered}
    with path.open("rb") as handle:
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        for _attempt in range(3):
            state = _Pass(Path(out_dir), max(1, shards), portset,
                          frozenset(implicit_tls_ports), keep_all_tls, native, whole=whole,
                          reordered={s: h for s, h in reordered.items() if s not in whole})
            try:
                if index is not None:
                    if progress is not None:
                        progress(size, size)
                    if hasattr(progress, "phase"):
                        progress.phase("SMTP conversations")
                    result = _indexed(state, index, mm, size, workers, whole_reader)
                else:
                    result = _walk_all(state, mm, size, progress, numbering)
            finally:
                state.close()
            if not result.redo:
                return result
            if index is not None:
                return _read_again_whole(result, index, mm, Path(out_dir), state)
            # conversations only the reading found irregular: read again, kept whole
            whole = {**whole, **result.redo}
        raise Unsupported("conversations kept whole changed on every reading")  # never seen
    finally:
        with contextlib.suppress(BufferError):
            mm.close()


def irregular_streams(index) -> dict[int, str]:
    """The conversations of ``index`` to keep whole, found ahead of the reading: those with a
    data segment that is not the next expected one of its direction (retransmitted,
    duplicated, reordered, after a gap), a segment without data beyond it (tshark flags a
    lost segment there), or a packet cut by the snap length. It may name more than the
    reading would (keeping whole is always exact); it names every one the reading would but
    those with an ACK captured ahead of its data (the index has no ACK numbers: the reading
    finds them and reads them again, see ``_acked_before_seen``)."""
    import numpy as np

    n = len(index)
    if not n:
        return {}
    out: dict[int, str] = {}
    cut = np.unique(index.stream[index.caplen < index.origlen])
    for stream in cut.tolist():
        out[stream] = SNAPLEN_CUT
    group = index.stream * 2 + index.direction
    order = np.argsort(group, kind="stable")  # capture order inside each direction
    g = group[order]
    seq = index.seq[order].astype(np.int64)
    seglen = index.seglen[order].astype(np.int64)
    flags = index.flags[order]
    ends = seq + seglen + ((flags & _SYN) != 0) + ((flags & _FIN) != 0)
    # the next expected byte: from the direction's last packet that moved it (data, SYN, FIN)
    moves = (seglen > 0) | ((flags & (_SYN | _FIN)) != 0)
    pos = np.arange(n)
    last = np.maximum.accumulate(np.where(moves, pos, -1))
    prev = np.empty(n, np.int64)
    prev[0] = -1
    prev[1:] = last[:-1]
    has = (prev >= 0) & (g == g[np.maximum(prev, 0)])
    expected = ends[np.maximum(prev, 0)] & 0xFFFFFFFF
    delta = (seq - expected) & 0xFFFFFFFF
    odd = has & (((seglen > 0) & (delta != 0)) | ((seglen == 0) & (delta > 0)
                                                  & (delta < 0x80000000)))
    for stream in np.unique(g[odd] // 2).tolist():
        out.setdefault(stream, IRREGULAR)
    return out


class _Pass:
    """What one reading of a capture builds: conversations, shard files, native results."""

    def __init__(self, out: Path, shards: int, portset: frozenset[int],
                 implicit_set: frozenset[int], keep_all_tls: bool, native: bool,
                 shard_ids: Sequence[int] | None = None,
                 whole: dict[int, str] | None = None,
                 reordered: dict[int, Holes] | None = None, name: str = "shard",
                 whole_elsewhere: bool = False) -> None:
        ids = list(shard_ids) if shard_ids is not None else list(range(shards))
        #: the conversations of ``whole`` are written to shards of their own (only counted)
        self.whole_elsewhere = whole_elsewhere
        #: conversations kept whole from their first packet (stream -> why)
        self.whole: dict[int, str] = whole or {}
        #: conversations read natively in sequence order (segments sent again or early)
        #: ... each with its directions' holes (``reassembly.readable_in_order``)
        self.reordered: dict[int, Holes] = reordered or {}
        #: conversations found to need keeping whole while reading: read again
        self.redo: dict[int, str] = {}
        self.writers = [_Writer(out / f"{name}-{i:03d}.pcapng") for i in ids]
        self.portset = portset
        self.implicit_set = implicit_set
        self.keep_all_tls = keep_all_tls
        self.native = native
        self.convs: dict[int, _Conv] = {}
        self.synthetic: list[SyntheticEvent] = []
        self.kept = self.kept_bytes = 0
        self.wrote_packet = False
        self.demoted: dict[int, str] = {}  # stream -> why tshark reads it
        #: one conversation can be read again on its own (the index's reading)
        self.read_again = False
        self.closed: list[Shard] | None = None

    def new_conv(self, stream: int, key: bytes, sport: int, dport: int, frame: int,
                 ns: int) -> _Conv:
        portset, implicit_set = self.portset, self.implicit_set
        conv = _Conv(stream, key, len(self.convs) % len(self.writers),
                     dport in implicit_set or sport in implicit_set)
        conv.first_frame, conv.first_ns = frame, ns
        self.convs[stream] = conv
        why = self.whole.get(stream)
        if why is not None:
            conv.dirs[0].mode = conv.dirs[1].mode = _KEEP
            conv.whole = True
            conv.elsewhere = self.whole_elsewhere
            if self.native and not self.keep_all_tls:
                self.demoted[stream] = why
            return conv
        if self.native and not self.keep_all_tls:
            request_dir = 0 if dport in portset and sport not in portset \
                else 1 if sport in portset and dport not in portset else -1
            if request_dir >= 0:
                conv.native = NativeConversation(conv.stream, _conv_endpoints(conv),
                                                 request_dir, conv.implicit)
                conv.retained = []
                holes = self.reordered.get(stream)
                if holes is not None:
                    conv.order = (InOrder(), InOrder())
                    conv.held = []
                    conv.native.lost_segments = holes.dir0 + holes.dir1
        return conv

    # long: runs per packet of a watched conversation until it settles: the branches that send it
    #   to tshark, to the in-order reader or to _packet inline, for speed
    def packet(self, conv: _Conv, direction: int, frame: int, ns: int, units: int,
               ifkey: tuple, linktype: int, snaplen: int, tsres: int, data: bytes, orig: int,
               l4: int, thl: int, l4_end: int, seq: int, ack: int, flags: int) -> None:
        """One packet of an SMTP-port conversation (in capture order)."""
        if ns > LATEST_NS:
            raise Unsupported("a packet time stamp after the year 2255 (damaged)")
        truncated = len(data) < orig
        _count(conv, direction, frame, ns, orig, truncated, flags)
        if conv.elsewhere:
            return
        if conv.whole:  # every packet to tshark (pure ACKs too: it flags gaps on them)
            w = self.writers[conv.shard]
            w.packet(w.interface(ifkey, linktype, snaplen, tsres), units, data, orig, frame,
                     conv.stream, False)
            self.wrote_packet = True
            self.kept += 1
            self.kept_bytes += len(data)
            return
        if conv.stream in self.redo:
            return  # read again, kept whole
        d = conv.dirs[direction]
        seglen = l4_end - l4 - thl
        if seglen < 0:
            seglen = 0
        early = _acked_before_seen(conv, direction, ack, seq, seglen, flags)
        if conv.order is not None:
            if flags & _ACK:
                conv.order[1 - direction].acknowledge(ack)
            try:
                self.in_order_packet(conv, d, direction, frame, ns,
                                     (ifkey, linktype, snaplen, tsres, units, data, orig,
                                      frame, False), data[l4 + thl:l4 + thl + seglen],
                                     seq, flags, thl > 20 and not _plain_options(data, l4, thl))
            except _KeepWhole as why:
                self.redo[conv.stream] = str(why)
            return
        if early:  # an ACK captured ahead of its data (see _acked_before_seen): read again
            self.redo[conv.stream] = IRREGULAR
            return
        try:
            self._packet(conv, d, direction, frame, ns, units, ifkey, linktype, snaplen,
                         tsres, data, orig, l4, thl, seglen, seq, flags, truncated)
        except _KeepWhole as why:
            self.redo[conv.stream] = str(why)
            return
        if d.mode == _CUT and conv.dirs[1 - direction].mode == _CUT and conv.retained is None:
            conv.settled = True

    def settled_packet(self, conv: _Conv, direction: int, frame: int, ns: int, mm: mmap.mmap,
                       start: int, cap: int, orig: int, l4: int, thl: int, l4_end: int,
                       seq: int, ack: int, flags: int, units: int, iface: tuple) -> None:
        """A packet of a settled conversation (``_Conv.settled``): what :meth:`packet` does
        with it (count it, look for an ACK ahead of its data, check its sequence number,
        follow its TLS records for encrypted alerts), without copying the packet."""
        if ns > LATEST_NS:
            raise Unsupported("a packet time stamp after the year 2255 (damaged)")
        truncated = cap < orig
        _count(conv, direction, frame, ns, orig, truncated, flags)
        seglen = l4_end - l4 - thl
        if seglen < 0:
            seglen = 0
        try:
            if _acked_before_seen(conv, direction, ack, seq, seglen, flags):
                raise _KeepWhole(IRREGULAR)  # read again (as packet does)
            # (cut_packet reads only the payload's bytes: the mapped capture serves)
            self.cut_packet(conv, conv.dirs[direction], direction, frame, ns, seq, flags,
                            seglen, truncated, mm, start + l4 + thl)
        except _KeepWhole as why:
            self.redo[conv.stream] = str(why)
            conv.settled = False  # its later packets: only counted (see packet)
            return
        if flags & (_SYN | _FIN | _RST) and conv.native is None:
            # tshark's view of the conversation needs it (its row is not used)
            w = self.writers[conv.shard]
            w.packet(w.interface(*iface), units, mm[start:start + cap], orig, frame,
                     conv.stream, True)
            self.wrote_packet = True
            self.kept += 1
            self.kept_bytes += cap

    # long: runs per packet of a watched conversation: TCP numbering by the Wireshark version's
    #   rules inline, for speed
    def _packet(self, conv: _Conv, d: _Dir, direction: int, frame: int, ns: int, units: int,
                ifkey: tuple, linktype: int, snaplen: int, tsres: int, data: bytes, orig: int,
                l4: int, thl: int, seglen: int, seq: int, flags: int, truncated: bool) -> None:
        if d.mode == _CUT:
            was_cut = True
            payload = b""
            keep = self.cut_packet(conv, d, direction, frame, ns, seq, flags, seglen,
                                   truncated, data, l4 + thl)
        else:
            # A pure ACK carries no event and changes none of tshark's analysis the
            # report reads (it does not move the next expected sequence number):
            # tshark never needs it, unless its options could make it malformed.
            keep = bool(seglen or flags & (_SYN | _FIN | _RST)) or not _plain_options(
                data, l4, thl)
            was_cut = False
            payload = b""
            if d.mode != _KEEP:
                payload = data[l4 + thl:l4 + thl + seglen]
                if truncated or len(payload) < seglen:
                    if conv.dirs[1 - direction].mode == _CUT:
                        raise _KeepWhole(SNAPLEN_CUT)
                    conv.dirs[0].mode = conv.dirs[1].mode = _KEEP
                    payload = b""
                    seglen = 0
                in_order = d.nextseq is None or seq == d.nextseq
                if seglen and not in_order:
                    d.mode = _KEEP
                elif not in_order and 0 < (seq - d.nextseq) & 0xFFFFFFFF < 0x80000000:
                    # no payload but beyond the next expected byte: tshark flags a lost
                    # segment on it (a data segment it never saw)
                    keep = True
                    d.mode = _KEEP
                elif in_order or d.nextseq is None:
                    d.nextseq = (seq + seglen + (1 if flags & _SYN else 0)
                                 + (1 if flags & _FIN else 0)) & 0xFFFFFFFF
                if d.mode == _CLEAR and seglen:
                    if (conv.implicit or conv.starttls) and payload[0] in (
                            20, 21, 22, 23, 24) and payload[1:2] == b"\x03":
                        d.mode = _TLS
                        d.records = _Records()
                    elif _starttls_line(d, payload):
                        conv.starttls = True
                    elif conv.implicit:
                        d.mode = _KEEP
                if seglen and d.mode == _TLS:
                    done = d.records.feed(payload)
                    if done is None:
                        d.mode = _KEEP
                    elif not self.keep_all_tls and any(t == 23 for t, _ in done):
                        d.mode = _CUT  # this packet is the last one kept
        if conv.retained is not None:
            try:
                if d.mode == _KEEP or conv.dirs[1 - direction].mode == _KEEP:
                    raise Demote("kept whole")
                if not was_cut:
                    if thl > 20 and not _plain_options(data, l4, thl):
                        raise Demote("TCP options tshark may flag")
                    if seglen:
                        if d.mode == _CLEAR:
                            conv.native.clear(direction, frame, ns, payload, seq, seglen)
                        else:
                            conv.native.tls(direction, frame, ns, payload)
            except Demote as why:
                self.demoted[conv.stream] = str(why)
                w = self.writers[conv.shard]
                for (r_if, r_lt, r_snap, r_res, r_units, r_data, r_orig, r_frame,
                     r_cut) in conv.retained:
                    w.packet(w.interface(r_if, r_lt, r_snap, r_res), r_units, r_data,
                             r_orig, r_frame, conv.stream, r_cut)
                    self.kept += 1
                    self.kept_bytes += len(r_data)
                conv.native = conv.retained = None
            else:
                if keep:
                    conv.retained.append((ifkey, linktype, snaplen, tsres, units,
                                          data, orig, frame, was_cut))
                    self.wrote_packet = True
                    keep = False
                if d.mode == _CUT and conv.dirs[1 - direction].mode == _CUT:
                    conv.retained = None  # nothing can hand it to tshark now
        elif conv.native is not None:
            keep = False  # read natively: tshark never needs it
        if keep:
            w = self.writers[conv.shard]
            iface = w.interface(ifkey, linktype, snaplen, tsres)
            w.packet(iface, units, data, orig, frame, conv.stream, was_cut)
            self.wrote_packet = True
            self.kept += 1
            self.kept_bytes += len(data)

    # long: runs per packet of a conversation read in sequence order: the bytes handed on, the holds
    #   and the refusals inline
    def in_order_packet(self, conv: _Conv, d: _Dir, direction: int, frame: int, ns: int,
                        raw: tuple, payload: bytes, seq: int, flags: int,
                        odd_options: bool) -> None:
        """One packet of a conversation read in sequence order (``_Pass.reordered``): the
        native reader reads the bytes it makes available in order; every packet is held
        back to the conversation's end, and tshark gets the whole conversation if the native
        reading declines it."""
        if conv.retained is not None:
            conv.retained.append(raw)
        order = conv.order[direction]
        pieces = order.feed(seq, payload, flags, frame, ns)
        try:
            if order.spurious and d.mode != _CUT:
                raise Demote(SPURIOUS)
            if d.mode == _CUT:
                conv.cut = True
                if order.spurious_now:
                    self.spurious_after_cut(conv, d, direction, frame, ns, pieces,
                                            order.sources)
                else:
                    for piece in pieces:
                        self.in_order_after_cut(conv, d, direction, frame, ns, piece)
                self._release_held_packets(conv)
                return
            if odd_options:
                raise Demote("TCP options tshark may flag")
            tls = []
            for piece, (p_frame, p_ns, p_seq) in zip(pieces, order.sources, strict=True):
                if d.mode == _CLEAR:
                    if (conv.implicit or conv.starttls) and len(piece) < 2:
                        raise Demote("a TLS record header split over segments")
                    if (conv.implicit or conv.starttls) and piece[0] in (
                            20, 21, 22, 23, 24) and piece[1:2] == b"\x03":
                        if piece is not pieces[0]:
                            raise Demote("TLS begins inside segments put back in order")
                        d.mode = _TLS
                        d.records = _Records()
                    elif _STARTTLS.search(piece):
                        conv.starttls = True
                    elif conv.implicit:
                        raise Demote("not TLS on an implicit TLS port")
                    if d.mode == _CLEAR:
                        # the dialogue reader gets the bytes in order, each with the frame
                        # that carried it (as it orders tshark's rows)
                        conv.native.clear(direction, p_frame, p_ns, piece, p_seq, len(piece))
                if d.mode == _TLS:
                    tls.append(piece)
                    done = d.records.feed(piece)
                    if done is None:
                        raise Demote("not TLS records")
                    if any(t == 23 for t, _ in done):
                        d.mode = _CUT  # the rest of this packet: read by the native reader
                elif d.mode == _CUT:
                    tls.append(piece)
                    if d.records.feed(piece) is None:
                        raise Demote("not TLS records")
            if tls:
                conv.native.tls(direction, frame, ns, b"".join(tls))
        except Demote as why:
            if conv.retained is None:  # the native reading was sure: read again, whole
                raise _KeepWhole(str(why)) from None
            self.hand_over_in_order(conv, str(why))
            return
        self._release_held_packets(conv)

    def _release_held_packets(self, conv: _Conv) -> None:
        """Both directions past their handshake: when the index can read one conversation
        again on its own (``read_again``), its packets need not be held back any more (they
        would be, for the conversations read in order, most of the reader's memory); a later
        reason to hand it to tshark reads it again, kept whole. Without the index that would
        mean reading the whole capture again: the packets stay held to the end."""
        if self.read_again and conv.retained is not None and \
                conv.dirs[0].mode == _CUT and conv.dirs[1].mode == _CUT:
            conv.retained = None

    def hand_over_in_order(self, conv: _Conv, why: str) -> None:
        """Give tshark a conversation read in sequence order: every packet held back so far
        (and, as they come, the later ones), kept whole."""
        self.demoted[conv.stream] = why
        w = self.writers[conv.shard]
        for (r_if, r_lt, r_snap, r_res, r_units, r_data, r_orig, r_frame,
             _r_cut) in conv.retained or ():
            w.packet(w.interface(r_if, r_lt, r_snap, r_res), r_units, r_data, r_orig,
                     r_frame, conv.stream, False)
            self.kept += 1
            self.kept_bytes += len(r_data)
        self.wrote_packet = True
        conv.native = conv.retained = conv.order = conv.held = None
        conv.whole = True  # its later packets go to tshark as they come
        conv.dirs[0].mode = conv.dirs[1].mode = _KEEP

    def hand_over_holes_before_cut(self) -> None:
        """At the end of the reading: a conversation whose direction has a hole before that
        direction's handshake ended goes to tshark (what tshark makes of a handshake it
        waits in is its own; after the handshake a hole only stops the reading of
        encrypted records, in both engines)."""
        for stream, holes in self.reordered.items():
            conv = self.convs.get(stream)
            if conv is None or conv.native is None or conv.order is None:
                continue
            if any(count and d.mode != _CUT for count, d in zip(holes[:2], conv.dirs,
                                                                 strict=True)):
                self.hand_over_in_order(conv, HOLE_IN_HANDSHAKE)

    def spurious_after_cut(self, conv: _Conv, d: _Dir, direction: int, frame: int, ns: int,
                           pieces: list[bytes], sources: list[tuple[int, int, int]]) -> None:
        """A segment tshark calls a spurious retransmission, after the direction's handshake.
        Its bytes still count in tshark's reassembly (the records after it, alerts included,
        are the same in both engines on the impaired benchmark), but whether tshark shows a
        record completing in it is not checked: one that comes in order (with the segments
        that waited for it) and completes no alert is read here; any other goes to
        tshark."""
        if not pieces or sources[0][0] != frame:
            raise Demote(SPURIOUS)  # it came early: it waits, tshark's reading is unchecked
        for piece in pieces:
            alert, problem = _records_after_handshake(d.records.feed(piece))
            if problem or alert:
                raise Demote(SPURIOUS)

    def in_order_after_cut(self, conv: _Conv, d: _Dir, direction: int, frame: int, ns: int,
                           piece: bytes) -> None:
        """In-order bytes after a direction's handshake: only its records are followed."""
        alert, problem = _records_after_handshake(d.records.feed(piece))
        if problem:
            raise Demote(problem)
        if alert:
            event = _synthetic(conv, direction, frame, ns)
            (conv.held if conv.held is not None else self.synthetic).append(event)

    def cut_packet(self, conv: _Conv, d: _Dir, direction: int, frame: int, ns: int, seq: int,
                   flags: int, seglen: int, truncated: bool, data: bytes,
                   payload_at: int) -> bool:
        """A packet after its direction's handshake: only counted (and its TLS records
        followed for encrypted alerts). True: tshark needs it (SYN/FIN/RST, for its view of
        the conversation)."""
        conv.cut = True
        if truncated:
            raise _KeepWhole(SNAPLEN_CUT)
        nextseq = d.nextseq
        if nextseq is None or seq == nextseq:
            d.nextseq = (seq + seglen + (1 if flags & _SYN else 0)
                         + (1 if flags & _FIN else 0)) & 0xFFFFFFFF
        elif seglen or 0 < (seq - nextseq) & 0xFFFFFFFF < 0x80000000:
            # a segment again or out of order, or beyond the next expected byte (tshark
            # flags a lost segment on it)
            raise _KeepWhole(IRREGULAR)
        if seglen:
            records = d.records
            if records.need > seglen:
                records.need -= seglen  # inside a record: nothing completes here
            else:
                self._after_cut(conv, direction, frame, ns,
                                records.feed(data[payload_at:payload_at + seglen]))
        return bool(flags & (_SYN | _FIN | _RST))

    def _after_cut(self, conv: _Conv, direction: int, frame: int, ns: int,
                   done: list[tuple[int, int]] | None) -> None:
        """TLS records completing after the cut: application data, or an encrypted alert
        (an event the reference reports); anything else needs tshark's view."""
        alert, problem = _records_after_handshake(done)
        if problem:
            raise _KeepWhole(problem)
        if alert:
            self.synthetic.append(_synthetic(conv, direction, frame, ns))

    def close(self) -> list[Shard]:
        if self.closed is None:
            self.closed = [w.close() for w in self.writers]
        return self.closed

    def result(self, **capture_facts: object) -> Prefiltered:
        """What this reading found; of the conversations to read again (``redo``), only
        their totals (they are read again kept whole: nothing else of theirs stands)."""
        redo = self.redo
        for stream in redo:
            conv = self.convs[stream]
            conv.native = conv.held = None
        if self.closed is None:
            self.hand_over_holes_before_cut()
        for conv in self.convs.values():
            if conv.held:  # read in order, natively to its end: its alerts are sure
                self.synthetic.extend(conv.held)
                conv.held = None
        if self.reordered:
            self.synthetic.sort(key=lambda ev: ev.frame)
        synthetic = [ev for ev in self.synthetic if ev.stream not in redo] if redo \
            else self.synthetic
        return Prefiltered(
            kept_whole=dict(self.whole),
            redo=dict(redo),
            shards=self.close(),
            streams={s: _totals(c) for s, c in self.convs.items()},
            synthetic=synthetic,
            kept_packets=self.kept,
            kept_bytes=self.kept_bytes,
            native=_native_result(self.convs),
            demoted_streams={s: why for s, why in self.demoted.items() if s not in redo},
            **capture_facts,
        )


# long: the per-packet loop: kept in one frame on purpose (locals stay local; a call per step per
#   packet costs time on captures of millions of packets)
def _walk_all(state: _Pass, mm: mmap.mmap, size: int,
              progress: Callable[[int, int], None] | None,
              numbering: Numbering | str = "4.0") -> Prefiltered:
    """Every packet in order: number TCP conversations like Wireshark (``numbering``: the
    rules of which version, see :class:`~pyshark_tools.engine.scan.Numbering`), hand on SMTP
    ones."""
    portset = state.portset
    v44 = numbering == "4.4"  # the values of scan.Numbering
    either = numbering == "either"
    # key -> [stream, base_seq dir0, base_seq dir1, _Conv, key, closed (RST or FIN+ACK seen)]
    tcp_convs: dict[bytes, list] = {}
    stream_count = 0
    total = matched = 0
    first_ns = last_ns = None
    secrets = False
    next_report = 1 << 23
    unpack_tcp = struct.Struct("!HHIIBB").unpack_from
    unpack_ip4 = struct.Struct("!BxH2xHxB2x4s4s").unpack_from
    dontneed = getattr(mmap, "MADV_DONTNEED", 0)
    released = 0
    if hasattr(mmap, "MADV_SEQUENTIAL"):
        mm.madvise(mmap.MADV_SEQUENTIAL)
    packet = state.packet
    for (ifkey, linktype, snaplen, tsres, units, ns, data, orig, end,
         dsb) in _packets(mm, size):
        if dsb is not None:
            if state.wrote_packet:
                raise Unsupported("decryption secrets after the first packet")
            secrets = True
            state.keep_all_tls = True  # tshark will decrypt with the embedded keys
            state.native = False
            for w in state.writers:
                w.raw_block(dsb)
            continue
        total += 1
        if end >= next_report:
            next_report = end + (1 << 23)
            if progress is not None:
                progress(end, size)
            # pages already read leave this process: RSS stays flat however
            # large the capture (file pages would otherwise count as ours)
            upto = (end - (1 << 20)) & ~(mmap.PAGESIZE - 1)
            if dontneed and upto > released:
                mm.madvise(dontneed, released, upto - released)
                released = upto
        if linktype == LT_ETHERNET and data[12:14] == b"\x08\x00":
            version, off = 4, 14  # the common case without a call
        else:
            try:
                version, off = _l3(linktype, data)
            except IndexError:
                continue
            if not version:
                continue
        # --- IP ---
        if version == 4:
            if len(data) < off + 20:
                continue
            vihl, ip_len, frag, proto, src, dst = unpack_ip4(data, off)
            if vihl >> 4 != 4:
                continue
            ihl = (vihl & 0x0F) * 4
            l4 = off + ihl
            l4_end = off + ip_len
            if ip_len < ihl or off + ip_len > orig:
                if proto == 6:
                    raise Unsupported("an IP length tshark would not trust (TSO?)")
                continue
            if frag & 0x3FFF:
                if proto in (6, *_TUNNEL_PROTOS, 1, 17):
                    raise Unsupported("fragmented IP packets are not read")
                continue
        else:
            if len(data) < off + 40 or data[off] >> 4 != 6:
                continue  # tshark calls another version bogus and reads no TCP in it
            proto = data[off + 6]
            src = data[off + 8:off + 24]
            dst = data[off + 24:off + 40]
            l4 = off + 40
            l4_end = l4 + int.from_bytes(data[off + 4:off + 6], "big")
            if l4_end == l4 or l4_end > orig:
                if proto == 6:
                    raise Unsupported("an IPv6 length tshark would not trust")
                continue
            while proto in (0, 43, 60):  # hop-by-hop, routing, destination options
                if len(data) < l4 + 8:
                    break
                proto, hlen = data[l4], (data[l4 + 1] + 1) * 8
                l4 += hlen
            if proto == 44:
                raise Unsupported("fragmented IPv6 packets are not read")
        if proto != 6:
            if proto in _TUNNEL_PROTOS:
                raise Unsupported(f"tunnelled traffic (IP protocol {proto})")
            if proto == 1 or proto == 58:
                if len(data) > l4 and data[l4] in (
                        _ICMP4_ERRORS if proto == 1 else _ICMP6_ERRORS):
                    inner = data[l4 + 8:]
                    if inner and ((inner[0] >> 4 == 4 and len(inner) > 9
                                   and inner[9] == 6)
                                  or (inner[0] >> 4 == 6 and len(inner) > 6
                                      and inner[6] == 6)):
                        raise Unsupported("ICMP errors quoting TCP are not read")
            elif proto == 17 and len(data) >= l4 + 4:
                sp = int.from_bytes(data[l4:l4 + 2], "big")
                dp = int.from_bytes(data[l4 + 2:l4 + 4], "big")
                if sp in _TUNNEL_UDP_PORTS or dp in _TUNNEL_UDP_PORTS:
                    raise Unsupported(f"tunnelled traffic (UDP port {dp})")
            continue
        # --- TCP ---
        if len(data) < l4 + 20:
            raise Unsupported("a TCP header is cut by the snap length")
        sport, dport, seq, ack, doff, flags = unpack_tcp(data, l4)
        thl = (doff >> 4) * 4
        if thl < 20:
            raise Unsupported("a damaged TCP header")
        fwd = src + dst + data[l4:l4 + 4]
        entry = tcp_convs.get(fwd)
        direction = 0
        if entry is None:
            rev = dst + src + data[l4 + 2:l4 + 4] + data[l4:l4 + 2]
            entry = tcp_convs.get(rev)
            direction = 1
        if entry is not None and flags & _SYN:
            base = entry[1 + direction]
            if either and base is not None and (
                    (flags & _ACK and base != seq) or (entry[5] and base == seq)):
                raise Unsupported("tshark 4.0 and 4.4 number these conversations differently "
                                  "(ports reused) and this tshark's rules were not measured")
            if LEAVE_RESTARTS and not v44 and not either and entry[3] is not None and \
                    base is not None and ((flags & _ACK and base != seq) or
                                          (entry[5] and base == seq)):
                raise Unsupported(RESTARTED)
            if v44 and base is not None and (base != seq or entry[5]):
                # Wireshark 4.4: a SYN or SYN-ACK with a new sequence number, or one after a
                # RST or FIN+ACK, starts a new conversation
                del tcp_convs[entry[4]]
                entry = None
            elif base is not None and base != seq:
                if flags & _ACK:
                    # Wireshark: a SYN-ACK with another sequence number is the new base
                    entry[1 + direction] = seq
                else:
                    # Wireshark: a SYN with another initial sequence number on the
                    # same ports starts a new conversation (ports reused).
                    del tcp_convs[entry[4]]
                    entry = None
        if entry is None:
            direction = 0
            entry = [stream_count, None, None, None, fwd, False]
            tcp_convs[fwd] = entry
            stream_count += 1
            if sport in portset or dport in portset:
                entry[3] = state.new_conv(entry[0], fwd, sport, dport, total, ns)
        # Wireshark's base sequence numbers: the direction's first sequence number (minus
        # one unless a SYN), or the other direction's first ACK number minus one if earlier
        if entry[1 + direction] is None:
            entry[1 + direction] = seq if flags & _SYN else (seq - 1) & 0xFFFFFFFF
        if flags & _ACK and entry[2 - direction] is None:
            entry[2 - direction] = (ack - 1) & 0xFFFFFFFF
        if flags & (_SYN | _FIN | _RST):  # what 4.4 remembers: closed, until a SYN
            if flags & _SYN and not flags & _ACK:
                entry[5] = False
            if flags & _RST or (flags & (_FIN | _ACK)) == (_FIN | _ACK):
                entry[5] = True
        conv = entry[3]
        if conv is None:
            continue
        matched += 1
        if first_ns is None:
            first_ns = ns
        last_ns = ns
        packet(conv, direction, total, ns, units, ifkey, linktype, snaplen, tsres, data, orig,
               l4, thl, l4_end, seq, ack, flags)
    if progress is not None:
        progress(size, size)
    return state.result(
        packets_total=total,
        packets_matched=matched,
        first_time=ns_to_datetime(first_ns) if first_ns is not None else None,
        last_time=ns_to_datetime(last_ns) if last_ns is not None else None,
        tcp_streams=stream_count,
        bytes_read=size,
        secrets_embedded=secrets,
    )


def _indexed(state: _Pass, index, mm: mmap.mmap, size: int, workers: int,
             whole_reader: Callable[[Shard], object] | None = None) -> Prefiltered:
    """Only the SMTP conversations' packets, found by the index; conversations spread over
    forked workers (each writes its own shards) when there are several. ``whole_reader``:
    the conversations kept whole from the start go to shards of their own, written and
    given to it by further workers while the others are read (its results in
    ``Prefiltered.whole_results``)."""
    import numpy as np

    n = len(index)
    facts = dict(
        packets_total=index.packets_total,
        packets_matched=n,
        first_time=ns_to_datetime(int(index.ns[0])) if n else None,
        last_time=ns_to_datetime(int(index.ns[-1])) if n else None,
        tcp_streams=index.tcp_streams,
        bytes_read=size,
        secrets_embedded=False,
    )
    columns = _index_columns(index)
    ifaces = _index_interfaces(index)
    nshards = len(state.writers)
    workers = max(1, min(workers, nshards))
    if workers == 1 or n < FORK_MIN_PACKETS or not can_fork():
        _indexed_part(state, columns, None, ifaces, mm)
        return state.result(**facts)
    # Conversations are independent: part k reads the streams with stream % workers == k
    # and writes shards k, k + workers, ...
    out_dir = state.writers[0].path.parent
    state.close()
    whole_at = np.flatnonzero(np.isin(index.stream, np.fromiter(state.whole, np.int64))) \
        if whole_reader is not None and state.whole else np.empty(0, np.int64)
    nwhole = 0 if not len(whole_at) else 1 if len(whole_at) <= WHOLE_SHARD_PACKETS \
        else workers

    def read_part(k: int) -> Prefiltered:
        part = _Pass(out_dir, nshards, state.portset, state.implicit_set, state.keep_all_tls,
                     state.native, shard_ids=range(k, nshards, workers), whole=state.whole,
                     reordered=state.reordered, whole_elsewhere=nwhole > 0)
        try:
            # positions of this part's packets (not copies of every column: they would
            # cost memory)
            _indexed_part(part, columns, np.flatnonzero(columns[1] % workers == k), ifaces, mm)
            return part.result(packets_total=0, packets_matched=0, first_time=None,
                               last_time=None, tcp_streams=0, bytes_read=0)
        finally:
            part.close()

    def read_whole(k: int) -> tuple[int, int, object]:
        at = whole_at[columns[1][whole_at] % nwhole == k]
        shard = _write_packets(out_dir / f"whole-{k:03d}.pcapng", columns, at, ifaces, mm)
        assert whole_reader is not None
        return shard.packets, int(columns[7][at].sum()), whole_reader(shard)

    jobs = [(read_part, k) for k in range(workers)] + [(read_whole, k) for k in range(nwhole)]
    done = map_forked(lambda job: job[0](job[1]), jobs, len(jobs))
    return _merged(facts, done[:workers], done[workers:])


def _merged(facts: dict, parts: Sequence[Prefiltered],
            whole_done: Sequence[tuple[int, int, object]]) -> Prefiltered:
    """The parts' readings (and the whole shards' packets, bytes and results) as one."""
    merged = Prefiltered(shards=[], streams={}, synthetic=[], **facts)
    for packets, size_kept, found in whole_done:
        merged.whole_results.append(found)
        merged.kept_packets += packets
        merged.kept_bytes += size_kept
    for part in parts:
        merged.shards.extend(part.shards)
        merged.streams.update(part.streams)
        merged.synthetic.extend(part.synthetic)
        merged.kept_packets += part.kept_packets
        merged.kept_bytes += part.kept_bytes
        merged.kept_whole.update(part.kept_whole)
        merged.redo.update(part.redo)
        merged.demoted_streams.update(part.demoted_streams)
    merged.shards.sort(key=lambda shard: shard.path.name)
    merged.synthetic.sort(key=lambda ev: ev.frame)
    merged.streams = dict(sorted(merged.streams.items()))
    merged.native = NativeResult.combined(part.native for part in parts)
    return merged


#: Fewer SMTP packets than this are read in one process (starting a worker costs more).
FORK_MIN_PACKETS = 20000
#: Conversations kept whole from the start, up to this many packets, go to one shard (and one
#: tshark); more to one per worker.
WHOLE_SHARD_PACKETS = 100_000


def _write_packets(path: Path, columns: tuple, positions, ifaces: list,
                   mm: mmap.mmap) -> Shard:
    """The packets of the index at ``positions`` (frame order), as one shard."""
    writer = _Writer(path)
    try:
        (frames, streams, unitss, ifs, offsets, caps, origs) = (
            columns[c][positions].tolist() for c in (0, 1, 4, 5, 6, 7, 8))
        packet, interface = writer.packet, writer.interface
        released = 0
        for i in range(len(frames)):
            start = offsets[i]
            packet(interface(*ifaces[ifs[i]]), unitss[i], mm[start:start + caps[i]], origs[i],
                   frames[i], streams[i], False)
            if not i & 0xFFF:
                released = _release_read_pages(mm, start, released)
    finally:
        shard = writer.close()
    return shard


def _release_read_pages(mm: mmap.mmap, offset: int, released: int) -> int:
    """File pages well before ``offset`` leave this process (its memory stays flat while it
    reads the capture in order); how far pages are released now."""
    dontneed = getattr(mmap, "MADV_DONTNEED", 0)
    upto = (offset - (1 << 20)) & ~(mmap.PAGESIZE - 1)
    if dontneed and upto > released:
        mm.madvise(dontneed, released, upto - released)
        return upto
    return released


def _index_columns(index) -> tuple:
    """The index's columns in the order :func:`_indexed_part` reads them."""
    import numpy as np

    thl = index.thl.astype(np.int64)
    l4_end = index.l4 + thl + index.seglen  # where the TCP payload ends
    return (index.frame, index.stream, index.direction, index.ns, index.units, index.iface,
            index.offset, index.caplen, index.origlen, index.l4, thl, l4_end, index.seq,
            index.flags, index.l3, index.ip_version, index.ack)


def _index_interfaces(index) -> list[tuple]:
    return [(i.key, i.linktype, i.snaplen, i.tsres) for i in index.interfaces]


def _read_again_whole(first: Prefiltered, index, mm: mmap.mmap, out_dir: Path,
                      settings: _Pass) -> Prefiltered:
    """``first`` with the conversations its reading found irregular (``first.redo``) read
    again, kept whole: only their packets are read (conversations are independent, the
    others' reading stands), into a shard of their own; their packets in ``first``'s shards
    are left unused."""
    import numpy as np

    redo = first.redo
    wanted = np.fromiter(redo, dtype=np.int64, count=len(redo))
    again = _Pass(out_dir, 1, settings.portset, settings.implicit_set, settings.keep_all_tls,
                  settings.native, whole=dict(redo), name="again")
    try:
        _indexed_part(again, _index_columns(index),
                      np.flatnonzero(np.isin(index.stream, wanted)), _index_interfaces(index),
                      mm)
        second = again.result(packets_total=0, packets_matched=0, first_time=None,
                              last_time=None, tcp_streams=0, bytes_read=0)
    finally:
        again.close()
    for shard in first.shards:
        if shard.packets:
            streams = np.frombuffer(shard.streams, dtype=np.uint32)
            unused = np.frombuffer(shard.post_cut, dtype=np.uint8)
            shard.post_cut = bytearray((unused | np.isin(streams, wanted)).astype(np.uint8))
    first.shards.extend(second.shards)
    first.streams = dict(sorted({**first.streams, **second.streams}.items()))
    first.kept_whole.update(redo)
    first.demoted_streams.update(second.demoted_streams)
    first.kept_packets += second.kept_packets
    first.kept_bytes += second.kept_bytes
    first.redo = {}
    return first


def _indexed_part(state: _Pass, columns: tuple, positions, ifaces: list,
                  mm: mmap.mmap) -> None:
    """The SMTP packets of the index (only those at ``positions`` when given)."""
    state.read_again = True  # (see _read_again_whole)
    total = len(positions) if positions is not None else len(columns[0])
    convs = state.convs
    packet = state.packet
    settled_packet = state.settled_packet
    new_conv = state.new_conv
    released = 0
    step = 1 << 12
    for first in range(0, total, step):
        # a slice at a time: Python lists of every column at once would cost ~0.5 GB
        rows = slice(first, first + step) if positions is None \
            else positions[first:first + step]
        (frames, streams, directions, nss, unitss, ifs, offsets, caps, origs, l4s, thls, ends,
         seqs, flagss, l3s, versions, acks) = (c[rows].tolist() for c in columns)
        for i in range(len(frames)):
            stream = streams[i]
            conv = convs.get(stream)
            start = offsets[i]
            l4 = l4s[i]
            if conv is not None and conv.settled:
                settled_packet(conv, directions[i], frames[i], nss[i], mm, start, caps[i],
                               origs[i], l4, thls[i], ends[i], seqs[i], acks[i], flagss[i],
                               unitss[i], ifaces[ifs[i]])
                continue
            data = mm[start:start + caps[i]]
            if conv is None:
                # its first packet: the conversation's key is this packet's direction (as
                # the loop builds it: source IP, destination IP, source, destination port)
                l3 = l3s[i]
                ips = data[l3 + 12:l3 + 20] if versions[i] == 4 else data[l3 + 8:l3 + 40]
                sport = (data[l4] << 8) | data[l4 + 1]
                dport = (data[l4 + 2] << 8) | data[l4 + 3]
                conv = new_conv(stream, ips + data[l4:l4 + 4], sport, dport, frames[i],
                                nss[i])
            ifkey, linktype, snaplen, tsres = ifaces[ifs[i]]
            packet(conv, directions[i], frames[i], nss[i], unitss[i], ifkey, linktype,
                   snaplen, tsres, data, origs[i], l4, thls[i], ends[i], seqs[i], acks[i],
                   flagss[i])
        if offsets:  # (RSS stays flat, as in the loop)
            released = _release_read_pages(mm, offsets[-1], released)


def _count(conv: _Conv, direction: int, frame: int, ns: int, orig: int, truncated: bool,
           flags: int) -> None:
    """What every packet of a conversation adds to its totals."""
    conv.frames += 1
    conv.bytes += orig
    conv.last_frame, conv.last_ns = frame, ns
    if truncated:
        conv.trunc += 1
    if (flags & (_SYN | _ACK)) == _SYN:
        conv.syn_dir = direction
    if flags & _FIN:
        conv.fin = True
    if flags & _RST:
        conv.rst = True


def _block_options(mm: mmap.mmap, pos: int, end: int, endian: str) -> None:
    """A section's, interface's or statistics block's options as tshark checks them."""
    from .scan import Declined, check_block_options

    try:
        check_block_options(mm, pos, end, endian)
    except Declined as why:
        raise Unsupported(str(why)) from None


def _packet_options(mm: mmap.mmap, pos: int, end: int, endian: str) -> None:
    """A packet's options as tshark checks them (``scan.check_packet_options``)."""
    from .scan import Declined, check_packet_options

    try:
        check_packet_options(mm, pos, end, endian)
    except Declined as why:
        raise Unsupported(str(why)) from None


def _native_result(convs: dict[int, _Conv]) -> NativeResult | None:
    """What the native reader found in the conversations it kept (frame order)."""
    rows: list[tuple] = []
    certificates = []
    partial: dict[int, dict[str, object]] = {}
    for stream, conv in convs.items():
        if conv.native is not None:
            partial[stream] = conv.native.finish()  # adds the SMTP dialogue's rows
            rows.extend(conv.native.rows)
            certificates.extend(conv.native.certificates)
    return NativeResult.of(rows, certificates, partial) if partial else None


def _conv_endpoints(conv: _Conv) -> tuple[str, str]:
    key = conv.key
    n = 4 if len(key) == 12 else 16
    a, b = key[:n], key[n:2 * n]
    pa = int.from_bytes(key[2 * n:2 * n + 2], "big")
    pb = int.from_bytes(key[2 * n + 2:2 * n + 4], "big")
    return _endpoint(a, pa), _endpoint(b, pb)


def _synthetic(conv: _Conv, direction: int, frame: int, ns: int) -> SyntheticEvent:
    a, b = _conv_endpoints(conv)
    src, dst = (a, b) if direction == 0 else (b, a)
    return SyntheticEvent(frame, ns_to_datetime(ns), conv.stream, src, dst, "tls_alert",
                          "encrypted_alert")


def _totals(conv: _Conv) -> StreamTotals:
    a, b = _conv_endpoints(conv)
    ends = (a, b)
    # The conversation's key is its first packet's direction: first_src is always ``a``.
    return StreamTotals(
        stream=conv.stream,
        first_src=a,
        first_dst=b,
        first_frame=conv.first_frame,
        first_time=ns_to_datetime(conv.first_ns),
        last_frame=conv.last_frame,
        last_time=ns_to_datetime(conv.last_ns),
        frames=conv.frames,
        bytes=conv.bytes,
        syn_from=ends[conv.syn_dir] if conv.syn_dir is not None else None,
        fin=conv.fin,
        rst=conv.rst,
        truncated_frames=conv.trunc,
        shard=conv.shard,
        cut=conv.cut,
    )
