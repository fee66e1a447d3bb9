"""Run mutants through both engines and judge them: no traceback, no hang, valid JSON, and
the fast engine's report identical to the reference engine's wherever it claims to read
the capture (it hands captures it cannot read exactly to the reference engine).

Each mutant runs in a forked child with a wall-clock limit (a hang is a failure, not a
stuck run); ``jobs`` children run at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import random
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..helpers import FIXTURES, fixture_path, fixture_truth, smtp_ports, usable_keylog
from .mutate import KINDS, mutate

#: Fixtures the mutants start from (the large mixed-traffic capture only in long runs).
#: (Not yet the restarted-connection fixture: adding a seed reshuffles the whole seeded plan;
#: its mutants are for a long run, ``python -m tests.fuzz``, which takes every fixture.)
SMALL_SEEDS = tuple(sorted(p.stem for p in FIXTURES.glob("*.pcapng")
                           if p.stat().st_size < 100_000
                           and p.stem != "tcp-port-reuse-restart"))
#: The classic pcap fixtures (Linux cooked SLL and SLL2, nanosecond time stamps): not in
#: the CI plan above (that would reshuffle it), in every long run and a CI test of their own.
LINK_LAYER_SEEDS = tuple(sorted(p.stem for p in FIXTURES.glob("*.pcap")
                                if p.stat().st_size < 100_000))
LONG_RUN_SEEDS = tuple(sorted(SMALL_SEEDS + LINK_LAYER_SEEDS))
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
#: Per-mutant wall-clock limit (both engines, every format); tshark's own limit is lower.
MUTANT_SECONDS = 120.0
TSHARK_SECONDS = 30.0
#: capture facts that must not depend on the engine (as in tests/test_levers_identical.py)
FAILURES = ("traceback", "hang", "invalid_json", "differs", "secret_leak")
FACTS = ("packets_analysed", "first_packet_time", "last_packet_time", "truncated_file",
         "complete", "warnings")


@dataclass(frozen=True)
class Mutant:
    index: int
    seed: int
    fixture: str
    kind: str
    keylog: bool

    @property
    def name(self) -> str:
        return f"{self.fixture}.{self.kind}.s{self.seed}.i{self.index}"

    @property
    def file_name(self) -> str:
        """The name its capture is kept under: the mutant's name, ``.keys`` when it was
        read with the fixture's key log, and the fixture's own suffix (pcapng or pcap)."""
        keys = ".keys" if self.keylog else ""
        return f"{self.name}{keys}{fixture_path(self.fixture).suffix}"

    def build(self) -> bytes:
        rng = random.Random(f"{self.seed}:{self.index}")
        data = fixture_path(self.fixture).read_bytes()
        return mutate(data, self.kind, rng)


def plan(count: int, seed: int, fixtures: tuple[str, ...] = SMALL_SEEDS) -> list[Mutant]:
    """``count`` mutants, the kinds in turn, fixtures and key-log use drawn from ``seed``."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    mutants = []
    for index in range(count):
        fixture = rng.choice(fixtures)
        keys = bool(usable_keylog(fixture_truth(fixture))) and rng.random() < 0.25
        mutants.append(Mutant(index, seed, fixture, kinds[index % len(kinds)], keys))
    return mutants


@dataclass
class Verdict:
    mutant: Mutant
    outcome: str  # ok, refused, traceback, hang, invalid_json, differs
    detail: str = ""
    fast_engine: str = ""
    seconds: float = 0.0


def _options(mutant: Mutant) -> dict[str, Any]:
    truth = fixture_truth(mutant.fixture)
    return {"ports": smtp_ports(truth), "trust_store": FIXTURES / truth["trust_store"],
            "expect_cert_name": truth.get("expect_cert_name"),
            "keylog": usable_keylog(truth) if mutant.keylog else None}


