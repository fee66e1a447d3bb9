"""``wireshark install`` never follows a symbolic link out of the user's Wireshark folders,
and a home it cannot write to is one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyshark_tools.wireshark import install as ws
from pyshark_tools.wireshark.commands import wireshark


def _folders(root: Path) -> ws.Folders:
    return ws.Folders(personal_config=root / "config",
                      personal_lua_plugins=root / "plugins")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_dangling_symlink_at_the_plugin_path_is_refused(tmp_path: Path) -> None:
    folders = _folders(tmp_path / "home")
    folders.personal_lua_plugins.mkdir(parents=True)
    outside = tmp_path / "outside" / "written-by-installer.lua"
    outside.parent.mkdir()
    folders.plugin_path.symlink_to(outside)
    with pytest.raises(ws.WiresharkInstallError, match="symbolic link"):
        ws.install(folders=folders)
    with pytest.raises(ws.WiresharkInstallError, match="symbolic link"):
        ws.install(folders=folders, force=True)
    assert not outside.exists()
    assert _files(tmp_path) == []  # nothing written anywhere, the profile neither


def test_a_symlinked_profile_folder_is_refused(tmp_path: Path) -> None:
    folders = _folders(tmp_path / "home")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folders.profile_dir.parent.mkdir(parents=True)
    folders.profile_dir.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ws.WiresharkInstallError, match="symbolic link"):
        ws.install(folders=folders, force=True)
    with pytest.raises(ws.WiresharkInstallError, match="symbolic link"):
        ws.uninstall(folders=folders)
    assert list(elsewhere.iterdir()) == []


def test_a_symlinked_profiles_folder_is_refused(tmp_path: Path) -> None:
    folders = _folders(tmp_path / "home")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folders.personal_config.mkdir(parents=True)
    (folders.personal_config / "profiles").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ws.WiresharkInstallError, match="symbolic link"):
        ws.install(folders=folders)
    assert list(elsewhere.iterdir()) == []


def test_an_unwritable_home_is_one_error(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the folders should be")
    with pytest.raises(ws.WiresharkInstallError, match="cannot write"):
        ws.install(folders=_folders(blocker))
    with pytest.raises(ws.WiresharkInstallError, match="cannot write"):
        ws.install(folders=ws.Folders(Path("/proc/no-such/config"),
                                      Path("/proc/no-such/plugins")))


def test_the_command_refuses_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    for key, value in ws.isolated_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    folders = ws.wireshark_folders()
    folders.personal_lua_plugins.mkdir(parents=True)
    folders.plugin_path.symlink_to(tmp_path / "nowhere.lua")
    result = CliRunner().invoke(wireshark, ["install", "--force"])
    assert result.exit_code not in (0, None)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "symbolic link" in lines[0], result.output
    assert not (tmp_path / "nowhere.lua").exists()
    assert os.path.islink(folders.plugin_path)  # left as it was
