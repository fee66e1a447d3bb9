"""The HTML report as a manager opens it: a headline first, readable in an 800 px window.

Layout is measured by the real browser: a copy of the page (its Content-Security-Policy
dropped, a measuring script added) is loaded in headless chromium, which writes what it
measured into the DOM it dumps.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from pyshark_tools import analyze
from pyshark_tools.render.headline import headline
from pyshark_tools.render.html import render_html
from pyshark_tools.render.ladder import STYLE_COLOURS, ladder_svg

from .helpers import FIXTURES, TRUST, fixture_path, fixture_truth

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (bash scripts/setup.sh test installs it)")

MEASURE = """<script>
const W = document.documentElement.clientWidth;
const first = (sel) => document.querySelector(sel);
const out = {
  viewport: W,
  page_width: document.documentElement.scrollWidth,
  tables_outside_scroll: [...document.querySelectorAll('table')]
    .filter(t => !t.closest('.scroll')).length,
  boxes_past_edge: [...document.querySelectorAll('.scroll, .ladder-wrap, .finding, p, h1, h2')]
    .filter(e => e.getBoundingClientRect().right > W + 0.5).length,
  ladder_widths: [...document.querySelectorAll('svg.ladder')]
    .map(s => s.getBoundingClientRect().width),
  broken_words: [...document.querySelectorAll('code.cmd .word')]
    .filter(w => w.getClientRects().length > 1).map(w => w.textContent),
  words: document.querySelectorAll('code.cmd .word').length,
  headline: first('.headline') ? first('.headline').textContent : null,
  headline_top: first('.headline') ? first('.headline').getBoundingClientRect().top : null,
  table_top: first('table') ? first('table').getBoundingClientRect().top : null,
};
document.body.setAttribute('data-layout', JSON.stringify(out));
</script>"""


@cache
def _report(name: str):
    keys = FIXTURES / f"{name}.keys"
    return analyze(fixture_path(name), keylog=keys if keys.exists() else None,
                   trust_store=TRUST, expect_cert_name="mail.contoso.com")


def _measure(tmp_path: Path, page: str, width: int = 800) -> dict:
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    page = page.replace("</body>", MEASURE + "</body>")
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={width},1000",
         "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'data-layout="([^"]*)"', done.stdout)
    assert found, done.stdout[:500]
    return json.loads(html.unescape(found.group(1)))


def test_headline_counts_what_a_manager_needs():
    mixed = _report("mixed-traffic")
    truth = fixture_truth("mixed-traffic")["conversations"]
    exo = [c for c in truth if c["exchange_online"]]
    empty = [c for c in exo if c["client_sent"] == "empty"]
    sentence, tone = headline(mixed)
    assert sentence.startswith(f"{len(empty)} of {len(exo)} conversations to Exchange Online "
                               "presented no client certificate: mail from them is rejected")
    assert tone == "error"
    seed, _ = headline(_report("tls12-client-cert-empty"))
    assert seed == ("The conversation to Exchange Online presented no client certificate: "
                    "mail from it is rejected (550 5.7.64).")
    ok, tone = headline(_report("tls12-client-cert-ok"))
    assert tone == "ok" and "Nothing wrong" in ok


def test_ladder_caption_takes_the_colour_of_the_worst_finding():
    report = _report("tls12-client-cert-expired")  # presented (green), but expired: W10 error
    assert str(report.conversations["client_cert"].iloc[0]) == "presented"
    assert "error" in set(report.findings["severity"].astype(str))
    svg = ladder_svg(report, 0)
    caption = re.search(r'<rect x="14" y="\d+" width="\d+" height="\d+" rx="8" '
                        r'fill="([^"]+)" stroke="([^"]+)"', svg)
    assert caption
    assert caption.groups()[::-1] == STYLE_COLOURS["red"]  # (stroke, fill)
    verdict = re.search(r'fill="([^"]+)" class="verdict"', svg)
    assert verdict and verdict.group(1) != STYLE_COLOURS["green"][0]


@needs_chromium
@pytest.mark.parametrize("name", ["tls12-client-cert-empty", "mixed-traffic"])
def test_report_reads_at_800_pixels(tmp_path, name):
    report = _report(name)
    got = _measure(tmp_path, render_html(report), 800)
    assert got["viewport"] <= 800
    assert got["page_width"] <= got["viewport"], got  # nothing makes the page scroll sideways
    assert got["tables_outside_scroll"] == 0
    assert got["boxes_past_edge"] == 0, got
    assert got["ladder_widths"] and max(got["ladder_widths"]) <= got["viewport"]
    assert got["words"] > 0 and got["broken_words"] == [], got["broken_words"]
    assert got["headline"] == headline(report)[0]
    assert got["headline_top"] < got["table_top"]  # the sentence comes before any table
