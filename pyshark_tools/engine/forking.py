"""Work spread over forked processes that inherit their input instead of receiving it.

Sending large tables or packet indices to worker processes costs more than the work saves;
a forked worker already has them. Two rules make forking cheap here: the garbage collector is
frozen first (a worker's collector would otherwise touch, and so copy, every inherited page),
and the calling process does a share of the work itself rather than wait.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

__all__ = ["can_fork", "forked_pool", "map_forked"]

_JOB: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


@contextmanager
def forked_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers are forked (where the platform forks) with the garbage
    collector frozen. (Not "spawn": it would re-run the caller's script in every worker when
    ``analyze`` is called from a script without a ``__main__`` guard.)"""
    context = multiprocessing.get_context("fork") if can_fork() else None
    gc.freeze()
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            yield pool
    finally:
        gc.unfreeze()


def _run(index: int) -> Any:
    function, items = _JOB
    return function(items[index])


def map_forked(function: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list:
    """``[function(item) for item in items]``: the first item here, the others in up to
    ``workers - 1`` forked workers, which inherit ``function`` and ``items`` (only an index
    and the result travel). Everything here when the platform cannot fork."""
    if workers < 2 or len(items) < 2 or not can_fork():
        return [function(item) for item in items]
    global _JOB
    _JOB = (function, items)
    try:
        with forked_pool(min(workers, len(items)) - 1) as pool:
            others = pool.map(_run, range(1, len(items)))
            return [function(items[0]), *others]
    finally:
        _JOB = None
