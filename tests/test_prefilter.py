"""The prefilter: Wireshark's stream numbers, original frame numbers, honest refusals.

Whatever the prefilter cannot read exactly for the whole capture (damaged, compressed,
tunnelled, odd link types) must make ``analyze`` fall back to the reference engine with the
same report, never a traceback; what concerns one conversation (a retransmission after the
cut) keeps that conversation whole, in the fast engine.
"""

from __future__ import annotations

import gzip
import io
import random
import struct
import subprocess
from pathlib import Path

import pytest

from fixtures.factory import pcapng
from fixtures.factory.tcp import TcpFlow
from pyshark_tools import analyze
from pyshark_tools.engine.prefilter import Unsupported, _packets, prefilter
from pyshark_tools.engine.progress import ByteProgress
from pyshark_tools.engine.tshark import find_tshark

from .helpers import FIXTURES, fixture_path
from .test_levers_identical import assert_same_report

PORTS = (25, 587, 465)


def _tshark_streams(capture: Path, extra: tuple[str, ...] = ()) -> dict[int, int]:
    """frame.number -> tcp.stream as tshark numbers them in ``capture``."""
    ts = find_tshark()
    out = subprocess.run([ts.path, "-n", "-r", str(capture), *extra, "-Y", "tcp", "-T",
                          "fields", "-e", "frame.number", "-e", "tcp.stream"],
                         capture_output=True, text=True, check=True).stdout
    return {int(a): int(b) for a, b in (line.split("\t") for line in out.splitlines())}


@pytest.mark.parametrize("name", ["mixed-traffic", "ipv6"])
def test_frames_and_streams_are_the_original_ones(name: str, tmp_path: Path) -> None:
    capture = fixture_path(name)
    pre = prefilter(capture, tmp_path, ports=PORTS, shards=2)
    truth = _tshark_streams(capture)
    assert pre.tcp_streams == len(set(truth.values()))
    mapped = 0
    for shard in pre.shards:
        for frame, stream in zip(shard.frames, shard.streams, strict=True):
            assert truth[frame] == stream
            mapped += 1
        # every kept packet names its original frame in a comment
        if shard.packets:
            ts = find_tshark()
            comments = subprocess.run(
                [ts.path, "-n", "-r", str(shard.path), "-T", "fields", "-e", "frame.comment"],
                capture_output=True, text=True, check=True).stdout.split()
            assert comments[1::2] == [str(f) for f in shard.frames]
    assert mapped == pre.kept_packets
    for total in pre.streams.values():
        assert truth[total.first_frame] == total.stream
        assert truth[total.last_frame] == total.stream


def _write(path: Path, packets) -> Path:
    data, _ = pcapng.write(packets)
    path.write_bytes(data)
    return path


def test_reused_ports_get_a_new_stream_like_wireshark(tmp_path: Path) -> None:
    flows = [
        TcpFlow("192.0.2.1", 40000, "198.51.100.25", 25, start_us=1_700_000_000_000_000,
                isn_c=1000, isn_s=5000),
        TcpFlow("192.0.2.7", 40001, "198.51.100.25", 25, start_us=1_700_000_000_100_000),
        # same four-tuple again, new initial sequence numbers: Wireshark opens a new stream
        TcpFlow("192.0.2.1", 40000, "198.51.100.25", 25, start_us=1_700_000_001_000_000,
                isn_c=777777, isn_s=999999),
    ]
    for i, flow in enumerate(flows):
        flow.add(flow.start_us + 40_000, "s2c", b"220 mx.example ESMTP\r\n")
        flow.add(flow.start_us + 60_000, "c2s", b"EHLO client%d.example\r\n" % i)
    packets = sorted((p for f in flows for p in f.packets()), key=lambda p: p.ts_us)
    capture = _write(tmp_path / "reuse.pcapng", packets)
    (tmp_path / "out").mkdir()
    pre = prefilter(capture, tmp_path / "out", ports=PORTS)
    truth = _tshark_streams(capture)
    assert pre.tcp_streams == len(set(truth.values())) == 3
    for shard in pre.shards:
        for frame, stream in zip(shard.frames, shard.streams, strict=True):
            assert truth[frame] == stream
    assert_same_report(analyze(capture, prefilter=False, progress=False),
                       analyze(capture, progress=False))


def test_pcap_input_gives_the_same_report(tmp_path: Path) -> None:
    pcap = tmp_path / "mixed.pcap"
    subprocess.run(["editcap", "-F", "pcap", str(fixture_path("mixed-traffic")), str(pcap)],
                   check=True)
    fast = analyze(pcap, progress=False)
    assert fast.capture["engine"] == "fast"
    assert_same_report(analyze(pcap, prefilter=False, progress=False), fast)


