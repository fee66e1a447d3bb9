"""The SMTP-TLS-Certs profile: file formats, every filter compiles in tshark, and the
coloring rules land on the expected frames of every fixture.

Everything runs in a temporary HOME / WIRESHARK_CONFIG_DIR where the profile and the plugin
are installed with ``pyshark_tools.wireshark.install`` (the real ~/.config/wireshark is
never touched).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from pyshark_tools.core.schema import ClientCert
from pyshark_tools.wireshark.install import (
    PROFILE_FILES,
    PROFILE_NAME,
    field_is_true,
    install,
    isolated_env,
    profile_source,
    wireshark_folders,
)

from .helpers import FIXTURES, fixture_path, fixture_scenarios, fixture_truth

pytestmark = [
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
    pytest.mark.personal_lua,  # tshark 4.2+ runs the plugin only for a user other than root
]

SMALL = fixture_path("tls12-client-cert-empty")
SCENARIOS = fixture_scenarios()

# --------------------------------------------------------------------------------------
# Parsing the profile files
# --------------------------------------------------------------------------------------

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _unescape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m[1], 16)), text).replace("\\\\", "\\")


def _lines(name: str) -> list[str]:
    text = (profile_source() / name).read_text()
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def saved_filters() -> dict[str, str]:
    out = {}
    for line in _lines("dfilters"):
        m = re.fullmatch(r'"([^"]+)"\s+(.+)', line)
        assert m, f"bad dfilters line: {line}"
        out[m[1]] = m[2]
    return out


def new_macros() -> dict[str, str]:
    """The ``dmacros`` file of Wireshark 4.2+: ``"name" expression`` a line."""
    out = {}
    for line in _lines("dmacros"):
        name, sep, expr = line.partition(" ")
        assert sep and name.startswith('"') and name.endswith('"'), f"bad dmacros line: {line}"
        out[name.strip('"')] = expr.strip()
    return out


def test_dmacros_and_dfilter_macros_define_the_same_macros() -> None:
    """4.0 reads dfilter_macros, 4.2+ dmacros: a user must get the same macros on both."""
    assert new_macros() == macros()
    assert len(macros()) >= 5


def buttons() -> dict[str, str]:
    out = {}
    for line in _lines("dfilter_buttons"):
        parts = _QUOTED.findall(line)
        assert len(parts) == 4 and parts[0] == "TRUE", f"bad dfilter_buttons line: {line}"
        out[_unescape(parts[1])] = _unescape(parts[2])
    return out


def macros() -> dict[str, str]:
    out = {}
    for line in _lines("dfilter_macros"):
        parts = _QUOTED.findall(line)
        assert len(parts) == 2, f"bad dfilter_macros line: {line}"
        out[parts[0]] = _unescape(parts[1])
    return out


@dataclass(frozen=True)
class ColorRule:
    name: str
    filter: str
    bg: tuple[int, int, int]
    fg: tuple[int, int, int]


def color_rules() -> list[ColorRule]:
    rules = []
    for line in _lines("colorfilters"):
        m = re.fullmatch(r"@([^@]+)@(.+)@\[(\d+),(\d+),(\d+)\]\[(\d+),(\d+),(\d+)\]", line)
        assert m, f"bad colorfilters line: {line}"
        nums = tuple(int(x) for x in m.groups()[2:])
        assert all(0 <= n <= 65535 for n in nums)
        rules.append(ColorRule(m[1], m[2], nums[:3], nums[3:]))  # type: ignore[arg-type]
    return rules


#: A sample argument for every macro (a new macro needs one here).
MACRO_ARGS = {
    "conv": "0",
    "certs": "0",
    "verdict": "empty",
    "exo_host": "mail.protection.outlook.com",
    "port_smtp": "25",
}


def test_profile_files_are_plain_portable_text() -> None:
    folder = profile_source()
    assert sorted(p.name for p in folder.iterdir()) == sorted(PROFILE_FILES)
    for name in PROFILE_FILES:
        raw = (folder / name).read_bytes()
        assert b"\r" not in raw, f"{name}: CR line endings"
        assert raw.endswith(b"\n"), f"{name}: no final newline"
        raw.decode("ascii")  # plain ASCII: no encoding surprises on Windows
        text = raw.decode()
        for forbidden in ("capture.devices", "/home/", "/root", "C:\\", "keylog_file", "recent"):
            assert forbidden not in text, f"{name}: machine-specific '{forbidden}'"
    prefs = (folder / "preferences").read_text()
    assert re.findall(r"^([\w.]+):", prefs, re.M) == ["gui.column.format"]
    for field in (
        "tcp.stream",
        "smtp.response.code",
        "tls.handshake.type",
        "tls.handshake.certificates_length",
        "smtptls.leaf_subject",
        "smtptls.verdict",
    ):
        assert re.search(rf"%Cus:{re.escape(field)}:0:[RU]\b", prefs), field


def test_profile_parses_and_covers_the_investigation() -> None:
    labels = buttons()
    assert len(labels) >= 11
    joined = " ".join(labels.values())
    for needle in (
        "tcp.port in {25,587}",
        "mail.protection.outlook.com",
        "STARTTLS",
        "tls.handshake",
        "tls.handshake.type == 11",
        "tls.handshake.type == 13",
        "certificates_length == 0",
        "tls.alert_message",
        "smtp.response.code >= 400",
        "tcp.stream == ${tcp.stream}",
        "smtptls.problem",
    ):
        assert needle in joined, needle
    names = [r.name for r in color_rules()]
    assert len(set(names)) == len(names)
    # First match wins: the story's rules come before the generic ones.
    order = [
        "Empty client certificate",
        "Client certificate not requested",
        "Certificate expired at capture time",
        "TLS alert",
        "SMTP 5xx reply",
        "TLS 1.3 (certificates hidden)",
        "Client certificate presented",
        "Exchange Online banner",
        "CertificateRequest",
        "Server certificate",
        "TLS handshake",
        "SMTP",
    ]
    assert [n for n in names if n in order] == order
    assert set(macros()) == set(MACRO_ARGS)
    assert saved_filters()


# --------------------------------------------------------------------------------------
# tshark with the installed profile
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wireshark_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    env = isolated_env(home)
    folders = wireshark_folders(env=env)
    assert str(folders.personal_config).startswith(str(home))
    assert str(folders.personal_lua_plugins).startswith(str(home))
    install(folders=folders)
    return env


def _tshark(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tshark", "-n", "-C", PROFILE_NAME, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _compiles(env: dict[str, str], expr: str) -> str | None:
    done = _tshark(env, "-r", str(SMALL), "-c", "1", "-Y", expr)
    errors = [ln for ln in done.stderr.splitlines() if "Running as user" not in ln]
    if done.returncode != 0 or errors:
        return "\n".join(errors) or f"exit {done.returncode}"
    return None


def _all_filters() -> dict[str, str]:
    everything = {f"dfilters: {k}": v for k, v in saved_filters().items()}
    everything |= {f"button: {k}": v for k, v in buttons().items()}
    everything |= {f"coloring rule: {r.name}": r.filter for r in color_rules()}
    everything |= {f"macro: {k}": f"${{{k}:{MACRO_ARGS[k]}}}" for k in macros()}
    return everything


@pytest.mark.skipif(not SMALL.exists(), reason="fixture not generated yet")
def test_every_filter_button_macro_and_rule_compiles(wireshark_home: dict[str, str]) -> None:
    filters = _all_filters()
    assert len(filters) >= 45
    # Fast path: one tshark run with all of them; on failure find the culprits.
    combined = " || ".join(f"({expr})" for expr in filters.values())
    if _compiles(wireshark_home, combined) is None:
        return
    failures = {
        name: err
        for name, expr in filters.items()
        if (err := _compiles(wireshark_home, expr)) is not None
    }
    assert not failures, failures


@pytest.mark.skipif(not SMALL.exists(), reason="fixture not generated yet")
def test_a_broken_filter_is_detected(wireshark_home: dict[str, str]) -> None:
    assert _compiles(wireshark_home, "smtptls.no_such_field == 1") is not None
    assert _compiles(wireshark_home, "${no_such_macro:1}") is not None


@pytest.mark.skipif(not SMALL.exists(), reason="fixture not generated yet")
def test_coloring_rules_load_without_warnings(wireshark_home: dict[str, str]) -> None:
    done = _tshark(
        wireshark_home,
        "--color",
        "-r",
        str(SMALL),
        "-T",
        "fields",
        "-e",
        "frame.coloring_rule.name",
    )
    errors = [ln for ln in done.stderr.splitlines() if "Running as user" not in ln]
    assert done.returncode == 0 and not errors, errors
    names = {ln for ln in done.stdout.splitlines() if ln}
    assert names <= {r.name for r in color_rules()}


COLOR_FIELDS = (
    "frame.number",
    "tcp.stream",
    "smtptls.role",
    "tls.handshake.type",
    "smtptls.client_cert",
    "smtptls.expired",
    "smtptls.not_yet_valid",
    "tls.alert_message.level",
    "smtp.response.code",
    "smtp.rsp.parameter",
    "frame.coloring_rule.name",
)

VERDICT_RULE = {
    ClientCert.EMPTY: "Empty client certificate",
    ClientCert.PRESENTED: "Client certificate presented",
    ClientCert.NOT_REQUESTED: "Client certificate not requested",
    ClientCert.HIDDEN_TLS13: "TLS 1.3 (certificates hidden)",
    ClientCert.RESUMED: "Resumed TLS session (no certificates)",
}


@cache
def _colored(env_items: tuple[tuple[str, str], ...], name: str, keys: bool) -> list[dict]:
    env = dict(env_items)
    truth = fixture_truth(name)
    args = ["--color", "-r", str(fixture_path(name))]
    if keys and truth.get("keylog"):
        args += ["-o", f"tls.keylog_file:{FIXTURES / truth['keylog']}"]
    args += ["-T", "fields", "-E", "separator=\t", "-E", "aggregator=|"]
    for f in COLOR_FIELDS:
        args += ["-e", f]
    done = _tshark(env, *args)
    assert "Lua: Error" not in done.stderr
    rows = []
    for line in done.stdout.splitlines():
        values = (line.split("\t") + [""] * len(COLOR_FIELDS))[: len(COLOR_FIELDS)]
        rows.append(dict(zip(COLOR_FIELDS, values, strict=True)))
    return rows


def _expected_rule(row: dict) -> str | None:
    """The rule a frame must get, when the frame is one the story cares about."""
    verdict = row["smtptls.client_cert"]
    expired = field_is_true(row["smtptls.expired"]) or field_is_true(row["smtptls.not_yet_valid"])
    if verdict == ClientCert.EMPTY:
        return VERDICT_RULE[ClientCert.EMPTY]
    if verdict == ClientCert.NOT_REQUESTED:
        return VERDICT_RULE[ClientCert.NOT_REQUESTED]
    if expired:
        return "Certificate expired at capture time"
    if "2" in row["tls.alert_message.level"].split("|"):
        return "TLS alert"
    codes = [int(c) for c in row["smtp.response.code"].split("|") if c]
    if any(c >= 500 for c in codes):
        return "SMTP 5xx reply"
    if verdict in VERDICT_RULE:
        return VERDICT_RULE[ClientCert(verdict)]
    if "mail.protection.outlook.com" in row["smtp.rsp.parameter"]:
        return "Exchange Online banner"
    return None


COLOR_PAIRS = [
    pytest.param(name, keys, id=f"{name}-{'with' if keys else 'without'}_keylog")
    for name in SCENARIOS
    for keys in (False, True)
    if not keys or fixture_truth(name).get("keylog")
]


@pytest.mark.parametrize(("name", "keys"), COLOR_PAIRS)
def test_coloring_rules_on_fixture_frames(
    wireshark_home: dict[str, str], name: str, keys: bool
) -> None:
    rows = _colored(tuple(sorted(wireshark_home.items())), name, keys)
    checked = 0
    for row in rows:
        want = _expected_rule(row)
        if want is not None:
            assert row["frame.coloring_rule.name"] == want, (name, row)
            checked += 1
    expected_verdicts = {
        c["client_cert_expected"]["with_keylog" if keys else "without_keylog"]
        for c in fixture_truth(name)["conversations"]
    }
    if expected_verdicts & set(VERDICT_RULE):
        assert checked, f"{name}: no frame with an expected coloring rule"


@pytest.mark.skipif(not SMALL.exists(), reason="fixture not generated yet")
def test_seed_case_colors(wireshark_home: dict[str, str]) -> None:
    """The seed's capture: banner, CertificateRequest, and the red empty client Certificate."""
    rows = _colored(tuple(sorted(wireshark_home.items())), "tls12-client-cert-empty", False)
    by_rule: dict[str, list[dict]] = {}
    for row in rows:
        by_rule.setdefault(row["frame.coloring_rule.name"], []).append(row)
    empty = by_rule["Empty client certificate"]
    assert len(empty) == 1
    assert empty[0]["smtptls.role"] == "client"
    assert "11" in empty[0]["tls.handshake.type"].split("|")
    assert by_rule["Exchange Online banner"][0]["smtp.response.code"] == "220"
    assert "13" in by_rule["CertificateRequest"][0]["tls.handshake.type"].split("|")
    assert "STARTTLS" in by_rule


@pytest.mark.skipif(not SMALL.exists(), reason="fixture not generated yet")
def test_macros_expand_in_tshark(wireshark_home: dict[str, str]) -> None:
    done = _tshark(
        wireshark_home,
        "-r",
        str(SMALL),
        "-Y",
        "${verdict:empty} && ${certs:0}",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "smtptls.client_cert",
    )
    assert done.stdout.split() and done.stdout.split()[-1] == "empty"


def _color_of(rule: str) -> tuple[int, int, int]:
    (found,) = [r for r in color_rules() if r.name == rule]
    return tuple(c >> 8 for c in found.bg)  # type: ignore[return-value]


def empty_rule_rgb() -> tuple[int, int, int]:
    """8-bit RGB of the empty-client-certificate rule's background (used by the GUI test)."""
    return _color_of("Empty client certificate")


def test_story_colors_are_distinct() -> None:
    story = [r for r in color_rules() if r.name in VERDICT_RULE.values()]
    assert len({r.bg for r in story}) == len(story)
    for r in color_rules():
        assert all(c >> 8 == c & 0xFF for c in r.bg + r.fg), f"{r.name}: not an 8-bit colour"
    assert Path(profile_source() / "colorfilters").read_text().count("\n") >= len(story)
