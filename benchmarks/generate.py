"""Build the large benchmark capture from the fixture scenarios, reproducibly from a seed.

``python -m benchmarks.generate OUT.pcapng [--scale 1.0] [--seed 7] [--impair 0.005]
[--link ethernet|vlan|sll2]``

Scale 1.0 is the size of the issue's field capture: ~13,000 SMTP sessions (every SMTP
conversation of every fixture scenario, each copy with its own client address and port,
some with an encrypted mail body of up to ~90 KB), DNS lookups and bulk TCP traffic on 80,
443 and 8080 -> about 1.2 M packets and 800 MB. Addresses are rewritten in place (checksums
are not recomputed: tshark does not check them by default). Takes about a minute at 1.0.

``--impair R``: a realistic capture: each packet of the SMTP sessions is, with probability R,
retransmitted (a copy 3 ms later), duplicated (a copy 1 µs later), delivered after the next
packet of its direction, or lost (not in the file) -- inside the handshake as well as after.
``--link vlan`` writes every frame with an 802.1Q tag, ``--link sll2`` as ``tcpdump -i any``
does (Linux cooked capture v2).
"""

from __future__ import annotations

import argparse
import heapq
import random
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fixtures.factory import link, pcapng
from pyshark_tools.engine.prefilter import _l3, _packets

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SMTP_PORTS = (25, 587, 465)
BASE_US = 1_772_442_000_000_000  # 2026-03-02 09:00 UTC, inside the fixture PKI's validity
MAC = bytes.fromhex("005056a1c025") + bytes.fromhex("00155d010203")


@dataclass
class Template:
    name: str
    v6: bool
    client_ip: bytes
    client_port: int
    packets: list[tuple[int, bytes, int]]  # (us since start, frame, orig_len)
    tls_client: bool  # the client sends TLS application data: a body can be added


def load_templates() -> list[Template]:
    """Every SMTP-port conversation of every fixture capture, as packet templates."""
    import mmap

    out: list[Template] = []
    for path in sorted(FIXTURES.glob("*.pcapng")):
        if _variant(path):
            continue
        convs: dict[bytes, list] = {}
        with path.open("rb") as handle:
            mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                for item in _packets(mm, len(mm)):
                    _key, lt, _snap, _res, _units, ns, data, orig, _end, dsb = item
                    if dsb is not None or lt != 1:
                        continue
                    version, off = _l3(lt, data)
                    if version == 4 and data[off + 9] == 6:
                        ihl = (data[off] & 15) * 4
                        src, dst, l4 = data[off + 12:off + 16], data[off + 16:off + 20], off + ihl
                    elif version == 6 and data[off + 6] == 6:
                        src, dst, l4 = data[off + 8:off + 24], data[off + 24:off + 40], off + 40
                    else:
                        continue
                    sport, dport = struct.unpack_from("!HH", data, l4)
                    if sport not in SMTP_PORTS and dport not in SMTP_PORTS:
                        continue
                    a, b = (src, sport), (dst, dport)
                    key = repr(sorted([a, b])).encode()
                    convs.setdefault(key, []).append((ns // 1000, bytes(data), orig, src,
                                                      sport, l4, version, off))
            except Exception:  # a damaged fixture (cut-mid-file) ends early
                pass
            finally:
                mm.close()
        for pkts in convs.values():
            t0, _d, _o, csrc, cport, _l4, version, _off = pkts[0]
            tls_client = any(p[3] == csrc and _payload(p)[:2] == b"\x17\x03" for p in pkts)
            out.append(Template(path.stem, version == 6, csrc, cport,
                                [(p[0] - t0, p[1], p[2]) for p in pkts], tls_client))
    return out


def _variant(path: Path) -> bool:
    """A fixture of another link layer or with TCP impairments: the benchmark makes its own
    variants (``--impair``, ``--link``) of the plain conversations."""
    import json

    truth_path = path.with_suffix(".json")
    if not truth_path.exists():
        return False
    truth = json.loads(truth_path.read_text())
    # (and a connection restarted on the same 4-tuple: every copy would be such a restart)
    return "link" in truth or any("tcp_impairments" in c or "connection_on_4tuple" in c
                                  for c in truth["conversations"])


