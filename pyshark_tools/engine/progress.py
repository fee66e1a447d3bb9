"""A progress bar of bytes read, on a terminal, for runs that last more than a moment.

Silent when stderr is not a terminal or when the caller asks for quiet: reports piped into
files or other programs never carry control characters.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["ByteProgress"]


class ByteProgress:
    """Callable ``(bytes_done, bytes_total)``; shows a rich bar after ``delay`` seconds.

    Use as a context manager so the bar is removed (or completed) at the end. ``phase`` names
    the current step (``reading``, ``tshark``) in the bar's description.
    """

    def __init__(self, label: str, *, enabled: bool | None = None, delay: float = 1.0,
                 file: IO[str] | None = None) -> None:
        self.file = file or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.file, "isatty", lambda: False)())
        self.enabled = enabled
        self.label = label
        self.delay = delay
        self.started = time.monotonic()
        self._progress: Any = None
        self._task: Any = None
        self._done = 0
        self._total = 0
        self._phase = "reading"

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        self._done, self._total = done, total
        if self._progress is None:
            if time.monotonic() - self.started < self.delay:
                return
            self._start()
        self._progress.update(self._task, completed=done, total=total,
                              description=self._description())

    def phase(self, name: str) -> None:
        """Name the current step; the bar appears now if the run is already long."""
        self._phase = name
        if self.enabled and self._progress is None and \
                time.monotonic() - self.started >= self.delay:
            self._start()
        if self._progress is not None:
            self._progress.update(self._task, description=self._description())

    def _description(self) -> str:
        return f"{self.label}: {self._phase}"

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        console = Console(file=self.file, force_terminal=True)
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(self._description(), total=self._total or None,
                                             completed=self._done)

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
