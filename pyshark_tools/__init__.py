"""pyshark_tools: SMTP/STARTTLS client-certificate investigation from packet captures.

>>> from pyshark_tools import analyze
>>> report = analyze("capture.pcapng", expect_cert_name="mail.contoso.com")
>>> report.conversations[["stream", "server_host", "client_cert"]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .core.schema import ClientCert, Severity
    from .errors import CaptureError, KeylogError, TrustStoreError, TsharkError
    from .options import AnalysisOptions
    from .pipeline import analyze
    from .report import Report

__all__ = ["AnalysisOptions", "CaptureError", "ClientCert", "KeylogError", "Report", "Severity",
           "TrustStoreError", "TsharkError", "__version__", "analyze"]

#: name -> module, imported on first use: the command line's --help needs none of pandas,
#: numpy or cryptography
_LAZY = {"Report": "report", "analyze": "pipeline", "AnalysisOptions": "options",
         "ClientCert": "core.schema", "Severity": "core.schema", "CaptureError": "errors",
         "KeylogError": "errors", "TrustStoreError": "errors", "TsharkError": "errors"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