IMPAIRMENTS = ("retransmit", "duplicate", "reorder", "lost")


def impaired(flow: Iterator[tuple[int, bytes, int]], rng: random.Random, rate: float,
             counts: dict[str, int]) -> Iterator[tuple[int, bytes, int]]:
    """One session's packets after the network: see the module's ``--impair``."""
    packets = list(flow)
    out: list[tuple[int, bytes, int]] = []
    for k, (t, frame, orig) in enumerate(packets):
        if rng.random() >= rate:
            out.append((t, frame, orig))
            continue
        kind = rng.choice(IMPAIRMENTS)
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "retransmit":
            out += [(t, frame, orig), (t + 3000, frame, orig)]
        elif kind == "duplicate":
            out += [(t, frame, orig), (t + 1, frame, orig)]
        elif kind == "reorder":
            so, n, _l4, _e = _addr_offsets(frame)
            later = next((p for p in packets[k + 1:] if p[1][so:so + n] == frame[so:so + n]),
                         None)
            out.append((later[0] + 1 if later else t, frame, orig))
    out.sort(key=lambda p: p[0])
    yield from out


def _payload(p: tuple) -> bytes:
    data, l4 = p[1], p[5]
    thl = (data[l4 + 12] >> 4) * 4
    return data[l4 + thl:]


def _addr_offsets(frame: bytes) -> tuple[int, int, int, int]:
    """(src ip offset, ip length, tcp offset, ethertype) of an Ethernet frame."""
    etype = int.from_bytes(frame[12:14], "big")
    if etype == 0x86DD:
        return 22, 16, 54, etype
    ihl = (frame[14] & 15) * 4
    return 26, 4, 14 + ihl, etype


def session(tpl: Template, start_us: int, client_ip: bytes, client_port: int,
            body_segments: int, rng: random.Random) -> Iterator[tuple[int, bytes, int]]:
    """One copy of a template conversation with another client address/port (and body)."""
    insert_at = None
    if body_segments and tpl.tls_client:
        # before the client's FIN: a mail body as encrypted application data records
        for i, (_t, frame, _o) in enumerate(tpl.packets):
            so, n, l4, _e = _addr_offsets(frame)
            if frame[so:so + n] == tpl.client_ip and frame[l4 + 13] & 0x01:
                insert_at = i
                break
    shift_seq = 0
    shift_t = 0
    for i, (t, frame, orig) in enumerate(tpl.packets):
        if i == insert_at:
            body, shift_t = _body(tpl, frame, body_segments, start_us + t, client_ip,
                                  client_port, rng)
            yield from body
            shift_seq = body_segments * 1460
        so, n, l4, _e = _addr_offsets(frame)
        f = bytearray(frame)
        from_client = frame[so:so + n] == tpl.client_ip
        if from_client:
            f[so:so + n] = client_ip
            f[l4:l4 + 2] = client_port.to_bytes(2, "big")
            if shift_seq:
                seq = int.from_bytes(f[l4 + 4:l4 + 8], "big")
                f[l4 + 4:l4 + 8] = ((seq + shift_seq) & 0xFFFFFFFF).to_bytes(4, "big")
        else:
            f[so + n:so + 2 * n] = client_ip
            f[l4 + 2:l4 + 4] = client_port.to_bytes(2, "big")
            if shift_seq:
                ack = int.from_bytes(f[l4 + 8:l4 + 12], "big")
                f[l4 + 8:l4 + 12] = ((ack + shift_seq) & 0xFFFFFFFF).to_bytes(4, "big")
        yield start_us + t + shift_t, bytes(f), orig + 0


_RANDOM = random.Random(1).randbytes(1 << 16)


