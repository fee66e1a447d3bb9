"""The log readers on what real Postfix 3.7 and Exim 4.96 wrote (the real-stack fixtures,
``fixtures/realstack/``), checked against the ground truth of those runs, and joined to their
real captures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pyshark_tools.serverlogs import read_logs

from .helpers import FIXTURES

REAL = FIXTURES / "realstack"
#: The mail software whose logs this tool reads (the real stacks also run swaks, smtplib and a
#: Python Exchange-like server, whose transcripts are not mail server logs).
READ = ("postfix", "exim")

#: What a log may say for what the client really did: the log can know less ("not_logged"),
#: and a log's "empty" means "no certificate sent" (it cannot see whether the server asked).
CONSISTENT = {
    "certificate": {"presented", "not_logged"},
    "empty": {"empty", "not_logged"},
    "nothing_requested": {"empty", "not_logged"},
    "no_tls": {"no_tls", "not_logged"},
}


def _cases() -> list[tuple[str, str]]:
    out = []
    for truth_path in sorted(REAL.glob("*.json")):
        truth = json.loads(truth_path.read_text())
        for key, side in (("server_log", "server"), ("client_log", "client")):
            name = truth.get(key)
            if name and truth["stack"][side] in READ:
                out.append((truth_path.stem, name))
    return out


def _truth(scenario: str) -> dict:
    return json.loads((REAL / f"{scenario}.json").read_text())


def _smtp_sessions(report) -> pd.DataFrame:
    """The sessions of the recorded conversation (not local submissions or bounces)."""
    return report.log_sessions


@pytest.mark.parametrize(("scenario", "log"), _cases())
def test_real_log_agrees_with_what_the_client_did(scenario: str, log: str) -> None:
    truth = _truth(scenario)
    conv = truth["conversations"][0]
    year = pd.Timestamp(truth["first_packet_time"]).year
    report = read_logs(REAL / log, year=year)
    assert report.warnings == []
    sessions = _smtp_sessions(report)
    assert len(sessions) == 1, sessions[["session_id", "client_cert"]]
    row = sessions.iloc[0]
    assert str(row["client_cert"]) in CONSISTENT[conv["client_sent"]], row["verdict_reason"]
    assert row["tls_version"] == conv["tls_version"]
    if row["role"] == "server" and pd.notna(row["client_port"]):
        assert (row["client_ip"], int(row["client_port"])) == (conv["client_ip"],
                                                               conv["client_port"])
    if row["role"] == "client":
        assert row["server_ip"] == conv["server_ip"]
    start = pd.Timestamp(truth["first_packet_time"])
    assert abs((row["start_time"] - start).total_seconds()) < 2
    rejected = any("5.7.64" in r["text"] for r in conv["smtp_replies"])
    ids = set(report.findings["id"])
    assert ("X3" in ids) == rejected
    assert "W6" not in ids or row["role"] == "client"


def test_real_logs_decide_where_they_can() -> None:
    """Across the real logs, every decisive verdict appears: "not logged" is not a way out."""
    verdicts = set()
    for scenario, log in _cases():
        year = pd.Timestamp(_truth(scenario)["first_packet_time"]).year
        verdicts |= set(read_logs(REAL / log, year=year).log_sessions["client_cert"].astype(str))
    assert {"presented", "empty", "no_tls", "not_logged"} <= verdicts


def test_exim_rejection_without_a_message_id() -> None:
    """Exim logs a refused RCPT as an H= line with no message id and no basic reply code."""
    report = read_logs(REAL / "exim-postfix-tls12-empty-550.log", year=2026)
    row = report.log_sessions.iloc[0]
    assert row["reply_codes"] == "5xx"
    assert "5.7.64 TenantAttribution" in row["last_reply"]
    assert row["ehlo"] == "mail.contoso.com"
    assert {"X3", "L4"} == set(report.findings["id"])


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize(("scenario", "log"), _cases())
def test_real_log_joins_its_real_capture(scenario: str, log: str) -> None:
    from pyshark_tools import analyze

    truth = _truth(scenario)
    ports = sorted({c["server_port"] for c in truth["conversations"]})
    report = analyze(REAL / truth["capture"], logs=[REAL / log], ports=ports)
    summary = report.capture["server_logs"]
    assert summary["joined"] == 1, (summary, report.warnings)
    assert abs(summary["skew_s_median"]) < 2  # same machine, logs in whole seconds
    conv = report.conversations.iloc[0]
    assert pd.notna(conv["log_session"])
    assert "L2" not in set(report.findings["id"])  # nothing rewrites TLS on loopback
    rejected = any("5.7.64" in r["text"] for r in truth["conversations"][0]["smtp_replies"])
    assert ("X3" in set(report.findings["id"])) == rejected


def test_real_fixtures_hold_logs_of_both() -> None:
    """Every scenario has its capture, and both Postfix and Exim logs are among them."""
    scenarios = sorted(p.stem for p in REAL.glob("*.json"))
    assert scenarios
    for scenario in scenarios:
        truth = _truth(scenario)
        assert (REAL / truth["capture"]).exists()
    logs = {Path(log).name for _, log in _cases()}
    assert any(name.startswith("postfix-") and not name.endswith(".client.log")
               for name in logs)
    assert any(name.startswith("exim-") and not name.endswith(".client.log") for name in logs)
