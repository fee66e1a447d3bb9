"""The report's tables as Markdown, written from their declaration in ``core.schema``:
``docs/tables.md`` is this text (a test keeps the two equal; regenerate with
``python -m pyshark_tools.render.tables_doc > docs/tables.md``)."""

from __future__ import annotations

from ..core.schema import SCHEMA_VERSION, TABLES

INTRO = {
    "conversations": "One row per SMTP (or, with `--all-tls`, TLS) conversation: its TLS, its "
                     "client certificate verdict and the frames that show each fact.",
    "certificates": "One row per certificate in a Certificate handshake message, client's and "
                    "server's, with the trust check of each chain's leaf.",
    "findings": "One row per rule that fired on a conversation, with evidence frames and a fix.",
    "events": "The SMTP commands and replies, TLS handshake messages and alerts in wire order: "
              "what `follow` and the ladder show.",
    "log_sessions": "One row per session a mail server's log recorded (`--log`).",
    "log_findings": "Rules that fired on the log sessions.",
    "log_lines": "The log lines of the sessions joined to a conversation.",
}


def tables_markdown() -> str:
    out = [
        "# The report's tables",
        "",
        "Every table of a `Report` (`report.conversations` ...), of the JSON document (schema "
        f"version {SCHEMA_VERSION}) and of `--format csv --table NAME`, as `pyshark_tools/core/"
        "schema.py` declares it. Types are the pandas dtypes of the `Report`'s DataFrames: "
        "`list` columns hold Python lists (JSON arrays; CSV joins the items with the separator "
        "shown), `category` columns a closed vocabulary; `-`: as the log reader builds it.",
        "",
    ]
    for table, columns in TABLES.items():
        out += [f"## {table}", "", INTRO[table], "", "| column | type | meaning |",
                "|---|---|---|"]
        for column in columns:
            kind = column.dtype or "-"
            if column.sep is not None:
                kind = f"list (`{column.sep.strip() or 'space'}`)"
            meaning = column.meaning.replace("|", "\\|")
            out.append(f"| `{column.name}` | {kind} | {meaning} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    print(tables_markdown(), end="")
