"""Server logs alone: every log fixture against the ground truth its writer recorded, and every
kind of bad input (one clear warning each, the rest still read, never a traceback)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from pyshark_tools.core.schema import LOG_FINDING_COLUMNS, LOG_SESSION_COLUMNS
from pyshark_tools.serverlogs import LogsUnreadable, read_logs

from .helpers import FIXTURES

LOGS = FIXTURES / "serverlogs"
SEED_LOG = LOGS / "tls12-client-cert-empty.SEND.log"
NAME = "mail.contoso.com"


def _truths() -> list[str]:
    return sorted(p.name for p in LOGS.glob("*.json"))


def _truth(name: str) -> dict:
    return json.loads((LOGS / name).read_text())


def _line(ref: object) -> int | None:
    """``file:12`` -> 12."""
    if not isinstance(ref, str):
        return None
    return int(ref.rsplit(":", 1)[1])


@pytest.mark.parametrize("truth_name", _truths())
def test_log_fixture_matches_its_ground_truth(truth_name: str) -> None:
    truth = _truth(truth_name)
    report = read_logs(LOGS / truth["log"], expect_cert_name=NAME)
    assert report.warnings == []
    table = report.log_sessions
    assert list(table.columns) == list(LOG_SESSION_COLUMNS)
    assert list(report.findings.columns) == list(LOG_FINDING_COLUMNS)
    assert len(table) == len(truth["sessions"])
    for i, expected in enumerate(truth["sessions"]):
        row = table.iloc[i]
        assert str(row["client_cert"]) == expected["client_cert"], (i, row["verdict_reason"])
        got = set(report.findings.loc[report.findings["session"] == i, "id"])
        assert got == set(expected["findings"]), (i, got)
        if expected.get("client_thumbprint"):
            assert row["client_leaf_sha1"] == expected["client_thumbprint"]
        if expected.get("client_subject"):
            assert row["client_leaf_subject"] == expected["client_subject"]
        if expected.get("tls_error"):
            assert row["tls_error"] == expected["tls_error"]
        if "server" in expected and truth["format"] == "exchange":
            assert row["server"] == expected["server"]
            assert row["client"] == expected["client"]
        lines = expected.get("lines", {})
        if "line" in expected:  # one line per session (Exim)
            assert _line(row["line_first"]) == expected["line"]
        for fact, column in (("tls", "line_tls"), ("client_certificate",
                                                   "line_client_certificate"),
                             ("tls_error", "line_tls_error"), ("starttls", "line_starttls"),
                             ("last_reply", "line_last_reply")):
            if fact in lines:
                assert _line(row[column]) == lines[fact], (i, fact)
        if "reply_5_7_64" in lines:
            x3 = report.findings[(report.findings["session"] == i)
                                 & (report.findings["id"] == "X3")]
            assert f"{truth['log']}:{lines['reply_5_7_64']}" in x3.iloc[0]["evidence_lines"]


def test_seed_story_from_the_log_alone() -> None:
    """SmtpSend log: STARTTLS, TLS succeeded, no 'Sending certificate', then 550 5.7.64."""
    report = read_logs(SEED_LOG, expect_cert_name=NAME)
    row = report.log_sessions.iloc[0]
    assert str(row["client_cert"]) == "empty"
    assert row["tls_version"] == "TLS 1.2" and row["starttls_accepted"]
    assert row["exchange_online"] and row["ehlo"] == "mail.contoso.com"
    assert "550" in row["reply_codes"].split()
    findings = report.findings.set_index("id")
    assert set(findings.index) == {"W6", "X3"}
    assert str(findings.loc["W6", "severity"]) == "error"
    truth = _truth("tls12-client-cert-empty.SEND.json")["sessions"][0]["lines"]
    evidence = findings.loc["W6", "evidence_lines"].split()
    assert f"{SEED_LOG.name}:{truth['tls']}" in evidence  # the TLS-succeeded line
    assert f"{SEED_LOG.name}:{truth['reply_5_7_64']}" in evidence  # the 550 line
    assert "no 'Sending certificate'" in findings.loc["W6", "explanation"]
    assert report.exit_code() == 1


def test_both_certificate_forms_give_the_same_certificate() -> None:
    block = read_logs(LOGS / "tls12-client-cert-ok.SEND.log").log_sessions.iloc[0]
    line = read_logs(LOGS / "tls12-client-cert-no-clientauth-eku.SEND.log").log_sessions.iloc[0]
    ok = json.loads((FIXTURES / "tls12-client-cert-ok.json").read_text())
    leaf = ok["conversations"][0]["client_certificates"][0]
    assert block["client_leaf_sha1"] == leaf["sha1"]
    assert block["client_leaf_subject"] == "CN=mail.contoso.com, O=Contoso Ltd, C=US"
    assert block["client_leaf_issuer"] == "CN=Contoso Test Issuing CA, O=Contoso Ltd, C=US"
    assert block["client_leaf_sans"] == "mail.contoso.com"
    # the one-line form: DNs with spaces split, validity read
    assert line["client_leaf_subject"].startswith("CN=mail.contoso.com")
    assert line["client_leaf_issuer"] == "CN=Contoso Test Issuing CA, O=Contoso Ltd, C=US"
    assert line["client_leaf_not_after"] is not None


def test_fields_header_decides_the_columns(tmp_path: Path) -> None:
    """The same log with its columns in another order reads the same."""
    import csv
    import io

    text = SEED_LOG.read_text()
    out = []
    for line in text.splitlines():
        if line.startswith("#Fields:"):
            fields = line.split(":", 1)[1].strip().split(",")
            order = list(reversed(range(len(fields))))
            out.append("#Fields: " + ",".join(fields[i] for i in order))
        elif line.startswith("#"):
            out.append(line)
        else:
            values = next(csv.reader([line]))
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="").writerow([values[i] for i in order])
            out.append(buffer.getvalue())
    reordered = tmp_path / "SEND20260302-0001.log"
    reordered.write_text("\r\n".join(out) + "\r\n")
    a = read_logs(SEED_LOG).log_sessions.drop(columns=["file"] + [
        c for c in LOG_SESSION_COLUMNS if c.startswith("line_")])
    b = read_logs(reordered).log_sessions.drop(columns=["file"] + [
        c for c in LOG_SESSION_COLUMNS if c.startswith("line_")])
    assert a.equals(b)


def test_sessions_grouped_by_id_and_ordered_by_sequence(tmp_path: Path) -> None:
    """Interleaved sessions (several connections at once) and shuffled lines still regroup."""
    lines = (LOGS / "mixed-traffic.SEND.log").read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if not ln.startswith("#")]
    shuffled = tmp_path / "shuffled.log"
    shuffled.write_text("\n".join(header + body[1::2] + body[0::2]) + "\n")
    a = read_logs(LOGS / "mixed-traffic.SEND.log").log_sessions
    b = read_logs(shuffled).log_sessions
    assert list(a["client_cert"].astype(str)) == list(b["client_cert"].astype(str))
    assert list(a["session_id"]) == list(b["session_id"])


# --- bad input ------------------------------------------------------------------------------

def test_utf8_with_bom_and_utf16_read_like_the_original(tmp_path: Path) -> None:
    original = read_logs(SEED_LOG).log_sessions
    text = SEED_LOG.read_text()
    variants = {
        "bom.log": b"\xef\xbb\xbf" + text.encode("utf-8"),
        "utf16.log": text.encode("utf-16"),  # Windows: UTF-16 LE with BOM
        "utf16-nobom.log": text.encode("utf-16-le"),
    }
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        report = read_logs(tmp_path / name)
        assert report.warnings == [], name
        got = report.log_sessions
        assert list(got["client_cert"].astype(str)) == list(original["client_cert"].astype(str))
        assert list(got["line_tls"].str.split(":").str[1]) == list(
            original["line_tls"].str.split(":").str[1])


def test_legacy_8bit_text_is_read_with_a_warning(tmp_path: Path) -> None:
    data = SEED_LOG.read_bytes().replace(b"Sender OK", b"Sender OK \xe9t\xe9")
    path = tmp_path / "latin.log"
    path.write_bytes(data)
    report = read_logs(path)
    assert len(report.warnings) == 1 and "not valid UTF-8" in report.warnings[0]
    assert str(report.log_sessions.iloc[0]["client_cert"]) == "empty"


def test_not_a_log_is_one_warning_and_the_rest_goes_on(tmp_path: Path) -> None:
    readme = tmp_path / "notes.txt"
    readme.write_text("Remember to renew the certificate.\nNothing else here.\n")
    report = read_logs([FIXTURES / "tls12-client-cert-empty.pcapng", readme, SEED_LOG])
    assert len(report.log_sessions) == 1
    assert len(report.warnings) == 2
    assert any("tls12-client-cert-empty.pcapng" in w and "not a text log" in w
               for w in report.warnings)
    assert any("notes.txt" in w and "not a mail server log" in w for w in report.warnings)


def test_nothing_readable_raises_one_clear_error(tmp_path: Path) -> None:
    readme = tmp_path / "notes.txt"
    readme.write_text("hello\n")
    with pytest.raises(LogsUnreadable, match="not a mail server log"):
        read_logs([readme, tmp_path / "missing.log"])


def test_truncated_last_line(tmp_path: Path) -> None:
    data = SEED_LOG.read_bytes().rstrip(b"\r\n")
    cut = data[: data.rfind(b"\n") + 40]  # the last line (the disconnect) cut after 40 bytes
    path = tmp_path / "cut.log"
    path.write_bytes(cut)
    report = read_logs(path)
    assert len(report.warnings) == 1 and "cut short" in report.warnings[0]
    assert report.warnings[0].startswith("cut.log:")
    row = report.log_sessions.iloc[0]
    assert str(row["client_cert"]) == "empty"  # everything before the cut still counts
    assert set(report.findings["id"]) == {"W6", "X3"}


def test_truncated_line_in_the_middle(tmp_path: Path) -> None:
    lines = SEED_LOG.read_text().splitlines()
    lines[8] = lines[8][:30]  # a line cut in the middle of its date-time/connector
    path = tmp_path / "mid.log"
    path.write_text("\n".join(lines) + "\n")
    report = read_logs(path)
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("mid.log:9: line is cut short")
    assert str(report.log_sessions.iloc[0]["client_cert"]) == "empty"


def test_unknown_fields_layout_is_skipped_and_the_next_section_read(tmp_path: Path) -> None:
    text = SEED_LOG.read_text()
    weird = text.replace("#Fields: date-time,connector-id,session-id,",
                         "#Fields: date-time,connector-id,conversation,")
    path = tmp_path / "two-sections.log"
    path.write_text(weird + (LOGS / "tls12-client-cert-ok.SEND.log").read_text())
    report = read_logs(path)
    assert len(report.warnings) == 1
    assert "unknown #Fields: layout (no session-id)" in report.warnings[0]
    assert report.warnings[0].startswith("two-sections.log:5:")
    assert len(report.log_sessions) == 1
    assert str(report.log_sessions.iloc[0]["client_cert"]) == "presented"


def test_missing_fields_header_assumes_the_documented_layout(tmp_path: Path) -> None:
    text = "\n".join(ln for ln in SEED_LOG.read_text().splitlines()
                     if not ln.startswith("#Fields")) + "\n"
    path = tmp_path / "nofields.log"
    path.write_text(text)
    report = read_logs(path, log_format="exchange")
    assert len(report.warnings) == 1 and "documented layout is assumed" in report.warnings[0]
    assert str(report.log_sessions.iloc[0]["client_cert"]) == "empty"


def test_gzip_folder_and_glob(tmp_path: Path) -> None:
    folder = tmp_path / "ProtocolLog" / "SmtpSend"
    folder.mkdir(parents=True)
    (folder / "SEND20260302-1.log.gz").write_bytes(gzip.compress(SEED_LOG.read_bytes()))
    shutil.copy(LOGS / "tls12-client-cert-ok.SEND.log", folder / "SEND20260302-2.log")
    (folder / ".hidden.log").write_text("ignored")
    by_folder = read_logs(tmp_path / "ProtocolLog")
    assert by_folder.warnings == []
    assert sorted(by_folder.log_sessions["client_cert"].astype(str)) == ["empty", "presented"]
    assert "SEND20260302-1.log" in set(by_folder.log_sessions["file"])  # .gz dropped
    by_glob = read_logs(str(folder / "SEND*.log*"))
    assert len(by_glob.log_sessions) == 2
    with pytest.raises(LogsUnreadable, match="no file matches"):
        read_logs(str(tmp_path / "nothing-*.log"))


def test_truncated_gzip_reads_what_it_holds(tmp_path: Path) -> None:
    packed = gzip.compress(SEED_LOG.read_bytes() * 3)
    path = tmp_path / "cut.log.gz"
    path.write_bytes(packed[: len(packed) - 12])  # trailer and some data gone
    report = read_logs(path)
    assert any("damaged or cut short" in w for w in report.warnings)
    assert len(report.log_sessions) == 1


def test_empty_file_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "empty.log").write_bytes(b"")
    report = read_logs([tmp_path / "empty.log", tmp_path / "gone.log", SEED_LOG])
    assert sorted(report.warnings) == sorted([f"{tmp_path / 'gone.log'}: does not exist",
                                              "empty.log: is empty"])


# --- Postfix and Exim ----------------------------------------------------------------------

def _journal_export(syslog_text: str) -> str:
    """The same lines as ``journalctl -o export`` writes them (KEY=value blocks)."""
    import pandas as pd

    blocks = []
    for line in syslog_text.splitlines():
        stamp, host, rest = line.split(" ", 2)
        ident_pid, message = rest.split(": ", 1)
        ident, pid = ident_pid.rstrip("]").split("[")
        micros = int(pd.Timestamp(stamp).value // 1000)
        blocks.append(f"__REALTIME_TIMESTAMP={micros}\n_HOSTNAME={host}\n"
                      f"SYSLOG_IDENTIFIER={ident}\n_PID={pid}\nMESSAGE={message}\n")
    return "\n".join(blocks) + "\n"


def test_postfix_in_journal_export_and_classic_syslog(tmp_path: Path) -> None:
    source = LOGS / "tls13-client-cert-empty.postfix.log"
    text = source.read_text()
    journal = tmp_path / "journal.export"
    journal.write_text(_journal_export(text))
    classic = tmp_path / "mail.log"
    classic.write_text("\n".join(
        "Mar  2 09:15:01 " + line.split(" ", 1)[1] for line in text.splitlines()) + "\n")
    expected = read_logs(source).log_sessions.iloc[0]
    for path in (journal, classic):
        report = read_logs(path, year=2026)
        assert report.warnings == [], path
        row = report.log_sessions.iloc[0]
        assert str(row["client_cert"]) == str(expected["client_cert"]) == "empty"
        assert row["server"] == expected["server"] == "52.101.40.5:25"
        assert row["start_time"].year == 2026
        assert set(report.findings["id"]) == {"W6", "X3"}


def test_postfix_before_3_4_does_not_log_the_client_certificate(tmp_path: Path) -> None:
    text = (LOGS / "tls13-client-cert-ok.postfix.log").read_text()
    old = "\n".join(line.split(" key-exchange")[0] for line in text.splitlines()) + "\n"
    path = tmp_path / "old-postfix.log"
    path.write_text(old)
    report = read_logs(path)
    row = report.log_sessions.iloc[0]
    assert str(row["client_cert"]) == "not_logged"  # never "empty" when the log cannot tell
    assert set(report.findings["id"]) == {"L4"}
    assert "client-signature" in report.findings.iloc[0]["fix"]


def test_exim_lines_without_a_date_are_counted_once(tmp_path: Path) -> None:
    text = (LOGS / "exim-mainlog.log").read_text().splitlines()
    text.insert(3, "garbage that is not an exim line")
    text.insert(5, "more garbage")
    path = tmp_path / "mainlog"
    path.write_text("\n".join(text) + "\n")
    report = read_logs(path)
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("mainlog:4: 2 line(s) without Exim's date")
    assert len(report.log_sessions) == 6


def test_log_fixtures_are_reproduced_by_their_writer(tmp_path: Path) -> None:
    """The committed logs and ground truths are what the fixture writer writes today."""
    import subprocess
    import sys

    root = FIXTURES.parent
    subprocess.run([sys.executable, "-m", "fixtures.build_serverlogs", "--out", str(tmp_path)],
                   cwd=root, check=True, capture_output=True, timeout=120)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in LOGS.iterdir() if p.suffix in (".log", ".json"))
    for name in written:
        assert (tmp_path / name).read_bytes() == (LOGS / name).read_bytes(), name


def test_a_session_continued_in_the_next_file_is_one_session(tmp_path: Path) -> None:
    """Exchange starts a new log file every few MB, in the middle of sessions."""
    lines = SEED_LOG.read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if not ln.startswith("#")]
    (tmp_path / "SEND20260302-1.LOG").write_text("\n".join(header + body[:6]) + "\n")
    (tmp_path / "SEND20260302-2.LOG").write_text("\n".join(header + body[6:]) + "\n")
    report = read_logs(tmp_path)
    assert report.warnings == []
    assert len(report.log_sessions) == 1
    row = report.log_sessions.iloc[0]
    assert str(row["client_cert"]) == "empty"
    assert row["line_starttls"].startswith("SEND20260302-1.LOG:")
    assert row["line_tls"].startswith("SEND20260302-2.LOG:")
    assert set(report.findings["id"]) == {"W6", "X3"}


def test_postfix_in_rfc5424_and_journal_json(tmp_path: Path) -> None:
    import pandas as pd

    source = LOGS / "tls13-client-cert-ok.postfix.log"
    lines = source.read_text().splitlines()
    rfc5424 = []
    entries = []
    for line in lines:
        stamp, host, rest = line.split(" ", 2)
        ident_pid, message = rest.split(": ", 1)
        ident, pid = ident_pid.rstrip("]").split("[")
        rfc5424.append(f"<22>1 {stamp} {host} {ident} {pid} - - {message}")
        entries.append(json.dumps({"__REALTIME_TIMESTAMP": str(pd.Timestamp(stamp).value
                                                               // 1000),
                                   "SYSLOG_IDENTIFIER": ident, "_PID": pid,
                                   "MESSAGE": message}))
    (tmp_path / "rfc5424.log").write_text("\n".join(rfc5424) + "\n")
    (tmp_path / "journal.json").write_text("\n".join(entries) + "\n")
    expected = read_logs(source).log_sessions.iloc[0]
    for name in ("rfc5424.log", "journal.json"):
        report = read_logs(tmp_path / name)
        assert report.warnings == [], name
        row = report.log_sessions.iloc[0]
        assert str(row["client_cert"]) == "presented"
        assert row["start_time"] == expected["start_time"]
        assert row["reply_codes"] == expected["reply_codes"]


def test_a_malformed_csv_record_is_skipped_and_the_next_ones_read(tmp_path: Path) -> None:
    lines = SEED_LOG.read_text().splitlines()
    lines[7] = lines[7].replace(',"220 ', ',"220 "broken', 1)  # a quote inside a quoted field
    path = tmp_path / "bad-quote.log"
    path.write_text("\n".join(lines) + "\n")
    report = read_logs(path)
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("bad-quote.log:8: line cannot be read as CSV")
    row = report.log_sessions.iloc[0]
    assert str(row["client_cert"]) == "empty"  # the banner is lost, the rest is not
    assert set(report.findings["id"]) == {"W6", "X3"}
    assert row["line_tls"] == "bad-quote.log:13"


def test_exim_in_syslog_and_journal_export(tmp_path: Path) -> None:
    """Exim writing to syslog (no date of its own in the message) and read from the journal."""
    import pandas as pd

    main = (LOGS / "exim-mainlog.log").read_text().splitlines()
    syslog, journal = [], []
    for line in main:
        day, clock, message = line.split(" ", 2)
        stamp = f"{day}T{clock}+00:00"
        syslog.append(f"{stamp} mx2 exim[4711]: {message}")
        micros = int(pd.Timestamp(stamp).value // 1000)
        journal.append(f"__REALTIME_TIMESTAMP={micros}\nSYSLOG_IDENTIFIER=exim4\n_PID=4711\n"
                       f"MESSAGE={message}\n")
    (tmp_path / "syslog").write_text("\n".join(syslog) + "\n")
    (tmp_path / "journal.export").write_text("\n".join(journal) + "\n")
    expected = read_logs(LOGS / "exim-mainlog.log").log_sessions
    for name in ("syslog", "journal.export"):
        report = read_logs(tmp_path / name)
        assert report.warnings == [], name
        got = report.log_sessions
        assert list(got["client_cert"].astype(str)) == list(expected["client_cert"].astype(str))
        assert list(got["start_time"]) == list(expected["start_time"])


@pytest.mark.parametrize("seed", range(40))
def test_damaged_logs_never_raise(tmp_path: Path, seed: int) -> None:
    """Cut, spliced and sprinkled logs of every format: warnings at most, never an exception
    other than 'nothing readable'."""
    import random

    rng = random.Random(seed)
    sources = [SEED_LOG, LOGS / "exchange-failures.SEND.log", LOGS / "exim-mainlog.log",
               LOGS / "mixed-traffic.mx.postfix.log", LOGS / "tls13-client-cert-ok.postfix.log"]
    data = bytearray(rng.choice(sources).read_bytes())
    for _ in range(rng.randint(1, 6)):
        action = rng.choice(["cut", "insert", "flip", "dup"])
        if not data:
            break
        at = rng.randrange(len(data))
        if action == "cut":
            del data[at:at + rng.randint(1, 200)]
        elif action == "insert":
            data[at:at] = rng.choice([b'"', b",", b"\n", b"\x00", b"\xff\xfe", b"#Fields: x,y\n",
                                      bytes(rng.randrange(256) for _ in range(20))])
        elif action == "flip":
            data[at] = rng.randrange(256)
        else:
            data[at:at] = data[max(0, at - 300):at]
    path = tmp_path / f"damaged-{seed}.log"
    path.write_bytes(bytes(data))
    try:
        report = read_logs(path)
    except LogsUnreadable:
        return
    assert list(report.log_sessions.columns) == list(LOG_SESSION_COLUMNS)
    assert all(isinstance(w, str) and "\n" not in w for w in report.warnings)
