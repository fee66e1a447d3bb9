"""A real GUI check: Wireshark (wireshark-qt) under Xvfb opens the seed's capture with the
SMTP-TLS-Certs profile and the plugin; the screenshot must show the empty-client-certificate
row in that rule's colour."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest

from .helpers import ROOT, fixture_path
from .test_wireshark_profile import empty_rule_rgb

SCRIPT = ROOT / "scripts" / "wireshark-screenshot.sh"
TOOLS = ("wireshark", "xvfb-run", "import", "xwininfo", "tshark")

pytestmark = [
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS),
        reason="needs wireshark-qt, xvfb, imagemagick and x11-utils (scripts/setup.sh test)",
    ),
    pytest.mark.personal_lua,  # the plugin's coloring: Wireshark 4.2+ runs it for non-root only
]


def read_png_rgb(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG: (width, height, rows of RGB bytes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert header is not None
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8 and color_type in (2, 6) and interlace == 0, header
    bpp = 3 if color_type == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        if bpp == 4:
            rgb = bytearray()
            for i in range(0, stride, 4):
                rgb += line[i : i + 3]
            rows.append(bytes(rgb))
        else:
            rows.append(bytes(line))
        prev = line
    return width, height, rows


def count_rgb(rows: list[bytes], rgb: tuple[int, int, int]) -> tuple[int, int]:
    """(pixels of exactly that colour, rows holding a run of at least 200 of them)."""
    target = bytes(rgb)
    total = 0
    long_rows = 0
    for row in rows:
        n = sum(1 for i in range(0, len(row), 3) if row[i : i + 3] == target)
        total += n
        if n >= 200:
            long_rows += 1
    return total, long_rows


def test_png_reader_on_a_tiny_image(tmp_path: Path) -> None:
    width, height = 3, 2
    pixels = [b"\xd7\x1e\x2c" * 3, b"\x00\x00\x00\xd7\x1e\x2c\xff\xff\xff"]
    raw = b"".join(bytes([f]) + p for f, p in zip((0, 0), pixels, strict=True))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    png = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path = tmp_path / "tiny.png"
    path.write_bytes(png)
    w, h, rows = read_png_rgb(path)
    assert (w, h) == (3, 2)
    assert count_rgb(rows, (0xD7, 0x1E, 0x2C)) == (4, 0)


def test_wireshark_gui_shows_the_empty_certificate_row(tmp_path: Path) -> None:
    capture = fixture_path("tls12-client-cert-empty")
    assert capture.exists(), f"{capture} missing: run python -m fixtures.build"
    out = tmp_path / "wireshark.png"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = subprocess.run(
        ["bash", str(SCRIPT), str(capture), str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file() and out.stat().st_size > 30_000
    width, height, rows = read_png_rgb(out)
    assert (width, height) == (1400, 900)
    colours = Counter()
    for row in rows[::25]:
        colours.update(row[i : i + 3] for i in range(0, len(row), 3 * 25))
    assert len(colours) > 20, "screenshot is (nearly) a single colour"
    red, red_rows = count_rgb(rows, empty_rule_rgb())
    # One packet-list row (about 1300 x 13 pixels) in the rule's exact colour.
    assert red >= 5_000 and red_rows >= 8, (red, red_rows)
    assert red < width * height // 10
