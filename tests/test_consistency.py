"""No finding contradicts the facts of its own conversation, on any capture we have.

The preconditions live once in ``pyshark_tools.core.invariants``; the findings module refuses a
finding that breaks one. Here the rules run with that guard off, so a rule that would need
the guard fails the test instead of being silently held back. Then the SMTP dialogue the
report read is compared with what the fixture generator said on the wire.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from pyshark_tools import analyze
from pyshark_tools.core.findings import diagnose
from pyshark_tools.core.invariants import INVARIANTS, violations
from pyshark_tools.core.user_tables import joined
from pyshark_tools.report import Report

from .corpus import CORPUS
from .helpers import analyze_fixture, fixture_scenarios, fixture_truth, truth_row, usable_keylog

CASES = [
    pytest.param(name, keys, id=f"{name}-{'keylog' if keys else 'nokeys'}")
    for name in fixture_scenarios()
    for keys in (False, True)
    if not keys or usable_keylog(fixture_truth(name))
]

CORPUS_CAPTURES = sorted(p for p in CORPUS.rglob("*.pcap*")) if CORPUS.is_dir() else []


@cache
def _fixture_report(name: str, with_keys: bool) -> Report:
    return analyze_fixture(name, with_keys)


def _stages(report: Report) -> tuple:
    """The report's tables as the stages hand them on (separated strings, not lists)."""
    return (joined("conversations", report.conversations),
            joined("certificates", report.certificates))


def _unguarded(report: Report) -> list[str]:
    conversations, certificates = _stages(report)
    findings = diagnose(conversations, certificates, report.events, guard=False)
    return violations(report.conversations.to_dict("records"),
                      findings.to_dict("records"))


def _refused(report: Report) -> list[str]:
    return [w for w in report.warnings if " not reported: it needs " in w]


@pytest.mark.parametrize(("name", "with_keys"), CASES)
def test_no_finding_contradicts_its_conversation_on_fixtures(name: str, with_keys: bool):
    report = _fixture_report(name, with_keys)
    assert _unguarded(report) == []
    assert _refused(report) == []


def test_the_corpus_is_here():
    assert len(CORPUS_CAPTURES) >= 20, f"peer corpus missing or thin at {CORPUS}"


@pytest.mark.parametrize("capture", CORPUS_CAPTURES, ids=lambda p: p.name)
def test_no_finding_contradicts_its_conversation_on_the_corpus(capture: Path):
    report = analyze(capture, all_tls=True, ports=(25, 587, 2525))
    assert _unguarded(report) == []
    assert _refused(report) == []


def test_every_invariant_can_fail():
    """Each precondition rejects some conversation (none is vacuous)."""
    report = _fixture_report("tls12-client-cert-ok", False)
    row = report.conversations.to_dict("records")[0]
    plain = _fixture_report("starttls-not-offered", False).conversations.to_dict("records")[0]
    for inv in INVARIANTS:
        assert not (inv.holds(row) and inv.holds(plain)), inv.rule


def test_the_guard_refuses_a_contradicting_finding_and_says_so():
    """A conversation whose EHLO reply lists STARTTLS and that negotiated TLS 1.2: if a
    table claimed STARTTLS was not offered, W1 must not come out, and the refusal is named."""
    report = _fixture_report("tls12-client-cert-ok", False)
    conversations, certificates = _stages(report)
    conversations["starttls_offered"] = False  # a contradiction planted in the facts
    guarded = diagnose(conversations, certificates, report.events)
    assert "W1" not in set(guarded["id"])
    assert any("W1 not reported" in line for line in guarded.attrs["refused"])
    unguarded = diagnose(conversations, certificates, report.events, guard=False)
    assert "W1" in set(unguarded["id"])


# --- the SMTP dialogue against what the generator wrote -----------------------------------


def _smtp_events(report: Report, stream: int, kind: str, decrypted: bool | None = None):
    ev = report.events
    mine = ev[(ev["stream"] == stream) & (ev["kind"] == kind)]
    if decrypted is not None:
        mine = mine[mine["decrypted"] == decrypted]
    return mine


#: Captures the generator damaged on purpose (snap length, cut file) lose dialogue text by
#: design; their own tests in test_analyzer_fixtures check what must survive.
WHOLE_CASES = [case for case in CASES if not fixture_truth(case.values[0]).get("damaged")]


@pytest.mark.parametrize(("name", "with_keys"), WHOLE_CASES)
def test_cleartext_dialogue_is_what_the_generator_sent(name: str, with_keys: bool):
    truth = fixture_truth(name)
    report = _fixture_report(name, with_keys)
    for tc in truth["conversations"]:
        if tc["server_port"] in (53, 80, 443) or tc["implicit_tls"]:
            continue
        row = truth_row(report.conversations, tc)
        replies = _smtp_events(report, int(row["stream"]), "smtp_reply", decrypted=False)
        clear = [r for r in tc["smtp_replies"] if not r["encrypted"]]
        got = [(int(code), detail.split("\n")[0]) for code, detail in
               zip(replies["name"], replies["detail"], strict=True)]
        assert got == [(r["code"], r["text"]) for r in clear]
        for reply, detail in zip(clear, replies["detail"], strict=True):
            if "lines" in reply:
                assert len(detail.split("\n")) == reply["lines"]
        commands = list(_smtp_events(report, int(row["stream"]), "smtp_command",
                                     decrypted=False)["detail"])
        assert commands == tc["smtp_commands"][:len(commands)]
        if not tc["starttls_accepted"]:
            assert commands == tc["smtp_commands"]  # no TLS: every command was in clear
        # (inside TLS a lost record leaves a gap: test_smtp_inside_tls checks that one)
        assert _smtp_events(report, int(row["stream"]), "smtp_gap", decrypted=False).empty


def test_multi_segment_reply_keeps_its_first_and_last_frame():
    report = _fixture_report("smtp-ehlo-line-per-segment", False)
    ehlo = report.events[(report.events["kind"] == "smtp_reply")
                         & (report.events["name"] == "250")].iloc[0]
    assert int(ehlo["last_frame"]) > int(ehlo["frame"])
    assert "250-STARTTLS" in ehlo["detail"].split("\n")
    conv = report.conversations.iloc[0]
    assert bool(conv["starttls_offered"]) is True
    assert "W1" not in set(report.findings["id"])


@pytest.mark.parametrize(("name", "with_keys"), CASES)
def test_events_are_in_wire_order_within_a_frame(name: str, with_keys: bool):
    """ChangeCipherSpec comes before the Finished it protects; a decrypted SMTP line comes
    after the first application-data record that carries it."""
    report = _fixture_report(name, with_keys)
    for (_frame, _sender), ev in report.events.groupby(["frame", "sender"], observed=True):
        kinds = list(ev["kind"].astype(str))
        names = list(ev["name"])
        if "tls_ccs" in kinds and "Finished" in names:
            assert kinds.index("tls_ccs") < names.index("Finished"), (name, _frame)
        if "tls_appdata" in kinds:
            decrypted = [i for i, d in enumerate(ev["decrypted"]) if d and
                         kinds[i].startswith("smtp_")]
            assert all(i > kinds.index("tls_appdata") for i in decrypted), (name, _frame)
