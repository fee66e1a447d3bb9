"""Work over forked processes (``forking``): results in order, a worker's exception
raised in the caller, and a worker that is done exits while the caller still works (its
memory is not held to the end)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

import pytest

from pyshark_tools.forking import can_fork, map_forked

pytestmark = pytest.mark.skipif(not can_fork(), reason="the platform cannot fork")


def test_results_come_in_the_items_order() -> None:
    found = map_forked(lambda n: (n * n, os.getpid()), [1, 2, 3], 3)
    assert [square for square, _pid in found] == [1, 4, 9]
    assert found[0][1] == os.getpid()  # the first item here
    assert len({pid for _s, pid in found}) == 3
    assert map_forked(lambda n: n + 1, [1, 2, 3, 4, 5], 2) == [2, 3, 4, 5, 6]  # pooled


class Refused(Exception):
    pass


def _fails(n: int) -> int:
    if n == 2:
        raise Refused(f"item {n}")
    return n


def test_a_workers_exception_is_raised_in_the_caller() -> None:
    with pytest.raises(Refused, match="item 2"):
        map_forked(_fails, [1, 2, 3], 3)


def test_a_result_that_does_not_pickle_is_one_clear_error() -> None:
    with pytest.raises(RuntimeError, match="pickle"):
        map_forked(lambda n: n if n == 1 else (lambda: n), [1, 2], 2)


def test_a_large_result_arrives_whole() -> None:
    big = "x" * (40 << 20) + "end"  # far beyond what one read of a pipe or socket hands over
    assert map_forked(lambda n: big if n else "", [0, 1], 2) == ["", big]


def test_a_worker_that_is_done_has_exited_while_the_caller_still_works() -> None:
    def job(item: str) -> object:
        if item == "here":
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # until the quick worker is gone
                if not [c for c in _children() if _is_running(c)]:
                    return "worker gone"
                time.sleep(0.05)
            return "worker still there"
        return bytes(1 << 20)  # a result larger than a pipe holds

    result = map_forked(job, ["here", "quick"], 2)
    assert result[0] == "worker gone"
    assert len(result[1]) == 1 << 20


def _children() -> list[str]:
    """This process's child processes (Linux); a thread that ends while they are listed (the
    one that received a worker's result) is passed over."""
    found = []
    for thread in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{thread}/children") as handle:
                found += handle.read().split()
        except OSError:  # gone (ENOENT), or going (ESRCH)
            continue
    return found


def _is_running(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


_FRAGMENTED_HEAP = """
import sys
from pyshark_tools.forking import release_free_memory

def resident() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096

# 2 KiB blocks (glibc's heap, not Python's small-object arenas), one in ten kept: the freed
# ones lie between live ones, where no heap shrinking can reach them
blocks = [bytes(2048) for _ in range(100_000)]
kept = blocks[::10]
del blocks
before = resident()
release_free_memory()
print(before, resident(), len(kept))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux")
                    or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_free_memory_between_live_blocks_goes_back_to_the_system() -> None:
    done = subprocess.run([sys.executable, "-c", _FRAGMENTED_HEAP], capture_output=True,
                          text=True, timeout=60, check=True)
    before, after, _kept = map(int, done.stdout.split())
    # ~180 MB freed; most of it in whole pages between the kept blocks
    assert before - after > 100 * 2**20, (before, after)
