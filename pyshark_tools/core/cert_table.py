"""Certificate messages -> the certificates table (one row per certificate sent).

Chains repeat across conversations (every connection to Exchange Online sends the same
server chain), so trust verdicts are cached by the chain's bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .certificates import TrustResult, TrustStore, certificate_rows, validate_chain
from .events import CertificateMessage
from .schema import CERTIFICATE_COLUMNS


def build_certificates(messages: Iterable[CertificateMessage], store: TrustStore) -> pd.DataFrame:
    """Parse and validate every certificate chain; each chain is judged at its frame's time."""
    cache: dict[tuple[tuple[bytes, ...], str, int], TrustResult] = {}
    rows: list[dict[str, object]] = []
    for msg in messages:
        if not msg.certificates:
            continue
        # Validity is judged per day of capture: a cache key finer than that buys nothing.
        key = (msg.certificates, msg.sender, msg.time.toordinal())
        trust = cache.get(key)
        if trust is None:
            trust = validate_chain(msg.certificates, at=msg.time, store=store, role=msg.sender)
            cache[key] = trust
        rows.extend(
            certificate_rows(
                msg.certificates,
                stream=msg.stream,
                frame=msg.frame,
                role=msg.sender,
                capture_time=msg.time,
                trust=trust,
            )
        )
    return typed_certificates(pd.DataFrame(rows, columns=list(CERTIFICATE_COLUMNS)))


def typed_certificates(df: pd.DataFrame) -> pd.DataFrame:
    """Proper dtypes: nullable integers and booleans, UTC timestamps, categorical roles."""
    for name in ("stream", "frame", "position", "key_size"):
        df[name] = df[name].astype("Int64")
    for name in ("valid_at_capture", "self_signed"):
        df[name] = df[name].astype("boolean")
    for name in ("not_before", "not_after"):
        df[name] = pd.to_datetime(df[name], utc=True)
    df["role"] = pd.Categorical(df["role"], categories=["server", "client"])
    return df
