"""pytest's hooks and fixtures for the suite: markers by what a test needs, the personal-Lua
skip, and a clean terminal environment. Shared helpers live in ``helpers.py``."""

from __future__ import annotations

import os
import shutil

import pytest

# Wireshark 4.2 and later run no personal Lua plugin for root. Tests marked personal_lua need
# smtptls.lua inside tshark/Wireshark: as root with such a version they cannot run, and are
# run as an unprivileged user instead (scripts/debian13-root.sh runs them so in CI).
PERSONAL_LUA_SKIP = ("this tshark runs no personal Lua plugin for root (Wireshark 4.2+): "
                     "run these as an unprivileged user (scripts/debian13-root.sh does)")


#: What a test needs, by its file: ``pytest -m "not slow and not gui and not browser"`` is the
#: quick run while developing; CI runs everything.
MARKERS = {
    "gui": ("the real Wireshark GUI under Xvfb", {"test_wireshark_gui.py"}),
    "browser": ("headless Chromium", {"test_html_layout.py", "test_html_report.py"}),
    "lua": ("Lua interpreters or the plugin inside tshark",
            {"test_wireshark_lua.py", "test_wireshark_lua_versions.py"}),
    "corpus": ("the peer corpus of other projects' captures beside the repository",
               {"test_corpus_analyzer.py", "test_corpus_certificates.py", "test_all_tls_words.py"}),
    "slow": ("minutes of work: fuzzing, real mail servers in Debian roots, probes",
             {"test_fuzz.py", "test_realstack.py", "test_serverlogs_realstack.py", "test_probe.py",
              "test_levers_identical.py", "test_wireshark_gui.py"}),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "personal_lua: needs smtptls.lua to run inside tshark for this user")
    for name, (needs, _files) in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: needs {needs}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name, (_needs, files) in MARKERS.items():
            if item.path.name in files:
                item.add_marker(getattr(pytest.mark, name))
    marked = [item for item in items if item.get_closest_marker("personal_lua")]
    if not marked or shutil.which("tshark") is None:
        return
    from pyshark_tools.wireshark.install import personal_lua_runs

    if personal_lua_runs():
        return
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=PERSONAL_LUA_SKIP))


@pytest.fixture(autouse=True)
def _no_inherited_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest's readline import can leave COLUMNS=80 in the environment; the command line
    honours COLUMNS, so CLI subprocesses must not inherit a width no test asked for."""
    for name in ("COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
        os.unsetenv(name)  # readline sets them in the C environment, beside os.environ

