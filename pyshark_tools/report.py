"""The data model: ``Report`` holds what ``pipeline.analyze`` found, as pandas tables.

A report is data only: its JSON document comes from ``json_cells``, its HTML from the
renderers (imported when a notebook asks), its conversations from the notebook's views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import pandas as pd

from .core.json_cells import jsonable, records
from .core.schema import EXIT_OK, EXIT_PROBLEMS, SCHEMA_VERSION, Severity

if TYPE_CHECKING:  # pragma: no cover
    from .notebook import ConversationView


class CaptureInfo(TypedDict, total=False):
    """``Report.capture`` (the JSON document's ``capture``): what was read, how, and with what."""

    file: str | list[str]  # the capture (a merged report: the paths or the pattern given)
    files: list[str]  # merged reports: every capture file
    captures: list[CaptureInfo]  # merged reports: each capture's own record
    size_bytes: int
    packets_analysed: int
    first_packet_time: datetime | None
    last_packet_time: datetime | None
    truncated_file: bool  # the file ends in the middle of a packet
    complete: bool  # False: tshark stopped before the end (time limit, crash)
    ports: list[int]
    all_tls: bool
    keylog: str | None
    keylog_entries: int
    keylog_matching: int  # key-log secrets that belong to this capture's ClientHellos
    trust_store: str
    expect_cert_name: str | None
    accepted_domains: list[str]
    tshark_version: str
    tool_version: str
    engine: str  # schema.Engine ("fast", "reference"; merged: comma separated)
    engine_note: str
    native_conversations: int
    native_demoted: dict[str, int]  # why the native reader handed conversations to tshark
    conversations_in_capture: int  # before --stream / --exo-only
    stream_filter: list[int] | None
    exo_only: bool
    warnings: list[str]
    server_logs: dict[str, Any]  # with --log: files, sessions, joined ...


@dataclass
class Report:
    """Everything ``analyze`` found. Tables are pandas DataFrames with stable columns."""

    capture: CaptureInfo
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
        from .notebook import ConversationView

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
            "conversations": records(self.conversations),
            "certificates": records(self.certificates),
            "findings": records(self.findings),
        }
        if len(self.log_sessions):
            doc["log_sessions"] = records(self.log_sessions)
            doc["log_findings"] = records(self.log_findings)
        return doc


