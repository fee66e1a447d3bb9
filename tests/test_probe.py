"""The probe end to end on 127.0.0.1: a real socket, real OpenSSL on both ends, the probe as a
real process (``python -m pyshark_tools.cli probe``), real tshark on its recorded pcapng.

Ground truth is the test server's own log (what it saw and answered), never the probe's report.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from .helpers import TRUST
from .probe_server import Behaviour, ExoLikeServer, closed_port, make_chains, write_pem, write_pfx

RCPT = "someone@fabrikam.com"


@pytest.fixture(scope="module")
def chains():
    return make_chains()


def probe(port: int, *args: object, env: dict[str, str] | None = None,
          fmt: str = "json") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyshark_tools.cli", "probe", f"127.0.0.1:{port}",
         "--rcpt-to", RCPT, "--expect-cert-name", "mail.contoso.com", "--trust-store", TRUST,
         "--format", fmt, *map(str, args)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )


def run_case(chains, tmp_path: Path, chain_name: str | None, *extra: object,
             behaviour: Behaviour = Behaviour.NORMAL, tls_max: str = "1.3"):
    """Probe the server once; returns (process, JSON document or None, server sessions)."""
    args: list[object] = ["-o", tmp_path / "probe.pcapng", "--timeout", "5", *extra]
    if chain_name is not None:
        cert, key = write_pem(tmp_path, "client", getattr(chains, chain_name))
        args += ["--cert", cert, "--key", key]
    with ExoLikeServer(chains, tmp_path, behaviour=behaviour, tls_max=tls_max) as server:
        done = probe(server.port, *args)
    assert "Traceback" not in done.stderr, done.stderr
    doc = json.loads(done.stdout) if done.stdout.strip() else None
    return done, doc, server.sessions


def exchange(doc: dict, verb: str) -> dict:
    return next(e for e in doc["probe"]["exchanges"]
                if e["command"] and e["command"].startswith(verb))


def finding_ids(doc: dict) -> set[str]:
    return {f["id"] for f in doc["findings"]}


def server_reply(session, prefix: str) -> str:
    """The server's reply to the command starting with ``prefix`` (from its log)."""
    index = next(i for i, c in enumerate(session.commands) if c.startswith(prefix))
    return session.replies[index + 1]  # replies[0] is the banner


def assert_consistent(doc: dict, session) -> None:
    """The probe reports exactly what the server says it answered; never DATA."""
    assert not any(c.upper().startswith("DATA") for c in session.commands)
    rcpt = exchange(doc, "RCPT TO")
    assert rcpt["reply"][-1] == server_reply(session, "RCPT TO")
    assert rcpt["in_tls"] is True


def test_good_chain_is_attributed(chains, tmp_path):
    done, doc, sessions = run_case(chains, tmp_path, "good", "--tls", "1.2")
    (session,) = sessions
    assert session.attributed is True and session.tls_version == "TLSv1.2"
    assert done.returncode == 0, done.stdout
    assert_consistent(doc, session)
    assert exchange(doc, "RCPT TO")["code"] == 250
    (conv,) = doc["conversations"]
    assert conv["client_cert"] == "presented" and conv["tls_version"] == "TLS 1.2"
    assert not doc["findings"]
    request = doc["probe"]["certificate_request"]
    assert request["tls13"] is False
    assert request["ca_names"] == ["CN=Contoso Test Root CA,O=Contoso Ltd,C=US",
                                   "CN=Fabrikam Test Root CA,O=Fabrikam Inc,C=US"]
    assert "rsa_sign" in request["certificate_types"]
    assert all(check["fits"] for check in doc["probe"]["fit"])
    assert doc["probe"]["stop"] == "completed"


def test_no_certificate_gets_w6_and_550(chains, tmp_path):
    done, doc, (session,) = run_case(chains, tmp_path, None, "--ehlo", "mail.contoso.com")
    assert session.presented_subject is None and session.attributed is False
    assert done.returncode == 1
    assert_consistent(doc, session)
    rcpt = exchange(doc, "RCPT TO")
    assert rcpt["code"] == 550 and "5.7.64" in rcpt["reply"][0]
    (conv,) = doc["conversations"]
    assert conv["client_cert"] == "empty"
    assert {"W6", "X3"} <= finding_ids(doc)
    assert doc["probe"]["fit"] == []  # nothing offered, nothing to fit


