"""The notebook layer: dtypes, ConversationView, HTML reprs, pyshark drill-down, plots."""

from __future__ import annotations

import asyncio
import threading
from functools import cache

import pandas as pd
import pytest

from pyshark_tools import ClientCert, analyze
from pyshark_tools.notebook import (
    ConversationView,
    Transcript,
    plot_certificate_validity,
    plot_timeline,
    tls_handshakes,
)
from pyshark_tools.render.labels import verdict_label

from .helpers import FIXTURES, TRUST, fixture_path, fixture_truth


@cache
def _mixed():
    return analyze(fixture_path("mixed-traffic"), keylog=FIXTURES / "mixed-traffic.keys",
                   trust_store=TRUST, expect_cert_name="mail.contoso.com")


def _empty_streams(report) -> list[int]:
    conv = report.conversations
    return [int(s) for s in conv.loc[conv["client_cert"] == ClientCert.EMPTY, "stream"]]


def test_tables_have_notebook_friendly_dtypes():
    report = _mixed()
    conv, certs = report.conversations, report.certificates
    findings, events = report.findings, report.events
    for df, column in ((conv, "start_time"), (conv, "end_time"), (certs, "not_before"),
                       (certs, "not_after"), (events, "time")):
        assert isinstance(df[column].dtype, pd.DatetimeTZDtype), column
        assert str(df[column].dt.tz) == "UTC", column
    for df, column in ((conv, "client_cert"), (certs, "role"), (findings, "severity"),
                       (events, "sender"), (events, "kind")):
        assert isinstance(df[column].dtype, pd.CategoricalDtype), column
    for df, column in ((conv, "stream"), (conv, "frame_client_certificate"),
                       (certs, "stream"), (certs, "key_size"), (findings, "stream"),
                       (events, "frame"), (events, "stream")):
        assert str(df[column].dtype) == "Int64", column
    for df, column in ((conv, "exchange_online"), (conv, "cert_requested"),
                       (certs, "valid_at_capture"), (events, "decrypted")):
        assert str(df[column].dtype) == "boolean", column


def test_conversation_view_of_the_failing_exchange_online_conversation():
    report = _mixed()
    truth = fixture_truth("mixed-traffic")
    empty = _empty_streams(report)
    assert len(empty) == sum(c["client_sent"] == "empty" for c in truth["conversations"]) == 2
    conv = report.conversation(empty[0])
    assert isinstance(conv, ConversationView)
    assert conv.verdict is ClientCert.EMPTY
    assert bool(conv.info["exchange_online"])
    assert set(conv.certificates["stream"]) == {conv.stream}
    assert set(conv.certificates["role"].astype(str)) == {"server"}  # nothing from the client
    assert list(conv.findings["id"]) == ["W6", "X3"]
    assert set(conv.events["stream"]) == {conv.stream}
    assert conv.display_filter == (
        f"ip.addr=={conv.info['client_ip']} && tcp.port=={conv.info['client_port']} && "
        f"ip.addr=={conv.info['server_ip']} && tcp.port=={conv.info['server_port']}")
    assert "EMPTY" in repr(conv)


def test_follow_is_the_transcript():
    report = _mixed()
    conv = report.conversation(_empty_streams(report)[0])
    follow = conv.follow()
    assert isinstance(follow, Transcript)
    text = str(follow)
    assert "[TLS Certificate: EMPTY - no certificate presented]" in text
    assert "550 5.7.64 TenantAttribution" in text
    frame = follow.to_frame()
    assert list(frame.columns) == ["frame", "sender", "text", "style"]
    assert frame["frame"].is_monotonic_increasing
    html = follow._repr_html_()
    assert "EMPTY - no certificate presented" in html and "<table" in html


