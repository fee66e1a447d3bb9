"""The pipeline in one call: capture -> extraction -> events -> certificates ->
conversations -> findings, and the server logs joined to them.

``analyze`` is what the CLI, the notebook and the probe call; it returns a ``Report``
(``report.py``, the data model). Folders, globs and lists of captures are analysed one by one
and merged into one report.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__
from .core.cert_table import build_certificates
from .core.certificates import TrustStore, load_trust_store
from .core.events import IMPLICIT_TLS_PORTS
from .core.evidence import conversation_filters
from .core.findings import Options, attach_severity
from .core.schema import Engine
from .engine.keylog import check_keylog, matching_keylog
from .engine.parallel import build_tables, default_jobs, extract_with_engine, sum_counts
from .engine.tshark import find_tshark
from .engine.tshark_rows import extract
from .errors import CaptureError
from .options import AnalysisOptions
from .report import Report

__all__ = ["analyze", "analyze_many", "attach_logs", "capture_files", "is_many"]


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


def analyze(capture: Any, options: AnalysisOptions | None = None, /,
            **settings: Any) -> Report:
    """Analyse one capture. Raises TsharkError, CaptureError, KeylogError, TrustStoreError.

    Settings come as an ``AnalysisOptions`` or as its fields by keyword (``keylog=...``,
    ``expect_cert_name=...``); keywords override the options object.
    ``capture`` may also be a folder, a glob pattern or a list of captures: they are analysed
    one by one and merged into one report (a ``capture`` column names each row's file).
    ``prefilter`` (default) uses the fast engine (``pyshark_tools.engine.parallel``): only the
    packets tshark needs, conversations sharded over ``jobs`` processes (default: all cores) or
    over a Dask cluster (``dask_client``); captures it cannot read exactly fall back to the
    reference engine (one tshark pass), with identical results. ``native`` (default, fast engine
    only, never with a key log): conversations whose cleartext SMTP and TLS handshake
    ``pyshark_tools.engine.native`` reads exactly skip tshark. ``progress``: a bar of bytes read
    on a terminal (None: when stderr is a terminal). ``logs``: mail server logs (Exchange
    protocol logs, Postfix, Exim; files, folders, globs) joined to the conversations by endpoints
    and time within ``log_tolerance`` seconds of clock skew (``pyshark_tools.serverlogs``).
    """
    options = AnalysisOptions.of(options, settings)
    if options.logs:
        report = analyze(capture, options.with_(logs=None))
        return attach_logs(report, options.logs, log_format=options.log_format,
                           tolerance=options.log_tolerance, single_capture=not is_many(capture))
    if is_many(capture):
        return analyze_many(capture, options)
    return _analyze_file(Path(capture), options)


def _analyze_file(path: Path, settings: AnalysisOptions) -> Report:
    """One capture file through the stages; ``analyze`` decides it is one."""
    _check_capture(path)
    keylog, trust_store = settings.keylog, settings.trust_store
    keylog_info = check_keylog(keylog) if keylog is not None else None
    store = trust_store if isinstance(trust_store, TrustStore) else load_trust_store(trust_store)
    tshark = settings.tshark or find_tshark()
    ports = tuple(dict.fromkeys([*settings.ports, *IMPLICIT_TLS_PORTS]))
    all_tls, jobs, dask_client = settings.all_tls, settings.jobs, settings.dask_client
    streams, exo_only, expect_cert_name = settings.streams, settings.exo_only, \
        settings.expect_cert_name
    # tshark gets only the key-log lines of this capture's ClientHellos (none: no key log)
    with matching_keylog(keylog_info, path) as matched:
        extraction, engine, engine_note = extract_with_engine(
            tshark, path, ports=ports, all_tls=all_tls,
            keylog=matched.path if matched else None, prefilter=settings.prefilter,
            jobs=jobs, dask_client=dask_client, progress=settings.progress, reference=extract,
            native=settings.native,
        )
    certificates = build_certificates(extraction.certificate_messages, store)
    options = Options(expect_cert_name=expect_cert_name,
                      accepted_domains=settings.accepted_domains,
                      sender_ips=settings.sender_ips,
                      keylog_entries=matched.entries if matched else None,
                      keylog_matching=matched.matching if matched else None)
    # summarise + diagnose + severity, chunk by chunk of conversations (linear cost; the
    # fast engine spreads the chunks over its processes)
    conversations, findings = build_tables(
        extraction, certificates, ports=ports, all_tls=all_tls, options=options,
        jobs=(jobs or default_jobs()) if engine is Engine.FAST else 1,
        dask_client=dask_client if engine is Engine.FAST else None,
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
        "engine": engine.value,
        "engine_note": engine_note,
        "native_conversations": extraction.native_streams,
        "native_demoted": extraction.native_demoted,
        "conversations_in_capture": in_capture,
        "stream_filter": sorted(set(streams)) if streams is not None else None,
        "exo_only": exo_only,
        "warnings": warnings,
    }
    from .core.user_tables import for_users

    return Report(
        capture=info,
        conversations=for_users("conversations", conversations.reset_index(drop=True)),
        certificates=for_users("certificates", certificates.reset_index(drop=True)),
        findings=for_users("findings", findings.reset_index(drop=True)),
        events=events.reset_index(drop=True),
        warnings=warnings,
    )


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
    from .core.user_tables import for_users
    from .core.user_tables import joined as stage_form

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


CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")
_GLOB_CHARS = set("*?[")


def is_many(capture: Any) -> bool:
    """A folder, a glob pattern or a list of captures (rather than one capture file)."""
    if isinstance(capture, list | tuple):
        return True
    text = os.fspath(capture)
    path = Path(text)
    if path.is_dir():
        return True
    return not path.exists() and bool(_GLOB_CHARS & set(text))


def capture_files(capture: Any) -> list[Path]:
    """The capture files a folder, glob or list names, sorted (a list keeps its order)."""
    import glob

    if isinstance(capture, list | tuple):
        files = [Path(c) for c in capture]
    else:
        text = os.fspath(capture)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file()
                           and p.name.lower().endswith(CAPTURE_SUFFIXES))
            if not files:
                raise CaptureError(f"folder {path} holds no capture files "
                                   f"({', '.join(CAPTURE_SUFFIXES)})")
        else:
            files = sorted(Path(p) for p in glob.glob(text, recursive=True)
                           if Path(p).is_file())
            if not files:
                raise CaptureError(f"no capture file matches {text}")
    return files


def analyze_many(capture: Any, options: AnalysisOptions | None = None, /,
                 **settings: Any) -> Report:
    """``analyze`` every capture of a folder/glob/list and merge the reports into one.

    Every table gains a ``capture`` column (the file each row comes from); stream and frame
    numbers stay those of that file, as Wireshark shows them.
    """
    options = AnalysisOptions.of(options, settings)
    reports = [(path, analyze(path, options)) for path in capture_files(capture)]

    def cat(name: str) -> pd.DataFrame:
        frames = []
        for path, rep in reports:
            df = getattr(rep, name).copy()
            df["capture"] = str(path)
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    infos = [rep.capture for _p, rep in reports]
    warnings = [f"{p.name}: {w}" for p, rep in reports for w in rep.warnings]
    firsts = [i["first_packet_time"] for i in infos if i.get("first_packet_time") is not None]
    lasts = [i["last_packet_time"] for i in infos if i.get("last_packet_time") is not None]
    info = dict(infos[0])
    info.update({
        "file": os.fspath(capture) if not isinstance(capture, list | tuple)
        else [str(p) for p, _r in reports],
        "files": [str(p) for p, _r in reports],
        "size_bytes": sum(i["size_bytes"] for i in infos),
        "packets_analysed": sum(i["packets_analysed"] for i in infos),
        "first_packet_time": min(firsts) if firsts else None,
        "last_packet_time": max(lasts) if lasts else None,
        "truncated_file": any(i["truncated_file"] for i in infos),
        "complete": all(i.get("complete", True) for i in infos),
        "keylog_matching": sum(i.get("keylog_matching", 0) for i in infos),
        "engine": ",".join(dict.fromkeys(i.get("engine", "") for i in infos)),
        "engine_note": "; ".join(f"{p.name}: {r.capture['engine_note']}" for p, r in reports
                                 if r.capture.get("engine_note")),
        "native_conversations": sum(i.get("native_conversations", 0) for i in infos),
        "native_demoted": sum_counts(i.get("native_demoted") or {} for i in infos),
        "conversations_in_capture": sum(i.get("conversations_in_capture", 0) for i in infos),
        "warnings": warnings,
        "captures": infos,
    })
    return Report(capture=info, conversations=cat("conversations"),
                  certificates=cat("certificates"), findings=cat("findings"),
                  events=cat("events"), warnings=warnings)
