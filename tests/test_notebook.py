"""Execute the example notebook end to end (nbclient) with a kernel from this environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pyshark_tools.render.labels import verdict_label

from .helpers import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = ROOT / "notebooks" / "exchange-online-client-certificate.ipynb"
KERNEL = "pyshark-tools-test"


def _install_kernel(folder: Path) -> None:
    """A kernelspec running this interpreter (the project's venv), found via JUPYTER_PATH.

    Works on a fresh machine: nothing is installed into the user's Jupyter folders.
    """
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pyshark-tools (test)",
        "language": "python",
        "env": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
    }))


def _execute() -> object:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=300,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jupyter")
    _install_kernel(folder)
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(folder))
    mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    try:
        yield _execute()
    finally:
        mp.undo()


def _outputs(nb, kind: str) -> list[str]:
    """All outputs of one MIME type (or 'stream' text), in cell order."""
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output["output_type"] == "stream":
                out.append(output["text"])
            elif kind in output.get("data", {}):
                value = output["data"][kind]
                out.append(value if isinstance(value, str) else "".join(value))
    return out


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_notebook_runs_without_errors(executed):
    errors = [o for c in executed.cells for o in c.get("outputs", [])
              if o["output_type"] == "error"]
    assert not errors, errors
    stderr = [o["text"] for c in executed.cells for o in c.get("outputs", [])
              if o["output_type"] == "stream" and o["name"] == "stderr"]
    assert not any("Traceback" in s or "Exception" in s for s in stderr), stderr


def test_notebook_key_outputs(executed):
    text = "".join(_outputs(executed, "stream"))
    assert "8 SMTP conversations" in text
    assert "Exchange Online streams: [2, 8, 12, 18, 31, 47]" in text
    assert "failing: [8, 31]" in text
    assert "client certificate sent in streams: [2, 12, 18, 47]" in text
    # The finding and its fix.
    assert "W6 [error] No client certificate presented" in text
    assert "Fix: Make the sending server present its certificate" in text
    # pyshark drill-down from inside the kernel's running event loop.
    assert "event loop running in this cell: True" in text
    assert "client Certificate message, certificates_length=0" in text
    # The transcript.
    assert "[TLS Certificate: EMPTY - no certificate presented]" in text


def test_notebook_rich_outputs(executed):
    html = "".join(_outputs(executed, "text/html"))
    assert verdict_label("empty") in html and verdict_label("presented") in html
    assert "Relay denied: 550 5.7.64 TenantAttribution" in html
    assert "FCDDB647EBE0876CD9E3FFA40A751D640E442DC9" in html  # client leaf thumbprint
    svg = "".join(_outputs(executed, "image/svg+xml"))
    assert "Certificate: EMPTY" in svg and "tcp.stream 8" in svg
    assert "ip.addr==" in svg and "tcp.port==25" in svg  # the filter every version reads alike
    pngs = _outputs(executed, "image/png")
    assert len(pngs) == 2  # the timeline and the validity windows
    assert all(len(p) > 10_000 for p in pngs)