def test_ladder_and_html_reprs():
    report = _mixed()
    stream = _empty_streams(report)[0]
    conv = report.conversation(stream)
    ladder = conv.ladder()
    assert ladder._repr_svg_().startswith("<svg")
    assert "Certificate: EMPTY" in ladder.svg
    html = conv._repr_html_()
    assert verdict_label("empty") in html and "<svg" in html
    assert "No client certificate presented" in html  # W6 title
    page = report._repr_html_()
    for verdict in ("presented", "empty", "not_requested"):
        assert verdict_label(verdict) in page
    assert "Fix:" in page and "Relay denied" in page
    assert "<script" not in page


def test_unknown_stream_lists_the_known_ones():
    report = _mixed()
    with pytest.raises(KeyError, match="streams in this report: 2, 8"):
        report.conversation(9999)


# ---- pyshark drill-down ----------------------------------------------------------------


def _client_certificate_messages(conv: ConversationView) -> list[dict]:
    port = int(conv.info["client_port"])
    packets = conv.packets(f"tls.handshake.type == 11 && tcp.srcport == {port}")
    return [m for p in packets for m in tls_handshakes(p) if m["name"] == "Certificate"]


def test_packets_synchronously_with_the_key_log():
    report = _mixed()
    conv = report.conversation(_empty_streams(report)[0])
    packets = conv.packets()
    assert len(packets) == int(conv.info["frames"])
    assert {int(p.tcp.stream) for p in packets} == {conv.stream}
    # The key log reaches pyshark: the 550 inside TLS is readable.
    replies = conv.packets("smtp.response.code == 550")
    events = conv.events
    rejected = events.loc[events["name"] == "550", "frame"].tolist()
    assert [int(p.number) for p in replies] == rejected
    assert "TenantAttribution" in str(replies[0].smtp.get_field("response"))
    messages = _client_certificate_messages(conv)
    assert [(m["frame"], m["certificates_length"]) for m in messages] == [
        (int(conv.info["frame_client_certificate"]), 0)]


def test_packets_inside_a_running_event_loop():
    """Jupyter runs cells inside an event loop: pyshark's own sync API fails there."""
    report = _mixed()
    conv = report.conversation(_empty_streams(report)[1])

    async def in_the_loop():
        assert asyncio.get_running_loop().is_running()
        first = conv.packets(limit=3)
        certs = _client_certificate_messages(conv)
        return first, certs, threading.active_count()

    first, certs, _ = asyncio.run(in_the_loop())
    assert len(first) == 3
    assert certs[0]["certificates_length"] == 0
    assert certs[0]["frame"] == int(conv.info["frame_client_certificate"])


def test_packets_repeatedly_without_tshark_exit_races():
    report = _mixed()
    conv = report.conversation(_empty_streams(report)[0])

    async def many():
        return [len(conv.packets()) for _ in range(8)]

    assert set(asyncio.run(many())) == {int(conv.info["frames"])}
    assert not [t for t in threading.enumerate() if t.name == "pyshark-tools-packets"]


def test_packets_on_a_non_standard_port_use_decode_as():
    report = analyze(fixture_path("port-2525"), keylog=FIXTURES / "port-2525.keys",
                     ports=[2525], trust_store=TRUST)
    conv = report.conversation(int(report.conversations["stream"].iloc[0]))
    replies = conv.packets("smtp.response.code == 550")
    assert len(replies) == 1


def test_tls13_certificates_need_the_key_log_in_pyshark_too():
    with_keys = analyze(fixture_path("tls13-client-cert-empty"),
                        keylog=FIXTURES / "tls13-client-cert-empty.keys", trust_store=TRUST)
    without = analyze(fixture_path("tls13-client-cert-empty"), trust_store=TRUST)
    assert _client_certificate_messages(with_keys.conversation(0))[0][
        "certificates_length"] == 0
    assert _client_certificate_messages(without.conversation(0)) == []


# ---- plots ------------------------------------------------------------------------------


def test_plots():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = _mixed()
    ax = plot_timeline(report)
    assert len(ax.patches) == len(report.conversations)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert verdict_label("empty") in legend and verdict_label("presented") in legend
    ax2 = plot_certificate_validity(report)
    assert len(ax2.patches) == report.certificates["sha256"].nunique()
    plt.close("all")
