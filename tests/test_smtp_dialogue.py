"""The byte-stream SMTP reader on its own: segments in, commands and replies out.

Each case writes the wire bytes the way some real stack does (its own segmentation,
retransmissions, order); what must come out is what the two peers said, whatever the cut.
"""

from __future__ import annotations

import pytest

from pyshark_tools.core.smtp_dialogue import DialogueReader, ItemKind

EHLO_REPLY = (b"250-mx.example.net Hello\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n"
              b"250-STARTTLS\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 HELP\r\n")


class Wire:
    """Two peers writing segments; each write gets the next frame number."""

    def __init__(self) -> None:
        self.reader = DialogueReader()
        self.seq = {"client": 1000, "server": 900_000}
        self.frame = 0

    def send(self, sender: str, data: bytes, *, seq: int | None = None,
             advance: bool = True, declared: int | None = None) -> int:
        self.frame += 1
        at = self.seq[sender] if seq is None else seq
        self.reader.feed(sender, self.frame, f"t{self.frame}", data, at, declared)
        if advance:
            self.seq[sender] = at + (declared if declared is not None else len(data))
        return self.frame

    def items(self):
        return [(i.kind.value, i.sender, i.name, i.detail, i.first_frame, i.last_frame)
                for i in self.reader.finish()]

    def replies(self):
        return [(i.name, i.detail) for i in self.reader.finish() if i.kind is ItemKind.REPLY]

    def commands(self):
        return [i.detail for i in self.reader.finish() if i.kind is ItemKind.COMMAND]


def starttls_start(w: Wire, ehlo_chunks: list[bytes]) -> None:
    w.send("server", b"220 mx.example.net ESMTP\r\n")
    w.send("client", b"EHLO relay.example.org\r\n")
    for chunk in ehlo_chunks:
        w.send("server", chunk)


def test_reply_one_line_per_segment_is_one_reply_with_its_frames():
    w = Wire()
    starttls_start(w, [line + b"\n" for line in EHLO_REPLY.split(b"\n") if line])
    ehlo = [i for i in w.items() if i[2] == "250"]
    assert len(ehlo) == 1
    lines = ehlo[0][3].split("\n")
    assert lines[0] == "250-mx.example.net Hello" and lines[-1] == "250 HELP"
    assert "250-STARTTLS" in lines and "250-SMTPUTF8" in lines and "250-CHUNKING" in lines
    assert (ehlo[0][4], ehlo[0][5]) == (3, 9)  # first and last frame of the seven segments


@pytest.mark.parametrize("cut", [1, 5, 17, 40, 61, len(EHLO_REPLY) - 1])
def test_reply_cut_anywhere_reads_the_same(cut):
    w = Wire()
    starttls_start(w, [EHLO_REPLY[:cut], EHLO_REPLY[cut:]])
    assert w.replies()[1] == ("250", EHLO_REPLY.decode().replace("\r\n", "\n").strip())


