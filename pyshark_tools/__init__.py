"""pyshark_tools: SMTP/STARTTLS client-certificate investigation from packet captures.

>>> from pyshark_tools import analyze
>>> report = analyze("capture.pcapng", expect_cert_name="mail.contoso.com")
>>> report.conversations[["stream", "server_host", "client_cert"]]
"""

__version__ = "0.1.0"

from .report import Report, analyze
from .schema import ClientCert, Severity

__all__ = ["ClientCert", "Report", "Severity", "__version__", "analyze"]
