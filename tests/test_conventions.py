"""Command-line conventions a newcomer expects: NO_COLOR, COLUMNS, '-' for stdin, wrapping
that keeps words whole, exit codes that mean what the help says, completion."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .helpers import FIXTURES, ROOT, TRUST, fixture_path, fixture_truth

SEED = fixture_path("tls12-client-cert-empty")
CLI = [sys.executable, "-m", "pyshark_tools.cli"]


def run(*args: object, env: dict[str, str] | None = None, stdin: bytes | None = None,
        tty_stdin: bool = False) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
    full.update(env or {})
    done = subprocess.run([*CLI, *map(str, args)], input=stdin, capture_output=True,
                          timeout=300, env=full, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode("utf-8", "replace"),
                                       done.stderr.decode("utf-8", "replace"))


def run_on_a_terminal(*args: object, env: dict[str, str]) -> str:
    """The CLI with stdout on a pseudo-terminal (as a user runs it), its output as text."""
    import pty

    full = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
    full.update(env)
    main, child = pty.openpty()
    proc = subprocess.Popen([*CLI, *map(str, args)], stdout=child, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=full)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(main)
    return b"".join(chunks).decode("utf-8", "replace")


def test_no_color_is_honoured_on_a_terminal_and_color_overrides_it():
    coloured = run_on_a_terminal(SEED, env={"COLUMNS": "120"})
    assert "\x1b[" in coloured  # colours on a terminal by default
    plain = run_on_a_terminal(SEED, env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert "\x1b[" not in plain and "EMPTY: no certificate sent" in plain
    forced = run(SEED, "--color", env={"NO_COLOR": "1"})
    assert "\x1b[" in forced.stdout  # an explicit --color wins


def test_columns_sets_the_width_without_a_terminal_and_words_stay_whole():
    for name in ("mixed-traffic", "ipv6"):
        done = run(fixture_path(name), "--trust-store", TRUST, env={"COLUMNS": "80"})
        assert done.returncode in (0, 1), done.stderr
        lines = done.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80
        words = set(done.stdout.split())
        for conv in fixture_truth(name)["conversations"]:
            ip = conv["client_ip"]
            client = f"[{ip}]:{conv['client_port']}" if ":" in ip else f"{ip}:{conv['client_port']}"
            assert client in words, client  # an address is never split
            if conv["server_host"]:
                assert conv["server_host"] in words or f"({conv['server_host']}," in words
    wide = run(fixture_path("mixed-traffic"), env={"COLUMNS": "160"})
    assert max(len(line) for line in wide.stdout.splitlines()) > 80


def test_wrapped_paragraphs_keep_their_indent():
    done = run(SEED, "--keylog", FIXTURES / "tls12-client-cert-empty.keys",
               env={"COLUMNS": "80"})
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  [ERROR] W6"))
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        block.append(line)
    assert len(block) >= 6  # explanation, evidence and fix, wrapped
    assert any(line.startswith("    Fix: ") for line in block)
    assert all(len(line) <= 80 for line in block)


def test_dash_reads_the_capture_from_stdin():
    data = SEED.read_bytes()
    piped = run("-", "--trust-store", TRUST, "--format", "json", stdin=data)
    direct = run(SEED, "--trust-store", TRUST, "--format", "json")
    assert piped.returncode == direct.returncode == 1, piped.stderr
    assert '"file": "-"' in piped.stdout
    strip = re.compile(r'^\s*"(file|size_bytes)": .*$', re.M)
    assert '"conversations"' in piped.stdout
    assert strip.sub("", piped.stdout).split('"conversations"')[1] == \
        strip.sub("", direct.stdout).split('"conversations"')[1]
    follow = run("follow", "-", "--stream", "0", stdin=data)
    assert "EMPTY - no certificate presented" in follow.stdout
    empty = run("-", stdin=b"")
    assert empty.returncode == 4 and "Traceback" not in empty.stderr
    mixed = run("-", SEED, stdin=data)
    assert mixed.returncode == 2 and "Traceback" not in mixed.stderr


def test_follow_exit_code_says_whether_the_conversation_has_a_problem():
    bad = run("follow", SEED, "--stream", "0")
    assert bad.returncode == 1, bad.stderr  # EMPTY verdict: W6 is an error
    good = run("follow", fixture_path("tls12-client-cert-ok"), "--stream", "0")
    assert good.returncode in (0, 1)
    help_text = run("follow", "--help").stdout
    assert "1  problems found" in help_text


def test_filters_that_match_nothing_say_so():
    done = run(fixture_path("mixed-traffic"), "--exo-only", "--stream", "13")
    assert "another port" not in done.stdout
    assert "No conversation matches --stream 13 --exo-only" in done.stdout
    total = len(fixture_truth("mixed-traffic")["conversations"])
    assert f"the capture holds {total} conversation(s)" in done.stdout


def test_shell_completion_works_as_documented():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = re.search(r"_TLS_SMTP_REPORT_COMPLETE=(\w+)_source tls-smtp-report", readme)
    assert documented, "README documents shell completion"
    env = {**os.environ, "_TLS_SMTP_REPORT_COMPLETE": "bash_source"}
    script = subprocess.run([str(Path(sys.executable).parent / "tls-smtp-report")],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert "complete -o nosort -F _tls_smtp_report_completion tls-smtp-report" in script.stdout
