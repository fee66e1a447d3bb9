"""Regenerate the failure-mode captures with the fixtures factory (real OpenSSL):
``python -m tests.failmodes.make_captures``.

``client-cert-over-64k``: a client presents a chain of 101 certificates (its leaf and 100
copies of its intermediate), a Certificate message of ~90 KiB that tshark 4.0 does not
reassemble. The ground truth (what the generator sent) is written beside it.

``client-cert-refused-mid-flight``: a chain of 1,600 certificates (~1.4 MB), refused by the
server while it arrives, as OpenSSL refuses a Certificate message over its ``max_cert_list``:
the client's first 40 segments after the server's hello, then the server's fatal alert
(the factory's own, from real OpenSSL) and its RST; the client's key exchange never comes.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "captures"


def client_cert_over_64k(out: Path = HERE) -> dict:
    from fixtures import build
    from fixtures.factory import pki, smtp
    from fixtures.factory.scenarios import Scenario
    from fixtures.factory.smtp import Conv

    original = pki.build_pki

    def with_big_chain():
        made = original()
        ok = made.clients["ok"]
        made.clients["big"] = (ok[0], *[ok[1]] * 100)
        return made

    smtp.build_pki = with_big_chain
    try:
        scenario = Scenario("client-cert-over-64k", "a client chain of 101 certificates",
                            [Conv(client_cert="big")])
        with tempfile.TemporaryDirectory() as tmp:
            truth = build.build_scenario(scenario, Path(tmp))
            out.mkdir(parents=True, exist_ok=True)
            (out / "client-cert-over-64k.pcapng").write_bytes(
                (Path(tmp) / "client-cert-over-64k.pcapng").read_bytes())
    finally:
        smtp.build_pki = original
    conv = truth["conversations"][0]
    summary = {"client_sent": conv["client_sent"],
               "client_certificates": len(conv["client_certificates"]),
               "cert_requested": conv["cert_requested"]}
    (out / "client-cert-over-64k.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def client_cert_refused_mid_flight(out: Path = HERE, chain: int = 1600,
                                   segments: int = 40) -> dict:
    from fixtures import build
    from fixtures.factory import pki, smtp
    from fixtures.factory.scenarios import Scenario
    from fixtures.factory.smtp import Conv

    original = pki.build_pki

    def with_huge_chain():
        made = original()
        ok = made.clients["ok"]
        made.clients["huge"] = (ok[0], *[ok[1]] * (chain - 1))
        return made

    smtp.build_pki = with_huge_chain
    name = "client-cert-refused-mid-flight"
    try:
        scenario = Scenario(name, f"a client chain of {chain} certificates",
                            [Conv(client_cert="huge")])
        with tempfile.TemporaryDirectory() as tmp:
            truth = build.build_scenario(scenario, Path(tmp))
            data = (Path(tmp) / f"{name}.pcapng").read_bytes()
    finally:
        smtp.build_pki = original
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.pcapng").write_bytes(_refused_mid_flight(data, segments))
    conv = truth["conversations"][0]
    summary = {"client_sent": conv["client_sent"],
               "client_certificates": len(conv["client_certificates"]),
               "cert_requested": conv["cert_requested"], "client_segments_kept": segments}
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _refused_mid_flight(data: bytes, segments: int) -> bytes:
    """The capture cut after the client's ``segments``-th data segment following its
    ClientHello; then the server's alert and an RST acknowledging what arrived."""
    from ..fuzz import tcpip
    from ..fuzz.pcapng import EPB, Packet, as_packet, read_blocks, write_blocks

    blocks = read_blocks(data)
    parsed = [(i, p, tcpip.parse(p.data)) for i, p in
              ((i, as_packet(b)) for i, b in enumerate(blocks) if b.kind == EPB)]
    client_port = parsed[0][2].key[2]  # the SYN's sender

    def sent_by_client(x) -> bool:
        return x[2].key[2] == client_port

    alert = next(x for x in parsed if not sent_by_client(x)
                 and x[2].payload(x[1].data)[:1] == b"\x15")
    fin = next(x for x in parsed if not sent_by_client(x) and x[2].flags & 0x01)
    kept, hello_seen, sent, next_seq = [], False, 0, 0
    for i, packet, seg in parsed:
        payload = seg.payload(packet.data)
        if sent_by_client((i, packet, seg)) and payload:
            if hello_seen:
                if sent == segments:
                    break
                sent += 1
            hello_seen = hello_seen or payload[:1] == b"\x16"
            next_seq = seg.seq + len(payload)
        kept.append((i, packet))
    stamp = (kept[-1][1].ts_high << 32) | kept[-1][1].ts_low

    def answer(x, flags: int | None, later: int):
        _i, packet, seg = x
        frame = bytearray(packet.data)
        struct.pack_into("!I", frame, seg.tcp_offset + 8, next_seq & 0xFFFFFFFF)
        if flags is not None:
            frame[seg.tcp_offset + 13] = flags
        ts = stamp + later
        return Packet(packet.interface, ts >> 32, ts & 0xFFFFFFFF, len(frame), bytes(frame),
                      packet.options).to_block()

    head = blocks[:kept[-1][0] + 1]  # the section and interface blocks too
    # the RST follows the alert in the server's sequence space (as its FIN did)
    return write_blocks([*head, answer(alert, None, 100), answer(fin, 0x14, 200)])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["refused"]:
        print(client_cert_over_64k())
    print(client_cert_refused_mid_flight())
