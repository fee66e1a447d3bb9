"""SMTP inside decrypted TLS read by its line ends, not by its TLS records.

The fixture ``smtp-tls-line-per-record``: after STARTTLS the server writes each line of its
EHLO reply and of a two-line HELP reply in a TLS record of its own and cuts the MAIL reply in
the middle of its line across two records. Its ground truth (written by the generator, not by
any analyzer) holds every reply's lines and the first and last frame that carried it.
"""

from __future__ import annotations

import pytest

from pyshark_tools.core.smtp_dialogue import DialogueReader, ItemKind

from .helpers import analyze_fixture, fixture_truth, truth_row

NAME = "smtp-tls-line-per-record"

#: analyze() settings of each engine: the reference pass, the fast engine (sharded path; with a
#: key log it never uses the native reader), and the fast engine with the native reader off
ENGINES = {"reference": {"prefilter": False}, "fast": {}, "fast-no-native": {"native": False}}


def _decrypted(events, kind: str) -> list[dict]:
    rows = events[(events["kind"] == kind) & events["decrypted"].fillna(False).astype(bool)]
    return rows.to_dict("records")


@pytest.mark.parametrize("engine", ENGINES)
def test_replies_inside_tls_are_those_the_server_wrote(engine: str) -> None:
    truth = fixture_truth(NAME)
    conv = truth["conversations"][0]
    report = analyze_fixture(NAME, True, **ENGINES[engine])
    assert report.capture["engine"] == ("reference" if engine == "reference" else "fast")
    got = [(int(e["name"]), e["detail"], int(e["frame"]), int(e["last_frame"]))
           for e in _decrypted(report.events, "smtp_reply")]
    want = [(r["code"], "\n".join(r["all_lines"]), r["first_frame"], r["last_frame"])
            for r in conv["smtp_replies"] if r["encrypted"]]
    assert got == want
    after_starttls = conv["smtp_commands"][conv["smtp_commands"].index("STARTTLS") + 1:]
    assert [e["detail"] for e in _decrypted(report.events, "smtp_command")] == after_starttls
    row = truth_row(report.conversations, conv)
    assert row["client_cert"] == conv["client_cert_expected"]["with_keylog"] == "presented"
    ids = set(report.findings.loc[report.findings["stream"] == row["stream"], "id"])
    assert not ids & {"W1", "W2"}, ids


def test_a_lost_record_leaves_a_gap_not_commands() -> None:
    """tcp-lost-after-handshake: the server's records after the lost one cannot be decrypted
    (the generator marks those replies unreadable); the client goes on after DATA, so what it
    sends next (message, QUIT) is not read as commands: a gap says the dialogue is incomplete."""
    conv = fixture_truth("tcp-lost-after-handshake")["conversations"][0]
    report = analyze_fixture("tcp-lost-after-handshake", True)
    readable = [r["code"] for r in conv["smtp_replies"]
                if r["encrypted"] and r.get("readable_with_keylog", True)]
    assert len(readable) < len([r for r in conv["smtp_replies"] if r["encrypted"]])
    replies = _decrypted(report.events, "smtp_reply")
    assert [int(e["name"]) for e in replies] == readable
    after_starttls = conv["smtp_commands"][conv["smtp_commands"].index("STARTTLS") + 1:]
    commands = [e["detail"] for e in _decrypted(report.events, "smtp_command")]
    assert commands == after_starttls[:after_starttls.index("DATA") + 1]
    (gap,) = _decrypted(report.events, "smtp_gap")
    assert gap["sender"] == "server" and gap["frame"] > replies[-1]["frame"]


def test_decrypted_records_read_as_one_stream() -> None:
    """The plaintext of TLS records in capture order: a reply across three records, and a
    message whose end and the next command share a record (pipelining after DATA)."""
    reader = DialogueReader(greeting=False)
    reader.feed("client", 1, None, b"EHLO a.example\r\n")
    reader.feed("server", 2, None, b"250-b.example\r\n250-PIPE")
    reader.feed("server", 3, None, b"LINING\r\n")
    reader.feed("server", 4, None, b"250 SIZE 100\r\n")
    reader.feed("client", 5, None, b"MAIL FROM:<a@a.example>\r\nRCPT TO:<b@b.example>\r\n"
                b"DATA\r\n")
    reader.feed("server", 6, None, b"250 ok\r\n250 ok\r\n354 go\r\n")
    reader.feed("client", 7, None, b"Subject: QUIT\r\n\r\nRSET\r\n.\r\nQUIT\r\n")
    reader.feed("server", 8, None, b"250 queued\r\n221 bye\r\n")
    items = reader.finish()
    assert [(i.kind, i.name, i.first_frame, i.last_frame) for i in items] == [
        (ItemKind.COMMAND, "EHLO", 1, 1),
        (ItemKind.REPLY, "250", 2, 4),
        (ItemKind.COMMAND, "MAIL", 5, 5),
        (ItemKind.COMMAND, "RCPT", 5, 5),
        (ItemKind.COMMAND, "DATA", 5, 5),
        (ItemKind.REPLY, "250", 6, 6),
        (ItemKind.REPLY, "250", 6, 6),
        (ItemKind.REPLY, "354", 6, 6),
        (ItemKind.COMMAND, "QUIT", 7, 7),
        (ItemKind.REPLY, "250", 8, 8),
        (ItemKind.REPLY, "221", 8, 8),
    ]
    assert items[1].detail == "250-b.example\n250-PIPELINING\n250 SIZE 100"
