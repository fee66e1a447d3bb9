"""Work spread over forked processes that inherit their input instead of receiving it.

Sending large tables or packet indices to worker processes costs more than the work saves;
a forked worker already has them. Two rules make forking cheap here: the garbage collector is
frozen first (a worker's collector would otherwise touch, and so copy, every inherited page),
and the calling process does a share of the work itself rather than wait.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import pickle
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

__all__ = ["can_fork", "forked_pool", "map_forked", "release_free_memory"]

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


def release_free_memory() -> None:
    """Hand the C allocator's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). Memory Python frees stays with the process, scattered through its heap: a
    forked worker writing there copies those pages, and a tshark started later adds its own
    memory to it (the main process held ~300 MB during the last tsharks of the impaired
    benchmark, ~160 MB after a trim)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def _run(index: int) -> Any:
    function, items = _JOB
    return function(items[index])


def map_forked(function: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list:
    """``[function(item) for item in items]``: the first item here, the others in up to
    ``workers - 1`` forked workers, which inherit ``function`` and ``items`` (only the
    result travels). Everything here when the platform cannot fork. With a worker per item,
    each one exits as soon as its result is received (an idle worker would keep its memory
    to the end); a worker's exception is raised here."""
    if workers < 2 or len(items) < 2 or not can_fork():
        return [function(item) for item in items]
    if len(items) > workers:
        return _map_pooled(function, items, workers)
    context = multiprocessing.get_context("fork")
    results: list[Any] = [None] * len(items)
    processes, receivers = [], []
    release_free_memory()
    gc.freeze()
    try:
        for k in range(1, len(items)):
            mine, theirs = socket.socketpair()
            process = context.Process(target=_child, args=(function, items[k], theirs),
                                      name=f"tls-smtp-report worker {k}")
            process.start()
            theirs.close()
            processes.append(process)
            receivers.append(threading.Thread(target=_receive, args=(mine, results, k),
                                              daemon=True))
        # (started once every worker is forked: no thread runs while this process forks)
        # received by threads while this process does its own item: a worker's write
        # completes, and it exits, as soon as it is done
        for receiver in receivers:
            receiver.start()
        results[0] = (True, function(items[0]))
        for receiver in receivers:
            receiver.join()
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():  # this process failed or was interrupted
                process.terminate()
                process.join()
        gc.unfreeze()
    out = []
    for ok, value in results:
        if not ok:
            raise value
        out.append(value)
    return out


#: A result's length, ahead of its pickled bytes.
_LENGTH = struct.Struct("<Q")


def _child(function: Callable[[Any], Any], item: Any, send: socket.socket) -> None:
    try:
        outcome = (True, function(item))
    except BaseException as exc:  # raised again in the parent
        outcome = (False, exc)
    try:
        try:
            data = pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an exception (or result) that does not pickle: its text
            data = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        send.sendall(_LENGTH.pack(len(data)))
        send.sendall(data)
    finally:
        send.close()


def _receive(receive: socket.socket, results: list, k: int) -> None:
    """One worker's result. A pipe hands over 64 KiB a read, and each read waits for the
    interpreter lock the caller's own item holds (the 37 MB of a JSON table took 0.3 s):
    a socket read with ``MSG_WAITALL`` takes the whole result in one call, outside it."""
    try:
        length = _LENGTH.unpack(_read_exactly(receive, _LENGTH.size))[0]
        results[k] = pickle.loads(_read_exactly(receive, length))
    except (EOFError, OSError, pickle.UnpicklingError):
        results[k] = (False, RuntimeError(f"worker {k} ended without a result"))
    finally:
        receive.close()


def _read_exactly(receive: socket.socket, length: int) -> bytearray:
    buffer = bytearray(length)
    view = memoryview(buffer)
    got = 0
    while got < length:
        count = receive.recv_into(view[got:], length - got, socket.MSG_WAITALL)
        if not count:
            raise EOFError
        got += count
    return buffer


def _map_pooled(function: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list:
    """More items than workers: a pool of ``workers - 1`` forked workers and this process."""
    global _JOB
    _JOB = (function, items)
    try:
        with forked_pool(workers - 1) as pool:
            others = pool.map(_run, range(1, len(items)))
            return [function(items[0]), *others]
    finally:
        _JOB = None
