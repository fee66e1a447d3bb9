"""The performance benchmark: ``python -m benchmarks.run [--work DIR] [--scale 1.0] [--quick]``.

Back to back on the same machine, over the same generated capture (``benchmarks.generate``):

* the bare ``tshark -T fields -e frame.number`` pass and the bare pass with the analyzer's
  display filter and fields (``-T fields`` into /dev/null) -- the baseline;
* pyshark (``use_json=True``, its fastest mode) over a slice of the capture, and
  ``tls-smtp-report`` over the same slice;
* ``tls-smtp-report`` with each lever: the reference engine (``--no-prefilter``), the
  prefilter alone (``--jobs 1``), prefilter + shards on all cores (the default), and the
  shards on a Dask ``LocalCluster``;
* the default run over 4 capture sizes (the scaling curve);
* realistic captures (``--realistic-only`` runs just these): the same capture with 0.5 % of
  the SMTP sessions' packets retransmitted, duplicated, reordered or lost, written again as
  SLL2 (``tcpdump -i any``) and with VLAN tags -- each against its own bare pass in
  alternating pairs, with the engine that ran, the conversations the native reader read, and
  the reference engine's report to compare; pyshark's rate on the impaired capture; the text
  format against JSON; start-up (``--help``, the seed fixture).

Wall time, CPU time (user+sys of the process and everything it waited for) and peak RSS of
all processes together (sampled every 50 ms) go into ``benchmarks/RESULTS.md``; the reports
of every lever are compared (conversations, certificates, findings must be identical).
Benchmarks are not tests: this takes several minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from benchmarks.generate import generate
from pyshark_tools.engine.prefilter import HOLE_IN_HANDSHAKE, IRREGULAR
from pyshark_tools.engine.tshark import field_command, find_tshark
from pyshark_tools.engine.tshark_rows import FIELDS, decode_as_rules, display_filter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PORTS = (25, 587, 465)
SCALES = (0.125, 0.25, 0.5, 1.0)


@dataclass
class Run:
    name: str
    wall: float
    cpu: float
    peak_rss: int
    returncode: int
    peak_pss: int = 0

    def row(self, base: Run | None) -> str:
        ratio = f"{self.wall / base.wall:.2f}x" if base else ""
        mem = f"{self.peak_pss / base.peak_pss:.2f}x" if base else ""
        return (f"| {self.name} | {self.wall:.1f} | {self.cpu:.1f} | "
                f"{self.peak_rss / 2**20:,.0f} | {self.peak_pss / 2**20:,.0f} | {ratio} | "
                f"{mem} |")


def measure(name: str, cmd: list[str], *, stdout=subprocess.DEVNULL, env=None) -> Run:
    """Run ``cmd``; wall, CPU of it and its waited-for children, peak RSS of the tree."""
    peak = peak_pss = 0
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_pss
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            total = pss = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                with contextlib.suppress(psutil.Error, OSError, ValueError):
                    rss, proportional = _rss_pss(p.pid)
                    total += rss
                    pss += proportional
            peak = max(peak, total)
            peak_pss = max(peak_pss, pss)
            stop.wait(0.2)  # sampling costs CPU the measured run may need

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stderr = proc.stderr.read() if proc.stderr else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    stop.set()
    thread.join()
    if proc.returncode not in (0, 1):
        print(f"{name}: exit {proc.returncode}: {stderr.decode(errors='replace')[-500:]}",
              file=sys.stderr)
    return Run(name, wall, usage.ru_utime + usage.ru_stime, peak, proc.returncode, peak_pss)


#: The baseline and the default run are measured this many times (the machine is shared:
#: single runs vary by +-15 %); the table shows the run with the median wall time.
REPEATS = 3


def median_of(times: int, run: Callable[[], Run]) -> Run:
    results = sorted((run() for _ in range(times)), key=lambda r: r.wall)
    return results[len(results) // 2]


def _rss_pss(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process from /proc/PID/smaps_rollup: one small read, where
    psutil's memory_full_info parses the whole smaps (its CPU would slow the run measured)."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
        for line in handle:
            if line.startswith(b"Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith(b"Pss:"):
                pss = int(line.split()[1]) * 1024
    return rss, pss


def report_cmd(capture: Path, out: Path, *extra: str) -> list[str]:
    exe = shutil.which("tls-smtp-report", path=str(Path(sys.executable).parent))
    exe = exe or "tls-smtp-report"
    return [exe, str(capture), "--format", "json", "-o", str(out), "--quiet", *extra]


def same_report(a: Path, b: Path) -> bool:
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    return all(da[k] == db[k] for k in ("conversations", "certificates", "findings"))


def pyshark_slice(capture: Path) -> tuple[float, int]:
    code = (
        "import sys,time,pyshark\n"
        "t=time.monotonic(); n=0\n"
        "cap=pyshark.FileCapture(sys.argv[1], use_json=True, keep_packets=False)\n"
        "for p in cap: n+=1\n"
        "cap.close()\n"
        "print(n, time.monotonic()-t)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(capture)], capture_output=True,
                          text=True, check=True)
    n, secs = done.stdout.split()
    return float(secs), int(n)


def count_packets(capture: Path) -> int:
    from pyshark_tools.engine.prefilter import prefilter

    with tempfile.TemporaryDirectory() as tmp:
        return prefilter(capture, tmp, ports=PORTS, shards=1).packets_total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tls-smtp-report benchmark")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tsr-bench")
    parser.add_argument("--scale", type=float, default=1.0, help="size of the main capture")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--slice", type=int, default=20000, help="packets in the pyshark slice")
    parser.add_argument("--quick", action="store_true", help="skip the scaling curve and Dask")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--realistic-only", action="store_true",
                        help="only the realistic captures, text format and start-up rows "
                             "(replaces that section of the results)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.realistic_only:
        _write_realistic(args, realistic(args))
        return 0
    tshark = find_tshark()
    scales = sorted({*(s * args.scale for s in SCALES)}) if not args.quick else [args.scale]
    captures: dict[float, tuple[Path, dict]] = {}
    for scale in scales:
        path = args.work / f"bench-{scale:g}-{args.seed}.pcapng"
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            t = time.monotonic()
            meta = generate(path, scale=scale, seed=args.seed)
            meta["generate_s"] = round(time.monotonic() - t, 1)
            meta_path.write_text(json.dumps(meta))
        captures[scale] = (path, json.loads(meta_path.read_text()))
        print(f"capture {path}: {captures[scale][1]}", flush=True)
    main_path, meta = captures[args.scale]
    packets = meta["packets"]
    out = args.work / "out"
    out.mkdir(exist_ok=True)

    runs: list[Run] = []
    bare = measure("bare `tshark -T fields -e frame.number`",
                   [tshark.path, "-n", "-r", str(main_path), "-T", "fields", "-e",
                    "frame.number"])
    runs.append(bare)
    ref_cmd = field_command(tshark, main_path, FIELDS, display_filter=display_filter(PORTS, False),
                            decode_as=decode_as_rules(PORTS))
    baseline = median_of(REPEATS, lambda: measure(
        f"bare tshark, analyzer's filter and fields (baseline, median of {REPEATS})", ref_cmd))
    runs.append(baseline)
    print(runs[-2:], flush=True)

    default_name = ("tls-smtp-report (default: prefilter + native reader, tshark for the rest "
                    f"on all cores; median of {REPEATS})")
    levers = [
        ("tls-smtp-report --no-prefilter (reference engine)", ("--no-prefilter",)),
        ("tls-smtp-report --no-native (prefilter + tshark shards on all cores)",
         ("--no-native",)),
        ("tls-smtp-report --no-native --jobs 1 (prefilter + one tshark)",
         ("--no-native", "--jobs", "1")),
        ("tls-smtp-report --jobs 1 (prefilter + native reader, one process)", ("--jobs", "1")),
        (default_name, ()),
    ]
    outputs = []
    for name, extra in levers:
        target = out / f"{len(outputs)}.json"
        repeats = REPEATS if name == default_name else 1
        cmd = report_cmd(main_path, target, *extra)
        runs.append(median_of(repeats, lambda name=name, cmd=cmd: measure(name, cmd)))
        outputs.append((name, target))
        print(runs[-1], flush=True)
    extract_code = (
        "import sys\n"
        "from pyshark_tools.engine.parallel import fast_extract\n"
        "from pyshark_tools.engine.tshark import find_tshark\n"
        "fast_extract(find_tshark(), sys.argv[1], ports=(25, 587, 465))\n"
    )
    runs.append(measure("fast engine, extraction only (prefilter + native reader + tshark "
                        "for the rest + merge, no per-conversation tables)",
                        [sys.executable, "-c", extract_code, str(main_path)]))
    print(runs[-1], flush=True)
    dask_run = None
    if not args.quick:
        dask_target = out / "dask.json"
        dask_run = _dask_measure(main_path, dask_target)
        if dask_run:
            runs.append(dask_run)
            outputs.append((dask_run.name, dask_target))
            print(dask_run, flush=True)
    identical = all(same_report(outputs[0][1], t) for _n, t in outputs[1:])

    # pyshark vs tls-smtp-report on the same slice
    slice_path = args.work / f"slice-{args.slice}.pcapng"
    subprocess.run(["editcap", "-r", str(main_path), str(slice_path), f"1-{args.slice}"],
                   check=True)
    py_secs, py_n = pyshark_slice(slice_path)
    tsr_slice = measure("tls-smtp-report on the slice", report_cmd(slice_path,
                                                                    out / "slice.json"))

    curve = []
    for scale in scales if not args.quick else []:
        path, m = captures[scale]
        b = measure("bare", [*field_command(tshark, path, FIELDS,
                                            display_filter=display_filter(PORTS, False),
                                            decode_as=decode_as_rules(PORTS))])
        r = measure("report", report_cmd(path, out / f"curve-{scale:g}.json"))
        curve.append((m, b, r))
        print(scale, b, r, flush=True)

    default = next(r for r in runs if r.name == default_name)
    text = _markdown(meta, runs, baseline, default, identical, py_secs, py_n, tsr_slice,
                     args.slice, curve, packets, bare)
    index_s, walk_s = index_against_block_walk(main_path)
    text += (f"\nThe vectorised index (`scan.index_capture`, best of 3): {index_s:.2f} s; merely "
             f"walking the same capture's blocks with the per-packet reader: {walk_s:.2f} s.\n")
    args.out.write_text(text)
    _write_realistic(args, realistic(args))
    print(args.out.read_text())
    return 0


REALISTIC_MARK = "## Realistic captures"
#: The realistic variants: (label, generate() keywords).
VARIANTS = (
    ("impaired: 0.5 % of the SMTP sessions' packets retransmitted, duplicated, reordered or "
     "lost", {"impair": 0.005}),
    ("impaired, written as SLL2 (`tcpdump -i any`)", {"impair": 0.005, "link_layer": "sll2"}),
    ("impaired, with 802.1Q VLAN tags", {"impair": 0.005, "link_layer": "vlan"}),
)


def realistic(args: argparse.Namespace) -> str:
    """The realistic-capture, text-format and start-up rows, as a markdown section."""
    tshark = find_tshark()
    out = args.work / "out"
    out.mkdir(exist_ok=True)
    lines = [REALISTIC_MARK, "",
             f"Generated by `python -m benchmarks.run` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} (scale {args.scale:g}, "
             f"seed {args.seed}); each capture against its own bare analyzer pass, in "
             f"{REPEATS} alternating pairs (bare, report, bare, ...: a change in the machine's "
             "speed falls on both); medians, and the ratio's range over the pairs.", "",
             "| capture | packets | impairments | bare s | report s | ratio (range) | "
             "bare PSS MB | "
             "report PSS MB | engine | native / conversations | kept whole for tshark | "
             "same report as the reference |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    main_path = None
    for k, (label, kw) in enumerate(VARIANTS):
        name = "-".join(f"{v}" for v in kw.values())
        path = args.work / f"bench-{args.scale:g}-{args.seed}-{name}.pcapng"
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            meta_path.write_text(json.dumps(generate(path, scale=args.scale, seed=args.seed,
                                                     **kw)))
        meta = json.loads(meta_path.read_text())
        if main_path is None:
            main_path, main_run, main_packets = path, None, meta["packets"]
        target, ref_target = out / f"real-{k}.json", out / f"real-{k}-ref.json"
        bare, run, ratios = paired(
            field_command(tshark, path, FIELDS, display_filter=display_filter(PORTS, False),
                          decode_as=decode_as_rules(PORTS)),
            report_cmd(path, target))
        main_run = main_run or run
        measure("reference", report_cmd(path, ref_target, "--no-prefilter"))
        rep = json.loads(target.read_text())
        cap = rep["capture"]
        whole = sum(cap.get("native_demoted", {}).get(why, 0) for why in
                    (IRREGULAR, HOLE_IN_HANDSHAKE))
        imps = ", ".join(f"{n} {kind}" for kind, n in sorted(meta["impairments"].items()))
        lines.append(
            f"| {label} | {meta['packets']:,} | {imps} | {bare.wall:.1f} | {run.wall:.1f} | "
            f"{ratios[len(ratios) // 2]:.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) | "
            f"{bare.peak_pss / 2**20:,.0f} | "
            f"{run.peak_pss / 2**20:,.0f} | {cap['engine']} | "
            f"{cap.get('native_conversations', 0):,} / {len(rep['conversations']):,} | "
            f"{whole:,} | {'yes' if same_report(target, ref_target) else 'NO'} |")
        print(lines[-1], flush=True)
    lines += ["", pyshark_row(args, main_path, main_packets / main_run.wall), "",
              *text_rows(main_path, out), "", *startup_rows(), ""]
    return "\n".join(lines) + "\n"


def pyshark_row(args: argparse.Namespace, capture: Path, rate: float) -> str:
    """pyshark's rate on the first packets of the impaired capture against the report's rate
    over all of it (pyshark over the whole capture would take more than an hour)."""
    slice_path = args.work / f"slice-impaired-{args.slice}.pcapng"
    subprocess.run(["editcap", "-r", str(capture), str(slice_path), f"1-{args.slice}"],
                   check=True, capture_output=True)
    py_secs, py_n = pyshark_slice(slice_path)
    return (f"pyshark on the impaired capture's first {py_n:,} packets (`use_json=True`): "
            f"{py_n / py_secs:,.0f} packets/s; tls-smtp-report over the whole impaired capture "
            f"(median run above): {rate:,.0f} packets/s, **{rate / (py_n / py_secs):.0f}x** "
            "pyshark's rate (goal 50x).")


def paired(bare_cmd: list[str], report: list[str]) -> tuple[Run, Run, list[float]]:
    """The bare pass and the report run in alternating pairs: (median bare run, median
    report run, each pair's wall ratio, sorted). A machine whose speed drifts between two
    runs (other tenants, clocks) moves a single pair's ratio; the median of pairs holds."""
    bares, reports = [], []
    for _ in range(REPEATS):
        bares.append(measure("bare", bare_cmd))
        reports.append(measure("report", report))
    ratios = sorted(r.wall / b.wall for b, r in zip(bares, reports, strict=True))

    def middle(runs: list[Run]) -> Run:
        by_wall = sorted(runs, key=lambda r: r.wall)[len(runs) // 2]
        by_pss = sorted(r.peak_pss for r in runs)[len(runs) // 2]
        return replace(by_wall, peak_pss=by_pss)

    return middle(bares), middle(reports), ratios


def text_rows(capture: Path, out: Path) -> list[str]:
    """The default text report against the JSON report of the same capture: the runs
    alternate (JSON, text, JSON, ...) so that a change in the machine's load falls on both,
    and CPU seconds (all processes) are shown beside wall seconds."""
    exe = report_cmd(capture, out / "fmt.json")[0]
    runs: dict[str, list[Run]] = {"json": [], "text": []}
    for _ in range(REPEATS):
        runs["json"].append(measure("json", report_cmd(capture, out / "fmt.json")))
        runs["text"].append(measure(
            "text", [exe, str(capture), "-o", str(out / "fmt.txt"), "--quiet"]))
    as_json, as_text = (sorted(runs[k], key=lambda r: r.wall)[REPEATS // 2]
                        for k in ("json", "text"))
    cpu_json, cpu_text = (sorted(r.cpu for r in runs[k])[REPEATS // 2] for k in ("json", "text"))
    grouped = (out / "fmt.txt").read_text()
    return ["| output (impaired capture; medians of alternating runs) | wall s | / JSON | "
            "CPU s | / JSON | lines written |",
            "|---|---:|---:|---:|---:|---:|",
            f"| `--format json` | {as_json.wall:.1f} | 1.00x | {cpu_json:.1f} | 1.00x | |",
            f"| text (default; findings grouped by rule) | {as_text.wall:.1f} | "
            f"{as_text.wall / as_json.wall:.2f}x | {cpu_text:.1f} | {cpu_text / cpu_json:.2f}x | "
            f"{grouped.count(chr(10)):,} |"]


def startup_rows() -> list[str]:
    """``--help`` and the seed fixture's full report, median of 5 each, with the package's
    bytecode compiled first (as an installed package has it: PYTHONDONTWRITEBYTECODE would
    otherwise make every run compile the sources again, ~0.2 s)."""
    import compileall

    compileall.compile_dir(ROOT / "pyshark_tools", quiet=1)
    exe = report_cmd(Path("x"), Path("y"))[0]
    seed = ROOT / "fixtures" / "tls12-client-cert-empty.pcapng"
    keys = ROOT / "fixtures" / "tls12-client-cert-empty.keys"
    helped = median_of(5, lambda: measure("help", [exe, "--help"]))
    seeded = median_of(5, lambda: measure("seed", [exe, str(seed), "--keylog", str(keys),
                                                   "--quiet"]))
    return ["| start-up | wall s | goal |", "|---|---:|---:|",
            f"| `tls-smtp-report --help` | {helped.wall:.2f} | 0.3 |",
            f"| the seed fixture's full report (text, with its key log) | {seeded.wall:.2f} | "
            "1.0 |"]


def _write_realistic(args: argparse.Namespace, section: str) -> None:
    """Replace (or add) the realistic section at the end of the results file."""
    text = args.out.read_text() if args.out.exists() else "# Benchmark results\n\n"
    head = text.split(REALISTIC_MARK)[0].rstrip("\n") + "\n\n"
    args.out.write_text(head + section)


def index_against_block_walk(capture: Path) -> tuple[float, float]:
    """Seconds (best of 3) of the vectorised index and of a bare walk over the blocks."""
    import mmap

    from pyshark_tools.engine.prefilter import _packets
    from pyshark_tools.engine.scan import index_capture

    def walk() -> None:
        with capture.open("rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                      access=mmap.ACCESS_READ) as mm:
            for _item in _packets(mm, len(mm)):
                pass

    def best(run: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    return best(lambda: index_capture(capture, PORTS)), best(walk)


def _dask_measure(capture: Path, target: Path) -> Run | None:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return None
    code = (
        "import sys\n"
        "from dask.distributed import Client, LocalCluster\n"
        "from pyshark_tools import analyze\n"
        "import json, pathlib\n"
        "if __name__ == '__main__':\n"
        "    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,\n"
        "                      dashboard_address=None) as cluster, Client(cluster) as client:\n"
        "        rep = analyze(sys.argv[1], dask_client=client, progress=False)\n"
        "    pathlib.Path(sys.argv[2]).write_text(json.dumps(rep.to_dict(), default=str))\n"
    )
    script = target.with_name("run_dask_benchmark.py")
    script.write_text(code)
    return measure("tls-smtp-report shards on a Dask LocalCluster (2 workers, incl. start-up)",
                   [sys.executable, str(script), str(capture), str(target)])


def _markdown(meta, runs, baseline, default, identical, py_secs, py_n, tsr_slice, slice_n,
              curve, packets, bare) -> str:
    cpu = psutil.cpu_count()
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {cpu} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"{find_tshark().version_text and 'tshark ' + find_tshark().version_text}. "
        "Generated by `python -m benchmarks.run` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Capture: `benchmarks.generate --scale {meta['scale']:g} --seed {meta['seed']}`: "
        f"{meta['packets']:,} packets, {meta['bytes'] / 1e6:,.0f} MB, "
        f"{meta['smtp_sessions']:,} SMTP sessions (from {meta['templates']} fixture "
        f"conversations), {meta['bulk_flows']:,} bulk TCP flows, {meta['dns_lookups']:,} DNS "
        f"lookups; generated in {meta.get('generate_s', '?')} s.",
        "",
        "| run | wall s | CPU s | peak RSS MB (sum of all processes) | peak PSS MB (sum) | "
        "wall / baseline | PSS / baseline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(run.row(baseline))
    lines += [
        "",
        f"Reports of every lever identical (conversations, certificates, findings): "
        f"**{'yes' if identical else 'NO'}**.",
        "",
        f"Throughput: tls-smtp-report (default) {packets / default.wall:,.0f} packets/s over "
        f"the whole capture; the bare analyzer pass {packets / baseline.wall:,.0f} packets/s.",
        "",
        f"pyshark on the first {py_n:,} packets (`use_json=True`, its fastest mode): "
        f"{py_secs:.1f} s = {py_n / py_secs:,.0f} packets/s. tls-smtp-report on the same "
        f"slice: {tsr_slice.wall:.1f} s = {slice_n / tsr_slice.wall:,.0f} packets/s "
        f"({py_secs / tsr_slice.wall:.0f}x; start-up dominates a slice this small). Over the "
        f"whole capture tls-smtp-report runs {packets / default.wall / (py_n / py_secs):,.0f}x "
        f"pyshark's rate.",
        "",
        "Goals (issue 5): wall <= 0.25x the baseline: "
        f"**{default.wall / baseline.wall:.2f}x**; peak memory <= 0.5x: "
        f"**{default.peak_pss / baseline.peak_pss:.2f}x** (PSS: pages shared between processes "
        f"counted once; RSS sum {default.peak_rss / baseline.peak_rss:.2f}x); "
        "throughput >= 50x pyshark: "
        f"**{packets / default.wall / (py_n / py_secs):,.0f}x** (whole capture).",
        "",
    ]
    if curve:
        lines += [
            "## Scaling (default run against the bare analyzer pass, 4 sizes)",
            "",
            "| packets | MB | SMTP sessions | bare s | report s | ratio | bare PSS MB | "
            "report PSS MB | report µs/packet |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m, b, r in curve:
            lines.append(
                f"| {m['packets']:,} | {m['bytes'] / 1e6:,.0f} | {m['smtp_sessions']:,} | "
                f"{b.wall:.1f} | {r.wall:.1f} | {r.wall / b.wall:.2f}x | "
                f"{b.peak_pss / 2**20:,.0f} | {r.peak_pss / 2**20:,.0f} | "
                f"{r.wall / m['packets'] * 1e6:.1f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