def _engine_run(path: Path, engine: str, options: dict[str, Any]) -> dict[str, Any]:
    """One engine over one mutant: the report as every renderer writes it, or the refusal."""
    from rich.console import Console

    from pyshark_tools import analyze
    from pyshark_tools.core.json_cells import records as _records
    from pyshark_tools.engine.tshark import find_tshark
    from pyshark_tools.errors import exit_code_for
    from pyshark_tools.render import data
    from pyshark_tools.render.text import render_text
    from pyshark_tools.sanitize import printable_report

    tshark = _TSHARK or find_tshark(time_limit=TSHARK_SECONDS)
    try:
        report = analyze(path, prefilter=engine == "fast", progress=False, tshark=tshark,
                         jobs=1, **options)
    except Exception as exc:
        if exit_code_for(exc) == 5:
            raise
        return {"refused": f"{type(exc).__name__} (exit {exit_code_for(exc)})"}
    text = data.to_json(report)
    doc = json.loads(text)  # valid JSON, or this raises
    console = Console(file=io.StringIO(), width=120, record=True)
    render_text(printable_report(report), console)
    outputs = [text, data.to_csv(report, "conversations"), data.to_csv(report, "events"),
               data.to_csv(report, "certificates"), console.export_text()]
    if options.get("keylog"):
        for secret in _secrets(options["keylog"]):
            if any(secret in output for output in outputs):
                raise SecretLeak("a key-log secret appears in the report")
    return {"engine": report.capture["engine"], "note": report.capture.get("engine_note", ""),
            "doc": {k: v for k, v in doc.items() if k != "capture"},
            "facts": {k: doc["capture"].get(k) for k in FACTS},
            "events": json.loads(json.dumps(_records(report.events), default=str))}


class SecretLeak(Exception):
    """Key material in an output: never allowed."""


def _secrets(keylog: str) -> set[str]:
    found = set()
    for line in Path(keylog).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            found.update({parts[2].lower(), parts[2].upper()})
    return found


def judge(mutant: Mutant, path: Path) -> Verdict:
    """Both engines over one mutant (in this process)."""
    options = _options(mutant)
    runs = {}
    for engine in ("reference", "fast"):
        try:
            runs[engine] = _engine_run(path, engine, options)
        except json.JSONDecodeError as exc:
            return Verdict(mutant, "invalid_json", f"{engine}: {exc}")
        except SecretLeak as exc:
            return Verdict(mutant, "secret_leak", f"{engine}: {exc}")
        except Exception:
            return Verdict(mutant, "traceback", f"{engine}:\n{traceback.format_exc()}")
    ref, fast = runs["reference"], runs["fast"]
    if "refused" in ref or "refused" in fast:
        if ref.get("refused") != fast.get("refused") and fast.get("engine") == "fast":
            return Verdict(mutant, "differs", f"reference {ref} / fast {fast.get('refused')}",
                           "fast")
        return Verdict(mutant, "refused", ref.get("refused", fast.get("refused", "")))
    if fast["engine"] != "fast":
        return Verdict(mutant, "ok", fast["note"], fast["engine"])
    for part in ("doc", "facts", "events"):
        if ref[part] != fast[part]:
            return Verdict(mutant, "differs", _difference(ref[part], fast[part], part), "fast")
    return Verdict(mutant, "ok", "", "fast")


def _difference(a: Any, b: Any, where: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _difference(a.get(key), b.get(key), f"{where}.{key}")
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return _difference(x, y, f"{where}[{i}]")
        if len(a) != len(b):
            return f"{where}: {len(a)} items (reference) vs {len(b)} (fast)"
    return f"{where}: reference {str(a)[:300]!r} vs fast {str(b)[:300]!r}"


def _child(mutant: Mutant, path: Path, conn) -> None:
    try:
        verdict = judge(mutant, path)
    except BaseException:  # whatever happens, the parent hears of it
        verdict = Verdict(mutant, "traceback", traceback.format_exc())
    conn.send(verdict)
    conn.close()


@dataclass
class Summary:
    verdicts: list[Verdict] = field(default_factory=list)

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.outcome in FAILURES]

    def table(self) -> str:
        """The outcomes by kind, as the long runs are recorded in docs/failure-modes.md."""
        heads = ("ok", "refused", *FAILURES)
        names = {"ok": "ok", "refused": "refused (one line)", "traceback": "tracebacks",
                 "hang": "hangs", "invalid_json": "invalid JSON", "differs": "differences",
                 "secret_leak": "secret leaks"}
        outcomes: dict[str, Counter] = {}
        for v in self.verdicts:
            outcomes.setdefault(v.mutant.kind, Counter())[v.outcome] += 1
            outcomes.setdefault("all", Counter())[v.outcome] += 1
            if v.fast_engine == "fast":
                outcomes[v.mutant.kind]["fast"] += 1
                outcomes["all"]["fast"] += 1
        lines = ["| kind | mutants | fast engine read it | "
                 + " | ".join(names[h] for h in heads)
                 + " |", "|---" * (len(heads) + 3) + "|"]
        for kind in [*KINDS, "all"]:
            got = outcomes.get(kind)
            if got:
                total = sum(got[h] for h in heads)
                lines.append(f"| {kind} | {total} | {got['fast']} | "
                             + " | ".join(str(got[h]) for h in heads) + " |")
        return "\n".join(lines)


