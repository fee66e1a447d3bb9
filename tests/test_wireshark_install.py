"""``tls-smtp-report wireshark install/uninstall/zip`` in a temporary HOME."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyshark_tools.wireshark import install as ws
from pyshark_tools.wireshark.commands import wireshark

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in ws.isolated_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return tmp_path


def test_parse_folders() -> None:
    text = (
        "Temp:                \t/tmp\n"
        "Personal configuration:\t/h/.config/wireshark\n"
        "Global configuration:\t/usr/share/wireshark\n"
        "Personal Lua Plugins:\t/h/.local/lib/wireshark/plugins\n"
        "Global Lua Plugins:\t/usr/lib/x86_64-linux-gnu/wireshark/plugins\n"
    )
    folders = ws.parse_folders(text)
    assert folders.profile_dir == Path("/h/.config/wireshark/profiles/SMTP-TLS-Certs")
    assert folders.plugin_path == Path("/h/.local/lib/wireshark/plugins/smtptls.lua")
    with pytest.raises(ws.WiresharkInstallError):
        ws.parse_folders("Temp: /tmp\n")


@needs_tshark
def test_folders_follow_home_and_config_dir(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folders = ws.wireshark_folders()
    assert folders.personal_config == home / "wireshark-config"
    assert folders.personal_lua_plugins.is_relative_to(home)
    monkeypatch.delenv("WIRESHARK_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    assert ws.wireshark_folders().personal_config == home / "xdg" / "wireshark"


@needs_tshark
def test_install_uninstall_cycle(home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(wireshark, ["install"])
    assert first.exit_code == 0, first.output
    folders = ws.wireshark_folders()
    installed = [dest for _, dest in ws.planned_files(folders)]
    for dest in installed:
        assert dest.is_file()
        assert f"wrote      {dest}" in first.output  # says exactly what it wrote
    assert first.output.count("wrote") == len(ws.PROFILE_FILES) + 1
    for src, dest in ws.planned_files(folders):
        assert dest.read_bytes() == src.read_bytes()

    again = runner.invoke(wireshark, ["install"])
    assert again.exit_code == 0 and "wrote" not in again.output
    assert again.output.count("unchanged") == len(installed)

    # A file the user changed: refused without --force, nothing written at all.
    colorfilters = folders.profile_dir / "colorfilters"
    colorfilters.write_text("@mine@tcp@[0,0,0][65535,65535,65535]\n")
    (folders.profile_dir / "dfilters").unlink()
    refused = runner.invoke(wireshark, ["install"])
    assert refused.exit_code == 2  # a usage error (--force), not "problems found"
    assert "--force" in refused.output and str(colorfilters) in refused.output
    assert not (folders.profile_dir / "dfilters").exists()
    assert colorfilters.read_text().startswith("@mine@")

    forced = runner.invoke(wireshark, ["install", "--force"])
    assert forced.exit_code == 0, forced.output
    backup = folders.profile_dir / "colorfilters.bak"
    assert backup.read_text().startswith("@mine@")
    assert f"backup     {backup}" in forced.output
    assert colorfilters.read_bytes() == (ws.profile_source() / "colorfilters").read_bytes()

    # Uninstall removes only identical files; a changed plugin stays.
    folders.plugin_path.write_text("-- my own edits\n")
    removed = runner.invoke(wireshark, ["uninstall"])
    assert removed.exit_code == 0, removed.output
    assert folders.plugin_path.exists() and "kept" in removed.output
    for name in ws.PROFILE_FILES:
        assert not (folders.profile_dir / name).exists()
    assert backup.exists()  # the user's backup is theirs
    assert folders.profile_dir.is_dir()


@needs_tshark
def test_uninstall_removes_empty_profile_folder(home: Path) -> None:
    ws.install()
    folders = ws.wireshark_folders()
    actions = ws.uninstall()
    assert not folders.profile_dir.exists()
    assert not folders.plugin_path.exists()
    assert [a.verb for a in actions].count("removed") == len(ws.PROFILE_FILES) + 2


def test_zip_for_profile_import(tmp_path: Path) -> None:
    out = tmp_path / "SMTP-TLS-Certs.zip"
    result = CliRunner().invoke(wireshark, ["zip", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
        tops = {n.split("/")[0] for n in names if "/" in n}
        assert tops == {ws.PROFILE_NAME}
        for name in ws.PROFILE_FILES:
            data = zf.read(f"{ws.PROFILE_NAME}/{name}")
            assert data == (ws.profile_source() / name).read_bytes()
        assert zf.read(ws.PLUGIN_NAME) == ws.plugin_source().read_bytes()
        readme = zf.read("README-plugin.txt").decode()
        assert "Personal Lua Plugins" in readme and "Import" in readme
    again = tmp_path / "again.zip"
    ws.build_zip(again)
    assert again.read_bytes() == out.read_bytes()  # reproducible


def test_missing_tshark_is_one_clear_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TSHARK", str(home / "no-such-tshark"))
    for command in (["install"], ["uninstall"]):
        result = CliRunner().invoke(wireshark, command)
        assert result.exit_code == 3  # the documented code for a missing tshark
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: tshark was not found")
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_root_is_told_that_newer_wireshark_loads_no_personal_plugin() -> None:
    note = ws.root_plugin_note(euid=0)
    assert note is not None
    assert "4.2 and later" in note and "no personal Lua plugin for root" in note
    assert "wireshark' group" in note  # what to do instead
    assert ws.root_plugin_note(euid=1000) is None


@needs_tshark
def test_install_as_root_warns_and_as_a_user_does_not(home: Path) -> None:
    """CI runs as root (the warning must show), developers as themselves (it must not)."""
    import os

    result = CliRunner().invoke(wireshark, ["install"])
    assert result.exit_code == 0, result.output
    warned = "no personal Lua plugin for root" in result.output
    assert warned == (os.geteuid() == 0)
