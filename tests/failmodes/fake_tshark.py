#!/usr/bin/env python3
"""A misbehaving tshark for the supervision tests: the real tshark does the work, then this
wrapper misbehaves as FAKE_TSHARK_MODE says (hang, stall, flood stderr, garbage rows,
crash).

Only the supervision of the child is tested with it; extraction itself is the real tshark's.
"""

import os
import signal
import subprocess
import sys
import time

REAL = os.environ["REAL_TSHARK"]
MODE = os.environ.get("FAKE_TSHARK_MODE", "")

if "--version" in sys.argv or "-G" in sys.argv:
    os.execv(REAL, [REAL, *sys.argv[1:]])
if MODE == "flood":  # 20 MB on stderr before any row: a pipe not drained would block us
    chunk = "warning: something tshark says a lot\n" * 1000
    for _ in range(20_000_000 // len(chunk)):
        sys.stderr.write(chunk)
    sys.stderr.flush()
    os.execv(REAL, [REAL, *sys.argv[1:]])
done = subprocess.run([REAL, *sys.argv[1:]], capture_output=True, text=True, check=False)
rows = done.stdout.splitlines(keepends=True)
if MODE == "garbage":
    sys.stdout.write("this is not a row\n\tnor\tthis\n")
    for row in rows:
        sys.stdout.write(row)
        sys.stdout.write("zz\t" * 3 + "\n")
    sys.stdout.write("12\tnot-a-time\n")
    sys.exit(done.returncode)
if MODE == "hang":  # all rows, then never exit
    sys.stdout.writelines(rows)
    sys.stdout.flush()
    time.sleep(3600)
if MODE == "stall":  # half the rows, then never another byte nor an exit
    sys.stdout.writelines(rows[: len(rows) // 2])
    sys.stdout.flush()
    time.sleep(3600)
if MODE == "crash":  # half the rows, then die as a crashing tshark does
    sys.stdout.writelines(rows[: len(rows) // 2])
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGSEGV)
sys.stdout.writelines(rows)
sys.stderr.write(done.stderr)
sys.exit(done.returncode)