_TSHARK = None


def _warm_up() -> None:
    """Import and find everything once: the forked children inherit it."""
    global _TSHARK
    import pyshark_tools.engine.parallel
    import pyshark_tools.engine.prefilter
    import pyshark_tools.render.data
    import pyshark_tools.render.text  # noqa: F401 - imported for the children
    from pyshark_tools.engine.tshark import find_tshark

    _TSHARK = find_tshark(time_limit=TSHARK_SECONDS)


def run(mutants: list[Mutant], jobs: int = 2, keep: Path | None = None,
        progress: bool = False, mutant_seconds: float = MUTANT_SECONDS,
        stop_after: float | None = None) -> Summary:
    """Judge every mutant in forked children, ``jobs`` at a time; failing mutants are
    written to ``keep`` (capture + what failed) when given. ``mutant_seconds`` is each
    mutant's wall-clock limit; after ``stop_after`` seconds no further mutant starts (a long
    run that must end by a given time still gets its summary)."""
    _warm_up()
    give_up = None if stop_after is None else time.monotonic() + stop_after
    context = multiprocessing.get_context("fork")
    summary = Summary()
    pending = list(mutants)
    running: dict[Any, tuple[Mutant, Any, Path, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tls-smtp-fuzz-") as tmp, \
            contextlib.ExitStack() as stack:
        # however the run ends (SIGTERM included, see __main__), no child outlives it
        stack.callback(lambda: [_kill_tree(proc.pid) for proc in list(running)])
        while pending or running:
            if give_up is not None and time.monotonic() > give_up:
                pending.clear()
            while pending and len(running) < jobs:
                mutant = pending.pop(0)
                path = Path(tmp) / mutant.file_name
                path.write_bytes(mutant.build())
                parent, child = context.Pipe(duplex=False)
                proc = context.Process(target=_child, args=(mutant, path, child))
                proc.start()
                child.close()
                running[proc] = (mutant, parent, path, time.monotonic())
            time.sleep(0.02)
            for proc, (mutant, conn, path, started) in list(running.items()):
                took = time.monotonic() - started
                verdict = None
                if conn.poll():
                    try:
                        verdict = conn.recv()
                    except EOFError:
                        verdict = Verdict(mutant, "traceback", "the child died without a word")
                elif not proc.is_alive():
                    verdict = Verdict(mutant, "traceback",
                                      f"the child died (exit code {proc.exitcode})")
                elif took > mutant_seconds:
                    _kill_tree(proc.pid)
                    verdict = Verdict(mutant, "hang", f"no verdict after {mutant_seconds:.0f} s")
                if verdict is None:
                    continue
                proc.join(5)
                verdict.seconds = took
                summary.verdicts.append(verdict)
                if keep is not None and verdict.outcome not in ("ok", "refused"):
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / path.name).write_bytes(path.read_bytes())  # its file_name
                    (keep / f"{mutant.name}.txt").write_text(
                        f"{verdict.outcome} (key log: {mutant.keylog})\n{verdict.detail}\n")
                path.unlink(missing_ok=True)
                del running[proc]
                if progress:
                    print(f"{len(summary.verdicts):5d}/{len(mutants)} {verdict.outcome:12s} "
                          f"{took:5.1f}s {mutant.name}", flush=True)
    return summary


def _kill_tree(pid: int) -> None:
    """Kill a hung child and everything it started (found through /proc)."""
    import signal

    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    stack, found = [pid], []
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    for victim in reversed(found):
        with contextlib.suppress(OSError):
            os.kill(victim, signal.SIGKILL)


def regression_captures() -> list[Path]:
    return sorted([*REGRESSIONS.glob("*.pcapng"), *REGRESSIONS.glob("*.pcap")])


def mutant_of_regression(path: Path) -> Mutant:
    """The committed regression capture's mutant description, from its file name
    (``Mutant.file_name``: no plan is needed, whichever fixtures the run drew from)."""
    stem = path.name.removesuffix(path.suffix)
    keylog = stem.endswith(".keys")
    fixture, kind, seed, index = stem.removesuffix(".keys").rsplit(".", 3)
    return Mutant(int(index[1:]), int(seed[1:]), fixture, kind, keylog=keylog)
