"""Helpers the tests share: where the capture fixtures live, their ground truth, and how to
analyse a scenario the way its ground truth expects. (``conftest.py`` keeps only pytest's
hooks and fixtures.)"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The committed capture fixtures (``python -m fixtures.build`` regenerates them).
FIXTURES = ROOT / "fixtures"


def fixture_scenarios(folder: Path = FIXTURES) -> list[str]:
    """Names of the scenarios that have a ground-truth JSON in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.json"))


def fixture_truth(name: str, folder: Path = FIXTURES) -> dict:
    """The ground truth (``fixtures/<name>.json``) of one scenario."""
    return json.loads((folder / f"{name}.json").read_text())


def fixture_path(name: str, folder: Path = FIXTURES) -> Path:
    """The capture file of one scenario (pcapng, or pcap for the link-layer variants)."""
    truth = folder / f"{name}.json"
    if truth.exists():
        return folder / json.loads(truth.read_text())["capture"]
    return folder / f"{name}.pcapng"


NOT_SMTP_PORTS = {53, 80, 443}


def usable_keylog(truth: dict) -> str | None:
    """The scenario's key log, or None when it has none or none with a key in it (a
    handshake that died before any secret existed)."""
    from pyshark_tools.engine.keylog import check_keylog
    from pyshark_tools.errors import KeylogError

    if not truth.get("keylog"):
        return None
    path = FIXTURES / truth["keylog"]
    try:
        check_keylog(path)
    except KeylogError:
        return None
    return str(path)


def smtp_ports(truth: dict) -> tuple[int, ...]:
    """The SMTP server ports of a scenario (the analyzer's --port values)."""
    return tuple(sorted({c["server_port"] for c in truth["conversations"]} - NOT_SMTP_PORTS))


def analyze_fixture(name: str, with_keys: bool, **options: object):
    """analyze() a scenario the way its ground truth expects (ports, trust store, name)."""
    from pyshark_tools import analyze

    truth = fixture_truth(name)
    return analyze(
        FIXTURES / truth["capture"] if truth.get("capture") else fixture_path(name),
        keylog=usable_keylog(truth) if with_keys else None,
        ports=smtp_ports(truth),
        trust_store=FIXTURES / truth["trust_store"],
        expect_cert_name=truth.get("expect_cert_name"),
        **options,
    )

#: The fixtures' test PKI root: their certificates are trusted only with it.
TRUST = FIXTURES / "pki" / "test-root-ca.pem"


def truth_row(conversations, truth_conv: dict):
    """The report's row of one ground-truth conversation: by client address and port, and
    where the generator restarted a connection on the same 4-tuple, by its place among them
    (``connection_on_4tuple``, in the order of their first frames)."""
    match = conversations[(conversations["client_port"] == truth_conv["client_port"])
                          & (conversations["client_ip"] == truth_conv["client_ip"])]
    if "connection_on_4tuple" in truth_conv:
        match = match.sort_values("first_frame")
        return match.iloc[truth_conv["connection_on_4tuple"]]
    return match.iloc[0]
