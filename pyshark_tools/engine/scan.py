"""A vectorised index of a capture: which packets belong to the SMTP-port conversations.

The prefilter's per-packet loop (:mod:`pyshark_tools.engine.prefilter`) spends ~4.5 µs on every
packet, although most packets of a large capture belong to conversations it then ignores.
:func:`index_capture` reads the same capture with a vectorised scan for the packet blocks
(Python steps only where that chain breaks) and numpy over a small matrix of each packet's
first bytes, and returns, for the packets of the conversations with a port in ``ports``
only, what the loop needs to handle them without walking the others: original frame
number, ``tcp.stream``, direction, where the packet's bytes are in the file, its lengths,
timestamp and interface, plus the whole capture's packet and TCP conversation counts.

Conversations are numbered as the tshark at hand numbers ``tcp.stream`` (the rules changed
between 4.0 and 4.4, see :class:`Numbering`): in order of first appearance of an
address/port pair, a SYN (without ACK) whose sequence number is not the base of its
direction starts a new one; a SYN-ACK does so in 4.4 but not in 4.0 (see :func:`_streams`).
For a version whose rules were not measured, a capture where the two differ is declined.

The answer is exact or absent. Whenever the capture holds anything whose handling by the
loop is not trivially "skip it" or "plain TCP" (the loop refuses it, or reads it in a way
this module does not reproduce, or tshark reads it otherwise: other link types, fragments,
IPv6 extension headers, tunnels, ICMP errors quoting TCP, cut TCP headers, lengths the loop
distrusts, decryption secrets, odd or damaged blocks...), :func:`index_capture` returns None
and the caller runs the loop, which handles or refuses it. :func:`build_index` raises
:class:`Declined` with the reason instead.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import as_strided

from .capture_format import ACK as _ACK
from .capture_format import FIN as _FIN
from .capture_format import ICMP4_ERRORS as _ICMP4_ERRORS
from .capture_format import ICMP6_ERRORS as _ICMP6_ERRORS
from .capture_format import (
    LINKTYPES,
    LT_ETHERNET,
    LT_IPV4,
    LT_IPV6,
    LT_LOOP,
    LT_NULL,
    LT_RAW,
    LT_SLL,
)
from .capture_format import RST as _RST
from .capture_format import SYN as _SYN
from .capture_format import TUNNEL_PROTOS as _TUNNEL_PROTOS
from .capture_format import TUNNEL_UDP_PORTS as _TUNNEL_UDP_PORTS

__all__ = ["CaptureIndex", "Declined", "Interface", "Numbering", "build_index", "index_capture",
           "numbering_for", "tshark_numbering"]

_VLAN = (0x8100, 0x88A8, 0x9100)
_ENCAP_ETHERTYPES = (0x8847, 0x8848, 0x8864, 0x88BE, 0x22EB, 0x6558)  # the loop refuses them
_IPV6_EXTENSIONS = (0, 43, 44, 60)  # hop-by-hop, routing, fragment, destination options
_MAX_PACKET = 262144  # tshark refuses larger records (WTAP_MAX_PACKET_SIZE_STANDARD)
_SHB, _IDB, _EPB = 0x0A0D0D0A, 1, 6
#: Packet times after this second (year 2255) are a damaged time stamp: nanoseconds would
#: overflow 64 bits (the loop's ``LATEST_NS``).
_LATEST_SECOND = 9_000_000_000


class Declined(Exception):
    """The index cannot promise tshark's exact reading of this capture: use the loop."""


class Numbering(StrEnum):
    """Whose ``tcp.stream`` rules the index follows: they changed between tshark 4.0 and 4.4.

    Both number conversations in order of first packet and start a new one on a SYN (no
    ACK) whose sequence number is not its direction's base. 4.0 moves the base when a
    SYN-ACK carries another one; 4.4 starts a new conversation there instead, and also on
    a SYN or SYN-ACK with the same sequence number once the conversation saw a RST or a
    FIN+ACK (a SYN without ACK that keeps the conversation forgets that it closed).
    Measured against tshark 4.0.17, 4.4.19 and 4.6.9 (tests/test_scan.py): 4.6 follows 4.4.
    """

    V4_0 = "4.0"  # tshark before 4.2
    V4_4 = "4.4"
    EITHER = "either"  # another version: number only what both rules number alike


def numbering_for(version: Sequence[int]) -> Numbering:
    """The rules of a tshark version; versions not measured get ``EITHER``."""
    major_minor = tuple(version[:2])
    if major_minor < (4, 2):
        return Numbering.V4_0
    if major_minor in ((4, 4), (4, 6)):
        return Numbering.V4_4
    return Numbering.EITHER


@functools.cache
def tshark_numbering(tshark: str | None = None) -> Numbering:
    """The rules of the tshark that will read the capture (``EITHER`` when none is found)."""
    from ..errors import TsharkError
    from .tshark import find_tshark

    try:
        return numbering_for(find_tshark(tshark).version)
    except TsharkError:
        return Numbering.EITHER


@dataclass(frozen=True)
class Interface:
    """One capture interface: pcapng (section, interface id); a pcap file has (0, 0)."""

    section: int
    ifid: int
    linktype: int
    snaplen: int
    tsres: int  # decimal digits of the timestamp units (6: µs, 9: ns)

    @property
    def key(self) -> tuple[int, int]:
        """The loop's interface key (``ifkey``)."""
        return (self.section, self.ifid)


@dataclass
class CaptureIndex:
    """The packets of the SMTP-port conversations, in capture order (one array row each).

    ``offset``/``caplen`` locate the packet's bytes in the file (``mm[o:o + c]``); ``units``
    is the raw timestamp in ``interfaces[iface].tsres`` digits; ``l3``/``l4`` are the offsets
    of the IP and TCP headers inside the packet's bytes.
    """

    packets_total: int  # every packet record of the capture (tshark's last frame number)
    tcp_streams: int  # TCP conversations in the whole capture
    interfaces: list[Interface]
    frame: np.ndarray  # int64, 1-based original frame number
    stream: np.ndarray  # int64, tcp.stream
    direction: np.ndarray  # uint8: 0 = direction of the conversation's first packet
    offset: np.ndarray  # int64, offset of the packet's bytes in the file
    caplen: np.ndarray  # int64
    origlen: np.ndarray  # int64
    units: np.ndarray  # uint64
    iface: np.ndarray  # int32, index into ``interfaces``
    ip_version: np.ndarray  # uint8, 4 or 6
    l3: np.ndarray  # int16
    l4: np.ndarray  # int16
    seq: np.ndarray  # uint32
    ack: np.ndarray  # uint32, the acknowledgement number (whatever the ACK flag)
    flags: np.ndarray  # uint8, TCP flags byte
    thl: np.ndarray  # int16, TCP header length
    seglen: np.ndarray  # int32, TCP payload length on the wire (from the IP length)
    ports: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ns(self) -> np.ndarray:
        """Timestamps in nanoseconds since the epoch (int64), like the loop's ``ns``."""
        mult = np.array([10 ** (9 - i.tsres) for i in self.interfaces] or [1], np.uint64)
        return (self.units * mult[self.iface]).astype(np.int64)