def _fallback(capture: Path) -> None:
    with pytest.raises(Unsupported):
        prefilter(capture, capture.parent, ports=PORTS)
    fast = analyze(capture, progress=False)
    assert fast.capture["engine"] == "reference"
    assert fast.capture["engine_note"].startswith("fast engine not used")
    assert_same_report(analyze(capture, prefilter=False, progress=False), fast)


def test_damaged_file_falls_back_to_reference(tmp_path: Path) -> None:
    capture = tmp_path / "cut.pcapng"
    capture.write_bytes(fixture_path("cut-mid-file").read_bytes())
    _fallback(capture)


def test_gzip_capture_falls_back_to_reference(tmp_path: Path) -> None:
    capture = tmp_path / "c.pcapng.gz"
    capture.write_bytes(gzip.compress(fixture_path("tls12-client-cert-empty").read_bytes()))
    _fallback(capture)


def test_odd_link_type_falls_back_to_reference(tmp_path: Path) -> None:
    src = fixture_path("tls12-client-cert-ok")
    capture = tmp_path / "ppp.pcap"
    # the same Ethernet frames declared as link type 147 (USER0): tshark reads no TCP
    subprocess.run(["editcap", "-F", "pcap", "-T", "user0", str(src), str(capture)],
                   check=True)
    _fallback(capture)


def _frames(capture: Path) -> list[tuple[int, bytes, int]]:
    import mmap

    with capture.open("rb") as handle:
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            return [(item[4], bytes(item[6]), item[7]) for item in _packets(mm, len(mm))
                    if item[9] is None]
        finally:
            mm.close()


def _rewrite(path: Path, frames: list[tuple[int, bytes, int]]) -> Path:
    out = bytearray(pcapng.shb() + pcapng.idb())
    for ts, data, _orig in frames:
        out += pcapng.epb(ts, data, 262144)
    path.write_bytes(bytes(out))
    return path


