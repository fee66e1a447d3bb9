"""The SVG ladder diagram: the right arrows, in order, readable, valid SVG for every fixture."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache
from itertools import pairwise

import pytest

from pyshark_tools import analyze
from pyshark_tools.render.labels import verdict_label
from pyshark_tools.render.ladder import Ladder, ladder_steps, ladder_svg

from .helpers import FIXTURES, TRUST, fixture_path, fixture_scenarios, fixture_truth

SVG = "{http://www.w3.org/2000/svg}"
RED = "#cf222e"


@cache
def _report(name: str, with_keys: bool = True):
    keys = FIXTURES / f"{name}.keys"
    ports = {c["server_port"] for c in fixture_truth(name)["conversations"]} | {25, 587}
    return analyze(fixture_path(name), keylog=keys if with_keys and keys.exists() else None,
                   ports=sorted(ports), trust_store=TRUST, expect_cert_name="mail.contoso.com")


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_seed_case_ladder_has_every_message_in_order():
    report = _report("tls12-client-cert-empty")
    conv = report.conversations.iloc[0]
    steps = ladder_steps(report, int(conv["stream"]))
    labels = [s.label for s in steps]
    # The seed's story, in capture order.
    expected = ["220 contoso-com.mail.protection.outlook.com", "EHLO mail.contoso.com", "250-",
                "STARTTLS", "220 2.0.0 SMTP server ready", "ClientHello", "ServerHello",
                "Certificate: *.mail.protection.outlook.com", "CertificateRequest",
                "Certificate: EMPTY", "EHLO mail.contoso.com", "MAIL FROM:", "RCPT TO:",
                "550 5.7.64 TenantAttribution", "QUIT", "221"]
    position = 0
    for want in expected:
        found = [i for i, label in enumerate(labels) if i >= position and
                 label.startswith(want)]
        assert found, f"{want!r} missing after position {position}: {labels}"
        position = found[0] + 1
    empty = [s for s in steps if s.tone == "empty"]
    assert len(empty) == 1
    assert empty[0].frame == conv["frame_client_certificate"]
    assert empty[0].sender == "client"
    request = next(s for s in steps if s.label.startswith("CertificateRequest"))
    assert request.frame == conv["frame_certificate_request"]
    rejected = next(s for s in steps if s.label.startswith("550"))
    assert rejected.tone == "bad" and rejected.decrypted and rejected.phase == "inside"
    offsets = [s.offset_s for s in steps]
    assert offsets == sorted(offsets) and offsets[0] >= 0
    assert [s.phase for s in steps][:5] == ["clear"] * 5


def test_seed_case_svg_marks_the_empty_certificate_red_with_the_verdict_caption():
    report = _report("tls12-client-cert-empty")
    conv = report.conversations.iloc[0]
    svg = ladder_svg(report, int(conv["stream"]))
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag == f"{SVG}svg"
    assert "<script" not in svg
    groups = [g for g in root.iter(f"{SVG}g") if "tone-empty" in g.get("class", "")]
    assert len(groups) == 1
    group = groups[0]
    assert group.get("data-frame") == str(conv["frame_client_certificate"])
    lines = list(group.iter(f"{SVG}line"))
    assert lines and all(line.get("stroke") == RED for line in lines)
    texts = ["".join(t.itertext()) for t in group.iter(f"{SVG}text")]
    assert any("EMPTY" in t for t in texts)
    assert all(t.get("fill") == RED for t in group.iter(f"{SVG}text"))
    caption = [t for t in root.iter(f"{SVG}text") if t.get("class") == "verdict"]
    assert "".join(caption[0].itertext()) == "Client certificate: " + verdict_label("empty")
    assert caption[0].get("fill") == RED
    all_text = " ".join(_texts(svg))
    assert "W6 (error)" in all_text
    # Frame numbers and time offsets on the arrows.
    frames = {t.text for t in root.iter(f"{SVG}text") if t.get("class") == "frame"}
    assert str(conv["frame_client_certificate"]) in frames
    assert "+0.0" in all_text


def test_presented_certificate_is_green_with_the_leaf_cn():
    report = _report("tls12-client-cert-ok")
    steps = ladder_steps(report, 0)
    client_cert = [s for s in steps if s.label.startswith("Certificate:") and
                   s.sender == "client"]
    assert [s.label for s in client_cert] == ["Certificate: mail.contoso.com"]
    assert client_cert[0].tone == "good"
    assert "EMPTY" not in " ".join(_texts(ladder_svg(report, 0)))


def test_alert_is_red_and_untrusted_leaf_is_noted():
    report = _report("handshake-alert")
    steps = ladder_steps(report, 0)
    alert = [s for s in steps if s.kind == "tls_alert"]
    assert alert and alert[-1].tone == "bad" and "unknown_ca" in alert[-1].label
    client_cert = next(s for s in steps if s.label.startswith("Certificate:") and
                       s.sender == "client")
    assert "leaf" in client_cert.note  # the leaf is not trusted: said on the arrow


def test_tls13_without_keys_never_says_empty():
    report = _report("tls13-client-cert-empty", with_keys=False)
    svg = ladder_svg(report, 0)
    texts = " ".join(_texts(svg))
    assert "EMPTY" not in texts
    assert verdict_label("hidden_tls13") in texts


def test_thirty_message_conversation_is_readable():
    """Rows never overlap, labels fit between the lanes, the size stays reasonable."""
    report = _report("tls12-resumed")  # stream 0: 34 events, the longest fixture
    ladder = Ladder(report, 0)
    assert len(ladder.steps) >= 28
    root = ET.fromstring(ladder.svg)
    arrows = [float(g.find(f"{SVG}line").get("y1")) for g in root.iter(f"{SVG}g")
              if "step" in g.get("class", "")]
    assert len(arrows) == len(ladder.steps)
    gaps = [b - a for a, b in pairwise(arrows)]
    assert min(gaps) >= 26, gaps
    for group in root.iter(f"{SVG}g"):
        for text in group.iter(f"{SVG}text"):
            assert len("".join(text.itertext())) <= 100
    height = float(root.get("height"))
    assert height < 60 * len(ladder.steps) + 400
    assert root.get("width") == "1000"


@pytest.mark.parametrize("name", fixture_scenarios())
def test_every_fixture_conversation_has_a_valid_ladder(name):
    report = _report(name)
    truth = fixture_truth(name)
    assert len(report.conversations) == len(truth["conversations"])
    for stream in report.conversations["stream"]:
        ladder = Ladder(report, int(stream))
        root = ET.fromstring(ladder.svg)
        steps = [g for g in root.iter(f"{SVG}g") if "step" in g.get("class", "")]
        assert len(steps) == len(ladder.steps)
        assert ladder._repr_svg_() == ladder.svg


def test_unknown_stream_is_a_key_error():
    with pytest.raises(KeyError):
        ladder_svg(_report("tls12-client-cert-ok"), 999)


def test_save_writes_an_svg_file(tmp_path):
    path = Ladder(_report("tls12-client-cert-empty"), 0).save(tmp_path / "ladder.svg")
    assert ET.parse(path).getroot().tag == f"{SVG}svg"
