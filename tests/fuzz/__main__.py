"""``python -m tests.fuzz --count 5000``: a long fuzzing run (see tests/fuzz/run.py)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from .run import LONG_RUN_SEEDS, MUTANT_SECONDS, plan, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--count", type=int, default=300, help="mutants (default 300)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the plan (default 1)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants at once (default 2)")
    parser.add_argument("--keep", type=Path, default=Path("fuzz-failures"),
                        help="folder for failing mutants (default ./fuzz-failures)")
    parser.add_argument("--all-fixtures", action="store_true",
                        help="also mutate the large captures (mixed traffic, restarts)")
    parser.add_argument("--mutant-seconds", type=float, default=MUTANT_SECONDS,
                        help=f"wall-clock limit of one mutant, both engines and every "
                             f"renderer (default {MUTANT_SECONDS:.0f}): past it, a hang")
    parser.add_argument("--stop-after", type=float, metavar="MINUTES",
                        help="start no further mutant after this many minutes (the summary "
                             "covers those judged)")
    parser.add_argument("--quiet", action="store_true", help="no line per mutant")
    args = parser.parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):  # end as Ctrl-C does: children killed
        signal.signal(signum, lambda number, _frame: sys.exit(128 + number))
    fixtures = LONG_RUN_SEEDS  # the CI plan's fixtures and the classic pcap ones
    if args.all_fixtures:
        from ..helpers import FIXTURES

        fixtures = tuple(sorted({p.stem for p in FIXTURES.glob("*.pcap*")}))
    started = time.monotonic()
    summary = run(plan(args.count, args.seed, fixtures), jobs=args.jobs, keep=args.keep,
                  progress=not args.quiet, mutant_seconds=args.mutant_seconds,
                  stop_after=None if args.stop_after is None else args.stop_after * 60)
    print(summary.table())
    print(f"{len(summary.verdicts)} of {args.count} mutants (seed {args.seed}) in "
          f"{time.monotonic() - started:.0f} s, "
          f"{len(summary.failures())} failure(s)" +
          (f": kept in {args.keep}" if summary.failures() else ""))
    for verdict in summary.failures():
        print(f"- {verdict.outcome}: {verdict.mutant.name}: {verdict.detail.splitlines()[-1:]}")
    return 1 if summary.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
