"""The pipeline in one call: capture -> events -> certificates -> conversations -> findings.

``analyze`` is what the CLI and notebooks call; ``Report`` holds the four tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import __version__
from .cert_table import build_certificates
from .certificates import TrustStore, load_trust_store
from .events import DEFAULT_PORTS, IMPLICIT_TLS_PORTS, extract
from .evidence import conversation_filters
from .findings import Options, worst
from .keylog import check_keylog, matching_keylog
from .schema import EXIT_OK, EXIT_PROBLEMS, SCHEMA_VERSION, Severity
from .tshark import CaptureError, Tshark, find_tshark

if TYPE_CHECKING:  # pragma: no cover
    from .views import ConversationView


@dataclass
class Report:
    """Everything ``analyze`` found. Tables are pandas DataFrames with stable columns."""

    capture: dict[str, Any]
    conversations: pd.DataFrame
    certificates: pd.DataFrame
    findings: pd.DataFrame
    events: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    #: Sessions from mail server logs (``analyze(..., logs=[...])``) and their findings.
    log_sessions: pd.DataFrame = field(default_factory=pd.DataFrame)
    log_findings: pd.DataFrame = field(default_factory=pd.DataFrame)
    log_lines: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def problems(self) -> pd.DataFrame:
        """Findings of severity error or warning (the ones that set exit code 1)."""
        sev = self.findings["severity"].astype(str)
        return self.findings[sev.isin([Severity.ERROR.value, Severity.WARNING.value])]

    def exit_code(self) -> int:
        return EXIT_PROBLEMS if len(self.problems) else EXIT_OK

    def conversation(self, stream: int, capture: str | None = None) -> ConversationView:
        """One conversation: ``.follow()``, ``.ladder()``, ``.certificates``, ``.packets()``.

        In a report of several captures a conversation is (capture, stream): ``capture``
        (its path or file name) may be left out only when one capture has that stream.
        """
        from .merged import captures_with_stream, is_merged, one_capture
        from .views import ConversationView

        if is_merged(self):
            if capture is None:
                holders = captures_with_stream(self, stream)
                if len(holders) > 1:
                    raise KeyError(f"tcp.stream == {stream} is in {len(holders)} captures: "
                                   f"say which (capture=...; one of {', '.join(holders)})")
                capture = holders[0] if holders else None
            if capture is not None:
                return ConversationView(one_capture(self, capture), stream)
        return ConversationView(self, stream)

    def __repr__(self) -> str:
        """One line for a plain REPL (the tables themselves are the attributes)."""
        named = self.capture.get("file")
        named = f"{len(named)} captures" if isinstance(named, list) else Path(str(named)).name
        verdicts = self.conversations["client_cert"].astype(str).value_counts()
        seen = ", ".join(f"{n} {v}" for v, n in verdicts.items())
        sev = self.findings["severity"].astype(str).value_counts()
        found = ", ".join(f"{sev.get(s.value, 0)} {s.value}" for s in Severity)
        return (f"<Report {named}: {len(self.conversations)} conversation(s)"
                f"{' (' + seen + ')' if seen else ''}; findings {found}; tables: "
                ".conversations .certificates .findings .events>")

    def _repr_html_(self) -> str:
        from .render.html import report_fragment

        return report_fragment(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: capture, conversations, certificates, findings (and the server
        logs' log_sessions and log_findings when logs were given)."""
        doc = {
            "schema_version": SCHEMA_VERSION,
            "capture": jsonable(self.capture),
            "conversations": _records(self.conversations),
            "certificates": _records(self.certificates),
            "findings": _records(self.findings),
        }
        if len(self.log_sessions):
            doc["log_sessions"] = _records(self.log_sessions)
            doc["log_findings"] = _records(self.log_findings)
        return doc


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | pd.Timestamp):
        return pd.Timestamp(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, Path):
        return str(value)
    return value


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts, built from whole converted columns (per-cell work was slow)."""
    columns = json_columns(df)
    if not columns:
        return [{} for _ in range(len(df))]
    names = [name for name, _ in columns]
    rows = zip(*(values for _, values in columns), strict=True)
    return list(map(dict, map(zip, repeat(names), rows)))


def json_columns(df: pd.DataFrame) -> list[tuple[Any, list[Any]]]:
    """Each column as (name, JSON-ready values); shared by ``_records`` and the JSON writer."""
    return [(name, _column_values(df.iloc[:, i])) for i, name in enumerate(df.columns)]


#: Cell types that ``_cell`` returns unchanged unless they are missing (NaN).
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


def _column_values(column: pd.Series) -> list[Any]:
    """One column converted as ``_cell`` would convert each cell, but whole-column where the
    dtype (or a look at the cell types) shows the cells are plain Python scalars."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        return iso_strings(column)
    if isinstance(dtype, pd.CategoricalDtype):
        # Convert each category once; code -1 (missing) picks the trailing None.
        lookup = [_cell(value) for value in dtype.categories.tolist()] + [None]
        return list(map(lookup.__getitem__, column.cat.codes.tolist()))
    values = column.tolist()
    if dtype.kind in "biu" or isinstance(dtype, pd.StringDtype):
        # tolist() gave Python scalars, and a missing marker exactly where isna() says so.
        missing = column.isna().to_numpy(dtype=bool)
    elif dtype.kind == "f" or set(map(type, values)) <= _PLAIN_TYPES:
        # Python scalars too, but a float NaN can sit outside a masked array's NA mask.
        missing = pd.isna(np.array(values, dtype=object))
    else:
        return [_cell(value) for value in values]
    for i in np.flatnonzero(missing).tolist():
        values[i] = None
    return values