def index_capture(path: str | os.PathLike, ports: Sequence[int],
                  progress: Callable[[int, int], None] | None = None,
                  numbering: Numbering | None = None) -> CaptureIndex | None:
    """The index of ``path`` for the conversations with either port in ``ports``, or None
    when the loop must read this capture itself (see :func:`build_index` for why).
    ``progress(bytes_read, size)`` is called as the file is read. ``numbering``: whose
    ``tcp.stream`` rules (default: those of the tshark on the PATH)."""
    try:
        return build_index(path, ports, progress, numbering)
    except Declined:
        return None


def build_index(path: str | os.PathLike, ports: Sequence[int],
                progress: Callable[[int, int], None] | None = None,
                numbering: Numbering | None = None) -> CaptureIndex:
    """Like :func:`index_capture`, but raises :class:`Declined` naming the reason."""
    path = Path(path)
    size = path.stat().st_size
    if size < 24:
        raise Declined("empty or too short for a capture header")
    with path.open("rb") as handle:
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            mm.madvise(mmap.MADV_SEQUENTIAL)
        return _index(mm, size, tuple(sorted(set(ports))), progress,
                      numbering or tshark_numbering())
    finally:
        with contextlib.suppress(BufferError):  # a traceback holds a view: the GC closes it
            mm.close()


# --------------------------------------------------------------------------- block walk

_W = 132  # bytes read per record: (pcapng: the previous block's trailing length,) the record
#           header and at least the first 100 bytes of the packet, all any field below needs
_CHUNK = 1 << 14  # records classified at a time: a 2 MB matrix stays in the CPU cache
SCAN_THREADS = 2  # threads that look for the packet blocks (see _Pcapng.walk)
_REGION = 1 << 24  # words (pcapng) or bytes (pcap) walked before the block list is packed


@dataclass
class _Chunk:
    """The packet records of one chunk of blocks (``win`` has one row per packet)."""

    win: np.ndarray
    offset: np.ndarray  # of the packet's bytes in the file
    caplen: np.ndarray
    origlen: np.ndarray
    units: np.ndarray
    iface: np.ndarray


class _Pages:
    """Hands back the pages of the mapping already read (``MADV_DONTNEED``), so that the
    process does not grow by the size of the capture, like the loop; the page cache keeps
    them, a second pass reads them again from memory."""

    def __init__(self, mm: mmap.mmap) -> None:
        self.mm = mm
        self.done = 0
        self.advice = getattr(mmap, "MADV_DONTNEED", None)

    def release(self, upto: int) -> None:
        upto = min(upto, len(self.mm)) & ~(mmap.PAGESIZE - 1)
        if self.advice is not None and upto > self.done:
            self.mm.madvise(self.advice, self.done, upto - self.done)
            self.done = upto

    def rewind(self) -> None:
        self.done = 0


