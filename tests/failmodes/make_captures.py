"""Regenerate the failure-mode captures with the fixtures factory (real OpenSSL):
``python -m tests.failmodes.make_captures``.

``client-cert-over-64k``: a client presents a chain of 101 certificates (its leaf and 100
copies of its intermediate), a Certificate message of ~90 KiB that tshark 4.0 does not
reassemble. The ground truth (what the generator sent) is written beside it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "captures"


def client_cert_over_64k(out: Path = HERE) -> dict:
    from fixtures import build
    from fixtures.factory import pki, smtp
    from fixtures.factory.scenarios import Scenario
    from fixtures.factory.smtp import Conv

    original = pki.build_pki

    def with_big_chain():
        made = original()
        ok = made.clients["ok"]
        made.clients["big"] = (ok[0], *[ok[1]] * 100)
        return made

    smtp.build_pki = with_big_chain
    try:
        scenario = Scenario("client-cert-over-64k", "a client chain of 101 certificates",
                            [Conv(client_cert="big")])
        with tempfile.TemporaryDirectory() as tmp:
            truth = build.build_scenario(scenario, Path(tmp))
            out.mkdir(parents=True, exist_ok=True)
            (out / "client-cert-over-64k.pcapng").write_bytes(
                (Path(tmp) / "client-cert-over-64k.pcapng").read_bytes())
    finally:
        smtp.build_pki = original
    conv = truth["conversations"][0]
    summary = {"client_sent": conv["client_sent"],
               "client_certificates": len(conv["client_certificates"]),
               "cert_requested": conv["cert_requested"]}
    (out / "client-cert-over-64k.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    print(client_cert_over_64k())