def test_expired_certificate(chains, tmp_path):
    done, doc, (session,) = run_case(chains, tmp_path, "expired", "--tls", "1.2")
    assert 10 in session.verify_errors  # X509_V_ERR_CERT_HAS_EXPIRED, from the server
    assert done.returncode == 1
    assert_consistent(doc, session)
    assert exchange(doc, "RCPT TO")["code"] == 550
    assert doc["conversations"][0]["client_cert"] == "presented"
    assert "W10" in finding_ids(doc)


def test_wrong_name(chains, tmp_path):
    done, doc, (session,) = run_case(chains, tmp_path, "wrong_name", "--ehlo",
                                     "mail.contoso.com", "--tls", "1.2")
    assert session.presented_subject.startswith("CN=mail.fabrikam.net")
    assert done.returncode == 1
    assert_consistent(doc, session)
    assert exchange(doc, "RCPT TO")["code"] == 550
    assert "W11" in finding_ids(doc)
    assert "W10" not in finding_ids(doc)


def test_leaf_without_intermediate(chains, tmp_path):
    done, doc, (session,) = run_case(chains, tmp_path, "leaf_only", "--tls", "1.2")
    assert session.verify_errors  # the server could not build the chain
    assert done.returncode == 1
    assert_consistent(doc, session)
    assert exchange(doc, "RCPT TO")["code"] == 550
    assert "W8" in finding_ids(doc)
    fit = {c["aspect"]: c for c in doc["probe"]["fit"]}
    assert fit["ca_names"]["fits"] is False
    assert "Contoso Test Issuing CA" in fit["ca_names"]["detail"]


def test_tls13_everything_visible(chains, tmp_path):
    pfx = write_pfx(tmp_path, "client", chains.good, b"correct horse")
    env = {**os.environ, "PROBE_PFX_PASSWORD": "correct horse"}
    with ExoLikeServer(chains, tmp_path) as server:
        done = probe(server.port, "--pfx", pfx, "--password-env", "PROBE_PFX_PASSWORD",
                     "--tls", "1.3", "-o", tmp_path / "probe.pcapng", env=env)
    (session,) = server.sessions
    assert session.tls_version == "TLSv1.3" and session.attributed is True
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert_consistent(doc, session)
    (conv,) = doc["conversations"]
    # the probe's own secrets are embedded: TLS 1.3 is not "hidden"
    assert conv["client_cert"] == "presented" and conv["tls_version"] == "TLS 1.3"
    # the certificate the server received (its own record), read out of the capture: also
    # where the stack sent it as a CompressedCertificate (OpenSSL 3.5)
    leaves = [c for c in doc["certificates"] if c["role"] == "client" and c["position"] == 0]
    assert [c["subject"] for c in leaves] == [session.presented_subject]
    request = doc["probe"]["certificate_request"]
    assert request["tls13"] is True and len(request["ca_names"]) == 2
    assert "rsa_pss_rsae_sha256" in request["signature_algorithms"]
    secrets = embedded_secrets(tmp_path / "probe.pcapng")
    assert len(secrets) >= 4  # TLS 1.3: handshake and traffic secrets of both sides
    for secret in secrets:
        assert secret not in done.stdout and secret not in done.stderr
        assert secret.upper() not in done.stdout


