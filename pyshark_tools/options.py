"""What an analysis is asked to do, in one typed object shared by the CLI, ``analyze`` and the
merge of many captures (instead of the same keywords passed along by hand)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from .core.events import DEFAULT_PORTS

if TYPE_CHECKING:  # pragma: no cover
    from .core.certificates import TrustStore
    from .engine.tshark import Tshark

__all__ = ["AnalysisOptions"]


@dataclass(frozen=True)
class AnalysisOptions:
    """Settings of one analysis; every field has the CLI's default.

    Sequences are kept as tuples, so an options object can be shared and compared.
    """

    #: TLS key log (SSLKEYLOGFILE format): decrypts TLS 1.3 handshakes and SMTP replies.
    keylog: str | os.PathLike | None = None
    #: SMTP ports to read (465, implicit TLS, is always added).
    ports: tuple[int, ...] = DEFAULT_PORTS
    #: The inbound connector's TlsSenderCertificateName the client certificate must carry.
    expect_cert_name: str | None = None
    #: The tenant's accepted domains (the certificate's domain must be one).
    accepted_domains: tuple[str, ...] = ()
    #: The connector's SenderIPAddresses (CIDR).
    sender_ips: tuple[str, ...] = ()
    #: PEM bundle (path) or a loaded store of trusted roots; None: Mozilla's (certifi).
    trust_store: str | os.PathLike | TrustStore | None = None
    #: Also report TLS conversations that are not SMTP.
    all_tls: bool = False
    #: Only these tcp.stream numbers (None: all).
    streams: tuple[int, ...] | None = None
    #: Only conversations with Exchange Online.
    exo_only: bool = False
    #: The tshark to run (None: found on PATH, version checked).
    tshark: Tshark | None = None
    #: Processes for the fast engine's shards (None: all cores).
    jobs: int | None = None
    #: The fast engine (False: the reference engine, one tshark pass).
    prefilter: bool = True
    #: A Dask client to run the shards on (None: local processes).
    dask_client: Any = None
    #: A progress bar on stderr (None: when stderr is a terminal), or the caller's own bar.
    progress: Any = None
    #: The fast engine's native reader (never used with a key log).
    native: bool = True
    #: Mail server logs (files, folders, globs) joined to the conversations.
    logs: tuple[str | os.PathLike, ...] | None = None
    #: Read every log as this format (None: recognised per file).
    log_format: str | None = None
    #: Clock skew allowed between the logs and the capture, in seconds (None: the default).
    log_tolerance: float | None = None

    def __post_init__(self) -> None:
        for name in ("ports", "accepted_domains", "sender_ips"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("streams", "logs"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    @classmethod
    def of(cls, options: AnalysisOptions | None = None,
           settings: Mapping[str, Any] | None = None) -> AnalysisOptions:
        """``options`` (or the defaults) with ``settings`` (keyword arguments) applied; an
        unknown setting is a TypeError, as an unknown keyword argument is."""
        base = options if options is not None else cls()
        return replace(base, **dict(settings or {}))

    def with_(self, **changes: Any) -> AnalysisOptions:
        return replace(self, **changes)

    @classmethod
    def names(cls) -> Iterable[str]:
        return [f.name for f in fields(cls)]
