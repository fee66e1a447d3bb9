"""Shared test helpers: where the capture fixtures live and which scenarios exist."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The committed capture fixtures (``python -m fixtures.build`` regenerates them).
FIXTURES = ROOT / "fixtures"


def fixture_scenarios(folder: Path = FIXTURES) -> list[str]:
    """Names of the scenarios that have a ground-truth JSON in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.json"))


def fixture_truth(name: str, folder: Path = FIXTURES) -> dict:
    """The ground truth (``fixtures/<name>.json``) of one scenario."""
    return json.loads((folder / f"{name}.json").read_text())


def fixture_path(name: str, folder: Path = FIXTURES) -> Path:
    """The capture file of one scenario."""
    return folder / f"{name}.pcapng"
