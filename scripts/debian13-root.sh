#!/usr/bin/env bash
# A Debian 13 (trixie) root with Debian's tshark 4.4, to run the test suite against a second
# Wireshark version on a Debian 12 machine (whose own tshark is 4.0).
#   bash scripts/debian13-root.sh create   make the root (or reuse a complete one)
#   bash scripts/debian13-root.sh test     create, then run the test suite inside it
#   bash scripts/debian13-root.sh shell    create, then a root shell inside it
# Needs root (debootstrap, chroot, mounts). The root comes from Debian's own archive only.
# Settings (environment):
#   DEBIAN13_ROOT    where the root lives (default /var/cache/tls-smtp-report/debian13);
#                    a complete root is reused, so keep it between CI runs where you can
#   DEBIAN13_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   DEBIAN13_USER    the unprivileged user that runs Lua and GUI tests (default tester)
#   DEBIAN13_SUITE   another Debian suite instead of trixie, e.g. sid for tshark 4.6 (its
#                    root then defaults to /var/cache/tls-smtp-report/<suite>); CI uses trixie
# Wireshark 4.2 and later run no personal Lua plugin for root, so the suite runs as root (as
# CI does) except the tests marked personal_lua (the plugin inside tshark, the GUI), which run
# as that user (see docs/wireshark-versions.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="${1:-create}"
shift || true
suite="${DEBIAN13_SUITE:-trixie}"
if [ "$suite" = trixie ]; then
    root="${DEBIAN13_ROOT:-/var/cache/tls-smtp-report/debian13}"
else
    root="${DEBIAN13_ROOT:-/var/cache/tls-smtp-report/$suite}"
fi
mirror="${DEBIAN13_MIRROR:-http://deb.debian.org/debian}"
user="${DEBIAN13_USER:-tester}"
# What the suite needs in there: the list of scripts/setup.sh test, from trixie (where the
# Qt GUI package is called wireshark; wireshark-qt is gone).
packages=(tshark wireshark xvfb xauth imagemagick x11-utils lua5.2 lua5.3 lua5.4
          python3-venv python3-pip ca-certificates git chromium procps)
stamp="$root/.tls-smtp-report-complete"

if [ "$(id -u)" -ne 0 ]; then
    echo "debian13-root: needs root (debootstrap, chroot and mounts)" >&2
    exit 2
fi

log() { echo "debian13-root: $*" >&2; }

mounted=()
unmount_all() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[$i]}" 2>/dev/null || true
    done
    mounted=()
}
trap unmount_all EXIT
trap 'exit 143' TERM  # a time limit (CI's timeout) still unmounts what this run mounted
trap 'exit 130' INT

mount_into() {  # mount_into TARGET mount-args...: mount once, remember it for the exit trap
    local target="$1"
    shift
    mkdir -p "$target"
    if ! mountpoint -q "$target"; then
        mount "$@" "$target"
        mounted+=("$target")
    fi
}

host_files_in() {  # the host's name resolution and, if it has them, its CA bundle and pip.conf
    local dir="$1"
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        mkdir -p "$dir/etc/ssl/certs"
        cp -L /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    fi
    if [ -f /etc/pip.conf ]; then
        cp -L /etc/pip.conf "$dir/etc/pip.conf"
    fi
}

mount_system() {  # proc, dev and a private tmp for the root at $1
    local dir="$1"
    mount_into "$dir/proc" -t proc proc
    mount_into "$dir/dev" --bind /dev
    mount_into "$dir/dev/pts" --bind /dev/pts
    mount_into "$dir/dev/shm" -t tmpfs tmpfs
    mount_into "$dir/tmp" -t tmpfs -o mode=1777 tmpfs
}

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

install_packages() {
    log "installing ${packages[*]} (apt-get, $suite)"
    if [ "$suite" != trixie ]; then
        # a mirror that serves unstable a few weeks behind carries an expired Valid-Until
        echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99tls-smtp-report"
    fi
    in_root apt-get update -qq
    echo "wireshark-common wireshark-common/install-setuid boolean false" \
        | in_root debconf-set-selections
    # ca-certificates rewrites the bundle; the host's copy goes back in afterwards.
    in_root apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    in_root apt-get clean
    host_files_in "$root"
    printf '%s\n' "${packages[@]}" >"$stamp"
}