@pytest.mark.parametrize("use_index", [True, False])
def test_retransmission_after_the_cut_keeps_the_conversation_whole(
        tmp_path: Path, use_index: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _frames(fixture_path("tls12-client-cert-ok"))
    # retransmit the second-to-last data segment of the capture after its original
    data_frames = [i for i, (_t, d, _o) in enumerate(frames) if len(d) > 80]
    i = data_frames[-1]
    frames.insert(i + 1, (frames[i][0] + 5, frames[i][1], frames[i][2]))
    capture = _rewrite(tmp_path / "retrans.pcapng", frames)
    if not use_index:  # the reading finds it (no index ahead): read again, kept whole
        import pyshark_tools.engine.scan as scan_module

        monkeypatch.setattr(scan_module, "index_capture", lambda *_args, **_kw: None)
    out = tmp_path / "out"
    out.mkdir()
    pre = prefilter(capture, out, ports=PORTS, native=True, use_index=use_index)
    if use_index:  # the index sees it ahead: the native reader reads it in sequence order
        assert pre.kept_whole == {}
        assert pre.native is not None and 0 in pre.native.partial
    else:
        assert pre.kept_whole == {0: "retransmitted, duplicated, reordered or missing TCP segments"}
        assert pre.native is None or 0 not in pre.native.partial
        assert sum(s.packets for s in pre.shards) == len(frames)  # every packet, pure ACKs too
    fast = analyze(capture, progress=False)
    assert fast.capture["engine"] == "fast", fast.capture["engine_note"]
    assert_same_report(analyze(capture, prefilter=False, progress=False), fast)


def test_gre_tunnel_falls_back(tmp_path: Path) -> None:
    frames = _frames(fixture_path("tls12-client-cert-ok"))
    eth, ip = frames[3][1][:14], frames[3][1][14:34]
    gre_ip = bytearray(ip)
    gre_ip[9] = 47
    inner = frames[3][1][14:]
    pkt = eth + bytes(gre_ip[:2]) + struct.pack("!H", 20 + 4 + len(inner)) + \
        bytes(gre_ip[4:]) + b"\x00\x00\x08\x00" + inner
    frames.insert(4, (frames[3][0] + 1, pkt, len(pkt)))
    _fallback(_rewrite(tmp_path / "gre.pcapng", frames))


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.pcapng"
    path.write_bytes(random.Random(3).randbytes(4096))
    with pytest.raises(Unsupported):
        prefilter(path, tmp_path, ports=PORTS)


def test_cut_keeps_handshake_and_drops_the_rest(tmp_path: Path) -> None:
    pre = prefilter(FIXTURES / "mixed-traffic.pcapng", tmp_path, ports=PORTS)
    assert pre.kept_packets < pre.packets_matched < pre.packets_total
    assert any(t.cut for t in pre.streams.values())
    kept = prefilter(FIXTURES / "mixed-traffic.pcapng", tmp_path, ports=PORTS,
                     keep_all_tls=True)
    # with a key log no conversation is cut (only pure ACKs, which tshark never needs, go)
    assert pre.kept_packets < kept.kept_packets < kept.packets_matched
    assert not any(t.cut for t in kept.streams.values())


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only() -> None:
    tty = _Tty()
    with ByteProgress("capture.pcapng", delay=0, file=tty) as bar:
        bar(50, 100)
        bar.phase("tshark")
        assert bar.shown
    assert "capture.pcapng" in tty.getvalue()
    piped = io.StringIO()
    with ByteProgress("capture.pcapng", delay=0, file=piped) as bar:
        bar(50, 100)
        assert not bar.shown
    assert piped.getvalue() == ""
    quiet = _Tty()
    with ByteProgress("capture.pcapng", delay=0, file=quiet, enabled=False) as bar:
        bar(50, 100)
    assert quiet.getvalue() == ""
    slow = _Tty()
    with ByteProgress("capture.pcapng", delay=60, file=slow) as bar:
        bar(50, 100)  # a short run shows nothing
        assert not bar.shown


def test_bytes_read_reported_while_the_index_reads(tmp_path: Path) -> None:
    """The progress bar moves while the vectorised index reads the file, not only after."""
    from pyshark_tools.engine.scan import index_capture

    capture = fixture_path("mixed-traffic")
    size = capture.stat().st_size
    assert index_capture(capture, (25, 587, 465)) is not None  # this capture takes the index
    seen: list[tuple[int, int]] = []
    prefilter(capture, tmp_path, ports=(25, 587), native=True,
              progress=lambda done, total: seen.append((done, total)))
    assert len(seen) >= 2
    assert all(total == size for _done, total in seen)
    assert [done for done, _t in seen] == sorted(done for done, _t in seen)
    assert 0 < seen[0][0] < size and seen[-1][0] == size


@pytest.mark.parametrize("data_at", [4, 22], ids=["in-the-handshake", "after-the-handshake"])
def test_an_ack_ahead_of_its_data_reads_only_that_conversation_again(
        tmp_path: Path, data_at: int) -> None:
    """A segment acknowledged before the capture shows it (the index cannot see ACK numbers):
    the reading finds it, and only that conversation's packets are read again, kept whole;
    the other conversation's native reading stands. Frames 5/6: the client's 23 bytes and
    the server's reply acknowledging them; frames 23/24: the same after both handshakes (a
    conversation read by the settled path)."""
    frames = _frames(fixture_path("tls12-client-cert-ok"))
    data, reply = frames[data_at][1], frames[data_at + 1][1]
    assert data[34:36] == struct.pack("!H", 49152) and reply[36:38] == struct.pack("!H", 49152)
    seq, length = struct.unpack("!I", data[38:42])[0], len(data) - 34 - (data[46] >> 4) * 4
    assert length > 0 and struct.unpack("!I", reply[42:46])[0] == seq + length
    # swapped, the ACK comes ahead of its data, each direction still in order
    first = list(frames)
    first[data_at] = (frames[data_at][0], reply, frames[data_at + 1][2])
    first[data_at + 1] = (frames[data_at + 1][0], data, frames[data_at][2])
    # the same conversation again, regular, from another client port, after the first
    shift = frames[-1][0] - frames[0][0] + 10**6
    second = []
    for ts, data, orig in frames:
        moved = bytearray(data)
        at = 34 if data[34:36] == struct.pack("!H", 49152) else 36
        moved[at:at + 2] = struct.pack("!H", 49153)
        second.append((ts + shift, bytes(moved), orig))
    capture = _rewrite(tmp_path / "early-ack.pcapng", first + second)
    assert set(_tshark_streams(capture).values()) == {0, 1}
    out = tmp_path / "out"
    out.mkdir()
    pre = prefilter(capture, out, ports=PORTS, native=True)
    assert pre.kept_whole == {0: "retransmitted, duplicated, reordered or missing TCP segments"}
    assert pre.redo == {}
    assert pre.native is not None and set(pre.native.partial) == {1}
    again = [s for s in pre.shards if s.path.name.startswith("again-")]
    assert len(again) == 1
    assert list(again[0].streams) == [0] * len(first)  # every packet of it, pure ACKs too
    assert sorted(again[0].frames) == list(range(1, len(first) + 1))
    for shard in pre.shards:
        if shard not in again:  # what the first reading handed on of it is left unused
            assert all(unused for stream, unused in zip(shard.streams, shard.post_cut,
                                                        strict=True) if stream == 0)
    fast = analyze(capture, progress=False)
    assert fast.capture["engine"] == "fast", fast.capture["engine_note"]
    assert fast.capture["native_conversations"] == 1
    assert_same_report(analyze(capture, prefilter=False, progress=False), fast)
