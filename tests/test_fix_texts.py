"""Fix texts: commands are code in Markdown (checked with a real CommonMark parser) and HTML,
and the values the capture knows are filled in (ground truth: the fixture generator's JSON)."""

from __future__ import annotations

import re
from functools import cache
from html.parser import HTMLParser

from markdown_it import MarkdownIt

from pyshark_tools import analyze
from pyshark_tools.render.data import to_markdown
from pyshark_tools.render.html import render_html
from pyshark_tools.render.inline import markdown_inline, spans

from .helpers import TRUST, fixture_path, fixture_truth


@cache
def report(name: str, expect: str = "mail.contoso.com"):
    return analyze(fixture_path(name), trust_store=TRUST, expect_cert_name=expect)


class _Text(HTMLParser):
    """Tags seen, all text, and the text inside each <code> element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.code: list[str] = []
        self._in_code = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "code":
            self._in_code += 1
            self.code.append("")

    def handle_endtag(self, tag):
        if tag == "code":
            self._in_code -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._in_code:
            self.code[-1] += data


def _parse(markup: str) -> _Text:
    parser = _Text()
    parser.feed(markup)
    return parser


def _commands(fix: str) -> list[str]:
    return [piece for code, piece in spans(fix) if code]


def test_commonmark_shows_every_fix_whole_with_its_commands_as_code():
    for name in ("tls12-client-cert-empty", "tls12-client-cert-expired",
                 "tls12-client-cert-name-mismatch"):
        rep = report(name)
        rendered = _parse(MarkdownIt("commonmark").enable("table").render(to_markdown(rep)))
        # no markup the report did not mean: <I>, <S>, <connector> ... stay text
        assert set(rendered.tags) <= {"h1", "h2", "h3", "p", "ul", "li", "code", "table",
                                      "thead", "tbody", "tr", "th", "td", "br", "blockquote"}
        text = re.sub(r"\s+", " ", "".join(rendered.text))
        for fix in rep.findings["fix"]:
            assert fix.replace("`", "") in text
            for command in _commands(fix):
                assert command in rendered.code
        assert rendered.code, name


def test_markdown_escapes_what_is_not_code():
    text = "Name <S>*bold* a_b [x](y) `Set-X \"<I><a>\"` & |"
    html_out = MarkdownIt("commonmark").render(markdown_inline(text))
    parsed = _parse(html_out)
    assert parsed.tags == ["p", "code"]
    assert "".join(parsed.text).strip() == text.replace("`", "")


def test_html_fix_commands_are_code_with_unbroken_words():
    rep = report("tls12-client-cert-empty")
    page = render_html(rep)
    parsed = _parse(page)
    fix = rep.findings.loc[rep.findings["id"] == "W6", "fix"].iloc[0]
    for command in _commands(fix):
        assert command in parsed.code
    assert 'class="word">-TlsCertificateName</span>' in page
    assert "code.cmd .word { white-space: nowrap; }" in page


def test_fixes_are_filled_in_from_the_capture():
    empty = report("tls12-client-cert-empty")
    w6 = empty.findings.loc[empty.findings["id"] == "W6", "fix"].iloc[0]
    ehlo = fixture_truth("tls12-client-cert-empty")["conversations"][0]["ehlo"]
    assert f"`Get-ExchangeCertificate -DomainName {ehlo} |" in w6

    expired = report("tls12-client-cert-expired")
    w10 = expired.findings.loc[expired.findings["id"] == "W10", "fix"].iloc[0]
    leaf = fixture_truth("tls12-client-cert-expired")["conversations"][0][
        "client_certificates"][0]
    assert f"-Thumbprint {leaf['sha1']}" in w10
    issuer = leaf["issuer"].replace(",", ", ")
    subject = leaf["subject"].replace(",", ", ")
    assert f'-TlsCertificateName "<I>{issuer}<S>{subject}"' in w10

    mismatch = report("tls12-client-cert-name-mismatch", "www.contoso.com")
    w11 = mismatch.findings.loc[mismatch.findings["id"] == "W11"].iloc[0]
    names = fixture_truth("tls12-client-cert-name-mismatch")["conversations"][0][
        "client_certificates"][0]["sans"]
    assert f"-TlsSenderCertificateName {names[0]}`" in w11["fix"]
    listed = w11["explanation"].split("certificate's names are ", 1)[1].rstrip(".")
    assert sorted(listed.split(", ")) == sorted(set(names))  # each name once
