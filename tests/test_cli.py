"""The command line end to end: real tshark, real processes, every documented exit code.

Bad input must give one clear line on stderr, a documented exit code and never a traceback.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyshark_tools.core.schema import CERTIFICATE_COLUMNS, CONVERSATION_COLUMNS, FINDING_COLUMNS

from .helpers import FIXTURES, TRUST

EMPTY = FIXTURES / "tls12-client-cert-empty.pcapng"
EMPTY_KEYS = FIXTURES / "tls12-client-cert-empty.keys"
OK = FIXTURES / "tls12-client-cert-ok.pcapng"


def run(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyshark_tools.cli", *map(str, args)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )


def assert_clean_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_seed_case_text_report_exits_1_and_explains() -> None:
    done = run(EMPTY, "--trust-store", TRUST, "--expect-cert-name", "mail.contoso.com")
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "EMPTY: no certificate sent" in out
    assert "W6 No client certificate presented" in out
    assert "Set-SendConnector" in out and "smtp_tls_chain_files" in out
    assert "contoso-com.mail.protection.outlook.com" in out
    assert "\x1b[" not in out  # no colour codes when not on a terminal


def test_good_case_exits_0() -> None:
    done = run(OK, "--trust-store", TRUST, "--expect-cert-name", "mail.contoso.com")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "presented" in done.stdout
    assert "No problems found." in done.stdout


def test_json_document_has_the_documented_schema(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    done = run(EMPTY, "--keylog", EMPTY_KEYS, "--trust-store", TRUST, "--format", "json",
               "-o", target)
    assert done.returncode == 1
    doc = json.loads(target.read_text())
    assert set(doc) == {"schema_version", "capture", "conversations", "certificates", "findings"}
    assert list(doc["conversations"][0]) == list(CONVERSATION_COLUMNS)
    assert list(doc["certificates"][0]) == list(CERTIFICATE_COLUMNS)
    assert list(doc["findings"][0]) == list(FINDING_COLUMNS)
    conv = doc["conversations"][0]
    assert conv["client_cert"] == "empty"
    assert conv["start_time"].endswith("Z")
    assert {f["id"] for f in doc["findings"]} >= {"W6", "X3"}
    assert doc["capture"]["keylog_entries"] >= 1


def test_csv_and_markdown() -> None:
    csv_out = run(EMPTY, "--format", "csv", "--trust-store", TRUST).stdout
    assert csv_out.splitlines()[0] == ",".join(CONVERSATION_COLUMNS)
    certs = run(EMPTY, "--format", "csv", "--table", "certificates", "--trust-store", TRUST)
    assert certs.stdout.splitlines()[0] == ",".join(CERTIFICATE_COLUMNS)
    assert "server" in certs.stdout
    md = run(EMPTY, "--format", "markdown", "--trust-store", TRUST).stdout
    assert md.startswith("# tls-smtp-report")
    assert "| stream | client | server |" in md
    assert "W6 No client certificate presented" in md


def test_key_material_never_appears_in_any_output(tmp_path: Path) -> None:
    secrets = set()
    for line in EMPTY_KEYS.read_text().splitlines():
        if line and not line.startswith("#"):
            _label, random, secret = line.split()
            secrets.update({random.lower(), secret.lower()})
    assert secrets
    outputs = [run(EMPTY, "--keylog", EMPTY_KEYS, "--format", fmt, "--trust-store", TRUST)
               for fmt in ("text", "json", "markdown", "csv")]
    outputs.append(run(EMPTY, "--keylog", EMPTY_KEYS, "--format", "csv", "--table", "events"))
    outputs.append(run("follow", EMPTY, "--stream", 0, "--keylog", EMPTY_KEYS))
    # The keys were used (the 550 inside TLS is shown) ...
    assert "550 5.7.64" in outputs[0].stdout and "550 5.7.64" in outputs[-1].stdout
    assert "550 5.7.64" in outputs[-2].stdout  # events table
    # ... and never shown.
    for done in outputs:
        text = (done.stdout + done.stderr).lower()
        for secret in secrets:
            assert secret not in text


def test_follow_shows_the_empty_certificate() -> None:
    done = run("follow", EMPTY, "--stream", 0, "--keylog", EMPTY_KEYS)
    assert done.returncode == 1, done.stderr  # its W6 is an error: problems found
    out = done.stdout
    assert "[TLS Certificate: EMPTY - no certificate presented]" in out
    assert "C->S  STARTTLS" in out
    assert "550 5.7.64 TenantAttribution; Relay Access Denied" in out
    assert "(decrypted)" in out
    order = [out.index(s) for s in ("220 contoso-com", "EHLO mail.contoso.com", "STARTTLS",
                                    "TLS ClientHello", "TLS CertificateRequest",
                                    "TLS Certificate: EMPTY", "550 5.7.64")]
    assert order == sorted(order)
    assert_clean_error(run("follow", EMPTY, "--stream", 7), 2)


def test_missing_file() -> None:
    line = assert_clean_error(run("/nonexistent/capture.pcapng"), 4)
    assert "does not exist" in line


@pytest.mark.parametrize("content", [b"this is a text file, not a capture\n" * 20,
                                     os.urandom(4096)], ids=["text", "random"])
def test_not_a_capture(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    line = assert_clean_error(run(bad), 4)
    assert "capture" in line.lower() or "format" in line.lower()


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcapng"
    empty.touch()
    assert "is empty" in assert_clean_error(run(empty), 4)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    assert "folder" in assert_clean_error(run(tmp_path), 4)


def test_file_cut_mid_packet_is_analysed_with_a_warning() -> None:
    done = run(FIXTURES / "cut-mid-file.pcapng", "--trust-store", TRUST)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "warning: the capture file ends in the middle of a packet" in done.stdout
    assert "EMPTY: no certificate sent" in done.stdout


def test_gzip_capture_reads_like_the_original(tmp_path: Path) -> None:
    packed = tmp_path / "empty.pcapng.gz"
    packed.write_bytes(gzip.compress(EMPTY.read_bytes()))
    plain = json.loads(run(EMPTY, "--format", "json", "--trust-store", TRUST).stdout)
    zipped = json.loads(run(packed, "--format", "json", "--trust-store", TRUST).stdout)
    assert zipped["conversations"] == plain["conversations"]
    assert zipped["findings"] == plain["findings"]


def test_capture_without_smtp_says_so_and_hints_port(tmp_path: Path) -> None:
    no_smtp = tmp_path / "web-only.pcapng"
    subprocess.run(
        [shutil.which("tshark") or "tshark", "-r", str(FIXTURES / "mixed-traffic.pcapng"),
         "-Y", "not (tcp.port in {25,587})", "-w", str(no_smtp)],
        check=True, capture_output=True,
    )
    done = run(no_smtp)
    assert done.returncode == 0
    assert "No SMTP conversations on ports 25, 587, 465." in done.stdout
    assert "--port" in done.stdout


def test_non_standard_port_needs_port_option() -> None:
    capture = FIXTURES / "port-2525.pcapng"
    assert "No SMTP conversations" in run(capture).stdout
    done = run(capture, "--port", 2525, "--trust-store", TRUST)
    assert "EMPTY: no certificate sent" in done.stdout


def test_no_tshark_on_path(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TSHARK"}
    env["PATH"] = str(tmp_path)  # nothing in it
    done = subprocess.run([sys.executable, "-m", "pyshark_tools.cli", str(EMPTY)],
                          capture_output=True, text=True, env=env, check=False)
    line = assert_clean_error(done, 3)
    assert "tshark was not found" in line and "apt-get install tshark" in line


def test_malformed_keylog_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    secret = "CLIENT_RANDOM 00112233 not-hex-secret-deadbeefcafe"
    bad = tmp_path / "bad.keys"
    bad.write_text(f"# comment\n{secret}\n")
    line = assert_clean_error(run(EMPTY, "--keylog", bad), 4)
    assert "line 2" in line
    assert "deadbeefcafe" not in line and "00112233" not in line
    line = assert_clean_error(run(EMPTY, "--keylog", tmp_path / "none.keys"), 4)
    assert "does not exist" in line
    binary = tmp_path / "binary.keys"
    binary.write_bytes(os.urandom(256))
    assert_clean_error(run(EMPTY, "--keylog", binary), 4)


def test_bad_trust_store(tmp_path: Path) -> None:
    bad = tmp_path / "roots.pem"
    bad.write_text("not a certificate\n")
    assert_clean_error(run(EMPTY, "--trust-store", bad), 4)


def test_output_into_missing_folder_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "report.json"
    line = assert_clean_error(run(EMPTY, "--format", "json", "-o", target), 2)
    assert "does not exist" in line
    assert not target.parent.exists()


def test_failed_analysis_leaves_no_half_written_output(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"garbage" * 100)
    assert_clean_error(run(bad, "--format", "json", "-o", target), 4)
    assert list(tmp_path.iterdir()) == [bad]


def test_usage_errors_exit_2() -> None:
    done = run(EMPTY, "--format", "yaml")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_version_and_help() -> None:
    assert re.search(r"tls-smtp-report, version \d+\.\d+", run("--version").stdout)
    helptext = run("--help").stdout
    assert "Examples:" in helptext and "Exit codes:" in helptext
    report_help = run("report", "--help").stdout
    for option in ("--keylog", "--expect-cert-name", "--accepted-domain", "--trust-store",
                   "--port", "--all-tls", "--stream", "--exo-only", "--format", "-o"):
        assert option in report_help


def test_stream_and_exo_only_filters() -> None:
    mixed = FIXTURES / "mixed-traffic.pcapng"
    all_doc = json.loads(run(mixed, "--format", "json").stdout)
    exo_doc = json.loads(run(mixed, "--format", "json", "--exo-only").stdout)
    assert 0 < len(exo_doc["conversations"]) < len(all_doc["conversations"])
    assert all(c["exchange_online"] for c in exo_doc["conversations"])
    first = all_doc["conversations"][0]["stream"]
    one = json.loads(run(mixed, "--format", "json", "--stream", first).stdout)
    assert [c["stream"] for c in one["conversations"]] == [first]
    assert {c["stream"] for c in one["certificates"]} <= {first}


def test_wireshark_group_is_part_of_the_command(tmp_path: Path) -> None:
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    env.pop("WIRESHARK_CONFIG_DIR", None)
    done = run("wireshark", "install", env=env)
    assert done.returncode == 0, done.stderr
    assert "smtptls.lua" in done.stdout
    written = [ln.split()[1] for ln in done.stdout.splitlines() if ln.startswith("wrote")]
    assert written and all(Path(p).is_file() for p in written)
    assert all(str(tmp_path) in p for p in written)


def test_report_file_is_readable_like_any_other_file(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    run(EMPTY, "--format", "markdown", "-o", target)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