def _body(tpl: Template, fin: bytes, segments: int, t0: int, client_ip: bytes,
          client_port: int, rng: random.Random) -> tuple[list, int]:
    """Client segments of 16 KB TLS application-data records, server ACKs every second."""
    so, n, l4, etype = _addr_offsets(fin)
    seq = int.from_bytes(fin[l4 + 4:l4 + 8], "big")
    ack = int.from_bytes(fin[l4 + 8:l4 + 12], "big")
    sport = client_port
    dport = int.from_bytes(fin[l4 + 2:l4 + 4], "big")
    server_ip = fin[so + n:so + 2 * n]
    stream = bytearray()
    total = segments * 1460
    while len(stream) < total:
        size = min(16384, total - len(stream) - 5) if total - len(stream) > 5 else 0
        if size <= 0:
            stream += _RANDOM[:total - len(stream)]
            break
        stream += b"\x17\x03\x03" + size.to_bytes(2, "big")
        off = rng.randrange(0, len(_RANDOM) - size)
        stream += _RANDOM[off:off + size]
    out = []
    t = t0
    for k in range(segments):
        payload = bytes(stream[k * 1460:(k + 1) * 1460])
        out.append((t, _tcp_frame(etype, client_ip, server_ip, sport, dport,
                                  seq + k * 1460, ack, 0x18, payload), 0))
        t += 15
        if k % 2 == 1:
            out.append((t, _tcp_frame(etype, server_ip, client_ip, dport, sport, ack,
                                      seq + (k + 1) * 1460, 0x10, b""), 0))
            t += 10
    out = [(ts, f, len(f)) for ts, f, _ in out]
    return out, t - t0 + 50


def _tcp_frame(etype: int, src: bytes, dst: bytes, sport: int, dport: int, seq: int,
               ack: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50,
                      flags, 64240, 0, 0)
    if etype == 0x86DD:
        ip = struct.pack("!IHBB", 6 << 28, 20 + len(payload), 6, 64) + src + dst
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0) + \
            src + dst
    return MAC + etype.to_bytes(2, "big") + ip + tcp + payload


def bulk_flow(rng: random.Random, start_us: int, idx: int,
              segments: int) -> Iterator[tuple[int, bytes, int]]:
    """Unrelated TCP: a download on 80, 443 or 8080 with ACKs every second segment."""
    c = bytes([172, 16 + (idx >> 16) % 16, (idx >> 8) & 255, idx & 255])
    s = bytes([192, 0, 2, 10 + idx % 200])
    cport, sport = 20000 + rng.randrange(40000), rng.choice((80, 443, 8080))
    cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
    t = start_us
    et = 0x0800
    yield t, (f := _tcp_frame(et, c, s, cport, sport, cseq, 0, 0x02, b"")), len(f)
    t += 900
    yield t, (f := _tcp_frame(et, s, c, sport, cport, sseq, cseq + 1, 0x12, b"")), len(f)
    t += 60
    yield t, (f := _tcp_frame(et, c, s, cport, sport, cseq + 1, sseq + 1, 0x10, b"")), len(f)
    req = b"GET /update/%d HTTP/1.1\r\nHost: example\r\n\r\n" % idx
    t += 40
    yield t, (f := _tcp_frame(et, c, s, cport, sport, cseq + 1, sseq + 1, 0x18, req)), len(f)
    cs = cseq + 1 + len(req)
    ss = sseq + 1
    for k in range(segments):
        t += 12
        off = rng.randrange(0, len(_RANDOM) - 1460)
        yield t, (f := _tcp_frame(et, s, c, sport, cport, ss, cs, 0x10,
                                  _RANDOM[off:off + 1460])), len(f)
        ss += 1460
        if k % 2:
            t += 5
            yield t, (f := _tcp_frame(et, c, s, cport, sport, cs, ss, 0x10, b"")), len(f)
    t += 500
    yield t, (f := _tcp_frame(et, s, c, sport, cport, ss, cs, 0x11, b"")), len(f)
    t += 400
    yield t, (f := _tcp_frame(et, c, s, cport, sport, cs, ss + 1, 0x11, b"")), len(f)
    t += 300
    yield t, (f := _tcp_frame(et, s, c, sport, cport, ss + 1, cs + 1, 0x10, b"")), len(f)