def test_pipelined_commands_and_replies_pair_up():
    w = Wire()
    w.send("server", b"220 mx ESMTP\r\n")
    w.send("client", b"EHLO a\r\n")
    w.send("server", b"250-mx\r\n250 PIPELINING\r\n")
    w.send("client", b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    w.send("server", b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n")
    w.send("client", b"Subject: x\r\n\r\nQUIT\r\nRSET\r\n..leading dot\r\n.\r\n")
    w.send("server", b"250 2.0.0 queued\r\n")
    w.send("client", b"QUIT\r\n")
    assert w.commands() == ["EHLO a", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA", "QUIT"]
    assert [code for code, _ in w.replies()] == ["220", "250", "250", "250", "354", "250"]


def test_data_refused_leaves_the_client_in_command_mode():
    w = Wire()
    w.send("server", b"220 mx\r\n")
    w.send("client", b"DATA\r\n")
    w.send("server", b"554 5.5.1 no valid recipients\r\n")
    w.send("client", b"QUIT\r\n")
    assert w.commands() == ["DATA", "QUIT"]


def test_bdat_chunks_are_content_not_commands():
    w = Wire()
    w.send("server", b"220 mx\r\n")
    body = b"QUIT\r\nRSET\r\n"
    w.send("client", b"BDAT %d LAST\r\n" % len(body) + body)
    w.send("server", b"250 2.0.0 Ok\r\n")
    w.send("client", b"QUIT\r\n")
    assert w.commands() == [f"BDAT {len(body)} LAST", "QUIT"]


def test_auth_login_credentials_are_neither_commands_nor_shown():
    w = Wire()
    w.send("server", b"220 mx\r\n")
    w.send("client", b"AUTH LOGIN\r\n")
    w.send("server", b"334 VXNlcm5hbWU6\r\n")
    w.send("client", b"c2VjcmV0LXVzZXI=\r\n")
    w.send("server", b"334 UGFzc3dvcmQ6\r\n")
    w.send("client", b"c2VjcmV0LXBhc3M=\r\n")
    w.send("server", b"235 2.7.0 ok\r\n")
    w.send("client", b"MAIL FROM:<a@b>\r\n")
    assert w.commands() == ["AUTH LOGIN", "MAIL FROM:<a@b>"]
    everything = repr(w.items())
    assert "c2VjcmV0" not in everything


def test_auth_plain_initial_response_is_redacted():
    w = Wire()
    w.send("server", b"220 mx\r\n")
    w.send("client", b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
    w.send("server", b"235 2.7.0 ok\r\n")
    w.send("client", b"noop\r\n")
    assert w.commands() == ["AUTH PLAIN [credentials not shown]", "noop"]
    assert [i[2] for i in w.items() if i[0] == "smtp_command"] == ["AUTH", "NOOP"]


def test_cleartext_ends_where_tls_begins_on_both_sides():
    w = Wire()
    starttls_start(w, [EHLO_REPLY])
    w.send("client", b"STARTTLS\r\n")
    w.send("server", b"220 2.0.0 Ready to start TLS\r\n")
    w.send("client", b"\x16\x03\x01\x00\x05hello")
    w.send("server", b"\x16\x03\x03\x00\x05hello")
    w.send("client", b"\x17\x03\x03\x00\x05EHLO\n")
    assert w.reader.done and w.reader.starttls_accepted
    assert not w.reader.clear_after_starttls
    assert [i[0] for i in w.items()] == ["smtp_reply", "smtp_command", "smtp_reply",
                                         "smtp_command", "smtp_reply"]


def test_refused_starttls_goes_on_in_clear():
    w = Wire()
    starttls_start(w, [EHLO_REPLY])
    w.send("client", b"STARTTLS\r\n")
    w.send("server", b"454 4.7.0 TLS not available\r\n")
    w.send("client", b"MAIL FROM:<a@b>\r\n")
    assert not w.reader.starttls_accepted
    assert w.commands()[-1] == "MAIL FROM:<a@b>"


def test_text_after_an_accepted_starttls_is_flagged():
    w = Wire()
    starttls_start(w, [EHLO_REPLY])
    w.send("client", b"STARTTLS\r\n")
    w.send("server", b"220 go ahead\r\n")
    w.send("client", b"MAIL FROM:<a@b>\r\n")
    assert w.reader.clear_after_starttls
    assert w.commands()[-1] == "MAIL FROM:<a@b>"


def test_retransmitted_and_overlapping_segments_count_once_first_copy_wins():
    w = Wire()
    w.send("server", b"220 mx\r\n")
    w.send("client", b"EHLO a\r\n")
    start = w.seq["server"]
    w.send("server", b"250-mx\r\n250-STA")  # 15 bytes
    w.send("server", b"250-mx\r\n250-STA", seq=start, advance=False)  # identical copy
    # a partial retransmission from offset 8 whose overlap differs: the first copy wins
    w.send("server", b"250-XYZRTTLS\r\n", seq=start + 8, advance=False)
    w.seq["server"] = start + 8 + len(b"250-XYZRTTLS\r\n")
    w.send("server", b"250 HELP\r\n")
    assert w.replies() == [("220", "220 mx"), ("250", "250-mx\n250-STARTTLS\n250 HELP")]


def test_out_of_order_segments_wait_for_the_gap():
    w = Wire()
    w.send("server", b"220 mx\r\n")
    w.send("client", b"EHLO a\r\n")
    start = w.seq["server"]
    first, second = b"250-mx\r\n250-STARTTLS\r\n", b"250 HELP\r\n"
    w.send("server", second, seq=start + len(first), advance=False)
    assert [i.name for i in w.reader.items] == ["220", "EHLO"]  # the tail waits
    w.send("server", first, seq=start, advance=False)
    assert w.replies()[1] == ("250", "250-mx\n250-STARTTLS\n250 HELP")
    assert w.reader.items[-1].first_frame == 4  # the reply starts in the late segment


def test_a_lost_segment_leaves_a_gap_not_a_reply():
    w = Wire()
    w.send("server", b"220 mx\r\n")
    w.send("client", b"EHLO a\r\n")
    start = w.seq["server"]
    w.send("server", b"250 HELP\r\n", seq=start + 30, advance=False)  # bytes before it lost
    items = w.items()
    assert [i[0] for i in items][-1] == "smtp_gap"
    assert len(w.replies()) == 1


def test_a_segment_cut_by_the_snap_length_ends_the_text():
    w = Wire()
    w.send("server", b"220 mx\r\n")
    w.send("client", b"EHLO a\r\n")
    w.send("server", b"250-mx\r\n250-SIZE", declared=60)  # 60 bytes on the wire, 16 captured
    w.send("server", b"250 HELP\r\n")
    kinds = [i[0] for i in w.items()]
    assert kinds == ["smtp_reply", "smtp_command", "smtp_gap"]


def test_server_lines_that_are_not_replies_are_counted_not_read():
    w = Wire()
    w.send("server", b"hello there\r\n220 mx\r\n")
    assert w.replies() == [("220", "220 mx")]
    assert w.reader.lines_not_smtp == 1


def test_code_without_text_ends_a_reply():
    w = Wire()
    w.send("server", b"220-first\r\n220\r\n")
    assert w.replies() == [("220", "220-first\n220")]


def test_a_missing_reply_the_client_went_on_without_is_a_gap():
    w = Wire()
    starttls_start(w, [EHLO_REPLY])
    w.send("client", b"STARTTLS\r\n")
    # the server's 220 never reached the capture; the client's ClientHello did
    w.send("client", b"\x16\x03\x01\x00\x05hello")
    last = w.items()[-1]
    assert last[:3] == ("smtp_gap", "server", "incomplete")
    assert "STARTTLS" in last[3]
