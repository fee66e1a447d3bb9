"""smtptls.lua outside Wireshark, under stand-alone Lua 5.2, 5.3 and 5.4.

tshark here embeds Lua 5.2; Wireshark 4.2+ builds use 5.3/5.4 (integers, stricter
string.format). A small harness stubs the Wireshark Lua API, feeds the plugin the field
values tshark decoded for a fixture, frame by frame (a first pass, then a visited second
pass), and the verdicts must equal what the plugin says inside tshark.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pyshark_tools.engine.tshark import AGGREGATOR
from pyshark_tools.wireshark.install import field_is_true, lua_verdicts, plugin_source

from .helpers import FIXTURES, fixture_path, fixture_truth

pytestmark = [
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
    pytest.mark.personal_lua,  # tshark 4.2+ runs the plugin only for a user other than root
]

HARNESS = r"""
local plugin, datafile = arg[1], arg[2]
base = { ASCII = 1, UNICODE = 2, DEC = 3, NONE = 4, UTC = 5 }
frametype = { NONE = 0 }
expert = { group = { SECURITY = 1 }, severity = { NOTE = 1, WARN = 2, ERROR = 3 } }
local function field_ctor(abbr) return { abbr = abbr } end
ProtoField = setmetatable({}, { __index = function() return field_ctor end })
ProtoExpert = { new = function(abbr) return { abbr = abbr } end }
Pref = { statictext = function() return {} end }
NSTime = { new = function(s, ns)
    assert(math.type == nil or math.type(s) == "integer", "NSTime seconds not an integer")
    return { secs = s }
end }
local registered
function Proto(name) return { name = name, prefs = {} } end
function register_postdissector(p) registered = p end
local CURRENT
local unpack = table.unpack or unpack
Field = { new = function(name)
    return function()
        local vals = CURRENT.fields[name]
        if not vals then return end
        local out = {}
        for i, v in ipairs(vals) do out[i] = { value = v } end
        return unpack(out)
    end
end }
function bytes(hex)
    local raw = hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
    return { raw = function() return raw end }
