"""Server logs joined to captures (real tshark on the fixtures): the log fills in what the
capture cannot see, says where each fact came from, and disagreements are findings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pyshark_tools.core.invariants import violations
from pyshark_tools.core.tables import records

from .helpers import FIXTURES, analyze_fixture, fixture_truth

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

LOGS = FIXTURES / "serverlogs"


def _log_truth(stem: str) -> dict:
    return json.loads((LOGS / f"{stem}.json").read_text())


def _joined(capture: str, *stems: str, with_keys: bool = False, **options: object):
    logs = [LOGS / _log_truth(stem)["log"] for stem in stems]
    return analyze_fixture(capture, with_keys, logs=logs, **options)


def _ids(report, stream: int = 0) -> set[str]:
    return set(report.findings.loc[report.findings["stream"] == stream, "id"])


def test_seed_story_joined_to_its_capture() -> None:
    report = _joined("tls12-client-cert-empty", "tls12-client-cert-empty.SEND")
    conv = report.conversations.iloc[0]
    truth = _log_truth("tls12-client-cert-empty.SEND")
    # the capture without a key log sees the empty Certificate, not the 550 inside TLS
    alone = analyze_fixture("tls12-client-cert-empty", False)
    assert _ids(alone) == {"W6"}
    assert "550" not in alone.conversations.iloc[0]["reply_codes"]
    # the log adds the 550 (X3), with its own line as the evidence
    assert str(conv["client_cert"]) == "empty"
    assert _ids(report) == {"W6", "X3"}
    assert conv["finding_ids"] == ["W6", "X3"]
    x3 = report.findings[report.findings["id"] == "X3"].iloc[0]
    line = truth["sessions"][0]["lines"]["reply_5_7_64"]
    assert x3["evidence_lines"] == f"{truth['log']}:{line}"
    assert "550" in conv["reply_codes"]
    # the capture's W6 no longer says the rejection is still to come: the log shows it
    w6 = report.findings[report.findings["id"] == "W6"].iloc[0]["explanation"]
    assert "once it is removed" not in w6
    assert w6.endswith(f"The 550 reply in the server log ({truth['log']}:{line}) is the result.")
    assert conv["client_cert_source"] == "capture" and conv["reply_source"] == "server log"
    assert conv["log_session"] == f"{truth['log']}:{truth['sessions'][0]['session_id']}"
    # the clock skew the generator put in is found and reported
    assert conv["log_skew_s"] == pytest.approx(truth["clock_skew_s"], abs=0.05)
    logs = report.capture["server_logs"]
    assert logs["joined"] == 1 and logs["exact_endpoints"] == 1
    assert logs["skew_s_median"] == pytest.approx(truth["clock_skew_s"], abs=0.05)
    row = report.log_sessions.iloc[0]
    assert int(row["stream"]) == 0 and set(report.log_findings["stream"]) == {0}


def test_seed_with_key_log_adds_nothing_twice() -> None:
    report = _joined("tls12-client-cert-empty", "tls12-client-cert-empty.SEND", with_keys=True)
    ids = list(report.findings["id"])
    assert sorted(ids) == ["W6", "X3"]  # X3 from the decrypted capture, not again from the log
    assert report.findings.set_index("id").loc["X3", "evidence_frames"] != ""


@pytest.mark.parametrize("name", ["tls13-client-cert-ok", "tls13-client-cert-empty"])
def test_tls13_without_key_log_gets_its_client_certificate_from_the_log(name: str) -> None:
    alone = analyze_fixture(name, False)
    assert str(alone.conversations.iloc[0]["client_cert"]) == "hidden_tls13"
    report = _joined(name, f"{name}.postfix")
    conv = report.conversations.iloc[0]
    expected = fixture_truth(name)["conversations"][0]["client_cert_expected"]["with_keylog"]
    assert str(conv["client_cert"]) == expected  # what the key log would have shown
    assert conv["client_cert_source"] == "server log"
    assert "the capture alone:" in conv["verdict_reason"]
    assert "W4" not in _ids(report)  # "cannot see" no longer holds for this conversation
    if expected == "empty":
        assert _ids(report) == {"W6", "X3"}
        assert conv["severity"] == "error"
    else:
        assert _ids(report) == set()
        assert report.exit_code() == 0


def test_truncated_capture_gets_its_certificate_from_the_log() -> None:
    report = _joined("truncated-snaplen", "truncated-snaplen.SEND")
    conv = report.conversations.iloc[0]
    truth = _log_truth("truncated-snaplen.SEND")["sessions"][0]
    assert str(conv["client_cert"]) == "presented"
    assert conv["client_leaf_subject"] == truth["client_subject"]
    assert "X4" not in _ids(report)


def test_firewall_rewriting_tls_is_a_finding_of_its_own() -> None:
    report = _joined("tls12-client-cert-empty", "tls12-client-cert-empty.firewall.SEND")
    assert {"L2", "W6", "X3"} <= _ids(report)
    l2 = report.findings[report.findings["id"] == "L2"].iloc[0]
    truth = _log_truth("tls12-client-cert-empty.firewall.SEND")["sessions"][0]
    assert str(l2["severity"]) == "error"
    assert truth["client_thumbprint"] in l2["explanation"]
    assert f":{truth['lines']['client_certificate']}" in l2["evidence_lines"]
    conv = report.conversations.iloc[0]
    frames = {int(conv["frame_client_certificate"]), int(conv["frame_server_certificate"])}
    assert set(l2["evidence_frames"]) == frames
    # the sender received the firewall's certificate, not Exchange Online's
    exo = fixture_truth("tls12-client-cert-empty")["conversations"][0]["server_certificates"]
    firewall = next(c for c in fixture_truth("mixed-traffic")["conversations"]
                    if not c["exchange_online"])["server_certificates"][0]
    assert firewall["sha1"] in l2["explanation"] and exo[0]["sha1"] in l2["explanation"]
    assert f":{truth['lines']['server_certificate']}" in l2["evidence_lines"]
    # the wire is what the receiver got: the verdict stays the capture's
    assert str(report.conversations.iloc[0]["client_cert"]) == "empty"
    assert "L2" in set(report.log_findings["id"])


def test_mixed_traffic_joins_every_session_of_both_ends() -> None:
    report = _joined("mixed-traffic", "mixed-traffic.SEND", "mixed-traffic.mx.postfix")
    logs = report.capture["server_logs"]
    assert logs["sessions"] == logs["joined"] == 10
    assert logs["skew_s_by_file"] == {"mixed-traffic.SEND.log": pytest.approx(1.25, abs=0.05),
                                      "mixed-traffic.mx.postfix.log": pytest.approx(-0.5,
                                                                                    abs=0.05)}
    truth = fixture_truth("mixed-traffic")["conversations"]
    conv = report.conversations.set_index("client_port")
    for t in truth:
        row = conv.loc[t["client_port"]]
        assert pd.notna(row["log_session"])
        if not t["exchange_online"]:  # the MX's own log joined beside the sender's
            assert "mixed-traffic.mx.postfix.log" in row["log_session"]
            assert str(row["client_cert"]) == "not_requested"  # the capture knows better
            assert "W6" not in set(report.findings.loc[report.findings["stream"]
                                                       == row["stream"], "id"])


def test_outside_the_tolerance_nothing_joins() -> None:
    report = _joined("tls12-client-cert-empty", "tls12-client-cert-empty.SEND",
                     log_tolerance=1.0)
    assert report.capture["server_logs"]["joined"] == 0
    assert pd.isna(report.conversations.iloc[0]["log_session"])
    assert _ids(report) == {"W6"}
    assert len(report.log_sessions) == 1 and pd.isna(report.log_sessions.iloc[0]["stream"])


def test_nat_between_sender_and_capture_joins_by_server_and_time(tmp_path: Path) -> None:
    text = (LOGS / "tls12-client-cert-empty.SEND.log").read_text()
    natted = tmp_path / "natted.log"
    natted.write_text(text.replace("203.0.113.25:49152", "10.1.2.3:61000"))
    report = analyze_fixture("tls12-client-cert-empty", False, logs=[natted])
    assert report.capture["server_logs"]["joined"] == 1
    assert report.capture["server_logs"]["exact_endpoints"] == 0
    assert _ids(report) == {"W6", "X3"}


def test_unreadable_log_is_a_warning_and_the_capture_report_stands(tmp_path: Path) -> None:
    junk = tmp_path / "junk.log"
    junk.write_text("not a log\n")
    report = analyze_fixture("tls12-client-cert-empty", False, logs=[junk])
    assert any("junk.log" in w and "not a mail server log" in w for w in report.warnings)
    assert _ids(report) == {"W6"}
    assert report.capture["server_logs"]["joined"] == 0


def test_html_report_and_ladder_show_the_log_lines_beside_the_packets() -> None:
    from html.parser import HTMLParser

    from pyshark_tools.render.html import render_html
    from pyshark_tools.render.ladder import LOG_STEP, ladder_steps

    report = _joined("tls13-client-cert-empty", "tls13-client-cert-empty.postfix")
    lines = report.log_lines
    assert list(lines["line"]) == ["tls13-client-cert-empty.postfix.log:1",
                                   "tls13-client-cert-empty.postfix.log:2"]
    skew = report.conversations.iloc[0]["log_skew_s"]
    shift = (lines["time"] - lines["capture_time"]).dt.total_seconds()
    assert shift.round(3).tolist() == [round(skew, 3)] * 2  # shown on the capture's clock
    steps = ladder_steps(report, 0)
    notes = [s for s in steps if s.kind == LOG_STEP]
    assert [s.note for s in notes] == list(lines["line"])
    assert all(s.sender == "client" for s in notes)  # the sender's log: on the client lane
    offsets = [s.offset_s for s in steps]
    assert offsets == sorted(offsets)  # among the packets, in time order
    page = render_html(report)
    for line in lines["line"]:
        assert f'data-log-line="{line}"' in page
    assert "Evidence: server log tls13-client-cert-empty.postfix.log:2" in page
    assert "Server logs</dt>" in page
    HTMLParser().feed(page)
    alone = analyze_fixture("tls13-client-cert-empty", False)
    assert not [s for s in ladder_steps(alone, 0) if s.kind == LOG_STEP]


def _joinable() -> list[str]:
    return sorted(p.stem for p in LOGS.glob("*.json")
                  if json.loads(p.read_text())["capture"] is not None)


@pytest.mark.parametrize("stem", _joinable())
def test_every_log_fixture_joins_its_capture(stem: str) -> None:
    truth = _log_truth(stem)
    capture = truth["capture"].removesuffix(".pcapng")
    alone = analyze_fixture(capture, False)
    report = analyze_fixture(capture, False, logs=[LOGS / truth["log"]])
    logs = report.capture["server_logs"]
    assert logs["joined"] == logs["sessions"] == len(truth["sessions"])
    assert logs["skew_s_by_file"][truth["log"]] == pytest.approx(truth["clock_skew_s"], abs=0.1)
    before = alone.conversations.set_index("stream")
    after = report.conversations.set_index("stream")
    unknown = {"hidden_tls13", "not_captured", "resumed"}
    for _, session in report.log_sessions.iterrows():
        stream = int(session["stream"])
        row = after.loc[stream]
        captured = str(before.loc[stream, "client_cert"])
        logged = str(session["client_cert"])
        if captured in unknown and logged in ("presented", "empty"):
            assert str(row["client_cert"]) == logged
            assert row["client_cert_source"] == "server log"
        else:
            assert str(row["client_cert"]) == captured
            assert row["client_cert_source"] in ("capture", "key log")
        ids = set(report.findings.loc[report.findings["stream"] == stream, "id"])
        log_ids = set(report.log_findings.loc[report.log_findings["session"]
                                              == session["session"], "id"])
        assert ("X3" in log_ids) <= ("X3" in ids)  # the log's rejection is never lost
        assert ("L2" in ids) == stem.endswith(".firewall.SEND")
        assert set(row["finding_ids"]) == ids
    # no finding, the capture's or the log's, contradicts the joined facts
    assert violations(records(report.conversations), records(report.findings)) == []
    assert not [w for w in report.warnings if "not reported" in w]
