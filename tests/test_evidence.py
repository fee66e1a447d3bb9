"""Evidence filters (pyshark_tools.core.evidence): the conversation by addresses and ports, the
same frames in every Wireshark version; checked by running them through real tshark."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from pyshark_tools.core.evidence import conversation_filter, conversation_filters, evidence_filter
from pyshark_tools.engine.tshark import find_tshark

from .helpers import analyze_fixture, fixture_path


def _frames(capture, display_filter: str) -> list[int]:
    out = subprocess.run([find_tshark().path, "-n", "-r", str(capture), "-Y", display_filter,
                          "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return [int(x) for x in out.split()]


def test_filter_text() -> None:
    assert conversation_filter("192.0.2.1", 40000, "198.51.100.25", 25) == (
        "ip.addr==192.0.2.1 && tcp.port==40000 && ip.addr==198.51.100.25 && tcp.port==25")
    assert conversation_filter("2001:db8::1", 40000, "2001:db8::25", 587, 7, 19) == (
        "ipv6.addr==2001:db8::1 && tcp.port==40000 && ipv6.addr==2001:db8::25 && "
        "tcp.port==587 && frame.number>=7 && frame.number<19")


def test_reused_four_tuple_gets_frame_bounds() -> None:
    rows = pd.DataFrame({"client_ip": ["192.0.2.1", "192.0.2.1", "192.0.2.9"],
                         "client_port": [40000, 40000, 40000],
                         "server_ip": ["198.51.100.25"] * 3, "server_port": [25, 25, 25],
                         "first_frame": [1, 30, 5]})
    first, second, other = conversation_filters(rows)
    assert first.endswith("frame.number>=1 && frame.number<30")
    assert second.endswith("tcp.port==25 && frame.number>=30")
    assert "frame.number" not in other


@pytest.mark.parametrize("name", ["mixed-traffic", "ipv6", "port-2525"])
def test_each_filter_selects_exactly_its_conversation(name: str) -> None:
    """Through tshark: the printed filter selects the frames of that tcp.stream, no more."""
    report = analyze_fixture(name, with_keys=False)
    capture = fixture_path(name)
    assert len(report.conversations)
    for _, conv in report.conversations.iterrows():
        shown = evidence_filter(conv)
        assert "tcp.stream" not in shown
        assert _frames(capture, shown) == _frames(capture, f"tcp.stream == {conv['stream']}")


def test_json_text_and_html_print_the_address_filter() -> None:
    report = analyze_fixture("tls12-client-cert-empty", with_keys=True)
    conv = report.conversations.iloc[0]
    expected = conversation_filter(conv["client_ip"], conv["client_port"], conv["server_ip"],
                                   conv["server_port"])
    assert conv["wireshark_filter"] == expected
    from pyshark_tools.render.data import to_json
    from pyshark_tools.render.html import render_html
    from pyshark_tools.render.text import render_text

    assert json.loads(to_json(report))["conversations"][0]["wireshark_filter"] == expected
    html = render_html(report)
    assert expected.replace("&", "&amp;") in html and "tcp.stream ==" not in html
    from rich.console import Console

    console = Console(record=True, width=400)
    render_text(report, console)
    text = console.export_text()
    assert f"Wireshark filter: {expected}" in text
