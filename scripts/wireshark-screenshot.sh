#!/usr/bin/env bash
# Screenshot of Wireshark (Debian's wireshark-qt) with the SMTP-TLS-Certs profile and the
# smtptls.lua plugin, headless under Xvfb. Used by tests/test_wireshark_gui.py and for
# docs/img/wireshark-profile.png.
#
#   bash scripts/wireshark-screenshot.sh [CAPTURE] [OUTPUT.png]
#
# Defaults: fixtures/tls12-client-cert-empty.pcapng (the seed's case), docs/img/wireshark-profile.png.
# Needs: wireshark-qt, xvfb (xvfb-run), imagemagick (import), x11-utils (xwininfo).
# Runs in a throw-away HOME: the real ~/.config/wireshark is never read or written.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="SMTP-TLS-Certs"
width="${SCREENSHOT_WIDTH:-1400}"
height="${SCREENSHOT_HEIGHT:-900}"

if [ -z "${SMTPTLS_INNER:-}" ]; then
    for tool in wireshark xvfb-run import xwininfo; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "wireshark-screenshot: '$tool' is missing (apt-get install wireshark-qt xvfb imagemagick x11-utils)" >&2
            exit 3
        fi
    done
    capture="${1:-$here/fixtures/tls12-client-cert-empty.pcapng}"
    if [ ! -f "$capture" ] && [ -z "${1:-}" ]; then
        capture="$here/../shared/corpus/zeek/Traces/tls/certificate-request-failed.pcap"
    fi
    output="${2:-$here/docs/img/wireshark-profile.png}"
    [ -f "$capture" ] || { echo "wireshark-screenshot: no capture $capture" >&2; exit 2; }
    capture="$(cd "$(dirname "$capture")" && pwd)/$(basename "$capture")"
    mkdir -p "$(dirname "$output")"
    output="$(cd "$(dirname "$output")" && pwd)/$(basename "$output")"
    export SMTPTLS_INNER=1
    exec xvfb-run -a -s "-screen 0 ${width}x${height}x24" bash "${BASH_SOURCE[0]}" "$capture" "$output"
fi

capture="$1"
output="$2"
home="$(mktemp -d /tmp/smtptls-gui.XXXXXX)"
ws_pid=""
cleanup() {
    if [ -n "$ws_pid" ] && kill -0 "$ws_pid" 2>/dev/null; then
        kill "$ws_pid" 2>/dev/null || true
        sleep 1
        kill -9 "$ws_pid" 2>/dev/null || true
    fi
    rm -rf "$home"
}
trap cleanup EXIT

export HOME="$home"
unset XDG_CONFIG_HOME XDG_DATA_HOME
export WIRESHARK_CONFIG_DIR="$home/wireshark-config"
export XDG_RUNTIME_DIR="$home/runtime"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

# The profile and the plugin, where `tls-smtp-report wireshark install` puts them.
mkdir -p "$WIRESHARK_CONFIG_DIR/profiles/$profile" "$home/.local/lib/wireshark/plugins"
cp "$here/dissectors/profiles/$profile/"* "$WIRESHARK_CONFIG_DIR/profiles/$profile/"
cp "$here/dissectors/smtptls.lua" "$home/.local/lib/wireshark/plugins/"
# Window geometry and a calm first start (no welcome pages to dismiss).
cat > "$WIRESHARK_CONFIG_DIR/recent_common" <<EOF
gui.geometry_main_x: 0
gui.geometry_main_y: 0
gui.geometry_main_width: $width
gui.geometry_main_height: $height
gui.geometry_main_maximized: FALSE
gui.last_used_profile: $profile
privs.warn_if_elevated: FALSE
EOF

wireshark -C "$profile" -r "$capture" >"$home/wireshark.log" 2>&1 &
ws_pid=$!

name="$(basename "$capture")"
ready=""
for _ in $(seq 1 120); do
    if ! kill -0 "$ws_pid" 2>/dev/null; then
        echo "wireshark-screenshot: Wireshark exited early:" >&2
        cat "$home/wireshark.log" >&2
        exit 1
    fi
    if xwininfo -root -tree 2>/dev/null | grep -F "$name" >/dev/null; then
        ready=1
        break
    fi
    sleep 0.5
done
if [ -z "$ready" ]; then
    echo "wireshark-screenshot: no Wireshark window showing $name after 60 s" >&2
    cat "$home/wireshark.log" >&2
    exit 1
fi
sleep "${SCREENSHOT_SETTLE:-4}"  # let the packet list paint its colours
import -window root -define png:compression-level=9 "$output"
echo "wireshark-screenshot: wrote $output" >&2
