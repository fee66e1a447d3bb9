#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine (root or sudo):
#   bash scripts/setup.sh demo   install the tool, then report on a bundled capture
#   bash scripts/setup.sh test   install the tool and what the tests use, then run the test suite
#   bash scripts/setup.sh        install the tool only
# It installs tshark (and the other system packages the tests use) with apt when missing,
# creates .venv beside this repository and installs the package into it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
mode="${1:-install}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

python="${PYTHON:-python3}"
apt_packages=(tshark)
# Debian and Ubuntu ship `python3 -m venv` without ensurepip unless python3-venv is installed
# (the usual server or container image has python3 alone).
if [ ! -x .venv/bin/python ] && ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
    apt_packages+=(python3-venv)
fi
if [ "$mode" = "test" ]; then
    # The tests also record nothing live, but use editcap/capinfos (wireshark-common,
    # pulled in by tshark) and, for the GUI screenshot, Wireshark's Qt GUI under Xvfb.
    apt_packages+=(python3-venv)
    # "wireshark" is the Qt GUI: on Debian 12 a meta-package for wireshark-qt, on Debian 13
    # the GUI itself (there is no wireshark-qt there).
    apt_packages+=(wireshark xvfb imagemagick x11-utils lua5.2 lua5.3 lua5.4)  # Wireshark GUI screenshot test, Lua syntax checks
    apt_packages+=(chromium)  # HTML report test in a real headless browser, docs screenshots
fi
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]} with apt-get" >&2
    as_root apt-get update -qq
    # tshark asks whether non-root users may capture; answer no without a prompt.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | as_root debconf-set-selections
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# The runtime alone for a demo or a plain install; the test suite's extras only for `test`.
if [ "$mode" = "test" ]; then
    .venv/bin/python -m pip install -q -e ".[test]"
else
    .venv/bin/python -m pip install -q -e .
fi

case "$mode" in
    demo)
        shift || true
        if [ "$#" -gt 0 ]; then
            args=("$@")
        else
            # The seed's case, with its key log so the 550 5.7.64 inside TLS shows too, and
            # the fixtures' test root (their certificates are not from a public CA).
            args=(fixtures/tls12-client-cert-empty.pcapng
                  --keylog fixtures/tls12-client-cert-empty.keys
                  --trust-store fixtures/pki/test-root-ca.pem
                  --expect-cert-name mail.contoso.com)
        fi
        echo "setup: done. Running: .venv/bin/tls-smtp-report ${args[*]}" >&2
        status=0
        .venv/bin/tls-smtp-report "${args[@]}" || status=$?
        echo "(exit code $status: 0 nothing wrong, 1 problems found, 2 usage, 3 tshark, 4 unreadable capture)" >&2
        [ "$status" -le 1 ]
        ;;
    test)
        exec .venv/bin/python -m pytest -q
        ;;
    install)
        echo "setup: done. Try: .venv/bin/tls-smtp-report fixtures/tls12-client-cert-empty.pcapng" >&2
        ;;
    *)
        echo "usage: bash scripts/setup.sh [install|demo|test]" >&2
        exit 2
        ;;
esac
