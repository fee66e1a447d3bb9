"""SMTP read as two byte streams, by the protocol's own rules (in clear and inside TLS).

A frame is not a unit of SMTP: servers write a multi-line EHLO reply one line per segment,
clients pipeline several commands in one, a line can be split anywhere. So each direction's
TCP payload is first put back in sequence order (retransmitted bytes counted once, the
first copy winning; out-of-order segments waiting for the gap before them), and only then
cut into lines and grouped (RFC 5321, 4.2: a reply ends with the line whose code is
followed by a space or nothing; a command ends at its line end; LF alone is accepted as a
line end, as real servers do).

The reading stops where TLS begins: the client's bytes after an accepted STARTTLS (a 220
reply) and the server's bytes after that 220, unless what follows is text, not a TLS record
(then the dialogue goes on in clear and :attr:`DialogueReader.clear_after_starttls` says so).
Message content (DATA up to the lone ``.``, BDAT chunks) and AUTH exchanges are skipped or
redacted: neither reaches any event.

Both engines feed this reader -- tshark's rows (``tcp.payload``) and the native reader's
packets -- so they cannot read the dialogue differently. The SMTP inside decrypted TLS is read
by a second reader of the same kind, fed each TLS record's plaintext in capture order
(``greeting=False``: after STARTTLS the client speaks first; an implicit-TLS greeting is then
simply a reply nobody asked for).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["DialogueReader", "ItemKind", "SmtpItem"]

_SEQ_SPACE = 1 << 32
_REPLY_LINE = re.compile(rb"([0-9]{3})([ -]|$)(.*)", re.DOTALL)
#: A TLS record header: handshake/alert/CCS content type, major version 3.
_TLS_START = frozenset({20, 21, 22})
#: Keep at most this much of one unfinished line (a text stream that never ends a line is
#: not SMTP; the rest is dropped and the reader says so).
MAX_LINE = 16_384
#: Commands whose arguments are credentials: only the verb and mechanism are kept.
_SECRET_VERBS = frozenset({"AUTH"})


class ItemKind(StrEnum):
    COMMAND = "smtp_command"
    REPLY = "smtp_reply"
    #: The text of one direction is incomplete from here on (lost or cut bytes).
    GAP = "smtp_gap"


@dataclass(frozen=True)
class SmtpItem:
    """One command, one whole reply, or a gap, with the frames that carried it."""

    kind: ItemKind
    sender: str  # "client" or "server"
    name: str  # the verb (upper case), the reply code, or "incomplete"
    detail: str  # the command line, the reply's lines joined by "\n", or the gap's reason
    first_frame: int
    last_frame: int
    stamp: object  # the first frame's time, in whatever form the feeder gave it


@dataclass
class _Stream:
    """One direction's payload put back in order."""

    base: int | None = None  # sequence number of the first payload byte
    next: int = 0  # offset of the next byte expected
    waiting: dict[int, list[tuple[int, bytes, int, object]]] = field(default_factory=dict)
    gap_frame: int | None = None  # the frame whose bytes were cut (snap length)

    def accept(self, seq: int | None, payload: bytes, declared: int, frame: int,
               stamp: object) -> list[tuple[bytes, int, object]]:
        """The bytes this segment makes available in order, as (bytes, frame, stamp)."""
        if self.gap_frame is not None:
            return []
        if seq is None:  # no sequence numbers: capture order is the order
            return self._cut(payload, declared, frame, stamp)
        if self.base is None:
            self.base = seq
        offset = (seq - self.base) % _SEQ_SPACE
        if offset >= _SEQ_SPACE // 2:  # before the base: bytes already passed (or older)
            offset -= _SEQ_SPACE
        end = offset + declared
        if end <= self.next:
            return []  # a retransmission of bytes already read
        if offset > self.next:  # out of order: wait for what is missing before it
            self.waiting.setdefault(offset, []).append((frame, payload, declared, stamp))
            return []
        skip = self.next - offset
        out = self._cut(payload[skip:], declared - skip, frame, stamp)
        while self.gap_frame is None and self.waiting:
            ready = [o for o in self.waiting if o <= self.next]
            if not ready:
                break
            for o in sorted(ready):
                for f, data, size, when in self.waiting.pop(o):
                    if o + size > self.next and self.gap_frame is None:
                        s = self.next - o
                        out.extend(self._cut(data[s:], size - s, f, when))
        return out

    def _cut(self, payload: bytes, declared: int, frame: int,
             stamp: object) -> list[tuple[bytes, int, object]]:
        self.next += declared
        if len(payload) < declared:
            self.gap_frame = frame
        return [(payload, frame, stamp)] if payload else []

    def missing(self) -> bool:
        """Bytes after a hole that never filled (a segment the capture lost)."""
        return bool(self.waiting)


