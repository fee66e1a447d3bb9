"""The probe end to end: run the session, write its pcapng, analyse it with the same pipeline,
and add what only the probe knows (the CertificateRequest, the fit, the MAIL/RCPT replies)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.certificates import TrustStore
from ..core.events import DEFAULT_PORTS
from ..engine.tshark import Tshark
from ..errors import CaptureWriteError
from ..pipeline import analyze
from ..report import Report
from .fit import FitCheck, assess_fit
from .handshake import CertificateRequest, find_certificate_request
from .recorder import write_pcapng
from .session import Exchange, ProbeSettings, SessionResult, Stop, run_session


@dataclass
class ProbeReport:
    """The pipeline's report of the probe's capture, plus the probe's own knowledge."""

    session: SessionResult
    report: Report
    capture: Path | None  # None: written to a temporary file and removed
    certificate_request: CertificateRequest | None
    fit: list[FitCheck] = field(default_factory=list)

    @property
    def mail(self) -> Exchange | None:
        return self.session.reply_to("MAIL FROM")

    @property
    def rcpt(self) -> Exchange | None:
        return self.session.reply_to("RCPT TO")

    def problems(self) -> list[str]:
        """What the probe itself saw going wrong (the report's findings come on top)."""
        out = []
        s = self.session
        if s.stop != Stop.COMPLETED:
            out.append(f"the session stopped early: {s.stop.value} ({s.stop_detail})")
        for exchange in (self.mail, self.rcpt):
            if exchange is not None and exchange.code is not None and exchange.code // 100 != 2:
                out.append(f"{exchange.command} was answered {exchange.text}")
        out += [f"the offered chain does not fit the request: {c.detail}"
                for c in self.fit if not c.fits]
        return out

    def exit_code(self) -> int:
        return 1 if self.problems() else self.report.exit_code()


def probe(
    settings: ProbeSettings,
    *,
    capture: Path | None = None,
    expect_cert_name: str | None = None,
    accepted_domains: Iterable[str] = (),
    sender_ips: Iterable[str] = (),
    trust_store: str | os.PathLike | TrustStore | None = None,
    tshark: Tshark | None = None,
) -> ProbeReport:
    """Run one probe. Raises ConnectError (could not connect) and the errors of ``analyze``."""
    session = run_session(settings)
    request = find_certificate_request(session.server_tls_bytes, session.tls_version,
                                       session.cipher, session.keylog)
    chain = settings.credentials.chain if settings.credentials else ()
    fit = assess_fit(request, chain) if request is not None else []
    ports = tuple(dict.fromkeys([*DEFAULT_PORTS, settings.port]))
    options = dict(expect_cert_name=expect_cert_name, accepted_domains=accepted_domains,
                   sender_ips=sender_ips, trust_store=trust_store, ports=ports, tshark=tshark,
                   progress=False)
    if capture is not None:
        try:
            write_pcapng(session.recording, capture, session.keylog)
        except OSError as exc:
            raise CaptureWriteError(f"cannot write {capture} ({exc.strerror})") from None
        report = analyze(capture, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="tls-smtp-probe-") as folder:
            path = Path(folder) / "probe.pcapng"
            write_pcapng(session.recording, path, session.keylog)
            report = analyze(path, **options)
        report.capture["file"] = "the probe's session (not kept: -o FILE.pcapng keeps it)"
    return ProbeReport(session, report, capture, request, fit)
