"""The HTML report: self-contained, complete, and loaded in a real headless chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyshark_tools import analyze
from pyshark_tools.cli import main
from pyshark_tools.render.html import render_html
from pyshark_tools.render.labels import verdict_label

from .helpers import FIXTURES, ROOT, TRUST, fixture_path, fixture_truth

SEED = "tls12-client-cert-empty"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (bash scripts/setup.sh test installs it)")


def _args(name: str) -> list[str]:
    return [str(fixture_path(name)), "--keylog", str(FIXTURES / f"{name}.keys"),
            "--trust-store", str(TRUST), "--expect-cert-name", "mail.contoso.com"]


@cache
def _report(name: str):
    return analyze(fixture_path(name), keylog=FIXTURES / f"{name}.keys", trust_store=TRUST,
                   expect_cert_name="mail.contoso.com")


def _expected_text(name: str) -> list[str]:
    """What a reader must find on the page, from the fixture's ground truth."""
    truth = fixture_truth(name)
    report = _report(name)
    want = [verdict_label(v) for v in report.conversations["client_cert"].astype(str)]
    want += list(report.findings["title"])
    want += list(report.findings["fix"].str.slice(0, 60))
    for conv in truth["conversations"]:
        for cert in conv["server_certificates"] + conv["client_certificates"]:
            want += [cert["sha1"].upper().replace(":", ""), cert["sha256"].lower()]
    return want


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained():
    page = render_html(_report(SEED))
    parser = _Collector()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for tag, attrs in parser.tags:
        for key in ("src", "href"):
            assert not attrs.get(key, "").startswith(("http:", "https:", "//")), (tag, attrs)
    # Only namespace URIs, never something to fetch.
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert "Content-Security-Policy" in page
    assert page.count("<svg") >= 2  # the ladder and the validity bars


def test_html_has_the_key_facts():
    report = _report(SEED)
    page = render_html(report)
    for text in _expected_text(SEED):
        assert text.replace("'", "&#x27;").replace('"', "&quot;") in page or text in page, text
    assert 'id="ladder-0"' in page  # the conversation with a problem has its ladder
    assert "550" in page and "valid at capture time" in page


def test_only_conversations_with_a_problem_get_a_ladder():
    report = _report("mixed-traffic")
    page = render_html(report)
    ladders = set(re.findall(r'id="ladder-(\d+)"', page))
    problems = {str(s) for s in report.problems["stream"]}
    assert ladders == problems == {"8", "31"}


def test_cli_writes_html_to_a_file_and_to_stdout(tmp_path):
    runner = CliRunner()
    target = tmp_path / "report.html"
    result = runner.invoke(main, [*_args(SEED), "--format", "html", "-o", str(target)])
    assert result.exit_code == 1, result.output  # problems found
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    stdout = runner.invoke(main, [*_args(SEED), "--format", "html"])
    assert stdout.exit_code == 1
    assert stdout.output.startswith("<!DOCTYPE html>")
    assert verdict_label("empty") in stdout.output


# ---- in a real browser -------------------------------------------------------------------


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _page_problems(stderr: str) -> list[str]:
    """Console messages (script errors, CSP violations, failed loads) chromium logged."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Refused to" in line]


def _load(tmp_path: Path, page: str) -> tuple[str, list[str]]:
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    done = _chromium(tmp_path, "--dump-dom", path.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, _page_problems(done.stderr)


@needs_chromium
def test_chromium_reports_a_broken_page(tmp_path):
    """The check below is real: a page that fetches and scripts is caught."""
    page = render_html(_report(SEED)).replace(
        "</body>", '<img src="http://192.0.2.1/x.png"><script>undefined_fn()</script></body>')
    _, problems = _load(tmp_path, page)
    assert problems, "chromium logged nothing for a page with a blocked image and a script"


@needs_chromium
@pytest.mark.parametrize("name", [SEED, "mixed-traffic"])
def test_chromium_loads_the_report_without_errors(tmp_path, name):
    dom, problems = _load(tmp_path, render_html(_report(name)))
    assert problems == []
    assert "<svg" in dom and 'class="ladder"' in dom
    text = re.sub(r"<[^>]+>", " ", dom)
    text = re.sub(r"\s+", " ", text).replace("&amp;", "&").replace("&lt;", "<") \
        .replace("&gt;", ">").replace("&quot;", '"').replace("&#x27;", "'")
    for want in _expected_text(name):
        assert re.sub(r"\s+", " ", want) in text, want
    assert "Client certificate: EMPTY: no certificate sent" in text  # ladder caption


@needs_chromium
def test_chromium_screenshot_of_the_seed_report(tmp_path):
    report = tmp_path / "report.html"
    report.write_text(render_html(_report(SEED)), encoding="utf-8")
    shot = tmp_path / "shot.png"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "html-screenshot.sh"), str(report),
                           str(shot), "1280", "1800"], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "CHROMIUM": CHROMIUM})
    assert done.returncode == 0, done.stderr
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (1800, 1280)
    # Not a blank page: the red of the EMPTY verdict (#cf222e) is on it.
    red = ((abs(pixels[..., 0] - 0xCF / 255) < 0.03) & (abs(pixels[..., 1] - 0x22 / 255) < 0.03)
           & (abs(pixels[..., 2] - 0x2E / 255) < 0.03))
    assert red.sum() > 500