def _cell(value: Any) -> Any:
    """The per-cell conversion, for object/category columns whose cells can be anything."""
    if value is None or (not isinstance(value, list | tuple) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return jsonable(value)
    if hasattr(value, "item"):
        return value.item()
    return value


def iso_strings(column: pd.Series) -> list[str | None]:
    """Datetimes as ``Timestamp.isoformat()`` with ``+00:00`` written ``Z``; NaT as None.

    numpy formats UTC/naive columns at microsecond precision in one call; anything else
    (other zones, nanoseconds, years outside 1000-9999) goes through ``_cell``.
    """
    tz = getattr(column.dtype, "tz", None)
    if tz is not None and str(tz) != "UTC":
        return [_cell(value) for value in column.tolist()]
    naive = column.dt.tz_localize(None) if tz is not None else column
    stamps = naive.to_numpy()
    micro = stamps.astype("datetime64[us]")
    missing = np.isnat(stamps)
    present = micro[~missing]
    if len(present) and ((present != stamps[~missing]).any()
                         or present.min() < np.datetime64("1000-01-01", "us")
                         or present.max() >= np.datetime64("10000-01-01", "us")):
        return [_cell(value) for value in column.tolist()]
    text = np.datetime_as_string(micro, unit="us").astype(object)
    whole = (micro.view(np.int64) % 1_000_000 == 0) & ~missing
    text[whole] = [s[:-7] for s in text[whole]]  # isoformat drops a zero fraction
    if tz is not None:
        text = text + "Z"
    text[missing] = None
    return text.tolist()


def _check_capture(path: Path) -> None:
    if not path.exists():
        raise CaptureError(f"capture {path} does not exist")
    if path.is_dir():
        raise CaptureError(f"capture {path} is a folder, not a capture file")
    if not path.is_file():  # a FIFO would block, a device never ends; both are read twice
        raise CaptureError(f"capture {path} is not a regular file (a pipe or device): save "
                           "the capture to a file first")
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise CaptureError(f"capture {path} cannot be read ({exc.strerror})") from None
    if not head:
        raise CaptureError(f"capture {path} is empty")


def analyze(
    capture: str | os.PathLike,
    *,
    keylog: str | os.PathLike | None = None,
    ports: Sequence[int] = DEFAULT_PORTS,
    expect_cert_name: str | None = None,
    accepted_domains: Iterable[str] = (),
    sender_ips: Iterable[str] = (),
    trust_store: str | os.PathLike | TrustStore | None = None,
    all_tls: bool = False,
    streams: Iterable[int] | None = None,
    exo_only: bool = False,
    tshark: Tshark | None = None,
    jobs: int | None = None,
    prefilter: bool = True,
    dask_client: Any = None,
    progress: bool | None = None,
    native: bool = True,
    logs: Iterable[str | os.PathLike] | None = None,
    log_format: str | None = None,
    log_tolerance: float | None = None,
) -> Report:
    """Analyse one capture. Raises TsharkError, CaptureError, KeylogError, TrustStoreError.

    ``capture`` may also be a folder, a glob pattern or a list of captures: they are analysed
    one by one and merged into one report (a ``capture`` column names each row's file).
    ``prefilter`` (default) uses the fast engine (``pyshark_tools.parallel``): only the packets
    tshark needs, conversations sharded over ``jobs`` processes (default: all cores) or over
    a Dask cluster (``dask_client``); captures it cannot read exactly fall back to the
    reference engine (one tshark pass), with identical results. ``native`` (default, fast engine
    only, never with a key log): conversations whose cleartext SMTP and TLS handshake
    ``pyshark_tools.native`` reads exactly skip tshark. ``progress``: a bar of bytes read on a
    terminal (None: when stderr is a terminal). ``logs``: mail server logs (Exchange protocol
    logs, Postfix, Exim; files, folders, globs) joined to the conversations by endpoints and time
    within ``log_tolerance`` seconds of clock skew (``pyshark_tools.serverlogs``).
    """
    from .parallel import analyze_many, is_many

    if logs:
        report = analyze(
            capture, keylog=keylog, ports=ports, expect_cert_name=expect_cert_name,
            accepted_domains=accepted_domains, sender_ips=sender_ips, trust_store=trust_store,
            all_tls=all_tls, streams=streams, exo_only=exo_only, tshark=tshark, jobs=jobs,
            prefilter=prefilter, dask_client=dask_client, progress=progress, native=native,
        )
        return attach_logs(report, logs, log_format=log_format, tolerance=log_tolerance,
                           single_capture=not is_many(capture))
    if is_many(capture):
        return analyze_many(
            capture, keylog=keylog, ports=ports, expect_cert_name=expect_cert_name,
            accepted_domains=accepted_domains, sender_ips=sender_ips, trust_store=trust_store,
            all_tls=all_tls, streams=streams, exo_only=exo_only, tshark=tshark, jobs=jobs,
            prefilter=prefilter, dask_client=dask_client, progress=progress, native=native,
        )
    path = Path(capture)
    _check_capture(path)
    keylog_info = check_keylog(keylog) if keylog is not None else None
    store = trust_store if isinstance(trust_store, TrustStore) else load_trust_store(trust_store)
    tshark = tshark or find_tshark()
    ports = tuple(dict.fromkeys([*ports, *IMPLICIT_TLS_PORTS]))
    from .parallel import extract_with_engine

    # tshark gets only the key-log lines of this capture's ClientHellos (none: no key log)
    with matching_keylog(keylog_info, path) as matched:
        extraction, engine, engine_note = extract_with_engine(
            tshark, path, ports=ports, all_tls=all_tls,
            keylog=matched.path if matched else None, prefilter=prefilter,
            jobs=jobs, dask_client=dask_client, progress=progress, reference=extract,
            native=native,
        )
    certificates = build_certificates(extraction.certificate_messages, store)
    options = Options(expect_cert_name=expect_cert_name,
                      accepted_domains=tuple(accepted_domains), sender_ips=tuple(sender_ips),
                      keylog_entries=matched.entries if matched else None,
                      keylog_matching=matched.matching if matched else None)
    # summarise + diagnose + severity, chunk by chunk of conversations (linear cost; the
    # fast engine spreads the chunks over its processes)
    from .parallel import build_tables, default_jobs

    conversations, findings = build_tables(
        extraction, certificates, ports=ports, all_tls=all_tls, options=options,
        jobs=(jobs or default_jobs()) if engine == "fast" else 1,
        dask_client=dask_client if engine == "fast" else None,
    )
    refused = list(findings.attrs.get("refused", []))  # findings the invariants held back

    in_capture = len(conversations)  # before --stream/--exo-only: says why a report is empty
    # evidence filters by addresses and ports, bounded where a 4-tuple is reused
    conversations["wireshark_filter"] = conversation_filters(conversations)
    wanted = set(streams) if streams is not None else None
    if exo_only:
        exo = set(conversations.loc[conversations["exchange_online"].fillna(False), "stream"])
        wanted = exo if wanted is None else wanted & exo
    conv_streams = set(conversations["stream"].dropna().astype(int))
    certificates = certificates[certificates["stream"].isin(conv_streams)]
    if wanted is not None:
        conversations = conversations[conversations["stream"].isin(wanted)]
        certificates = certificates[certificates["stream"].isin(wanted)]
        findings = findings[findings["stream"].isin(wanted)]
    events = extraction.events
    events = events[events["stream"].isin(set(conversations["stream"].astype(int)))]

    warnings = list(extraction.warnings) + refused
    if keylog_info is not None and keylog_info.warning():
        warnings.insert(0, keylog_info.warning())
    if extraction.truncated_file:
        warnings = [w for w in warnings if "cut short" not in w]
    info = {
        "file": str(path),
        "size_bytes": path.stat().st_size,
        "packets_analysed": extraction.packets_read,
        "first_packet_time": extraction.first_time,
        "last_packet_time": extraction.last_time,
        "truncated_file": extraction.truncated_file,
        "complete": extraction.complete,
        "ports": list(ports),
        "all_tls": all_tls,
        "keylog": str(keylog_info.path) if keylog_info else None,
        "keylog_entries": keylog_info.entries if keylog_info else 0,
        "keylog_matching": matched.matching if matched else 0,
        "trust_store": store.source,
        "expect_cert_name": expect_cert_name,
        "accepted_domains": list(options.accepted_domains),
        "tshark_version": tshark.version_text,
        "tool_version": __version__,
        "engine": engine,
        "engine_note": engine_note,
        "native_conversations": extraction.native_streams,
        "native_demoted": extraction.native_demoted,
        "conversations_in_capture": in_capture,
        "stream_filter": sorted(set(streams)) if streams is not None else None,
        "exo_only": exo_only,
        "warnings": warnings,
    }
    from .user_tables import for_users

    return Report(
        capture=info,
        conversations=for_users("conversations", conversations.reset_index(drop=True)),
        certificates=for_users("certificates", certificates.reset_index(drop=True)),
        findings=for_users("findings", findings.reset_index(drop=True)),
        events=events.reset_index(drop=True),
        warnings=warnings,
    )


def attach_severity(conversations: pd.DataFrame, findings: pd.DataFrame) -> pd.DataFrame:
    """Each conversation's worst severity and its finding ids (in the findings' order)."""
    conversations = conversations.copy()
    severities: dict[int, list[str]] = {}
    ids: dict[int, list[str]] = {}
    for stream, severity, rule in zip(findings["stream"], findings["severity"].astype(str),
                                      findings["id"], strict=True):
        severities.setdefault(int(stream), []).append(severity)
        ids.setdefault(int(stream), []).append(rule)
    streams = [int(s) for s in conversations["stream"]]
    conversations["severity"] = [worst(severities.get(s, [])) for s in streams]
    conversations["finding_ids"] = [" ".join(dict.fromkeys(ids.get(s, []))) for s in streams]
    return conversations


def attach_logs(report: Report, logs: Iterable[str | os.PathLike], *,
                log_format: str | None = None, tolerance: float | None = None,
                single_capture: bool = True) -> Report:
    """Join mail server log sessions to the report's conversations (``serverlogs.join``)."""
    from .serverlogs.join import DEFAULT_TOLERANCE_S, join_logs
    from .serverlogs.reader import read_sessions
    from .serverlogs.rows import build

    first = report.capture.get("first_packet_time")
    year = pd.Timestamp(first).year if first is not None else None
    files, sessions, log_warnings = read_sessions(list(logs), log_format=log_format, year=year)
    warnings = [*report.warnings, *(f"server log {w}" for w in log_warnings)]
    options = Options(expect_cert_name=report.capture.get("expect_cert_name"),
                      accepted_domains=tuple(report.capture.get("accepted_domains") or ()))
    log_sessions, log_findings = build(sessions, options)
    info = {**report.capture, "warnings": warnings}
    if not sessions or not single_capture:
        if sessions:
            warnings.append("server logs are joined to one capture at a time: give one capture "
                            "with --log")
        info["server_logs"] = {"files": files, "sessions": len(sessions), "joined": 0}
        return Report(capture=info, conversations=report.conversations,
                      certificates=report.certificates, findings=report.findings,
                      events=report.events, warnings=warnings, log_sessions=log_sessions,
                      log_findings=log_findings)
    from .user_tables import for_users
    from .user_tables import joined as stage_form

    # the join works on the stages' separated strings; users get lists back
    joined = join_logs(stage_form("conversations", report.conversations),
                       stage_form("findings", report.findings),
                       stage_form("certificates", report.certificates), sessions,
                       log_sessions, log_findings,
                       tolerance=DEFAULT_TOLERANCE_S if tolerance is None else tolerance)
    info["server_logs"] = {"files": files, **joined.summary}
    warnings += joined.refused
    conversations = attach_severity(joined.conversations, joined.findings)
    return Report(capture=info, conversations=for_users("conversations", conversations),
                  certificates=report.certificates,
                  findings=for_users("findings", joined.findings),
                  events=report.events, warnings=warnings, log_sessions=joined.log_sessions,
                  log_findings=joined.log_findings, log_lines=joined.log_lines)