end
local function tree(out)
    local t = {}
    function t:add(f, v)
        if type(f) == "table" and f.abbr then out[#out + 1] = { f.abbr, v } end
        return t
    end
    function t:add_proto_expert_info(e) out[#out + 1] = { "expert", e.abbr } end
    function t:append_text() end
    function t:set_text() end
    return t
end
local tvb = setmetatable({}, { __call = function() return {} end })
dofile(plugin)
assert(registered, "no postdissector registered")
local frames = dofile(datafile)
if registered.init then registered.init() end
for pass = 1, 2 do
    for _, fr in ipairs(frames) do
        CURRENT = fr
        local out = {}
        local pinfo = { number = fr.number, visited = (pass == 2), src = fr.src, dst = fr.dst,
                        src_port = fr.sport, dst_port = fr.dport, abs_ts = fr.ts }
        registered.dissector(tvb, pinfo, tree(out))
        if pass == 2 then
            local verdict, err = "", ""
            for _, item in ipairs(out) do
                if item[1] == "smtptls.verdict" then verdict = item[2] end
                if type(item[2]) == "string" and item[2]:find("internal error") then
                    err = item[2]
                end
            end
            print(fr.number .. "\t" .. tostring(fr.stream) .. "\t" .. verdict .. "\t" .. err)
        end
    end
end
"""

INT_FIELDS = {
    "frame.number", "frame.len", "frame.cap_len", "tcp.stream", "tls.record.content_type",
    "tls.handshake.type", "tls.handshake.version", "tls.handshake.extensions.supported_version",
    "tls.handshake.extension.type", "tls.alert_message.level", "tls.alert_message.desc",
    "smtp.response.code",
}  # fmt: skip
BOOL_FIELDS = {"tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset",
               "smtp.req", "smtp.rsp"}  # fmt: skip
ADDR = ("frame.time_epoch", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport",
        "tcp.dstport")  # fmt: skip


def _plugin_fields() -> list[str]:
    names = re.findall(r'field\("([^"]+)"\)', plugin_source().read_text())
    # FT_NONE fields print nothing with -T fields; the harness leaves them out.
    return [n for n in dict.fromkeys(names) if n != "tcp.analysis.lost_segment"]


def _lua_str(text: str) -> str:
    return '"' + "".join(c if c.isalnum() or c in " .-_:@<>[]()/,;=+*" else
                         f"\\{ord(c):03d}" for c in text) + '"'  # fmt: skip


def _value(name: str, text: str) -> str:
    if name in INT_FIELDS:
        return str(int(text, 16) if text.startswith("0x") else int(text))
    if name in BOOL_FIELDS:
        return "true" if field_is_true(text) else "false"
    if name == "tls.handshake.certificate":
        return f'bytes("{text.replace(":", "")}")'
    return _lua_str(text.replace("\\r\\n", "\r\n"))


def write_frames(capture: Path, keylog: Path | None, out: Path) -> None:
    fields = _plugin_fields()
    args = ["tshark", "-n", "-r", str(capture)]
    if keylog:
        args += ["-o", f"tls.keylog_file:{keylog}"]
    args += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
             "-E", f"aggregator={AGGREGATOR}"]  # fmt: skip
    for f in (*ADDR, *fields):
        args += ["-e", f]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)
    lines = ["return {"]
    for row in done.stdout.splitlines():
        cols = (row.split("\t") + [""] * (len(ADDR) + len(fields)))[: len(ADDR) + len(fields)]
        ts, ip4s, ip6s, ip4d, ip6d, sport, dport = cols[: len(ADDR)]
        values = dict(zip(fields, cols[len(ADDR) :], strict=True))
        if not values.get("tcp.stream"):
            continue
        entries = []
        for name, text in values.items():
            if text:
                items = ", ".join(_value(name, v) for v in text.split(AGGREGATOR))
                entries.append(f'["{name}"] = {{ {items} }}')
        lines.append(
            f"{{ number = {values['frame.number']}, stream = {values['tcp.stream']}, "
            f"ts = {ts}, src = {_lua_str(ip4s or ip6s)}, dst = {_lua_str(ip4d or ip6d)}, "
            f"sport = {sport}, dport = {dport}, fields = {{ {', '.join(entries)} }} }},"
        )
    lines.append("}")
    out.write_text("\n".join(lines) + "\n")


CASES = [
    ("tls12-client-cert-empty", False),
    ("tls12-client-cert-ok", False),
    ("tls12-client-cert-expired", False),
    ("tls12-no-cert-request", False),
    ("tls12-resumed", False),
    ("tls13-client-cert-empty", False),
    ("tls13-client-cert-empty", True),
    ("handshake-alert", False),
    ("plaintext-550", False),
    ("mixed-traffic", True),
]


@pytest.mark.parametrize("version", ["5.2", "5.3", "5.4"])
@pytest.mark.parametrize(("name", "keys"), CASES, ids=[f"{n}{'+keys' * k}" for n, k in CASES])
def test_plugin_under_standalone_lua(tmp_path: Path, version: str, name: str, keys: bool) -> None:
    lua = shutil.which(f"lua{version}")
    if lua is None:
        pytest.skip(f"lua{version} not installed")
    capture = fixture_path(name)
    assert capture.exists(), f"{capture} missing: run python -m fixtures.build"
    truth = fixture_truth(name)
    keylog = FIXTURES / truth["keylog"] if keys and truth.get("keylog") else None
    data = tmp_path / "frames.lua"
    write_frames(capture, keylog, data)
    harness = tmp_path / "harness.lua"
    harness.write_text(HARNESS)
    done = subprocess.run(
        [lua, str(harness), str(plugin_source()), str(data)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    got: dict[int, str] = {}
    for line in done.stdout.splitlines():
        _, stream, verdict, error = line.split("\t")
        assert not error, error
        if verdict:
            assert got.setdefault(int(stream), verdict) == verdict
    assert got == lua_verdicts(capture, keylog)