create_root() {
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(printf '%s\n' "${packages[@]}")" ]; then
        log "reusing $root ($(in_root dpkg-query -W -f '${Version}' tshark) tshark)"
        host_files_in "$root"
        mount_system "$root"
        return
    fi
    # From here: a new root, or one whose package list changed (apt adds what is missing).
    if [ -e "$root" ] && [ ! -f "$root/debootstrap.log" ]; then
        log "$root exists and is not a root this script made: choose DEBIAN13_ROOT"
        exit 2
    fi
    if [ ! -f "$root/debootstrap.log" ]; then
        local partial="$root.partial"
        if [ -e "$partial" ]; then
            # Only ever our own half-made root (its name says so): start over.
            log "removing the unfinished $partial"
            rm -rf --one-file-system "$partial"
        fi
        if ! command -v debootstrap >/dev/null 2>&1; then
            log "installing debootstrap"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        fi
        mkdir -p "$(dirname "$root")"
        log "debootstrap --variant=minbase $suite $partial $mirror (a few minutes)"
        debootstrap --variant=minbase "$suite" "$partial" "$mirror" >"$partial.log" 2>&1 || {
            tail -20 "$partial.log" >&2
            exit 1
        }
        mv "$partial.log" "$partial/debootstrap.log"  # the mark of a finished debootstrap
        mv "$partial" "$root"
    fi
    host_files_in "$root"
    mount_system "$root"
    install_packages
}

add_user() {
    if ! in_root id -u "$user" >/dev/null 2>&1; then
        in_root useradd --create-home --shell /bin/bash "$user"
    fi
}

copy_project() {  # the working tree (no venv, no git objects) into the root, as the user's
    local dest="$root/home/$user/project"
    # A run that was killed can leave the corpus mounted in there: unmount it before removing.
    if mountpoint -q "$dest/shared" 2>/dev/null; then
        umount -l "$dest/shared"
    fi
    rm -rf --one-file-system "$dest"
    mkdir -p "$dest/repo"
    tar -C "$here" --exclude=./.venv --exclude=./.git --exclude='*/__pycache__' \
        --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude='*.egg-info' -cf - . \
        | tar -C "$dest/repo" -xf -
    # The tests read the shared corpus beside the repository (../shared); read-only here.
    if [ -d "$here/../shared" ]; then
        mkdir -p "$dest/shared"
        mount_into "$dest/shared" --bind -o ro "$here/../shared"
        mount -o remount,bind,ro "$dest/shared" 2>/dev/null || true
    fi
    chown -R "$(in_root id -u "$user"):$(in_root id -g "$user")" "$dest/repo"
    chown "$(in_root id -u "$user"):$(in_root id -g "$user")" "$dest"
}

run_tests() {  # the suite inside the root: Lua/GUI tests as the user, the rest as root
    add_user
    copy_project
    local repo="/home/$user/project/repo" status=0 rc started
    log "tshark in the root: $(in_root tshark --version 2>/dev/null | head -1)"
    # The venv belongs to the user, so the Lua and GUI tests can run as them too.
    in_root runuser -u "$user" -- bash -c "cd $repo && python3 -m venv .venv \
        && .venv/bin/python -m pip install -q --upgrade pip >/dev/null \
        && .venv/bin/python -m pip install -q -e '.[test]' >/dev/null"
    local pytest=(.venv/bin/python -m pytest -q -p no:cacheprovider)
    started=$SECONDS
    log "tests that need smtptls.lua inside tshark or the GUI, as $user (4.2+ runs no personal Lua for root)"
    in_root runuser -u "$user" -- env HOME="/home/$user" CI="${CI:-true}" \
        bash -c 'cd "$0" && exec "$@"' "$repo" "${pytest[@]}" -m personal_lua "$@" \
        || status=$?
    [ "$status" -eq 5 ] && status=0  # pytest: none of the selected tests is in this half
    log "as $user: $((SECONDS - started)) s (exit $status)"
    started=$SECONDS
    log "all the other tests, as root (as CI runs them)"
    in_root env CI="${CI:-true}" bash -c 'cd "$0" && exec "$@"' "$repo" \
        "${pytest[@]}" -m "not personal_lua" "$@" || { rc=$?; [ "$rc" -eq 5 ] || status=$rc; }
    log "as root: $((SECONDS - started)) s (exit $status)"
    return "$status"
}

case "$mode" in
    create)
        create_root
        ;;
    test)
        create_root
        run_tests "$@"
        ;;
    shell)
        create_root
        add_user
        in_root bash "$@"
        ;;
    *)
        echo "usage: bash scripts/debian13-root.sh [create|test|shell] [pytest args...]" >&2
        exit 2
        ;;
esac
