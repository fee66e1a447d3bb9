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
    the current step (``reading``, ``tshark``) in the bar's description; once the bytes are
    read, every later step (tshark, the analysis, rendering) shows a moving bar of unknown
    length, a spinner and the run's clock, so a long step never looks like a hung one.
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

    def phase(self, name: str, *, read_all: bool = False) -> None:
        """Name the current step; the bar appears now if the run is already long.
        ``read_all``: the capture's bytes are all read by now (the last count the reader
        reported may have stopped short of the total): no stale byte count stays shown."""
        self._phase = name
        if read_all and self._total:
            self._done = self._total
        if self.enabled and self._progress is None and \
                time.monotonic() - self.started >= self.delay:
            self._start()
        if self._progress is not None:
            if self._total and self._done >= self._total:
                self._steps()
            self._progress.update(self._task, description=self._description())

    def _steps(self) -> None:
        """The bytes are read: from now on a bar of unknown length (it keeps moving)."""
        if self._progress is None or self._progress.tasks[0].total is None:
            return
        self._progress.remove_task(self._task)
        self._task = self._progress.add_task(self._description(), total=None)

    def _description(self) -> str:
        return f"{self.label}: {self._phase}"

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TransferSpeedColumn,
        )
        from rich.text import Text

        console = Console(file=self.file, force_terminal=True)
        started = self.started

        class RunClock(ProgressColumn):
            """Time since the run began (a step's own clock would restart at each step)."""

            def render(self, task: Any) -> Text:
                seconds = int(time.monotonic() - started)
                return Text(f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
                            style="progress.elapsed")

        class WhileReading(ProgressColumn):
            """A column shown only while bytes are counted."""

            def __init__(self, inner: ProgressColumn) -> None:
                super().__init__()
                self.inner = inner

            def render(self, task: Any) -> Any:
                return self.inner.render(task) if task.total is not None else Text("")

        self._progress = Progress(
            SpinnerColumn(finished_text="⠿"), TextColumn("{task.description}"), BarColumn(),
            WhileReading(DownloadColumn()), WhileReading(TransferSpeedColumn()), RunClock(),
            console=console, transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(self._description(), total=self._total or None,
                                             completed=self._done)
        if self._phase != "reading" and self._total and self._done >= self._total:
            self._steps()

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
