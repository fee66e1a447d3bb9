"""A connection restarted on the same 4-tuple is a conversation of its own, on every tshark
version and with every engine.

``fixtures/tcp-port-reuse-restart``: the generator opened two connections on the same
addresses and ports, the second with the first one's client ISN and a new server ISN (tshark
4.0 numbers both as tcp.stream 0, 4.4 as 0 and 1). Its ground truth says what each one did.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from pyshark_tools.engine.restarts import ConnectionSplitter, restart_suspected
from pyshark_tools.engine.tshark import find_tshark

from .helpers import analyze_fixture, fixture_path, fixture_truth
from .test_levers_identical import assert_same_report

NAME = "tcp-port-reuse-restart"
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
C, S = "192.0.2.1:40000", "198.51.100.25:25"


def _keys(rows: list[tuple[str, int, int]]) -> list[int]:
    splitter = ConnectionSplitter()
    keys = [splitter.key(0, src, flags, seq) for src, flags, seq in rows]
    numbers = splitter.numbers()
    return [numbers[k][0] if k in numbers else k for k in keys]


def test_syn_after_fin_ack_with_the_same_isn_is_a_new_connection() -> None:
    first = [(C, SYN, 100), (S, SYN | ACK, 500), (C, ACK, 101), (C, FIN | ACK, 101),
             (S, FIN | ACK, 501), (C, ACK, 102)]
    again = [(C, SYN, 100), (S, SYN | ACK, 900), (C, ACK, 101)]
    assert _keys(first + again) == [0] * 6 + [1] * 3


def test_retransmitted_syn_is_the_same_connection() -> None:
    assert _keys([(C, SYN, 100), (C, SYN, 100), (S, SYN | ACK, 500), (C, ACK, 101)]) == [0] * 4


def test_syn_ack_with_a_new_server_isn_is_a_new_connection() -> None:
    # no FIN or RST seen (a server restart): the new server ISN says it
    rows = [(C, SYN, 100), (S, SYN | ACK, 500), (C, ACK, 101), (C, SYN, 100),
            (S, SYN | ACK, 900), (C, ACK, 101)]
    assert _keys(rows) == [0, 0, 0, 0, 1, 1]


def test_syn_after_rst_and_split_numbers_follow_the_highest_stream() -> None:
    splitter = ConnectionSplitter()
    keys = [splitter.key(3, C, SYN, 7), splitter.key(3, S, RST | ACK, 0),
            splitter.key(5, "192.0.2.7:1", SYN, 1), splitter.key(3, C, SYN, 7)]
    assert keys[:3] == [3, 3, 5] and keys[3] < 0
    assert splitter.numbers() == {keys[3]: (6, 3)}  # after the highest tcp.stream, 5


def test_restart_suspected_on_index_arrays() -> None:
    stream = np.array([0, 0, 0, 0, 1], np.int64)
    direction = np.array([0, 1, 0, 0, 0], np.uint8)
    seq = np.array([100, 500, 101, 100, 7], np.uint32)
    plain = np.array([SYN, SYN | ACK, ACK, ACK, SYN], np.uint8)
    assert not restart_suspected(stream, direction, seq, plain)
    closed = np.array([SYN, SYN | ACK, FIN | ACK, SYN, SYN], np.uint8)
    assert restart_suspected(stream, direction, seq, closed)
    two_syn_acks = np.array([SYN, SYN | ACK, ACK, SYN | ACK, SYN], np.uint8)
    server_again = np.array([0, 1, 0, 1, 0], np.uint8)  # the second SYN-ACK: the server's
    assert restart_suspected(stream, server_again, np.array([100, 500, 101, 900, 7], np.uint32),
                             two_syn_acks)
    assert not restart_suspected(stream, server_again,
                                 np.array([100, 500, 101, 500, 7], np.uint32), two_syn_acks)


def _tcp_streams(capture) -> list[int]:
    out = subprocess.run([find_tshark().path, "-n", "-r", str(capture), "-T", "fields",
                          "-e", "tcp.stream"], capture_output=True, text=True, timeout=300,
                         check=True).stdout
    return sorted({int(x) for x in out.split()})


@pytest.mark.parametrize("with_keys", [False, True], ids=["nokeys", "keylog"])
def test_two_conversations_with_every_engine(with_keys: bool) -> None:
    truth = fixture_truth(NAME)
    wanted = "with_keylog" if with_keys else "without_keylog"
    expected = [c["client_cert_expected"][wanted] for c in truth["conversations"]]
    firsts = [c["first_frame"] for c in truth["conversations"]]
    reference = analyze_fixture(NAME, with_keys, prefilter=False, progress=False)
    conv = reference.conversations.sort_values("first_frame")
    assert list(conv["first_frame"]) == firsts
    assert list(conv["client_cert"]) == expected == ["presented", "empty"]
    for ids, tc in zip(conv["finding_ids"], truth["conversations"], strict=True):
        assert set(tc["expected_findings"]) <= set(ids)  # (+ X3 where the 550 is decrypted)
    assert list(conv.iloc[0]["finding_ids"]) == []  # the first connection's mail went through
    # tcp_stream: as the tshark at hand numbers it (4.0 one stream, 4.2+ two)
    assert sorted(set(conv["tcp_stream"])) == _tcp_streams(fixture_path(NAME))
    replies = list(conv.iloc[1]["reply_codes"])
    if with_keys:
        assert "550" in replies  # the second connection's 550 5.7.64, decrypted
    for options in ({}, {"native": False}):
        fast = analyze_fixture(NAME, with_keys, progress=False, jobs=2, **options)
        assert_same_report(reference, fast)


def test_each_connection_filter_selects_its_own_frames() -> None:
    report = analyze_fixture(NAME, with_keys=False, progress=False)
    conv = report.conversations.sort_values("first_frame")
    starts = list(conv["first_frame"])
    total = fixture_truth(NAME)["packets"]
    for (_, row), end in zip(conv.iterrows(), [*starts[1:], total + 1], strict=True):
        out = subprocess.run([find_tshark().path, "-n", "-r", str(fixture_path(NAME)), "-Y",
                              row["wireshark_filter"], "-T", "fields", "-e", "frame.number"],
                             capture_output=True, text=True, timeout=300, check=True).stdout
        assert [int(x) for x in out.split()] == list(range(int(row["first_frame"]), end))
        assert row["frames"] == end - int(row["first_frame"])
