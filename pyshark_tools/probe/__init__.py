"""The active probe: run one SMTP session presenting a client certificate, record it as pcapng
(with its own TLS secrets) and report on it with the same pipeline as any capture.

>>> from pyshark_tools.probe import ProbeSettings, probe
>>> result = probe(ProbeSettings("mail.example.net", 25, rcpt_to="someone@example.org"))
"""

from ..errors import ConnectError
from .run import ProbeReport, probe
from .session import ProbeSettings, Stop

__all__ = ["ConnectError", "ProbeReport", "ProbeSettings", "Stop", "probe"]
