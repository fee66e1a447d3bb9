"""The Wireshark side: the SMTP-TLS-Certs profile and the smtptls.lua plugin.

Installs them into the folders tshark reports for this user (``tshark -G folders``, which
honours ``HOME``, ``XDG_CONFIG_HOME`` and ``WIRESHARK_CONFIG_DIR``), removes them again,
builds the zip Wireshark's "Import from zip" takes, and runs tshark with the plugin to get
the Lua verdicts (``lua_verdicts``), the second, independent implementation of the
client-certificate verdict.

No click here: ``wireshark_cli`` turns these functions into commands.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyshark_tools.engine.tshark import AGGREGATOR, find_tshark
from pyshark_tools.errors import TsharkError

from ..errors import WiresharkInstallError, WouldOverwrite

PROFILE_NAME = "SMTP-TLS-Certs"
PLUGIN_NAME = "smtptls.lua"
#: Files of the profile, in ``dissectors/profiles/SMTP-TLS-Certs/``.
PROFILE_FILES: tuple[str, ...] = (
    "colorfilters",
    "dfilter_buttons",
    "dfilter_macros",  # Wireshark 4.0
    "dfilters",
    "dmacros",  # Wireshark 4.2 and later: the same macros
    "preferences",
)

PLUGIN_README = f"""\
{PROFILE_NAME}: Wireshark profile + Lua plugin for SMTP/TLS client certificates
=============================================================================

1. Import the profile: Edit > Configuration Profiles > Import > from zip file, pick this
   zip. (Or unpack the {PROFILE_NAME}/ folder into the "profiles" folder of your personal
   configuration folder; Help > About Wireshark > Folders shows where that is.)
2. Install the plugin: copy {PLUGIN_NAME} into your "Personal Lua Plugins" folder
   (Help > About Wireshark > Folders), then restart Wireshark (or Analyze > Reload Lua
   Plugins). Linux/macOS: ~/.local/lib/wireshark/plugins/ ;
   Windows: %APPDATA%\\Wireshark\\plugins\\ .
3. Switch to the profile (status bar, bottom right) and open the capture.

