"""The native reader gives tshark's events, or hands the conversation to tshark.

Every test compares against real tshark (the reference engine: one tshark pass over the
whole capture). The crafted conversations below each take one step off the well-trodden
path; the native reader must either read them exactly as tshark does or demote them.
"""

from __future__ import annotations

import glob
import struct
from pathlib import Path

import pandas as pd
import pytest

import pyshark_tools.core.events as events_module
import pyshark_tools.engine.tshark_rows as tshark_rows_module
from fixtures.factory.pcapng import write
from fixtures.factory.tcp import TcpFlow
from pyshark_tools import analyze
from pyshark_tools.engine.native import Demote, _client_hello, _is_grease
from pyshark_tools.engine.parallel import fast_extract
from pyshark_tools.engine.prefilter import Unsupported, prefilter
from pyshark_tools.engine.tshark import find_tshark
from pyshark_tools.engine.tshark_rows import extract

from .corpus import CORPUS
from .test_levers_identical import assert_same_report

BANNER = b"220 mx.contoso.example ESMTP ready\r\n"
EHLO_REPLY = b"250-mx.contoso.example Hello\r\n250-SIZE 1000000\r\n250 STARTTLS\r\n"


def _client_hello_bytes(sni: str = "mx.contoso.example") -> bytes:
    """A well-formed TLS 1.2 ClientHello message (type + length + body) built by hand."""
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    groups = struct.pack("!HHH", 10, 6, 4) + struct.pack("!HH", 0x1D, 0x17)
    formats = struct.pack("!HHB", 11, 2, 1) + b"\x00"
    grease_ext = struct.pack("!HH", 0x3A3A, 0)
    exts = grease_ext + sni_ext + groups + formats
    suites = struct.pack("!HHHH", 6, 0x2A2A, 0xC02F, 0x009C)
    body = (b"\x03\x03" + bytes(range(32)) + b"\x00" + suites + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def _hello_retry_bytes() -> bytes:
    """A HelloRetryRequest (a ServerHello with RFC 8446's special random), by hand."""
    random = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
    exts = struct.pack("!HHH", 43, 2, 0x0304) + struct.pack("!HHH", 51, 2, 0x0017)
    body = b"\x03\x03" + random + b"\x00" + b"\x13\x01" + b"\x00" + struct.pack(
        "!H", len(exts)) + exts
    return b"\x02" + len(body).to_bytes(3, "big") + body


def _tls13_server_hello_bytes() -> bytes:
    """A TLS 1.3 ServerHello (supported_versions 0x0304, a key share), by hand."""
    exts = struct.pack("!HHH", 43, 2, 0x0304) + struct.pack("!HHHH", 51, 36, 0x001D, 32) \
        + bytes(range(32))
    body = b"\x03\x03" + bytes(range(100, 132)) + b"\x00" + b"\x13\x01" + b"\x00" \
        + struct.pack("!H", len(exts)) + exts
    return b"\x02" + len(body).to_bytes(3, "big") + body


def _record(content_type: int, payload: bytes) -> bytes:
    return struct.pack("!BHH", content_type, 0x0303, len(payload)) + payload


def _capture(tmp_path: Path, steps: list[tuple[str, bytes]], name: str = "crafted") -> Path:
    """One SMTP conversation on port 25, one TCP segment per step (split at 1460 bytes)."""
    flow = TcpFlow("192.0.2.10", 50000, "198.51.100.20", 25, start_us=1_700_000_000_000_000)
    at = flow.start_us + 50_000
    for direction, data in steps:
        flow.add(at, direction, data)
        at += 30_000
    data, _offsets = write(flow.packets())
    path = tmp_path / f"{name}.pcapng"
    path.write_bytes(data)
    return path


def _demoted(path: Path, tmp_path: Path) -> dict[str, int]:
    out = tmp_path / "shards"
    out.mkdir(exist_ok=True)
    return prefilter(path, out, ports=(25, 587), implicit_tls_ports=(465,),
                     native=True).demoted


def _same_as_tshark(path: Path) -> None:
    reference = analyze(path, prefilter=False, progress=False)
    native = analyze(path, jobs=1, progress=False)
    assert native.capture["engine"] == "fast", native.capture["engine_note"]
    assert_same_report(reference, native)
    assert len(reference.events), "the crafted conversation produced no events at all"


STARTTLS_PATH = (("s2c", BANNER), ("c2s", b"EHLO client.example\r\n"), ("s2c", EHLO_REPLY),
                 ("c2s", b"STARTTLS\r\n"), ("s2c", b"220 2.0.0 Ready to start TLS\r\n"))


def _after_starttls(*steps: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    return [*STARTTLS_PATH, *steps]

CASES = {
    # name: (steps, demoted?) -- the cleartext SMTP is read by the shared byte-stream
    # reader in both engines, so no SMTP habit demotes a conversation any more
    "well-trodden": (_after_starttls(("c2s", _record(22, _client_hello_bytes()))), False),
    "hello split over two TCP segments": (
        _after_starttls(("c2s", _record(22, _client_hello_bytes())[:40]),
                        ("c2s", _record(22, _client_hello_bytes())[40:])), False),
    "hello split over two TLS records": (
        _after_starttls(("c2s", _record(22, _client_hello_bytes()[:30])
                         + _record(22, _client_hello_bytes()[30:]))), False),
    "reply split over two segments": (
        [("s2c", BANNER), ("c2s", b"EHLO client.example\r\n"), ("s2c", EHLO_REPLY[:20]),
         ("s2c", EHLO_REPLY[20:]), ("c2s", b"QUIT\r\n"), ("s2c", b"221 bye\r\n")], False),
    "pipelined commands": (
        [("s2c", BANNER), ("c2s", b"EHLO client.example\r\n"), ("s2c", EHLO_REPLY),
         ("c2s", b"MAIL FROM:<a@client.example>\r\nRCPT TO:<b@contoso.example>\r\n"),
         ("s2c", b"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n")], False),
    "AUTH and DATA in clear": (
        [("s2c", BANNER), ("c2s", b"EHLO client.example\r\n"), ("s2c", EHLO_REPLY),
         ("c2s", b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"), ("s2c", b"235 2.7.0 OK\r\n"),
         ("c2s", b"DATA\r\n"), ("s2c", b"354 go ahead\r\n"),
         ("c2s", b"Subject: hi\r\n\r\nbody\r\n.\r\n"), ("s2c", b"250 queued\r\n")], False),
    "STARTTLS refused": (
        [("s2c", BANNER), ("c2s", b"EHLO client.example\r\n"), ("s2c", EHLO_REPLY),
         ("c2s", b"STARTTLS\r\n"), ("s2c", b"454 4.7.0 TLS not available\r\n"),
         ("c2s", b"QUIT\r\n"), ("s2c", b"221 bye\r\n")], False),
    "non-ASCII reply text": (
        [("s2c", "220 mx.contoso.example ESMTP prêt\r\n".encode()),
         ("c2s", b"QUIT\r\n"), ("s2c", b"221 bye\r\n")], False),
    "bare LF line ends": (
        [("s2c", b"220 mx.contoso.example ESMTP\n"), ("c2s", b"QUIT\n"), ("s2c", b"221 bye\n")],
        False),
    "plain SMTP without TLS": (
        [("s2c", BANNER), ("c2s", b"EHLO client.example\r\n"), ("s2c", EHLO_REPLY),
         ("c2s", b"MAIL FROM:<a@client.example>\r\n"), ("s2c", b"250 2.1.0 Sender OK\r\n"),
         ("c2s", b"RCPT TO:<b@contoso.example>\r\n"),
         ("s2c", b"550 5.7.64 TenantAttribution; Relay Access Denied\r\n"),
         ("c2s", b"QUIT\r\n"), ("s2c", b"221 2.0.0 Bye\r\n")], False),
    "lower-case verbs": (
        [("s2c", BANNER), ("c2s", b"ehlo client.example\r\n"), ("s2c", EHLO_REPLY),
         ("c2s", b"starttls\r\n"), ("s2c", b"220 go ahead\r\n"),
         ("c2s", _record(22, _client_hello_bytes()))], False),
    "multi-line banner, trailing spaces, HELO": (
        [("s2c", b"220-mx.contoso.example ESMTP\r\n220 no UCE  \r\n"),
         ("c2s", b"HELO client.example  \r\n"), ("s2c", b"250 mx.contoso.example \r\n"),
         ("c2s", b"QUIT\r\n"), ("s2c", b"221 2.0.0 Bye\r\n")], False),
    "EHLO reply one line per segment": (
        [("s2c", BANNER), ("c2s", b"EHLO client.example\r\n"),
         *[("s2c", line + b"\r\n") for line in EHLO_REPLY.split(b"\r\n") if line],
         ("c2s", b"STARTTLS\r\n"), ("s2c", b"220 2.0.0 Ready\r\n"),
         ("c2s", _record(22, _client_hello_bytes()))], False),
    "Certificate-sized message over three records": (
        _after_starttls(("c2s", _record(22, _client_hello_bytes()[:10])
                         + _record(22, _client_hello_bytes()[10:50])
                         + _record(22, _client_hello_bytes()[50:]))), False),
    "HelloRetryRequest": (
        _after_starttls(("c2s", _record(22, _client_hello_bytes())),
                        ("s2c", _record(22, _hello_retry_bytes()))), False),
    "HelloRetryRequest, the second ClientHello, a TLS 1.3 ServerHello, encrypted records": (
        _after_starttls(("c2s", _record(22, _client_hello_bytes())),
                        ("s2c", _record(22, _hello_retry_bytes()) + _record(20, b"\x01")),
                        ("c2s", _record(20, b"\x01") + _record(22, _client_hello_bytes())),
                        ("s2c", _record(22, _tls13_server_hello_bytes()) + _record(20, b"\x01")
                         + _record(23, bytes(200))),
                        ("c2s", _record(23, bytes(60))),
                        ("s2c", _record(23, bytes(40)))), False),
    "clear alert after the hello": (
        _after_starttls(("c2s", _record(22, _client_hello_bytes())),
                        ("s2c", _record(21, b"\x02\x28"))), False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_crafted_conversation_same_as_tshark(name: str, tmp_path: Path) -> None:
    steps, demoted = CASES[name]
    path = _capture(tmp_path, steps)
    _same_as_tshark(path)
    assert bool(_demoted(path, tmp_path)) == demoted, _demoted(path, tmp_path)


def test_native_rows_are_what_tshark_shows(tmp_path: Path) -> None:
    """The well-trodden conversation: SNI, offered versions and JA3 as tshark prints them."""
    path = _capture(tmp_path, CASES["well-trodden"][0])
    report = analyze(path, jobs=1, progress=False)
    hello = report.events[report.events["name"] == "ClientHello"].iloc[0]
    assert "sni=mx.contoso.example" in hello["detail"]
    assert "versions=TLS 1.2" in hello["detail"]
    assert report.capture["engine"] == "fast"
    assert report.capture["native_conversations"] == 1
    assert analyze(path, jobs=1, progress=False, native=False).capture[
        "native_conversations"] == 0


def _corpus_traces() -> list[str]:
    return sorted(glob.glob(str(CORPUS / "**" / "*.pcap"), recursive=True))


#: Real TLS from other projects' traces: HTTPS, IMAPS ... read as implicit-TLS ports, so
#: the native reader meets many real clients' and servers' handshakes.
TLS_PORTS = (443, 465, 636, 993, 995)


def test_corpus_handshakes_same_as_tshark(monkeypatch: pytest.MonkeyPatch) -> None:
    traces = _corpus_traces()
    if not traces:
        pytest.fail(f"the peer corpus is missing under {CORPUS}")
    monkeypatch.setattr(events_module, "IMPLICIT_TLS_PORTS", TLS_PORTS)
    monkeypatch.setattr(tshark_rows_module, "IMPLICIT_TLS_PORTS", TLS_PORTS)
    tshark = find_tshark()
    ports = (25, 587, *TLS_PORTS)
    native_streams = compared = 0
    for trace in traces:
        reference = extract(tshark, trace, ports=ports)
        try:
            fast = fast_extract(tshark, trace, ports=ports, implicit_tls_ports=TLS_PORTS, jobs=1)
        except Unsupported:
            continue  # the whole capture goes to the reference engine: nothing to compare
        compared += 1
        pd.testing.assert_frame_equal(reference.events, fast.events, check_exact=True,
                                      obj=trace)
        assert [(m.frame, m.declared_length, m.certificates, m.sender)
                for m in reference.certificate_messages] == [
            (m.frame, m.declared_length, m.certificates, m.sender)
            for m in fast.certificate_messages], trace
        assert {s: vars(f) for s, f in reference.streams.items()} == {
            s: vars(f) for s, f in fast.streams.items()}, trace
        if fast.tshark_command[:1] != [str(tshark.path)]:
            native_streams += len(fast.streams)
    assert compared >= 20
    assert native_streams >= 15, "the native reader took almost none of the corpus"


def test_ja3_leaves_grease_out() -> None:
    assert _is_grease(0x3A3A) and _is_grease(0xFAFA) and not _is_grease(0x3A3B)
    _versions, sni, ja3 = _client_hello(_client_hello_bytes()[4:])
    assert sni == "mx.contoso.example"
    assert len(ja3) == 32
    with pytest.raises(Demote):
        _client_hello(_client_hello_bytes()[4:-3])  # cut inside the extensions


def test_a_lost_starttls_reply_is_not_captured_not_refused(tmp_path: Path) -> None:
    """The segment with the server's 220 to STARTTLS is missing (and the client's TLS
    after it): the capture cannot tell what happened, so neither 'refused' nor 'no TLS'."""
    flow = TcpFlow("192.0.2.10", 50000, "198.51.100.20", 25, start_us=1_700_000_000_000_000)
    at = flow.start_us + 50_000
    steps = [*STARTTLS_PATH, ("c2s", _record(22, _client_hello_bytes()))]
    for tag, (direction, data) in enumerate(steps):
        flow.add(at, direction, data, tag)
        at += 30_000
    lost = len(STARTTLS_PATH) - 1  # the 220 reply to STARTTLS
    packets = [p for p in flow.packets() if p.tag != lost]
    data, _offsets = write(packets)
    path = tmp_path / "lost-220.pcapng"
    path.write_bytes(data)
    reference = analyze(path, prefilter=False, progress=False)
    fast = analyze(path, jobs=1, progress=False)
    assert_same_report(reference, fast)
    row = reference.conversations.iloc[0]
    assert row["client_cert"] == "not_captured", row["verdict_reason"]
    assert "incomplete" in row["verdict_reason"]
    assert not {"W1", "W2"} & set(reference.findings["id"])


def test_times_in_bulk_round_as_the_reference_does() -> None:
    """``ns_to_microseconds`` gives what ``ns_to_datetime`` gives one by one (tshark's text
    parsed as a float, then rounded to the microsecond), at half-microsecond boundaries too,
    where the float's error decides."""
    import random
    from datetime import UTC, datetime, timedelta

    from pyshark_tools.engine.native import ns_to_datetime, ns_to_microseconds

    rnd = random.Random(5)
    stamps = [rnd.randrange(1_600_000_000, 1_900_000_000) * 10**9 + rnd.randrange(10**9)
              for _ in range(20000)]
    stamps += [s * 10**9 + us * 1000 + rest
               for s in (0, 1, 1_700_000_000, 2**31 + 5, 4_000_000_000)
               for us in (0, 1, 123456, 999999) for rest in range(380, 621)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    expected = [(ns_to_datetime(ns) - epoch) // timedelta(microseconds=1) for ns in stamps]
    assert ns_to_microseconds(stamps).tolist() == expected
    # the boundaries are where a plain rounding of the nanoseconds would be wrong somewhere
    plain = [(ns + 500) // 1000 for ns in stamps]
    assert plain != expected