class _Pcap:
    """A pcap file: one interface, unaligned records found by following their lengths."""

    lead = 0  # bytes of the window before the record
    data = 16  # column of the window where the packet's bytes start

    def __init__(self, mm: mmap.mmap, size: int) -> None:
        for endian in ("<", ">"):
            magic = struct.unpack_from(endian + "I", mm, 0)[0]
            if magic in (0xA1B2C3D4, 0xA1B23C4D):
                break
        else:
            raise Declined("not a pcap or pcapng file (compressed or another format)")
        self.mm, self.size, self.endian = mm, size, endian
        if struct.unpack_from(endian + "H", mm, 4)[0] != 2:
            raise Declined("pcap major version other than 2")
        self.res = 6 if magic == 0xA1B2C3D4 else 9
        snaplen, linktype = struct.unpack_from(endian + "II", mm, 16)
        linktype &= 0x0FFFFFFF  # the loop ignores the FCS bits (they do not move the IP header)
        if linktype not in LINKTYPES:
            raise Declined(f"link type {linktype} is not indexed")
        self.interfaces = [Interface(0, 0, linktype, snaplen, self.res)]
        self.pages = _Pages(mm)

    def walk(self) -> np.ndarray:
        """Byte offset of every record: Python's tightest loop over the length fields.

        Records are not aligned; four views of the file as 32-bit words, one per byte
        offset modulo 4, read a length with one index (faster than ``struct``).
        """
        last = self.size - 16
        parts = [np.zeros(0, np.int64)]
        pos = 24
        mm = self.mm
        unpack = struct.Struct(self.endian + "I").unpack_from
        with contextlib.ExitStack() as views:
            words: tuple[memoryview, ...] = ()
            if self.endian == "<" and sys.byteorder == "little":
                raw = views.enter_context(memoryview(mm))
                words = tuple(views.enter_context(raw[k:k + (self.size - k) // 4 * 4].cast("I"))
                              for k in range(4))
            while pos <= last:
                starts: list[int] = []
                add = starts.append
                lim = min(pos + _REGION, last + 1)
                if words:
                    while pos < lim:
                        add(pos)
                        at = pos + 8
                        pos += words[at & 3][at >> 2] + 16
                else:
                    while pos < lim:
                        add(pos)
                        pos += unpack(mm, pos + 8)[0] + 16
                parts.append(np.array(starts, np.int64))
                self.pages.release(pos)
        self.pages.rewind()
        if pos != self.size:
            raise Declined("the file ends inside a packet record")
        return np.concatenate(parts)

    def records(self, win: np.ndarray, starts: np.ndarray) -> _Chunk:
        words = win[:, :16].view(self.endian + "u4")
        sec, frac = words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)
        cap, orig = words[:, 2].astype(np.int64), words[:, 3].astype(np.int64)
        if int(frac.max()) >= 10 ** self.res:
            # tshark then guesses another pcap variant (and the loop reads it as this one)
            raise Declined("a pcap timestamp fraction out of range")
        _check_lengths(cap, orig)
        return _Chunk(win, starts + 16, cap, orig, sec * np.uint64(10 ** self.res) + frac,
                      np.zeros(len(starts), np.int64))

    def finish(self) -> None:
        """Nothing is left to check once every record was read."""


class _Pcapng:
    """A little-endian pcapng file: blocks found by following their lengths, the few that
    are not packets read one by one, the packets (EPBs) vectorised."""

    lead = 4  # the window starts with the previous block's trailing length
    data = 32

    def __init__(self, mm: mmap.mmap, size: int) -> None:
        if mm[8:12] == b"\x1a\x2b\x3c\x4d":
            raise Declined("a big-endian pcapng section")
        if size % 4:
            raise Declined("the file ends inside a block")
        self.mm, self.size = mm, size
        self.interfaces: list[Interface] = []
        self.sections: list[int] = []  # first interface (global index) of each section
        self.shb_pos: list[int] = []
        self.idb_pos: list[int] = []
        self.last_blen = -1  # length of the last block read
        self.pages = _Pages(mm)

    def walk(self) -> np.ndarray:
        """Byte offset of every block, in the order of the file.

        Every EPB starts with the 32-bit word 6 at a word boundary: one vectorised scan finds
        those words (and, rarely, the same value inside a packet), each one's length says
        where the next block would start, and where that is the next such word the two are
        chained. Python walks only where a chain breaks: from a block it knows to be real,
        through the blocks that are not packets, to the next chain. A word 6 inside a packet
        is never reached (it lies inside a block walked over), so the result is exactly the
        sequential walk's (:meth:`walk_sequential`), which is used when chains are short.
        """
        n = self.size >> 2
        if sys.byteorder != "little" or n < 2:
            return self.walk_sequential()
        words = np.frombuffer(self.mm, "<u4", count=n)
        step = 1 << 20

        def scan(s: int) -> tuple[np.ndarray, np.ndarray, int]:
            e = min(s + step, n - 1)
            c = np.flatnonzero(words[s:e] == _EPB) + s
            return c, words[c + 1].astype(np.int64), e

        found, lengths = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        # two threads: numpy compares outside the interpreter lock, and reading the file's
        # pages (page faults) is half the work (0.21 -> 0.13 s on the 871 MB benchmark)
        with ThreadPoolExecutor(SCAN_THREADS) as pool:
            for c, blen, e in pool.map(scan, range(0, n - 1, step)):
                found.append(c)
                lengths.append(blen)
                self.pages.release(4 * e)
        self.pages.rewind()
        cand, blen = np.concatenate(found), np.concatenate(lengths)
        nxt = np.where(blen >= 12, cand + (blen >> 2), n)
        ends = np.append(np.flatnonzero(nxt[:-1] != cand[1:]), len(cand) - 1)
        if len(ends) > len(cand) // 8 + 16:
            return self.walk_sequential()  # not worth it: few packets between other blocks
        parts = []
        pos = 0
        while pos < n:
            k = int(np.searchsorted(cand, pos))
            if k < len(cand) and int(cand[k]) == pos:
                r = int(ends[np.searchsorted(ends, k)])
                parts.append(cand[k:r + 1])
                pos = int(nxt[r])
            else:
                if pos + 1 >= n:
                    raise Declined("the file ends inside a block")
                parts.append(np.array([pos], np.int64))
                pos += (int(words[pos + 1]) >> 2) or n
        return np.concatenate(parts) * 4

    def walk_sequential(self) -> np.ndarray:
        """Byte offset of every block, one Python step per block (a memoryview of 32-bit
        words). The lengths are validated afterwards; a zero length jumps to the end."""
        parts = [np.zeros(0, np.int64)]
        if sys.byteorder == "little":
            with memoryview(self.mm) as raw, raw.cast("I") as words:
                n = len(words)
                i = 0
                try:
                    while i < n:
                        starts: list[int] = []
                        add = starts.append
                        lim = min(i + _REGION, n)
                        while i < lim:
                            add(i)
                            i += (words[i + 1] >> 2) or n
                        parts.append(np.array(starts, np.int64))
                        self.pages.release(4 * min(i, n))
                except IndexError:
                    raise Declined("the file ends inside a block") from None
                finally:
                    self.pages.rewind()
        else:  # pragma: no cover - big-endian hosts
            blen = struct.Struct("<I").unpack_from
            n = self.size >> 2
            i = 0
            starts = []
            while i < n:
                starts.append(i)
                if 4 * i + 8 > self.size:
                    raise Declined("the file ends inside a block")
                i += (blen(self.mm, 4 * i + 4)[0] >> 2) or n
            parts.append(np.array(starts, np.int64))
        return np.concatenate(parts) * 4

    def records(self, win: np.ndarray, starts: np.ndarray) -> _Chunk:
        words = win[:, :32].view("<u4")
        btype, blen = words[:, 1], words[:, 2].astype(np.int64)
        if bool(((blen < 12) | (blen % 4 != 0) | (starts + blen > self.size)).any()):
            raise Declined("the file ends inside a block (or a block is damaged)")
        # The walk found each block where the previous one ends; tshark also wants the
        # trailing copy of each length to match (each window starts with the previous one).
        trailing = words[:, 0].astype(np.int64)
        if (bool((trailing[1:] != blen[:-1]).any())
                or (self.last_blen >= 0 and int(trailing[0]) != self.last_blen)):
            raise Declined("a block's trailing length differs from its leading one")
        self.last_blen = int(blen[-1])
        epb = btype == _EPB
        if not bool(epb.all()):
            for k in np.flatnonzero(~epb).tolist():
                self._block(int(starts[k]), int(btype[k]), int(blen[k]))
            rows = np.flatnonzero(epb)
            win, words, blen, starts = win[rows], words[rows], blen[rows], starts[rows]
        if not self.sections:
            raise Declined("no pcapng section header first")
        if bool((blen < 32).any()):
            raise Declined("damaged enhanced packet block")
        ifid = words[:, 3].astype(np.int64)
        units = (words[:, 4].astype(np.uint64) << np.uint64(32)) | words[:, 5]
        cap = words[:, 6].astype(np.int64)
        orig = words[:, 7].astype(np.int64)
        if bool((32 + cap > blen).any()):  # tshark: header, data and trailing length
            raise Declined("damaged enhanced packet block")
        _check_lengths(cap, orig)
        with_options = np.flatnonzero(32 + cap + (-cap % 4) < blen)
        for k in with_options.tolist():  # rare: options tshark checks (comments, flags ...)
            start = int(starts[k])
            check_packet_options(self.mm, start + 28 + int(cap[k]) + (-int(cap[k]) % 4),
                                 start + int(blen[k]) - 4)
        # The interface an EPB names must already be described in its own section.
        if len(self.sections) == 1:
            first = np.zeros(len(starts), np.int64)
            known = np.searchsorted(np.array(self.idb_pos, np.int64), starts)
        else:
            sec = np.searchsorted(np.array(self.shb_pos, np.int64), starts, side="right") - 1
            first = np.array(self.sections, np.int64)[sec]
            known = np.searchsorted(np.array(self.idb_pos, np.int64), starts) - first
        if bool((ifid >= known).any()):
            raise Declined("a packet names an interface not (yet) described")
        return _Chunk(win, starts + 28, cap, orig, units, first + ifid)

    def _block(self, pos: int, btype: int, blen: int) -> None:
        mm = self.mm
        if btype == _SHB:
            bom = mm[pos + 8:pos + 12]
            if bom == b"\x1a\x2b\x3c\x4d":
                raise Declined("a big-endian pcapng section")
            if bom != b"\x4d\x3c\x2b\x1a" or blen < 28:
                raise Declined("damaged pcapng section header")
            if struct.unpack_from("<HH", mm, pos + 12) not in ((1, 0), (1, 2)):
                raise Declined("a pcapng version tshark does not read (it reads 1.0, 1.2)")
            _check_options(mm, pos + 24, pos + blen - 4)
            self.sections.append(len(self.interfaces))
            self.shb_pos.append(pos)
        elif not self.sections:
            raise Declined("no pcapng section header first")
        elif btype == _IDB:
            self.interfaces.append(_interface(mm, pos, blen, len(self.sections) - 1,
                                              len(self.interfaces) - self.sections[-1]))
            self.idb_pos.append(pos)
        elif btype == 4:
            _check_names(mm, pos, blen)
        elif btype == 5:
            if blen < 24:
                raise Declined("damaged interface statistics block")
            _check_options(mm, pos + 20, pos + blen - 4)
        elif btype == 10:
            raise Declined("decryption secrets block (the loop passes the keys to tshark)")
        elif btype in (2, 3):
            raise Declined("obsolete or simple packet blocks")
        else:
            raise Declined(f"pcapng block type 0x{btype:08x} is not indexed")

    def finish(self) -> None:
        if struct.unpack_from("<I", self.mm, self.size - 4)[0] != self.last_blen:
            raise Declined("a block's trailing length differs from its leading one")


def _check_lengths(cap: np.ndarray, orig: np.ndarray) -> None:
    if len(cap) and (int(cap.max()) > _MAX_PACKET or bool((cap > orig).any())):
        raise Declined("a record longer than tshark reads or than the original packet")


def _options(mm: mmap.mmap, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(code, offset of the value, length) of each option of a block; tshark refuses a
    file where one runs past its block."""
    while pos + 4 <= end:
        code, olen = struct.unpack_from("<HH", mm, pos)
        if code == 0:
            return
        if pos + 4 + olen > end:
            raise Declined("a pcapng option runs past its block")
        yield code, pos + 4, olen
        pos += 4 + olen + (-olen % 4)


def _check_options(mm: mmap.mmap, pos: int, end: int) -> None:
    for _option in _options(mm, pos, end):
        pass


def check_block_options(mm: mmap.mmap, pos: int, end: int, endian: str = "<") -> None:
    """A section's, interface's or statistics block's options as tshark checks them (the
    loop's reading, either byte order): :class:`Declined` where one runs past its block."""
    while pos + 4 <= end:
        code, olen = struct.unpack_from(endian + "HH", mm, pos)
        if code == 0:
            return
        if pos + 4 + olen > end:
            raise Declined("a pcapng option runs past its block")
        pos += 4 + olen + (-olen % 4)


#: Enhanced packet block options with a fixed length (flags, drop count, packet id, queue):
#: tshark refuses a file where one has another length.
_EPB_OPTION_SIZES = {2: 4, 4: 8, 5: 8, 6: 4}


def check_packet_options(mm: mmap.mmap, pos: int, end: int, endian: str = "<") -> None:
    """An EPB's options as tshark checks them; :class:`Declined` where it would refuse."""
    while pos + 4 <= end:
        code, olen = struct.unpack_from(endian + "HH", mm, pos)
        if code == 0:
            return
        if pos + 4 + olen > end or _EPB_OPTION_SIZES.get(code, olen) != olen:
            raise Declined("a packet option tshark refuses")
        pos += 4 + olen + (-olen % 4)


def _check_names(mm: mmap.mmap, pos: int, blen: int) -> None:
    """A name resolution block makes no frame, but tshark refuses a damaged one."""
    at, end = pos + 8, pos + blen - 4
    while at + 4 <= end:
        rtype, rlen = struct.unpack_from("<HH", mm, at)
        value_end = at + 4 + rlen
        if value_end > end:
            raise Declined("damaged name resolution block")
        at = value_end + (-rlen % 4)
        if rtype == 0:
            break
        if rtype in (1, 2) and (rlen <= (4 if rtype == 1 else 16) or mm[value_end - 1]):
            raise Declined("damaged name resolution record")
    _check_options(mm, at, end)


def _interface(mm: mmap.mmap, pos: int, blen: int, section: int, ifid: int) -> Interface:
    """One IDB, with the loop's reading of its options (``_pcapng``)."""
    if blen < 20:
        raise Declined("damaged interface description block")
    linktype, _reserved, snaplen = struct.unpack_from("<HHI", mm, pos + 8)
    if linktype not in LINKTYPES:
        raise Declined(f"link type {linktype} is not indexed")
    res = 6
    for code, at, olen in _options(mm, pos + 16, pos + blen - 4):
        if code == 9:
            if olen != 1:
                raise Declined("a malformed timestamp resolution option")
            res = mm[at]
            if res & 0x80:
                raise Declined("binary timestamp resolution")
        elif code == 14:
            raise Declined("interface timestamp offset")
    if res > 9:
        raise Declined("timestamp resolution finer than nanoseconds")
    return Interface(section, ifid, linktype, snaplen, res)


def _windows(u8: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``_W`` bytes from each ``first`` (zero-padded outside the file): one gather of the
    records' headers, after which every field is read from this small matrix."""
    size = len(u8)
    view = as_strided(u8, (max(size - _W + 1, 0), _W), (1, 1), writeable=False)
    inside = (first >= 0) & (first <= size - _W)
    if bool(inside.all()):
        return view[first]
    win = np.zeros((len(first), _W), np.uint8)
    win[inside] = view[first[inside]]
    for k in np.flatnonzero(~inside).tolist():
        s = int(first[k])
        lo, hi = max(s, 0), min(s + _W, size)
        win[k, lo - s:hi - s] = u8[lo:hi]
    return win


# ---------------------------------------------------------------------- classification

_BE = {1: np.dtype("u1"), 2: np.dtype(">u2"), 4: np.dtype(">u4"), 8: np.dtype(">u8")}
_NATIVE = {n: dt.newbyteorder("=") for n, dt in _BE.items()}


class _At:
    """Per-packet offsets of a header: the most common one, and the packets that differ
    (among those that matter, ``mask``)."""

    def __init__(self, rel: np.ndarray, mask: np.ndarray) -> None:
        self.odd: np.ndarray | None = None
        sel = rel[mask]
        if not len(sel):
            self.c = 0
            return
        lo, hi = int(sel.min()), int(sel.max())
        self.c = lo
        if lo != hi:
            self.c = int(np.bincount(sel - lo).argmax()) + lo
            self.odd = np.flatnonzero(mask & (rel != self.c))
            self.odd_rel = rel[self.odd]


class _Bytes:
    """Big-endian fields of the packets of a window matrix (one row per packet)."""

    def __init__(self, win: np.ndarray, data: int) -> None:
        self.win = win
        self.m, self.w = win.shape
        self.data = data
        flat = win.reshape(-1)
        self.flat = {n: np.ndarray((max(len(flat) - n + 1, 0),), dt, flat, 0, (1,))
                     for n, dt in _BE.items()}

    def col(self, rel: int, n: int) -> np.ndarray:
        """The ``n``-byte field at ``rel`` in every packet: a strided column of the matrix."""
        off = self.data + rel
        if not 0 <= off <= self.w - n:
            raise Declined("a header field beyond the bytes read")  # cannot happen
        return np.ndarray((self.m,), _BE[n], self.win, off, (self.w,)).astype(_NATIVE[n])

    def read(self, at: _At, rel: int, n: int) -> np.ndarray:
        """The field at ``at + rel`` in every packet (garbage where ``at`` did not matter)."""
        out = self.col(at.c + rel, n)
        if at.odd is not None:
            view = self.flat[n]
            idx = at.odd * self.w + (self.data + rel) + at.odd_rel
            out[at.odd] = view[np.minimum(idx, len(view) - 1)]
        return out


def _lut(values: Iterable[int], size: int = 256) -> np.ndarray:
    """A membership table: ``table[x]`` says whether ``x`` is one of ``values``."""
    table = np.zeros(size, bool)
    table[list(values)] = True
    return table


_LUT_TUNNEL = _lut(_TUNNEL_PROTOS)
_LUT_FRAG_REFUSED = _lut({6, 1, 17, *_TUNNEL_PROTOS})
_LUT_EXT6 = _lut(_IPV6_EXTENSIONS)
_LUT_ICMP4_ERR = _lut(_ICMP4_ERRORS)
_LUT_ICMP6_ERR = _lut(_ICMP6_ERRORS)
_LUT_TUNNEL_UDP = _lut(_TUNNEL_UDP_PORTS, 1 << 16)
_LUT_ENCAP = _lut(_ENCAP_ETHERTYPES, 1 << 16)


def _refuse(mask: np.ndarray, reason: str) -> None:
    if bool(mask.any()):
        raise Declined(reason)


def _layer3(b: _Bytes, cap: np.ndarray, linktype: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """(IP version 4/6 or 0, offset of the IP header) per packet, as the loop's ``_l3``."""
    first = int(linktype[0])
    if bool((linktype == first).all()):
        return _link(b, first, cap)
    version = np.zeros(b.m, np.uint8)
    l3 = np.zeros(b.m, np.int64)
    for lt in np.unique(linktype).tolist():
        mine = linktype == lt
        v, at = _link(b, lt, cap)
        version = np.where(mine, v, version)
        l3 = np.where(mine, at, l3)
    return version, l3


def _ip_version(etype: np.ndarray) -> np.ndarray:
    return (4 * (etype == 0x0800) + 6 * (etype == 0x86DD)).astype(np.uint8)


def _link(b: _Bytes, lt: int, cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = b.m
    if lt == LT_ETHERNET:
        # The loop reads an ethertype from whatever bytes are there: a frame too short for
        # one is skipped, so is a VLAN tag cut short.
        at = np.full(m, 12, np.int64)
        etype = b.col(12, 2)
        etype[cap < 14] = 0
        for depth in range(3):
            tagged = (etype == 0x8100) | (etype == 0x88A8) | (etype == 0x9100)
            if not bool(tagged.any()):
                break
            if depth == 2:
                raise Declined("more than two VLAN tags")
            at = at + 4 * tagged
            inner = b.read(_At(at, tagged), 0, 2)
            etype = np.where(tagged, np.where(cap >= at + 2, inner, 0), etype)
        at += 2
        _refuse(_LUT_ENCAP[etype], "MPLS/PPPoE/ERSPAN encapsulation")
        llc = (etype < 0x600) & (cap >= at + 8)
        if bool(llc.any()):
            a = _At(at, llc)
            snap = b.read(a, 0, 4) >> 8 == 0xAAAA03
            inner = b.read(a, 6, 2)
            _refuse(llc & snap & ((inner == 0x0800) | (inner == 0x86DD)),
                    "802.2 SNAP-encapsulated IP")
        return _ip_version(etype), at
    if lt in (LT_RAW, LT_IPV4, LT_IPV6):
        v = b.col(0, 1) >> 4
        v[(cap < 1) | ((v != 4) & (v != 6))] = 0
        if lt == LT_IPV6:  # the loop reads IPv4 here too; tshark reads only IPv6
            _refuse(v == 4, "IPv4 on the raw IPv6 link type")
        return v, np.zeros(m, np.int64)
    if lt in (LT_NULL, LT_LOOP):
        fam = b.col(0, 4).astype(np.int64)  # big-endian reading
        if lt == LT_NULL:
            little = fam.astype(np.uint32).byteswap().astype(np.int64)
            fam = np.where(little > 0xFFFF, fam, little)
        fam[cap < 4] = -1
        six = (fam == 10) | (fam == 24) | (fam == 28) | (fam == 30)
        return (4 * (fam == 2) + 6 * six).astype(np.uint8), np.full(m, 4, np.int64)
    if lt == LT_SLL:
        etype = b.col(14, 2)
        etype[cap < 16] = 0
        at = 16
    else:  # LT_SLL2
        etype = b.col(0, 2)
        etype[cap < 2] = 0
        at = 20
    return _ip_version(etype), np.full(m, at, np.int64)


@dataclass
class _Tcp:
    """The loop's TCP packets (those reaching its ``--- TCP ---``), in capture order.

    The canonical address/port pair (the smaller (address, port) end first) of an IPv4
    packet is ``addr`` (both addresses) and ``pair_ports`` (both ports); an IPv6 packet's
    is ``key6`` (five columns), for the packets at positions ``six``.
    """

    row: np.ndarray  # the packet's row in its chunk
    version: np.ndarray
    l3: np.ndarray
    l4: np.ndarray
    addr: np.ndarray  # uint64: smaller end's address << 32 | larger end's
    pair_ports: np.ndarray  # uint64: smaller end's port << 16 | larger end's
    six: np.ndarray  # positions of the IPv6 packets
    key6: tuple[np.ndarray, ...]
    dc: np.ndarray  # 1 when (src, sport) is the pair's larger end
    ports: np.ndarray  # sport << 16 | dport
    seq: np.ndarray
    ack: np.ndarray
    flags: np.ndarray
    thl: np.ndarray  # TCP header length
    seglen: np.ndarray  # TCP payload bytes (on the wire, from the IP length)


class _Conversations:
    """What numbering the conversations needs of every TCP packet, in capture order:
    27 bytes a packet, in arrays sized for the whole capture up front (no copies)."""

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.addr = np.empty(capacity, np.uint64)
        self.pair_ports = np.empty(capacity, np.uint64)
        self.seq = np.empty(capacity, np.uint32)
        self.ack = np.empty(capacity, np.uint32)
        self.dc = np.empty(capacity, np.uint8)
        self.flags = np.empty(capacity, np.uint8)
        self.six: list[np.ndarray] = []
        self.key6: list[tuple[np.ndarray, ...]] = []

    def add(self, tcp: _Tcp) -> np.ndarray:
        """Append a chunk's TCP packets; return their positions."""
        start, stop = self.n, self.n + len(tcp.row)
        for name in ("addr", "pair_ports", "seq", "ack", "dc", "flags"):
            getattr(self, name)[start:stop] = getattr(tcp, name)
        if len(tcp.six):
            self.six.append(tcp.six + start)
            self.key6.append(tcp.key6)
        self.n = stop
        return np.arange(start, stop)

    def trim(self) -> None:
        for name in ("addr", "pair_ports", "seq", "ack", "dc", "flags"):
            setattr(self, name, getattr(self, name)[:self.n])

    def ipv6(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Positions of the IPv6 packets and their pairs (five columns)."""
        if not self.six:
            return np.zeros(0, np.int64), ()
        return np.concatenate(self.six), tuple(
            np.concatenate(col) for col in zip(*self.key6, strict=True))


# long: vectorised: every step is a whole-array mask over all packets' headers, read top to bottom
#   as the headers are
def _classify(b: _Bytes, cap: np.ndarray, orig: np.ndarray, linktype: np.ndarray
              ) -> _Tcp | None:
    """The loop's TCP packets of a chunk; decline whatever the loop would refuse or read
    in a way not reproduced here. Every array is over all packets, masks say which count;
    neighbouring fields are read together (one 32- or 64-bit read)."""
    version, l3 = _layer3(b, cap, linktype)
    v4, v6 = version == 4, version == 6
    ip = _At(l3, v4 | v6)
    room = cap - l3  # captured bytes from the IP header on
    wire = orig - l3
    ok = np.zeros(b.m, bool)
    proto = np.zeros(b.m, np.uint8)
    l4 = l3
    end = l3  # where the IP payload ends
    if bool(v4.any()):
        w0 = b.read(ip, 0, 4)  # version/IHL, TOS, total length
        w1 = b.read(ip, 6, 4)  # flags/fragment offset, TTL, protocol
        # tshark reads an IPv6 header where the link layer says IPv4; the loop skips it
        _refuse(v4 & (room >= 1) & (w0 >> 28 == 6), "IPv6 behind an IPv4 link-layer type")
        ok4 = v4 & (room >= 20) & (w0 >> 28 == 4)
        ihl = ((w0 >> 22) & 0x3C).astype(l3.dtype)
        ip_len = (w0 & 0xFFFF).astype(l3.dtype)
        p4 = (w1 & 0xFF).astype(np.uint8)
        bad_len = ok4 & ((ip_len < ihl) | (ip_len > wire))
        _refuse(bad_len & (p4 == 6), "an IP length the loop would not trust (TSO?)")
        ok4 &= ~bad_len
        _refuse(ok4 & (ihl < 20), "an IPv4 header length below 20")
        frag = ok4 & ((w1 & 0x3FFF0000) != 0)
        _refuse(frag & _LUT_FRAG_REFUSED[p4], "fragmented IP packets")
        ok4 &= ~frag
        ok |= ok4
        proto[ok4] = p4[ok4]
        l4 = np.where(ok4, l3 + ihl, l4)
        end = np.where(ok4, l3 + ip_len, end)
    if bool(v6.any()):
        w0 = b.read(ip, 0, 8)  # version, class, label, payload length, next header, hops
        plen = ((w0 >> np.uint64(16)) & np.uint64(0xFFFF)).astype(l3.dtype)
        nh = ((w0 >> np.uint64(8)) & np.uint64(0xFF)).astype(np.uint8)
        ok6 = v6 & (room >= 40)
        bad_len = ok6 & ((plen == 0) | (40 + plen > wire))
        _refuse(bad_len & (nh == 6), "an IPv6 length the loop would not trust")
        ok6 &= ~bad_len
        # tshark reads no TCP behind another version nibble (the loop skips such a frame)
        _refuse(ok6 & (w0 >> np.uint64(60) != 6), "an IPv6 header with another version")
        _refuse(ok6 & _LUT_EXT6[nh], "IPv6 extension headers")
        ok |= ok6
        proto[ok6] = nh[ok6]
        l4 = np.where(ok6, l3 + 40, l4)
        end = np.where(ok6, l3 + 40 + plen, end)
    _refuse(_LUT_TUNNEL[proto], "tunnelled traffic (IP protocol)")
    icmp = ((proto == 1) | (proto == 58)) & (cap > l4)
    if bool(icmp.any()):
        at = _At(l4, icmp)
        kind = b.read(at, 0, 1)
        err = np.where(proto == 1, _LUT_ICMP4_ERR[kind], _LUT_ICMP6_ERR[kind])
        inner = b.read(at, 8, 1) >> 4
        quotes_tcp = (((inner == 4) & (cap > l4 + 17) & (b.read(at, 17, 1) == 6))
                      | ((inner == 6) & (cap > l4 + 14) & (b.read(at, 14, 1) == 6)))
        _refuse(icmp & err & (cap > l4 + 8) & quotes_tcp, "ICMP errors quoting TCP")
    udp = (proto == 17) & (cap >= l4 + 4)
    if bool(udp.any()):
        pp = b.read(_At(l4, udp), 0, 4)
        _refuse(udp & (_LUT_TUNNEL_UDP[pp >> 16] | _LUT_TUNNEL_UDP[pp & 0xFFFF]),
                "tunnelled traffic (UDP port)")
    tcp = proto == 6
    if not bool(tcp.any()):
        return None
    _refuse(tcp & (cap < l4 + 20), "a TCP header is cut by the snap length")
    at = _At(l4, tcp)
    doff_flags = b.read(at, 12, 2)
    _refuse(tcp & ((doff_flags >> 12) < 5), "a damaged TCP header")
    _refuse(tcp & (end - l4 < (doff_flags >> 12) * 4), "a TCP header longer than its segment")
    rows = np.flatnonzero(tcp)
    pp = b.read(at, 0, 4)[rows].astype(np.uint64)  # ports
    w = b.read(at, 4, 8)[rows]  # sequence and acknowledgement numbers
    seq = (w >> np.uint64(32)).astype(np.uint32)
    ack = (w & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    flags = (doff_flags[rows] & 0xFF).astype(np.uint8)
    thl = ((doff_flags[rows] >> 12) * 4).astype(np.int16)
    seglen = (end[rows] - l4[rows] - thl).astype(np.int32)
    version = version[rows]
    s16, s32 = np.uint64(16), np.uint64(32)
    low16, low32 = np.uint64(0xFFFF), np.uint64(0xFFFFFFFF)
    sport, dport = pp >> s16, pp & low16
    rev = (dport << s16) | sport
    addrs = b.read(ip, 12, 8)[rows]  # IPv4 source, destination
    src, dst = addrs >> s32, addrs & low32
    dc = (src > dst) | ((src == dst) & (sport > dport))
    addr = np.where(dc, (dst << s32) | src, addrs)
    pair_ports = np.where(dc, rev, pp)
    six = np.flatnonzero(version == 6)
    key6: tuple[np.ndarray, ...] = (np.zeros(0, np.uint64),) * 5
    if len(six):
        r6 = rows[six]
        sh, sl = b.read(ip, 8, 8)[r6], b.read(ip, 16, 8)[r6]
        dh, dl = b.read(ip, 24, 8)[r6], b.read(ip, 32, 8)[r6]
        sp, dp = sport[six], dport[six]
        dc6 = (sh > dh) | ((sh == dh) & ((sl > dl) | ((sl == dl) & (sp > dp))))
        key6 = (np.where(dc6, dh, sh), np.where(dc6, dl, sl), np.where(dc6, sh, dh),
                np.where(dc6, sl, dl), np.where(dc6, rev[six], pp[six]))
        dc[six] = dc6
        addr[six] = 0  # the pair is key6
    return _Tcp(rows, version, l3[rows], l4[rows], addr, pair_ports, six, key6,
                dc.astype(np.uint8), pp.astype(np.uint32), seq, ack, flags, thl, seglen)


def _on_ports(pp: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Whether either port (of ``sport << 16 | dport``) is in the table (see :func:`_lut`)."""
    return table[pp >> 16] | table[pp & 0xFFFF]


# ----------------------------------------------------------------------- conversations


def _firsts(codes: np.ndarray) -> np.ndarray:
    """Where each code first occurs, for codes numbered in order of first appearance."""
    new = np.ones(len(codes), bool)
    new[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return np.flatnonzero(new)


def _codes(cols: tuple[np.ndarray, ...]) -> np.ndarray:
    """Exact ids of the rows' column tuples, in order of first appearance: hash tables over
    one 64-bit column at a time, each joined with the ids so far."""
    codes = pd.factorize(cols[0])[0].astype(np.int64, copy=False)
    for col in cols[1:]:
        more = pd.factorize(col)[0].astype(np.int64, copy=False)
        codes <<= 32
        codes |= more
        del more
        codes = pd.factorize(codes)[0].astype(np.int64, copy=False)
    return codes


def _pairs(tcp: _Conversations) -> np.ndarray:
    """Pair id per packet, numbered in order of first appearance (exactly: the IPv4 pair
    is two 64-bit columns; IPv6 pairs are numbered apart and then stand in as ports that
    no IPv4 pair has)."""
    pair_ports = tcp.pair_ports
    six, key6 = tcp.ipv6()
    if len(six):
        pair_ports = pair_ports.copy()
        pair_ports[six] = np.uint64(1 << 32) + _codes(key6).astype(np.uint64)
    return _codes((tcp.addr, pair_ports))


def _streams(tcp: _Conversations, numbering: Numbering = Numbering.V4_0
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """(tcp.stream, direction) per TCP packet and the number of conversations.

    Wireshark (4.0; the tests check it against tshark) numbers conversations in order of
    their first packet. Each direction of a conversation has a base sequence number, set
    once: by the direction's first packet (its sequence number, minus one unless it is a
    SYN) or, if earlier, by the first packet with the ACK flag in the other direction (its
    acknowledgement number minus one). A SYN without ACK whose sequence number is not its
    direction's base starts a new conversation on the same addresses and ports; a SYN-ACK
    whose sequence number is not the base becomes the base. Pairs where a SYN or SYN-ACK
    differs from the base are replayed packet by packet (:func:`_split`); all the other
    pairs are one conversation each, numbered vectorised. ``numbering`` says whose rules
    (:class:`Numbering`: 4.4 also replays the pairs where a SYN follows a RST or FIN+ACK).
    """
    if not tcp.n:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8), 0
    seg = _pairs(tcp)
    seg_first = _firsts(seg)
    syn = (tcp.flags & _SYN) != 0
    if bool(syn.any()):
        split = _irregular(tcp, seg, len(seg_first), syn, numbering != Numbering.V4_0)
        if len(split) and numbering == Numbering.EITHER:
            old = _split(tcp, split, seg, seg_first, Numbering.V4_0)
            new = _split(tcp, split, seg, seg_first, Numbering.V4_4)
            if not (np.array_equal(old[0], new[0]) and np.array_equal(old[1], new[1])):
                raise Declined("tshark 4.0 and 4.4 number these conversations differently "
                               "(ports reused) and this tshark's rules were not measured")
            seg, seg_first = old
        elif len(split):
            seg, seg_first = _split(tcp, split, seg, seg_first, numbering)
    if bool((np.diff(seg_first) < 0).any()):
        rank = np.empty(len(seg_first), np.int64)
        rank[np.argsort(seg_first)] = np.arange(len(seg_first))
        stream = rank[seg]
    else:
        stream = seg
    direction = tcp.dc ^ tcp.dc[seg_first[seg]]
    return stream, direction, len(seg_first)


def _irregular(tcp: _Conversations, seg: np.ndarray, pairs: int, syn: np.ndarray,
               after_close: bool = False) -> np.ndarray:
    """The pairs where a SYN or SYN-ACK differs from its direction's base, the base being
    computed as if none did (where none does, that is the truth); with ``after_close``
    also those where a SYN or SYN-ACK comes after a RST or FIN+ACK (tshark 4.4)."""
    n = len(seg)
    side = seg * 2
    side += tcp.dc  # (pair, direction) of each packet
    # the first packet of each direction sets its base...
    by_own = np.full(2 * pairs, n, np.int64)
    np.minimum.at(by_own, side, np.arange(n))
    # ... unless the first ACK of the other direction came earlier
    acks = np.flatnonzero(tcp.flags & _ACK)
    by_ack = np.full(2 * pairs, n, np.int64)
    np.minimum.at(by_ack, side[acks] ^ 1, acks)
    del acks
    syn = np.flatnonzero(syn)
    k = side[syn]
    del side
    mine = by_own[k] < by_ack[k]
    at = np.where(mine, by_own[k], by_ack[k])
    not_syn = (tcp.flags[at] & _SYN) == 0
    base = np.where(mine, tcp.seq[at].astype(np.int64) - not_syn,
                    tcp.ack[at].astype(np.int64) - 1) & 0xFFFFFFFF
    irregular = np.unique(seg[syn[(at < syn) & (base != tcp.seq[syn])]])
    if after_close:
        flags = tcp.flags
        close = np.flatnonzero((flags & _RST) | ((flags & (_FIN | _ACK)) == (_FIN | _ACK)))
        first_close = np.full(pairs, n, np.int64)
        np.minimum.at(first_close, seg[close], close)
        late = syn[syn > first_close[seg[syn]]]
        irregular = np.union1d(irregular, np.unique(seg[late]))
    return irregular


# long: vectorised per chunk: the conversation numbering rules as array operations, one after the
#   other
def _split(tcp: _Conversations, split: np.ndarray, seg: np.ndarray, seg_first: np.ndarray,
           numbering: Numbering = Numbering.V4_0) -> tuple[np.ndarray, np.ndarray]:
    """Wireshark's rule packet by packet, for the few pairs where a SYN or SYN-ACK carries
    another sequence number than the base (or, by 4.4's rules, follows a RST or FIN+ACK):
    new conversation ids from ``len(seg_first)``."""
    v44 = numbering == Numbering.V4_4
    seg = seg.copy()
    where = np.flatnonzero(np.isin(seg, split))
    state: dict[int, list] = {}  # pair -> [base dir 0, base dir 1, conversation, closed]
    extra: list[int] = []
    next_id = len(seg_first)
    for k, g, d, q, a, f in zip(where.tolist(), seg[where].tolist(), tcp.dc[where].tolist(),
                                tcp.seq[where].tolist(), tcp.ack[where].tolist(),
                                tcp.flags[where].tolist(), strict=True):
        st = state.get(g)
        if st is None:
            st = state[g] = [None, None, g, False]
        elif f & _SYN and st[d] is not None and (st[d] != q or (v44 and st[3])):
            if f & _ACK and not v44:
                st[d] = q  # 4.0, a SYN-ACK: a new base, the same conversation
            else:
                st[0] = st[1] = None
                st[2] = next_id
                st[3] = False
                next_id += 1
                extra.append(k)
        if st[d] is None:
            st[d] = q if f & _SYN else (q - 1) & 0xFFFFFFFF
        if st[1 - d] is None and f & _ACK:
            st[1 - d] = (a - 1) & 0xFFFFFFFF
        if v44:
            if f & _SYN and not f & _ACK:
                st[3] = False  # a SYN that keeps the conversation: not closed any more
            if f & _RST or (f & (_FIN | _ACK)) == (_FIN | _ACK):
                st[3] = True
        seg[k] = st[2]
    return seg, np.concatenate([seg_first, np.array(extra, np.int64)])


# -------------------------------------------------------------------------------- index


def _index_chunks(reader: _Pcap | _Pcapng, starts: np.ndarray, u8: np.ndarray,
                  convs: _Conversations, wanted: np.ndarray,
                  progress: Callable[[int, int], None] | None
                  ) -> tuple[list[tuple[np.ndarray, ...]], int]:
    """The packets on the ports (columns chunk by chunk) and how many packets there are:
    ``_CHUNK`` records at a time classified, every TCP packet's conversation noted in
    ``convs``. The next chunk's records are gathered (the file's pages read) by a thread
    while this one is classified: the gather runs outside the interpreter lock."""
    size = len(u8)
    picked: list[tuple[np.ndarray, ...]] = []
    total = 0

    def gather(c: int) -> np.ndarray:
        return _windows(u8, starts[c:c + _CHUNK] - reader.lead)

    pool = ThreadPoolExecutor(1)
    try:
        ahead = pool.submit(gather, 0)
        for c in range(0, len(starts), _CHUNK):
            chunk_starts = starts[c:c + _CHUNK]
            win = ahead.result()
            if c + _CHUNK < len(starts):
                ahead = pool.submit(gather, c + _CHUNK)
            rec = reader.records(win, chunk_starts)
            reader.pages.release(int(chunk_starts[-1]))
            if progress is not None:
                progress(int(chunk_starts[-1]), size)
            if len(rec.offset):
                lts = np.array([i.linktype for i in reader.interfaces], np.int64)
                tcp = _classify(_Bytes(rec.win, reader.data), rec.caplen, rec.origlen,
                                lts[rec.iface])
                if tcp is not None:
                    at = convs.add(tcp)
                    smtp = np.flatnonzero(_on_ports(tcp.ports, wanted))
                    r = tcp.row[smtp]
                    picked.append((at[smtp], r + total + 1, rec.offset[r], rec.caplen[r],
                                   rec.origlen[r], rec.units[r], rec.iface[r].astype(np.int32),
                                   tcp.version[smtp], tcp.l3[smtp].astype(np.int16),
                                   tcp.l4[smtp].astype(np.int16), tcp.seq[smtp],
                                   tcp.ack[smtp], tcp.flags[smtp], tcp.thl[smtp],
                                   tcp.seglen[smtp]))
            total += len(rec.offset)
    finally:
        pool.shutdown(cancel_futures=True)  # no thread outlives the index: forks follow
    return picked, total


def _index(mm: mmap.mmap, size: int, ports: tuple[int, ...],
           progress: Callable[[int, int], None] | None = None,
           numbering: Numbering = Numbering.V4_0) -> CaptureIndex:
    reader: _Pcap | _Pcapng = (_Pcapng if mm[0:4] == b"\x0a\x0d\x0d\x0a" else _Pcap)(mm, size)
    starts = reader.walk()
    u8 = np.frombuffer(mm, np.uint8, count=size)
    convs = _Conversations(len(starts))
    wanted = _lut((p for p in ports if 0 <= p <= 0xFFFF), 1 << 16)
    picked, total = _index_chunks(reader, starts, u8, convs, wanted, progress)
    reader.finish()
    del u8, starts
    convs.trim()
    stream, direction, count = _streams(convs, numbering)
    if picked:
        parts = [list(col) for col in zip(*picked, strict=True)]
        del picked
        cols = []
        for i in range(len(parts)):  # one column at a time: its parts go as it is made
            cols.append(np.concatenate(parts[i]))
            parts[i] = []
    else:
        e = np.zeros(0, np.int64)
        cols = [e, e, e, e, e, e.astype(np.uint64), e.astype(np.int32), e.astype(np.uint8),
                e.astype(np.int16), e.astype(np.int16), e.astype(np.uint32), e.astype(np.uint32),
                e.astype(np.uint8), e.astype(np.int16), e.astype(np.int32)]
    at, frame, offset, caplen, origlen, units, iface, version, l3, l4, seq, ack, flags, thl, \
        seglen = cols
    _check_times(units, iface, reader.interfaces)
    return CaptureIndex(
        packets_total=total,
        tcp_streams=count,
        interfaces=reader.interfaces,
        frame=frame,
        stream=stream[at],
        direction=direction[at],
        offset=offset,
        caplen=caplen,
        origlen=origlen,
        units=units,
        iface=iface,
        ip_version=version,
        l3=l3,
        l4=l4,
        seq=seq,
        ack=ack,
        flags=flags,
        thl=thl,
        seglen=seglen,
        ports=ports,
    )


def _check_times(units: np.ndarray, iface: np.ndarray, interfaces: list[Interface]) -> None:
    """Decline a time stamp past :data:`_LATEST_SECOND` (its nanoseconds would wrap: the
    loop refuses the capture, the reference engine reads it)."""
    if not len(units):
        return
    limits = np.array([_LATEST_SECOND * 10 ** i.tsres for i in interfaces] or [0], np.uint64)
    if bool((units > limits[iface]).any()):
        raise Declined("a packet time stamp after the year 2255 (damaged)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pyshark_tools.engine.scan CAPTURE [PORT...]``: time the index, or say why not."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(main.__doc__)
        return 2
    ports = [int(a) for a in args[1:]] or [25, 587, 465]
    started = time.perf_counter()
    try:
        idx = build_index(args[0], ports)
    except Declined as exc:
        print(f"declined ({time.perf_counter() - started:.3f} s): {exc}")
        return 1
    print(f"{time.perf_counter() - started:.3f} s: {idx.packets_total} packets, "
          f"{idx.tcp_streams} TCP conversations, {len(idx)} packets on ports {ports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
