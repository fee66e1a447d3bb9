"""The tables a pandas user gets: lists are lists, vocabularies categorical, a versioned
JSON document, a short repr, and plots that say which extra they need."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import pandas as pd

from pyshark_tools import analyze
from pyshark_tools.core.certificates import TRUST_STATUSES
from pyshark_tools.core.schema import SCHEMA_VERSION, Severity
from pyshark_tools.render.data import to_csv, to_json

from .helpers import FIXTURES, TRUST, fixture_path, fixture_truth


@cache
def report():
    return analyze(fixture_path("mixed-traffic"), trust_store=TRUST)


def test_list_columns_are_python_lists_and_json_arrays():
    rep = report()
    conv, certs, findings = rep.conversations, rep.certificates, rep.findings
    for df, columns in ((conv, ("tls_offered", "reply_codes", "tls_alerts", "finding_ids")),
                        (certs, ("sans", "ekus")), (findings, ("evidence_frames",))):
        for column in columns:
            assert all(isinstance(v, list) for v in df[column]), column
    assert all(isinstance(f, int) for frames in findings["evidence_frames"] for f in frames)
    # the generator's truth: each client leaf's SANs and EKUs, as lists
    truth = {c["client_certificates"][0]["sha256"]: c["client_certificates"][0]
             for c in fixture_truth("mixed-traffic")["conversations"] if c["client_certificates"]}
    for _, cert in certs[certs["sha256"].isin(truth)].iterrows():
        assert cert["sans"] == truth[cert["sha256"]]["sans"]
        assert cert["ekus"] == truth[cert["sha256"]]["ekus"]
    exploded = certs.explode("sans")
    assert "mail.contoso.com" in set(exploded["sans"])
    doc = json.loads(to_json(rep))
    assert all(isinstance(c["finding_ids"], list) for c in doc["conversations"])
    assert all(isinstance(f["evidence_frames"], list) for f in doc["findings"])
    # CSV stays one cell per value: the lists written with their separators
    first = to_csv(rep).splitlines()[1]
    assert "[" not in first


def test_vocabularies_are_categorical():
    rep = report()
    severity = rep.conversations["severity"]
    assert isinstance(severity.dtype, pd.CategoricalDtype)
    assert list(severity.cat.categories) == [s.value for s in Severity] + [""]
    for series in (rep.conversations["client_chain_trust"], rep.certificates["trust"]):
        assert isinstance(series.dtype, pd.CategoricalDtype)
        assert list(series.cat.categories) == list(TRUST_STATUSES)
    assert isinstance(rep.findings["severity"].dtype, pd.CategoricalDtype)
    assert set(rep.certificates["trust"].dropna()) == {"trusted"}


def test_json_carries_its_schema_version():
    doc = json.loads(to_json(report()))
    assert list(doc)[:2] == ["schema_version", "capture"]
    assert doc["schema_version"] == SCHEMA_VERSION == report().to_dict()["schema_version"]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False, cwd=FIXTURES.parent)


def test_repr_in_a_plain_repl_is_one_short_line():
    done = _python("from pyshark_tools import analyze\n"
                   "r = analyze('fixtures/mixed-traffic.pcapng', "
                   "trust_store='fixtures/pki/test-root-ca.pem')\nprint(repr(r))")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 250, done.stdout
    truth = fixture_truth("mixed-traffic")["conversations"]
    assert f"{len(truth)} conversation(s)" in lines[0] and "2 empty" in lines[0]


def test_plots_without_matplotlib_name_the_extra():
    done = _python("import sys\nsys.modules['matplotlib'] = None\n"
                   "from pyshark_tools import analyze\nfrom pyshark_tools.notebook import "
                   "plot_timeline, plot_certificate_validity\n"
                   "r = analyze('fixtures/tls12-client-cert-ok.pcapng')\n"
                   "for plot in (plot_timeline, plot_certificate_validity):\n"
                   "    try:\n        plot(r)\n    except ImportError as exc:\n"
                   "        print(exc)\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all("pip install 'pyshark-tools[notebook]'" in line for line in lines)
