#!/usr/bin/env bash
# Screenshot an HTML (or SVG) file with Debian's headless chromium, no network, no profile.
#   bash scripts/html-screenshot.sh report.html docs/img/html-report.png [WIDTH HEIGHT]
#   bash scripts/html-screenshot.sh ladder.svg docs/img/ladder.png 1000 1200
# Needs: apt-get install chromium (scripts/setup.sh test installs it).
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: bash scripts/html-screenshot.sh INPUT.html|INPUT.svg OUTPUT.png [WIDTH HEIGHT]" >&2
    exit 2
fi
input="$(realpath "$1")"
output="$(realpath -m "$2")"
width="${3:-1280}"
height="${4:-1600}"
browser="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$browser" ]; then
    echo "html-screenshot: chromium not found (apt-get install chromium)" >&2
    exit 3
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" \
    --window-size="${width},${height}" --screenshot="$output" "file://$input" \
    >/dev/null 2>"$profile/stderr" || { cat "$profile/stderr" >&2; exit 1; }
[ -s "$output" ] || { cat "$profile/stderr" >&2; echo "html-screenshot: no $output" >&2; exit 1; }
echo "$output"