class _Lines:
    """Cuts one direction's ordered bytes into lines, remembering which frames carried them."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.start = 0  # stream offset of buffer[0]
        self.marks: deque[tuple[int, int, object]] = deque()  # (end offset, frame, stamp)
        self.overflow = False

    def feed(self, data: bytes, frame: int, stamp: object) -> None:
        self.buffer += data
        self.marks.append((self.start + len(self.buffer), frame, stamp))
        if len(self.buffer) > MAX_LINE and b"\n" not in self.buffer:
            self.take(len(self.buffer))
            self.overflow = True

    def frame_at(self, offset: int) -> tuple[int, object]:
        for end, frame, stamp in self.marks:
            if end > offset:
                return frame, stamp
        _end, frame, stamp = self.marks[-1]
        return frame, stamp

    def take_line(self) -> tuple[bytes, int, int, object] | None:
        """The next whole line (without its line end), its first and last frame, stamp."""
        end = self.buffer.find(b"\n")
        if end < 0:
            return None
        first, stamp = self.frame_at(self.start)
        last, _stamp = self.frame_at(self.start + end)
        line = bytes(self.buffer[:end])
        self.take(end + 1)
        return (line[:-1] if line.endswith(b"\r") else line), first, last, stamp

    def take(self, size: int) -> int:
        """Drop up to ``size`` bytes from the front; how many were dropped."""
        n = min(size, len(self.buffer))
        del self.buffer[:n]
        self.start += n
        while self.marks and self.marks[0][0] <= self.start:
            self.marks.popleft()
        return n


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").strip()


def _redact(text: str) -> str:
    parts = text.split(" ")
    verb = parts[0].upper()
    if verb in _SECRET_VERBS and len(parts) > 2:
        return f"{parts[0]} {parts[1]} [credentials not shown]"
    return text


class _Mode(StrEnum):
    COMMANDS = "commands"
    HOLD = "hold"  # what follows depends on the server's reply to the last command
    DATA = "data"  # message content up to the lone "."
    CHUNK = "chunk"  # BDAT content: a byte count
    CREDENTIAL = "credential"  # the client's answer to a 334 challenge
    TLS = "tls"  # TLS from here: nothing more to read


class DialogueReader:
    """One conversation's cleartext SMTP, fed segment by segment in capture order.

    ``feed`` takes one TCP segment of either direction; ``items`` are the commands, replies
    and gaps read so far, in the order they completed.
    """

    def __init__(self, *, greeting: bool = True) -> None:
        self.streams = {"client": _Stream(), "server": _Stream()}
        self.lines = {"client": _Lines(), "server": _Lines()}
        self.mode = {"client": _Mode.COMMANDS, "server": _Mode.COMMANDS}
        self.items: list[SmtpItem] = []
        # what each next reply answers
        self.pending: deque[str] = deque(["greeting"] if greeting else [])
        self.reply_lines: list[str] = []
        self.reply_start: tuple[int, object] | None = None
        self.chunk_left = 0
        self.starttls_accepted = False
        self.clear_after_starttls = False
        self.lines_not_smtp = 0  # server lines that are not reply lines

    @property
    def done(self) -> bool:
        """Both directions have reached TLS: nothing more to read."""
        return self.mode["client"] is _Mode.TLS and self.mode["server"] is _Mode.TLS

    def wants(self, sender: str) -> bool:
        """Whether this direction's bytes can still matter (cheap skip for the feeders)."""
        return self.mode[sender] is not _Mode.TLS and self.streams[sender].gap_frame is None

    def feed(self, sender: str, frame: int, stamp: object, payload: bytes,
             seq: int | None = None, declared: int | None = None) -> None:
        """One segment's payload (``declared``: its length on the wire, when cut shorter)."""
        if not self.wants(sender):
            return
        size = len(payload) if declared is None else declared
        if size <= 0:
            return
        stream = self.streams[sender]
        for data, f, when in stream.accept(seq, payload, size, frame, stamp):
            self._bytes(sender, data, f, when)
        if stream.gap_frame is not None and self.mode[sender] is not _Mode.TLS:
            self._gap(sender, stream.gap_frame, stamp,
                      "the rest of this side's SMTP text is cut off (snap length)")

    def finish(self) -> list[SmtpItem]:
        """The items, with a gap item where a lost segment left the text incomplete."""
        for sender, stream in self.streams.items():
            if stream.missing() and self.mode[sender] is not _Mode.TLS:
                frame = min(f for parts in stream.waiting.values() for f, *_ in parts)
                stamp = next(iter(stream.waiting.values()))[0][3]
                self._gap(sender, frame, stamp,
                          "a segment before this one is missing from the capture")
                stream.waiting.clear()
        held = self.lines["client"]
        if self.mode["client"] is _Mode.HOLD and held.buffer and self.mode["server"] is not \
                _Mode.TLS:
            # the client went on as if answered: the server's reply is what the capture lacks
            frame, stamp = held.frame_at(held.start)
            self._gap("server", frame, stamp, "the server's reply to "
                      f"{self.pending[-1] if self.pending else 'the client'} is missing from "
                      "the capture, yet the client went on")
        return self.items

    # --- reading ---------------------------------------------------------------------------

    def _gap(self, sender: str, frame: int, stamp: object, reason: str) -> None:
        self.items.append(SmtpItem(ItemKind.GAP, sender, "incomplete", reason, frame, frame,
                                   stamp))
        self.mode[sender] = _Mode.TLS  # nothing after a hole can be trusted

    def _bytes(self, sender: str, data: bytes, frame: int, stamp: object) -> None:
        lines = self.lines[sender]
        if self.mode[sender] is _Mode.TLS:
            return
        if not lines.buffer and self._tls_begins(sender, data):
            return
        lines.feed(data, frame, stamp)
        if sender == "server":
            self._server_lines()
        else:
            self._client_lines()

    def _tls_begins(self, sender: str, data: bytes) -> bool:
        """At a point where TLS may start, a record header ends the cleartext."""
        if not self.starttls_accepted:
            return False
        if data[0] in _TLS_START and data[1:2] in (b"\x03", b""):
            self.mode[sender] = _Mode.TLS
            return True
        self.clear_after_starttls = True
        return False

    def _server_lines(self) -> None:
        lines = self.lines["server"]
        while self.mode["server"] is not _Mode.TLS:
            got = lines.take_line()
            if got is None:
                return
            raw, first, last, stamp = got
            match = _REPLY_LINE.fullmatch(raw)
            if match is None:
                self.lines_not_smtp += 1
                continue
            code, separator, text = match.group(1).decode(), match.group(2), _text(
                match.group(3))
            if self.reply_start is None:
                self.reply_start = (first, stamp)
            self.reply_lines.append(f"{code}{'-' if separator == b'-' else ' '}{text}".rstrip())
            if separator != b"-":
                self._reply(code, last)

    def _reply(self, code: str, last: int) -> None:
        assert self.reply_start is not None
        first, stamp = self.reply_start
        lines, self.reply_lines, self.reply_start = self.reply_lines, [], None
        self.items.append(SmtpItem(ItemKind.REPLY, "server", code, "\n".join(lines), first,
                                   last, stamp))
        answers = self.pending.popleft() if self.pending else ""
        client = self.mode["client"]
        if answers == "STARTTLS" and code == "220":
            self.starttls_accepted = True
            # the server's next bytes are its ServerHello (or, oddly, more clear text)
            buffered = self.lines["server"].buffer
            if buffered and self._tls_begins("server", bytes(buffered[:2])):
                self.lines["server"].take(len(buffered))
            if client is _Mode.HOLD:
                self._release_client(_Mode.COMMANDS)
        elif answers == "DATA" and client is _Mode.HOLD:
            if code == "354":
                self.pending.append("end of data")
            self._release_client(_Mode.DATA if code == "354" else _Mode.COMMANDS)
        elif answers == "AUTH" and client is _Mode.HOLD:
            if code == "334":
                self.pending.appendleft("AUTH")  # the challenge answered, the next reply too
            self._release_client(_Mode.CREDENTIAL if code == "334" else _Mode.COMMANDS)
        elif answers == "STARTTLS" and client is _Mode.HOLD:  # refused: on in clear
            self._release_client(_Mode.COMMANDS)

    def _release_client(self, mode: _Mode) -> None:
        self.mode["client"] = mode
        lines = self.lines["client"]
        if lines.buffer and mode is _Mode.COMMANDS and self.starttls_accepted:
            head = bytes(lines.buffer[:2])
            if self._tls_begins("client", head):
                lines.take(len(lines.buffer))
                return
        self._client_lines()

    def _client_lines(self) -> None:
        lines = self.lines["client"]
        while True:
            mode = self.mode["client"]
            if mode in (_Mode.TLS, _Mode.HOLD):
                return
            if mode is _Mode.CHUNK:
                self.chunk_left -= lines.take(self.chunk_left)
                if self.chunk_left:
                    return
                self.mode["client"] = _Mode.COMMANDS
                continue
            got = lines.take_line()
            if got is None:
                return
            raw, first, last, stamp = got
            if mode is _Mode.DATA:
                if raw == b".":
                    self.mode["client"] = _Mode.COMMANDS
                continue
            if mode is _Mode.CREDENTIAL:
                self.mode["client"] = _Mode.HOLD  # wait for the server's next reply
                continue
            self._command(raw, first, last, stamp)

    def _command(self, raw: bytes, first: int, last: int, stamp: object) -> None:
        text = _text(raw)
        if not text:
            return
        verb = text.split(" ", 1)[0].upper()
        self.items.append(SmtpItem(ItemKind.COMMAND, "client", verb, _redact(text), first,
                                   last, stamp))
        if verb == "BDAT":
            size = text.split(" ")[1] if len(text.split(" ")) > 1 else ""
            self.pending.append(verb)
            if size.isdigit():
                self.chunk_left = int(size)
                self.mode["client"] = _Mode.CHUNK
            return
        self.pending.append(verb)
        if verb in ("STARTTLS", "DATA", "AUTH"):
            # what the client sends next depends on the reply: TLS, content, a credential
            self.mode["client"] = _Mode.HOLD
