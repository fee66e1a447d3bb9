"""The progress bar on a terminal: it keeps moving through every step until the output is
written (issue 12: a bar stuck at 100 % over a blank screen while the text was rendered)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyshark_tools.engine.progress import ByteProgress

CLI = [str(Path(sys.executable).parent / "tls-smtp-report")]
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def test_after_the_bytes_each_step_has_a_bar_of_unknown_length() -> None:
    out = io.StringIO()
    with ByteProgress("big.pcapng", enabled=True, delay=0, file=out) as bar:
        bar(10, 100)
        assert bar.shown and bar._progress.tasks[0].total == 100
        bar.phase("SMTP conversations")  # bytes not all read yet: still counted
        assert bar._progress.tasks[0].total == 100
        bar(100, 100)
        bar.phase("writing the text report")
        task = bar._progress.tasks[0]
        assert task.total is None and not task.finished  # pulses, its spinner turns
        assert "writing the text report" in task.description


def test_a_count_that_stopped_short_shows_no_stale_bytes_once_all_is_read() -> None:
    """The reader's last count may fall short of the total (its last chunk unreported): the
    steps after the reading still show a moving bar, not the old byte count."""
    out = io.StringIO()
    with ByteProgress("big.pcapng", enabled=True, delay=0, file=out) as bar:
        bar(90, 100)
        bar.phase("tshark over 2 shard(s)")
        assert bar._progress.tasks[0].total == 100  # not known to be read yet
        bar.phase("writing the text report", read_all=True)
        assert bar._progress.tasks[0].total is None


def _stderr_frames(args: list[str]) -> list[tuple[float, str]]:
    """(seconds, text) of every bar frame the CLI draws on a pseudo-terminal stderr."""
    import pty

    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS")}
    env.update(TERM="xterm", COLUMNS="120")
    main, child = pty.openpty()
    started = time.monotonic()
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=child,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(child)
    frames = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        when = time.monotonic() - started
        for part in re.split(rb"\r|\n|\x1b\[2K", data):
            text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", part).decode("utf-8", "replace")
            if text.strip():
                frames.append((when, text.strip()))
    assert proc.wait(timeout=600) in (0, 1)
    os.close(main)
    return frames


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory) -> Path:
    from benchmarks.generate import generate

    path = tmp_path_factory.mktemp("bar") / "big.pcapng"
    # large enough that the analysis outlasts the bar's one-second delay on a fast machine
    # (at 0.01 and 0.03 a warm run on Debian 13 finished before the bar appeared)
    generate(path, scale=0.15, seed=3, impair=0.005)
    return path


def test_the_bar_moves_while_the_text_is_rendered(big_capture: Path, tmp_path: Path) -> None:
    # --details: every conversation in full, the longest rendering there is
    frames = _stderr_frames([str(big_capture), "--details", "-o", str(tmp_path / "r.txt")])
    rendering = [text for _when, text in frames if "writing the text report" in text]
    assert rendering, [text for _w, text in frames][-5:]
    spinners = {text[0] for text in rendering if text[0] in SPINNER}
    clocks = [re.findall(r"(\d+):(\d\d):(\d\d)\s*$", text) for text in rendering]
    seconds = [int(h) * 3600 + int(m) * 60 + int(s) for found in clocks for h, m, s in found]
    # redrawn while rendering: the spinner turns and the run's clock goes on
    assert len(spinners) >= 2 or (seconds and seconds[-1] > seconds[0]), rendering[:3]
    assert seconds and seconds == sorted(seconds)
    assert not any(re.search(r"\d+/\d+\.\d MB", text) for text in rendering)  # no stale bytes
    assert (tmp_path / "r.txt").stat().st_size > 0