def test_tls13_550_decrypted_by_tshark(chains, tmp_path):
    """The recorded pcapng opens in tshark with everything decrypted: the client's
    Certificate and the 550 inside TLS 1.3, with no key file given."""
    _, doc, _ = run_case(chains, tmp_path, "wrong_name", "--tls", "1.3")
    assert exchange(doc, "RCPT TO")["code"] == 550
    capture = tmp_path / "probe.pcapng"
    port = doc["probe"]["port"]
    tshark = shutil.which("tshark") or "tshark"
    fields = subprocess.run(
        [tshark, "-r", capture, "-d", f"tcp.port=={port},smtp", "-T", "fields",
         "-e", "tls.handshake.type", "-e", "smtp.response.code", "-e", "smtp.req.command",
         "-e", "x509ce.dNSName", "-E", "separator=|"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("|") for line in fields.splitlines()]
    assert any(row[1] == "550" for row in rows)  # the reply inside TLS 1.3
    assert any("13" in row[0].split(",") for row in rows)  # the encrypted CertificateRequest
    # the client's TLS 1.3 Certificate, decrypted: its SAN; or, where the stack compresses it
    # (RFC 8879: OpenSSL 3.5 does when the server offers it), the CompressedCertificate that
    # tshark shows but does not decompress (the report does: test_tls13_everything_visible)
    assert any("mail.fabrikam.net" in row[3].split(",") for row in rows) or any(
        "25" in row[0].split(",") for row in rows)
    assert any(row[2] == "RCPT" for row in rows)
    comments = subprocess.run(
        [tshark, "-r", capture, "-Y", "frame.comment", "-T", "fields", "-e", "frame.comment"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    assert "probe: connect()" in comments and "probe: RCPT (inside TLS)" in comments
    if shutil.which("capinfos"):
        info = subprocess.run(["capinfos", capture], capture_output=True, text=True,
                              timeout=60, check=True).stdout
        assert "Recorded by the tls-smtp-report" in info


def test_server_refusing_starttls(chains, tmp_path):
    done, doc, (session,) = run_case(chains, tmp_path, "good",
                                     behaviour=Behaviour.REFUSE_STARTTLS)
    assert server_reply(session, "STARTTLS").startswith("454")
    assert done.returncode == 1
    assert doc["probe"]["stop"] == "starttls_refused"
    assert exchange(doc, "STARTTLS")["code"] == 454
    assert doc["conversations"][0]["client_cert"] == "no_tls"
    assert not any(c.startswith(("MAIL", "RCPT", "DATA")) for c in session.commands)


def test_server_dropping_the_connection(chains, tmp_path):
    done, doc, (session,) = run_case(chains, tmp_path, "good",
                                     behaviour=Behaviour.DROP_AT_STARTTLS)
    assert session.commands[-1] == "STARTTLS"
    assert done.returncode == 1
    assert doc["probe"]["stop"] == "closed_by_server"
    assert "STARTTLS" in doc["probe"]["stop_detail"]


def test_silent_server_times_out(chains, tmp_path):
    done, doc, _ = run_case(chains, tmp_path, "good", "--timeout", "1",
                            behaviour=Behaviour.SILENT)
    assert done.returncode == 1
    assert doc["probe"]["stop"] == "timeout"
    assert "banner" in doc["probe"]["stop_detail"]


def test_silent_handshake_times_out(chains, tmp_path):
    done, doc, (session,) = run_case(chains, tmp_path, "good", "--timeout", "1",
                                     behaviour=Behaviour.SILENT_AFTER_STARTTLS)
    assert session.commands[-1] == "STARTTLS"
    assert done.returncode == 1
    assert doc["probe"]["stop"] == "timeout"
    assert "TLS handshake" in doc["probe"]["stop_detail"]


def embedded_secrets(capture: Path) -> list[str]:
    """The secret values in the pcapng's Decryption Secrets Block (read here, by hand)."""
    data, i, lines = capture.read_bytes(), 0, []
    while i + 12 <= len(data):
        block_type, length = struct.unpack_from("<II", data, i)
        if block_type == 0x0000000A:
            _, size = struct.unpack_from("<II", data, i + 8)
            lines += data[i + 16:i + 16 + size].decode().splitlines()
        i += length
    return [line.split()[2] for line in lines if len(line.split()) == 3]


def test_wrong_pfx_password(chains, tmp_path):
    pfx = write_pfx(tmp_path, "client", chains.good, b"right")
    env = {**os.environ, "PROBE_PFX_PASSWORD": "wrong"}
    with ExoLikeServer(chains, tmp_path) as server:
        done = probe(server.port, "--pfx", pfx, "--password-env", "PROBE_PFX_PASSWORD",
                     env=env)
    assert done.returncode == 4
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "wrong password" in lines[0]
    assert "Traceback" not in done.stderr
    assert server.sessions == []  # nothing was sent anywhere


def test_connection_refused():
    done = probe(closed_port())
    assert done.returncode == 6
    assert "refused" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_key_readable_by_others_warns_and_key_never_written(chains, tmp_path):
    cert, key = write_pem(tmp_path, "client", chains.good, mode=0o644)
    with ExoLikeServer(chains, tmp_path) as server:
        done = probe(server.port, "--cert", cert, "--key", key, "-o",
                     tmp_path / "probe.pcapng", fmt="text")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "readable by other users" in done.stderr and "chmod 600" in done.stderr
    private = chains.good[0].key
    der = private.private_bytes(serialization.Encoding.DER,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    prime = private.private_numbers().p.to_bytes(128, "big")
    recorded = (tmp_path / "probe.pcapng").read_bytes()
    for secret in (der, prime):
        assert secret not in recorded
    body = key.read_text().splitlines()[1]
    assert body not in done.stdout and body not in done.stderr
    assert "Probe: 127.0.0.1" in done.stdout and "RCPT TO:<someone@fabrikam.com>" in done.stdout
    assert "250 2.1.5 Recipient OK" in done.stdout


def test_usage_errors():
    done = subprocess.run([sys.executable, "-m", "pyshark_tools.cli", "probe", "host:99999"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "bad port" in done.stderr
    done = subprocess.run([sys.executable, "-m", "pyshark_tools.cli", "probe", "127.0.0.1",
                           "--key", "x.key"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2 and "--key needs --cert" in done.stderr


def test_implicit_tls(chains, tmp_path):
    """Port 465 (the report reads implicit TLS there), on 127.0.0.2 to stay clear of any
    local mail server; binding a port below 1024 needs root, which CI has."""
    cert, key = write_pem(tmp_path, "client", chains.good)
    try:
        server = ExoLikeServer(chains, tmp_path, behaviour=Behaviour.IMPLICIT_TLS,
                               address=("127.0.0.2", 465))
    except PermissionError:
        pytest.skip("binding 127.0.0.2:465 needs root (CI runs as root)")
    with server:
        done = subprocess.run(
            [sys.executable, "-m", "pyshark_tools.cli", "probe", "127.0.0.2", "--implicit-tls",
             "--cert", cert, "--key", key, "--rcpt-to", RCPT, "--expect-cert-name",
             "mail.contoso.com", "--trust-store", TRUST, "--format", "json", "--timeout", "5"],
            capture_output=True, text=True, timeout=120, check=False)
    (session,) = server.sessions
    doc = json.loads(done.stdout)
    assert session.attributed is True
    assert_consistent(doc, session)
    banner = doc["probe"]["exchanges"][0]
    assert banner["command"] is None and banner["in_tls"] is True
    assert not any(e["command"] == "STARTTLS" for e in doc["probe"]["exchanges"])
    (conv,) = doc["conversations"]
    assert conv["client_cert"] == "presented" and conv["implicit_tls"] is True
    assert done.returncode == 0, doc["findings"]


def test_implicit_tls_elsewhere_than_465_is_refused():
    done = subprocess.run([sys.executable, "-m", "pyshark_tools.cli", "probe",
                           "127.0.0.1:2465", "--implicit-tls"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "port 465 only" in done.stderr


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_server_rejecting_the_handshake(chains, tmp_path, tls):
    """A server that requires a trusted certificate and gets none ends the handshake with an
    alert: the probe stops there, the report still reads the empty Certificate."""
    done, doc, (session,) = run_case(chains, tmp_path, None, "--tls", tls,
                                     behaviour=Behaviour.REQUIRE_TRUSTED)
    assert session.tls_version is None  # the server's handshake failed
    assert done.returncode == 1
    if tls == "1.2":
        assert doc["probe"]["stop"] == "handshake_failed"
    else:  # the client's handshake ends before the server has read its Certificate
        assert doc["probe"]["stop"] in ("handshake_failed", "closed_by_server")
        assert "after the handshake" in doc["probe"]["stop_detail"] or \
            doc["probe"]["stop"] == "handshake_failed"
    assert not any(c.startswith(("MAIL", "RCPT")) for c in session.commands)
    (conv,) = doc["conversations"]
    assert conv["client_cert"] == "empty"


def test_accepted_domain_passes_through(chains, tmp_path):
    done, doc, (session,) = run_case(chains, tmp_path, "good", "--accepted-domain",
                                     "fabrikam.com")
    assert session.attributed is True  # the test server does not check accepted domains
    assert finding_ids(doc) == {"W12"}  # but the report does, as for captures
    assert done.returncode == 1


def test_text_report_never_says_no_problems_when_the_probe_found_some(chains, tmp_path):
    cert, key = write_pem(tmp_path, "client", chains.good)
    with ExoLikeServer(chains, tmp_path, behaviour=Behaviour.REFUSE_STARTTLS) as server:
        done = probe(server.port, "--cert", cert, "--key", key, fmt="text")
    assert done.returncode == 1
    assert "No problems found.\n" not in done.stdout
    assert "No problems found in the recorded conversation." in done.stdout
    assert "STARTTLS -> 454 4.7.0" in done.stdout
    assert "problem: the session stopped early: starttls_refused" in done.stdout
    assert "not kept" in done.stdout


def test_output_folder_missing_is_a_usage_error(tmp_path):
    done = probe(closed_port(), "-o", tmp_path / "missing" / "probe.pcapng")
    assert done.returncode == 2 and "cannot write" in done.stderr