The coloring rules, buttons and columns that use smtptls.* fields need the plugin.
With tshark: tshark -C {PROFILE_NAME} -2 -R frame -r capture.pcapng
(-2 -R frame puts each conversation's verdict on all of its frames).
With the tls-smtp-report tool installed, `tls-smtp-report wireshark install` does 1 and 2.
Wireshark 4.2 and later load no personal Lua plugin for root: install and run Wireshark as
your own user (capture rights come from the "wireshark" group), not with sudo.
"""


def dissectors_dir() -> Path:
    """Where the profile and the plugin are shipped (``$TLS_SMTP_DISSECTORS`` overrides)."""
    override = os.environ.get("TLS_SMTP_DISSECTORS")
    if override:
        return Path(override)
    shipped = Path(__file__).resolve().parents[1] / "dissectors"  # installed from a wheel
    if (shipped / PLUGIN_NAME).is_file():
        return shipped
    return Path(__file__).resolve().parents[2] / "dissectors"  # a checkout


def plugin_source() -> Path:
    return dissectors_dir() / PLUGIN_NAME


def profile_source() -> Path:
    return dissectors_dir() / "profiles" / PROFILE_NAME


def _check_sources() -> None:
    missing = [str(p) for p in _sources() if not p.is_file()]
    if missing:
        raise WiresharkInstallError(
            "the Wireshark profile/plugin files are missing: " + ", ".join(missing)
        )


def _sources() -> list[Path]:
    return [profile_source() / name for name in PROFILE_FILES] + [plugin_source()]


@dataclass(frozen=True)
class Folders:
    personal_config: Path
    personal_lua_plugins: Path

    @property
    def profile_dir(self) -> Path:
        return self.personal_config / "profiles" / PROFILE_NAME

    @property
    def plugin_path(self) -> Path:
        return self.personal_lua_plugins / PLUGIN_NAME


def parse_folders(text: str) -> Folders:
    """Read ``tshark -G folders`` output."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            found[key.strip().lower()] = value.strip()
    try:
        return Folders(
            personal_config=Path(found["personal configuration"]),
            personal_lua_plugins=Path(found["personal lua plugins"]),
        )
    except KeyError as exc:
        raise WiresharkInstallError(
            f"'tshark -G folders' did not name the {exc.args[0]} folder"
        ) from exc


def wireshark_folders(tshark: str | None = None, env: Mapping[str, str] | None = None) -> Folders:
    """The personal configuration and Lua plugin folders tshark uses for this user."""
    exe = find_tshark(tshark).path
    done = subprocess.run(
        [exe, "-G", "folders"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(env) if env is not None else None,
    )
    if done.returncode != 0:
        raise TsharkError(f"'tshark -G folders' failed: {done.stderr.strip()[:300]}")
    return parse_folders(done.stdout)


@dataclass(frozen=True)
class Action:
    """One thing the installer did (or would not do) to one file."""

    verb: str  # wrote, unchanged, backup, removed, kept, missing, removed-dir
    path: Path
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.verb:10s} {self.path}" + (f"  ({self.detail})" if self.detail else "")


ROOT_PLUGIN_NOTE = (
    "You are running as root. Wireshark and tshark 4.2 and later (4.4, 4.6) load no "
    "personal Lua plugin for root: as root, {plugin} does nothing there and the profile's "
    "smtptls.* columns, coloring rules and buttons fail ('... is not a valid protocol or "
    "protocol field'); 4.0 still loaded it. Install as the user who runs Wireshark "
    "(without sudo), and capture without root: add that user to the 'wireshark' group "
    "(Debian: dpkg-reconfigure wireshark-common, then usermod -aG wireshark USER) or "
    "capture with tcpdump and open the file as that user."
)


def root_plugin_note(euid: int | None = None) -> str | None:
    """What a root user must know about personal Lua plugins, or None for other users.

    Said whatever tshark version is found here: the Wireshark that will open the
    captures may be newer than this tshark.
    """
    if euid is None:
        euid = os.geteuid() if hasattr(os, "geteuid") else -1
    return ROOT_PLUGIN_NOTE.format(plugin=PLUGIN_NAME) if euid == 0 else None


_PROBE_MARK = "smtptls-lua-probe-ran"
_EMPTY_PCAP = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")


def personal_lua_runs(tshark: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Whether this tshark runs a personal Lua script for the current user: tshark 4.2+
    runs none for root (a one-line ``print`` prints nothing), 4.0 did."""
    exe = find_tshark(tshark).path
    with tempfile.TemporaryDirectory(prefix="smtptls-probe-") as tmp:
        script, capture = Path(tmp) / "probe.lua", Path(tmp) / "empty.pcap"
        script.write_text(f'print("{_PROBE_MARK}")\n')
        capture.write_bytes(_EMPTY_PCAP)
        done = subprocess.run([exe, "-n", "-X", f"lua_script:{script}", "-r", str(capture)],
                              capture_output=True, text=True, timeout=120, check=False,
                              env=dict(env) if env is not None else isolated_env(Path(tmp)))
    return _PROBE_MARK in done.stdout


def planned_files(folders: Folders) -> list[tuple[Path, Path]]:
    """(shipped file, installed path) for the profile files and the plugin."""
    pairs = [(profile_source() / n, folders.profile_dir / n) for n in PROFILE_FILES]
    pairs.append((plugin_source(), folders.plugin_path))
    return pairs


def _symlink_below(base: Path, dest: Path) -> Path | None:
    """The first symbolic link on the way from ``base`` (exclusive) down to ``dest``
    (inclusive), dangling or not; None when there is none."""
    try:
        parts = dest.relative_to(base).parts
    except ValueError:
        return dest if dest.is_symlink() else None
    current = base
    for part in parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def check_no_symlinks(folders: Folders) -> None:
    """Refuse (one line) when anything the installer would write or remove below the
    user's Wireshark folders is a symbolic link: writing through it would change files
    outside those folders."""
    for _src, dest in planned_files(folders):
        base = (folders.personal_lua_plugins if dest == folders.plugin_path
                else folders.personal_config)
        link = _symlink_below(base, dest)
        if link is not None:
            raise WiresharkInstallError(
                f"refusing to write through the symbolic link {link} (to "
                f"{os.readlink(link)}): it leads out of the Wireshark folders; remove it "
                "and run the command again"
            )


def _write_new(dest: Path, data: bytes) -> None:
    """Create ``dest`` without following a link that appeared meanwhile."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(dest, flags, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _backup_path(dest: Path) -> Path:
    candidate = dest.with_name(dest.name + ".bak")
    n = 1
    while candidate.exists():
        candidate = dest.with_name(f"{dest.name}.bak{n}")
        n += 1
    return candidate


def install(
    force: bool = False, folders: Folders | None = None, tshark: str | None = None
) -> list[Action]:
    """Copy the profile and the plugin into the user's Wireshark folders.

    A file already there with other content is an error unless ``force``; then it is
    first renamed to ``<name>.bak`` (``.bak1``, ... if that exists). Nothing is written
    when the check fails.
    """
    _check_sources()
    folders = folders or wireshark_folders(tshark)
    check_no_symlinks(folders)
    pairs = planned_files(folders)
    changed = [
        dest for src, dest in pairs if dest.exists() and dest.read_bytes() != src.read_bytes()
    ]
    if changed and not force:
        raise WouldOverwrite(
            "these files exist and differ from the shipped ones (use --force to replace "
            "them; a .bak copy is kept): " + ", ".join(map(str, changed))
        )
    actions: list[Action] = []
    for src, dest in pairs:
        data = src.read_bytes()
        if dest.exists():
            if dest.read_bytes() == data:
                actions.append(Action("unchanged", dest))
                continue
            backup = _backup_path(dest)
            dest.replace(backup)
            actions.append(Action("backup", backup, f"previous {dest.name}"))
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _write_new(dest, data)
        except OSError as exc:
            raise WiresharkInstallError(
                f"cannot write {dest}: {exc.strerror or exc}") from None
        actions.append(Action("wrote", dest, f"{len(data)} bytes"))
    return actions


def uninstall(folders: Folders | None = None, tshark: str | None = None) -> list[Action]:
    """Remove the installed files that are identical to the shipped ones.

    Changed files (and .bak backups) stay; the profile folder goes only when empty.
    """
    _check_sources()
    folders = folders or wireshark_folders(tshark)
    check_no_symlinks(folders)
    actions: list[Action] = []
    for src, dest in planned_files(folders):
        if not dest.exists():
            actions.append(Action("missing", dest))
        elif dest.read_bytes() == src.read_bytes():
            dest.unlink()
            actions.append(Action("removed", dest))
        else:
            actions.append(Action("kept", dest, "changed since install"))
    profile_dir = folders.profile_dir
    if profile_dir.is_dir() and not any(profile_dir.iterdir()):
        profile_dir.rmdir()
        actions.append(Action("removed", profile_dir, "empty profile folder"))
    return actions


_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def build_zip(output: str | os.PathLike[str]) -> list[str]:
    """Write the zip for Wireshark's Configuration Profiles > Import > from zip file.

    Top folder = the profile's name; beside it the plugin and README-plugin.txt (Wireshark
    imports only folders, so the extra files do not disturb the import). Byte-for-byte
    reproducible. Returns the member names.
    """
    _check_sources()
    out = Path(output)
    members: list[tuple[str, bytes]] = [
        (f"{PROFILE_NAME}/{name}", (profile_source() / name).read_bytes()) for name in PROFILE_FILES
    ]
    members.append((PLUGIN_NAME, plugin_source().read_bytes()))
    members.append(("README-plugin.txt", PLUGIN_README.encode()))
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        directory = zipfile.ZipInfo(f"{PROFILE_NAME}/", date_time=_ZIP_TIME)
        directory.external_attr = (0o40755 << 16) | 0x10
        zf.writestr(directory, b"")
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return [f"{PROFILE_NAME}/"] + [name for name, _ in members]


# --------------------------------------------------------------------------------------
# Running tshark with the plugin (tests, and the Lua-vs-Python comparison)
# --------------------------------------------------------------------------------------


#: How ``-T fields`` prints a true boolean field: 4.0 prints ``1``, 4.2 and later ``True``.
TRUE_SPELLINGS = frozenset({"1", "True", "true", "TRUE"})


def field_is_true(value: str) -> bool:
    """A boolean field's ``-T fields`` text (either version's spelling) read as a bool.

    Several occurrences (joined by an aggregator) count as true when any is true.
    """
    return any(part.strip() in TRUE_SPELLINGS for part in re.split(r"[,|;\t]", value))


_ESCAPES = {"\\": "\\", "r": "\r", "n": "\n", "t": "\t"}


def unescape_field(text: str, version: Sequence[int]) -> str:
    """A string field's ``-T fields`` text as the field holds it. Both versions print CR,
    LF and TAB as ``\\r``, ``\\n``, ``\\t``; 4.2 and later also double a backslash (an
    RFC 4514 name's ``\\,`` comes out as ``\\\\,``), which 4.0 printed as it is."""
    if tuple(version[:2]) < (4, 2):
        return text.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")
    return re.sub(r"\\([\\rnt])", lambda m: _ESCAPES[m[1]], text)


def isolated_env(home: Path) -> dict[str, str]:
    """An environment whose Wireshark folders all live under ``home`` (no user prefs,
    no plugin installed by the user loaded twice)."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME",)}
    env["HOME"] = str(home)
    env["WIRESHARK_CONFIG_DIR"] = str(home / "wireshark-config")
    env.pop("XDG_DATA_HOME", None)
    return env


def tshark_with_plugin(
    capture: str | os.PathLike[str],
    fields: Sequence[str],
    *,
    keylog: str | os.PathLike[str] | None = None,
    two_pass: bool = True,
    extra_args: Sequence[str] = (),
    tshark: str | None = None,
) -> list[list[str]]:
    """Rows of ``-T fields`` output (one list per frame) with smtptls.lua loaded.

    Several occurrences of a field are joined with ``pyshark_tools.engine.tshark.AGGREGATOR``.

    ``two_pass`` runs ``-2 -R frame`` so each conversation's verdict is on all of its
    frames. Runs in a throw-away HOME / WIRESHARK_CONFIG_DIR.
    """
    exe = find_tshark(tshark).path
    args = [exe, "-n"]
    if two_pass:
        args += ["-2", "-R", "frame"]
    args += ["-X", f"lua_script:{plugin_source()}", "-r", os.fspath(capture)]
    if keylog:
        args += ["-o", f"tls.keylog_file:{os.fspath(keylog)}"]
    args += list(extra_args)
    args += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"]
    args += ["-E", f"aggregator={AGGREGATOR}"]
    for f in fields:
        args += ["-e", f]
    with tempfile.TemporaryDirectory(prefix="smtptls-home-") as home:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env=isolated_env(Path(home)),
        )
    damaged = re.search(r"cut short in the middle of a packet|appears to be damaged", done.stderr)
    if "Lua: Error" in done.stderr or (done.returncode != 0 and not damaged):
        raise TsharkError(f"tshark with {PLUGIN_NAME} failed: {done.stderr.strip()[:500]}")
    n = len(fields)
    return [(line.split("\t") + [""] * n)[:n] for line in done.stdout.splitlines()]


def lua_verdicts(
    capture: str | os.PathLike[str],
    keylog: str | os.PathLike[str] | None = None,
    *,
    tshark: str | None = None,
) -> dict[int, str]:
    """tcp.stream -> client-certificate verdict, as smtptls.lua decides it (two passes).

    Streams without SMTP or TLS have no verdict and are left out.
    """
    verdicts: dict[int, str] = {}
    rows = tshark_with_plugin(
        capture, ["tcp.stream", "smtptls.verdict"], keylog=keylog, tshark=tshark
    )
    for stream, verdict in rows:
        if not stream or not verdict:
            continue
        sid = int(stream)
        previous = verdicts.setdefault(sid, verdict)
        if previous != verdict:
            raise TsharkError(
                f"{PLUGIN_NAME} gave stream {sid} two verdicts: {previous} and {verdict}"
            )
    return verdicts
