"""Log paths -> decoded text: files, folders, globs, ``.gz``; UTF-8 (with or without BOM),
UTF-16 from Windows, and a legacy 8-bit fallback. Every problem is one ``LogWarning``."""

from __future__ import annotations

import contextlib
import glob
import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .model import LogWarning

#: Largest log read (after decompression): a guard against a mistaken multi-gigabyte input.
MAX_BYTES = 2 * 1024**3


@dataclass
class LogText:
    path: Path
    name: str  # for evidence: the file name (with the archive member's name for .gz)
    text: str
    encoding: str


def expand(paths: Iterable[str | Path]) -> tuple[list[Path], list[LogWarning]]:
    """Files as given, folders recursively (hidden files skipped), glob patterns expanded."""
    found: list[Path] = []
    warnings: list[LogWarning] = []
    for raw in paths:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            members = sorted(p for p in path.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(path).parts))
            if not members:
                warnings.append(LogWarning(text, None, "folder holds no files"))
            found += members
        elif path.exists():
            found.append(path)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                warnings.append(LogWarning(text, None, "no file matches this pattern"))
            found += files
        else:
            warnings.append(LogWarning(text, None, "does not exist"))
    unique = list(dict.fromkeys(found))
    return unique, warnings


def _gunzip(data: bytes, name: str, warnings: list[LogWarning]) -> bytes:
    """Decompress every gzip member; a cut archive gives what it holds, with a warning."""
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        out = bytearray()
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
        with contextlib.suppress(zlib.error):
            out += decoder.decompress(data)
        warnings.append(LogWarning(name, None, f"compressed file is damaged or cut short "
                                   f"({exc.__class__.__name__}); read the first "
                                   f"{len(out)} bytes it holds"))
        return bytes(out)


def decode(data: bytes, name: str, warnings: list[LogWarning]) -> tuple[str, str]:
    """(text, encoding). BOMs decide; UTF-16 without BOM is recognised by its zero bytes."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace"), "utf-16"
    head = data[:4096]
    if len(head) >= 4 and head.count(0) * 3 > len(head):
        even, odd = head[0::2].count(0), head[1::2].count(0)
        encoding = "utf-16-le" if odd > even else "utf-16-be"
        return data.decode(encoding, errors="replace"), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        warnings.append(LogWarning(name, None, f"not valid UTF-8 (byte {exc.start}); read as "
                                   "Windows-1252"))
        return data.decode("cp1252", errors="replace"), "cp1252"


def looks_binary(text: str) -> bool:
    """A capture, an archive or an executable: control characters a text log never has."""
    sample = text[:8192]
    if not sample:
        return False
    bad = sum(1 for ch in sample if ch < " " and ch not in "\t\r\n\f")
    return "\x00" in sample or bad * 20 > len(sample)


def read_texts(paths: Iterable[str | Path]) -> tuple[list[LogText], list[LogWarning]]:
    """Every readable input as text; unreadable ones become warnings."""
    files, warnings = expand(paths)
    texts: list[LogText] = []
    for path in files:
        name = path.name
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            warnings.append(LogWarning(name, None, f"cannot be read ({exc.strerror})"))
            continue
        if len(data) > MAX_BYTES:
            warnings.append(LogWarning(name, None, f"larger than {MAX_BYTES // 1024**2} MB: "
                                       "only the beginning is read"))
            data = data[:MAX_BYTES]
        if data[:2] == b"\x1f\x8b":
            data = _gunzip(data, name, warnings)
            if name.endswith(".gz"):
                name = name[:-3]
        if not data.strip():
            warnings.append(LogWarning(name, None, "is empty"))
            continue
        decoding: list[LogWarning] = []
        text, encoding = decode(data, name, decoding)
        if looks_binary(text):
            warnings.append(LogWarning(name, None, "is not a text log (binary data): skipped"))
            continue
        warnings += decoding
        texts.append(LogText(path, name, text, encoding))
    return texts, warnings


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number as an editor counts it, line without its line end)."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.rstrip("\r")
