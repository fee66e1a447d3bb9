"""Reading the peer corpus (../shared/corpus): Zeek logs and which trace made which baseline."""

from __future__ import annotations

import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
ZEEK = CORPUS / "zeek"
ARKIME = CORPUS / "arkime"


def zeek_rows(log: Path) -> list[dict[str, str]]:
    """The rows of a Zeek TSV log, keyed by its #fields header."""
    fields: list[str] = []
    rows = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def baseline_traces() -> dict[str, list[Path]]:
    """Zeek baseline folder -> the traces it was made from that are present in the corpus.

    The corpus README's table lists them; folder names there carry the test's .zeek/.test
    suffix, the Baseline folders do not.
    """
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Which traces each Zeek baseline was made from", 1)[1]
    out: dict[str, list[Path]] = {}
    for folder, listed in re.findall(r"^\| ([\w.\-]+) \| ([^|]*) \|$", section, re.M):
        name = folder.rsplit(".", 1)[0]
        traces = [ZEEK / "Traces" / t.strip() for t in listed.split(",") if t.strip()]
        present = [t for t in traces if t.is_file()]
        if present and (ZEEK / "Baseline" / name).is_dir():
            out[name] = present
    return out
