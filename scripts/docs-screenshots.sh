#!/usr/bin/env bash
# Remake the README's screenshots from the bundled seed capture, with this checkout's code:
# the HTML report (its one-sentence headline on top) and the ladder diagram of its conversation.
#   bash scripts/docs-screenshots.sh            writes docs/img/html-report.png, docs/img/ladder.png
#   bash scripts/docs-screenshots.sh OUTDIR     writes them into OUTDIR instead
# Needs .venv (bash scripts/setup.sh) and chromium (scripts/setup.sh test installs it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$here/docs/img}")"
python="${PYTHON:-$here/.venv/bin/python}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$here"
seed=fixtures/tls12-client-cert-empty
# Relative paths, as a reader of the README types them: the page shows what they would see.
"$python" -m pyshark_tools.cli "$seed.pcapng" --keylog "$seed.keys" \
    --trust-store fixtures/pki/test-root-ca.pem --expect-cert-name mail.contoso.com \
    --format html -o "$work/report.html" || [ "$?" -eq 1 ]  # 1: problems found, as expected
"$python" - "$seed" "$work/ladder.svg" <<'PY'
import sys

from pyshark_tools import analyze

seed, target = sys.argv[1], sys.argv[2]
report = analyze(f"{seed}.pcapng", keylog=f"{seed}.keys",
                 trust_store="fixtures/pki/test-root-ca.pem",
                 expect_cert_name="mail.contoso.com", progress=False)
report.conversation(0).ladder().save(target)
PY
bash scripts/html-screenshot.sh "$work/report.html" "$out/html-report.png" 1280 1108 >/dev/null
bash scripts/html-screenshot.sh "$work/ladder.svg" "$out/ladder.png" 1000 1170 >/dev/null
echo "$out/html-report.png"
echo "$out/ladder.png"
