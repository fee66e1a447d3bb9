"""``tls-smtp-report logs`` and ``--log`` end to end: real processes, documented exit codes,
one clear line for bad input, never a traceback."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from .helpers import FIXTURES
from .test_cli import TRUST, assert_clean_error, run

LOGS = FIXTURES / "serverlogs"
SEED = FIXTURES / "tls12-client-cert-empty.pcapng"
SEED_LOG = LOGS / "tls12-client-cert-empty.SEND.log"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def test_logs_text_tells_the_seed_story_with_line_numbers() -> None:
    truth = json.loads((LOGS / "tls12-client-cert-empty.SEND.json").read_text())["sessions"][0]
    done = run("logs", SEED_LOG, "--expect-cert-name", "mail.contoso.com")
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "EMPTY: no certificate sent" in out
    assert "[ERROR] W6 No client certificate presented" in out
    assert "[ERROR] X3 Relay denied: 550 5.7.64 TenantAttribution" in out
    assert f"{SEED_LOG.name}:{truth['lines']['reply_5_7_64']}" in out
    assert "Set-SendConnector" in out
    assert done.stderr == ""


def test_logs_good_session_exits_0() -> None:
    done = run("logs", LOGS / "tls12-client-cert-ok.SEND.log", "--expect-cert-name",
               "mail.contoso.com")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No problems found." in done.stdout


def test_logs_json_and_csv(tmp_path: Path) -> None:
    target = tmp_path / "logs.json"
    done = run("logs", LOGS / "*.log", LOGS / "*.json", "--format", "json", "-o", target,
               "--expect-cert-name", "mail.contoso.com")
    assert done.returncode == 1, done.stderr
    doc = json.loads(target.read_text())
    assert set(doc) == {"logs", "warnings", "sessions", "findings"}
    # every fixture log; the .json ground truths beside them are not logs: one warning each
    assert sorted(doc["logs"]) == sorted(p.name for p in LOGS.glob("*.log"))
    assert len(doc["warnings"]) == len(list(LOGS.glob("*.json")))
    assert all(".json: not a mail server log" in w for w in doc["warnings"])
    assert done.stderr.count("not a mail server log") == len(doc["warnings"])
    verdicts = {s["client_cert"] for s in doc["sessions"]}
    assert {"presented", "empty", "no_tls", "handshake_failed", "not_logged"} <= verdicts
    assert {"L1", "L3", "L4", "W6", "X3", "W10", "W11"} <= {f["id"] for f in doc["findings"]}
    done = run("logs", SEED_LOG, "--format", "csv", "--table", "findings")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["id"] for r in rows] == ["W6", "X3"]
    assert all(r["evidence_lines"].startswith(SEED_LOG.name) for r in rows)


def test_logs_nothing_readable_is_one_line_exit_4(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    line = assert_clean_error(run("logs", junk), 4)
    assert "junk.txt" in line and "not a mail server log" in line
    line = assert_clean_error(run("logs", tmp_path / "missing.log"), 4)
    assert "does not exist" in line
    line = assert_clean_error(run("logs", SEED), 4)  # a capture is not a log
    assert "not a text log" in line


def test_logs_bad_format_choice_is_usage_error() -> None:
    done = run("logs", SEED_LOG, "--log-format", "sendmail")
    assert done.returncode == 2 and "Traceback" not in done.stderr


@needs_tshark
def test_report_with_log_end_to_end() -> None:
    done = run(SEED, "--log", SEED_LOG, "--trust-store", TRUST, "--expect-cert-name",
               "mail.contoso.com")
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "Server logs: tls12-client-cert-empty.SEND.log; 1 session(s), 1 joined" in out
    assert "clock skew +1.25 s" in out
    assert "X3 Relay denied" in out and f"Evidence: server log {SEED_LOG.name}:" in out
    assert "replies from the server log" in out


@needs_tshark
def test_report_with_log_json_has_the_log_tables(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    done = run(FIXTURES / "tls13-client-cert-ok.pcapng", "--log",
               LOGS / "tls13-client-cert-ok.postfix.log", "--trust-store", TRUST,
               "--format", "json", "-o", target)
    assert done.returncode == 0, done.stderr
    doc = json.loads(target.read_text())
    assert list(doc) == ["schema_version", "capture", "conversations", "certificates", "findings",
                         "log_sessions", "log_findings"]
    conv = doc["conversations"][0]
    assert conv["client_cert"] == "presented" and conv["client_cert_source"] == "server log"
    assert doc["log_sessions"][0]["stream"] == 0
    assert doc["capture"]["server_logs"]["joined"] == 1


@needs_tshark
def test_report_with_an_unreadable_log_warns_and_goes_on(tmp_path: Path) -> None:
    junk = tmp_path / "junk.log"
    junk.write_bytes(b"\x00\x01\x02binary")
    done = run(SEED, "--log", junk, "--trust-store", TRUST, "--format", "json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "warning: server log junk.log: is not a text log" in done.stderr
    assert json.loads(done.stdout)["findings"][0]["id"] == "W6"


@needs_tshark
def test_report_with_log_markdown_names_the_log_lines() -> None:
    done = run(FIXTURES / "tls13-client-cert-empty.pcapng", "--log",
               LOGS / "tls13-client-cert-empty.postfix.log", "--format", "markdown")
    assert done.returncode == 1, done.stderr
    assert "- Evidence: server log tls13-client-cert-empty.postfix.log:2" in done.stdout
    assert "W4" not in done.stdout  # the log answered what TLS 1.3 hid