def dns_pair(rng: random.Random, t: int, idx: int) -> Iterator[tuple[int, bytes, int]]:
    c = bytes([10, 200, (idx >> 8) & 255, idx & 255])
    s = bytes([198, 51, 100, 53])
    q = struct.pack("!HHHHHH", idx & 0xFFFF, 0x0100, 1, 0, 0, 0) + \
        b"\x04mail\x07contoso\x03com\x00\x00\x01\x00\x01"
    for src, dst, sp, dp, payload, dt in ((c, s, 30000 + idx % 30000, 53, q, 0),
                                          (s, c, 53, 30000 + idx % 30000, q, 900)):
        udp = struct.pack("!HHHH", sp, dp, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0) + src + dst
        f = MAC + b"\x08\x00" + ip + udp
        yield t + dt, f, len(f)


def generate(out: Path, *, scale: float = 1.0, seed: int = 7, impair: float = 0.0,
             link_layer: str = "ethernet") -> dict:
    """Write the capture; return its vital statistics."""
    rng = random.Random(seed)
    damage = random.Random(seed * 1000 + 1)  # the same sessions whatever the impairments
    impairments: dict[str, int] = {}
    templates = load_templates()
    sessions = max(1, int(13_000 * scale))
    bulk = max(1, int(700 * scale))
    dns = max(1, int(25_000 * scale))
    span_us = int(3600e6 * max(scale, 0.05))  # one hour of traffic at scale 1
    flows: list[Iterator[tuple[int, bytes, int]]] = []
    for i in range(sessions):
        tpl = templates[i % len(templates)]
        if tpl.v6:
            cip = bytes.fromhex("20010db8000a") + i.to_bytes(10, "big")
        else:
            cip = bytes([100, 64 + (i >> 16) % 64, (i >> 8) & 255, i & 255])
        body = rng.choice((0, 0, 8, 20, 60)) if tpl.tls_client else 0
        one = session(tpl, BASE_US + rng.randrange(span_us), cip, 1024 + rng.randrange(60000),
                      body, rng)
        flows.append(impaired(one, damage, impair, impairments) if impair else one)
    for i in range(bulk):
        flows.append(bulk_flow(rng, BASE_US + rng.randrange(span_us), i,
                               rng.choice((120, 300, 500, 800))))
    for i in range(dns):
        flows.append(dns_pair(rng, BASE_US + rng.randrange(span_us), i))
    packets = size = 0
    with out.open("wb") as handle:
        linktype = link.LINKTYPES[link_layer]
        buf = bytearray(pcapng.shb("benchmarks/generate.py") +
                        pcapng.idb(262144, "any" if link_layer == "sll2" else "eth0", linktype))
        grow = {"ethernet": 0, "vlan": 4, "qinq": 8, "sll": 2, "sll2": 6}[link_layer]
        for ts, frame, orig in heapq.merge(*flows, key=lambda p: p[0]):
            if link_layer != "ethernet":
                frame = link.rewrite(frame, link_layer, False)
                orig = orig + grow if orig else 0
            cap = len(frame)
            body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, cap, orig or cap)
            pad = -cap % 4
            total = 32 + cap + pad
            buf += struct.pack("<II", 6, total) + body + frame + b"\x00" * pad + \
                struct.pack("<I", total)
            packets += 1
            if len(buf) > 1 << 22:
                handle.write(buf)
                size += len(buf)
                buf = bytearray()
        handle.write(buf)
        size += len(buf)
    return {"file": str(out), "packets": packets, "bytes": size, "smtp_sessions": sessions,
            "bulk_flows": bulk, "dns_lookups": dns, "templates": len(templates), "seed": seed,
            "scale": scale, "impair": impair, "impairments": impairments, "link": link_layer}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--impair", type=float, default=0.0,
                        help="share of the SMTP sessions' packets retransmitted, duplicated, "
                             "reordered or lost")
    parser.add_argument("--link", choices=("ethernet", "vlan", "sll2"), default="ethernet")
    args = parser.parse_args(argv)
    started = time.monotonic()
    stats = generate(args.out, scale=args.scale, seed=args.seed, impair=args.impair,
                     link_layer=args.link)
    stats["seconds"] = round(time.monotonic() - started, 1)
    print(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
