#!/usr/bin/env bash
# Runs the README's quick start in a brand-new Debian 12 root, the way a newcomer meets it: a
# minimal system with only python3 and git (no python3-venv, no tshark), a fresh clone of this
# repository, then `bash scripts/setup.sh demo` and `bash scripts/setup.sh test`.
#
#   sudo bash scripts/check-fresh-debian.sh            both README commands
#   sudo bash scripts/check-fresh-debian.sh demo       only the first one
#
# Needs root and debootstrap (apt-get install debootstrap). The minimal root made by
# `debootstrap --variant=minbase bookworm` from Debian's archive is kept as a tarball in the
# cache folder (CHECK_CACHE, default ~/.cache/tls-smtp-report-check) with the downloaded .deb and
# pip files, so later runs start from the same pristine root without downloading it again.
# Each run unpacks it into a new temporary folder and removes that folder at the end
# (KEEP_ROOT=1 keeps it). The clone is of the committed HEAD: commit before checking.
# If a `shared` folder sits beside the repository (the peer corpus the tests read as
# ../shared), it is mounted read-only beside the clone.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
modes=("$@")
[ "${#modes[@]}" -gt 0 ] || modes=(demo test)
for mode in "${modes[@]}"; do
    case "$mode" in demo|test) ;; *) echo "usage: $0 [demo] [test]" >&2; exit 2 ;; esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "check-fresh-debian: needs root (debootstrap, chroot, mount)" >&2
    exit 2
fi
command -v debootstrap >/dev/null || { echo "check-fresh-debian: apt-get install debootstrap" >&2; exit 2; }

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${CHECK_CACHE:-${HOME:-/root}/.cache/tls-smtp-report-check}"
base="$cache/bookworm-minbase.tar"
mkdir -p "$cache/apt-archives/partial" "$cache/pip"

if [ ! -s "$base" ]; then
    echo "check-fresh-debian: debootstrap --variant=minbase bookworm (once; cached in $cache)" >&2
    staging="$(mktemp -d "$cache/debootstrap.XXXXXX")"
    debootstrap --variant=minbase bookworm "$staging" "$mirror" >"$cache/debootstrap.log" 2>&1 \
        || { echo "check-fresh-debian: debootstrap failed, see $cache/debootstrap.log" >&2; exit 1; }
    tar -C "$staging" -cf "$base.partial" .
    mv "$base.partial" "$base"
    rm -rf "$staging"
fi

root="$(mktemp -d /var/tmp/fresh-debian.XXXXXX)"
mounts=()
cleanup() {
    local m
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        m="${mounts[$i]}"
        umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    if [ "${KEEP_ROOT:-0}" = 1 ]; then
        echo "check-fresh-debian: root kept in $root" >&2
    else
        rm -rf --one-file-system "$root"
    fi
}
trap cleanup EXIT
bind() {  # bind SOURCE TARGET-INSIDE-ROOT [ro]
    mkdir -p "$root$2"
    mount --bind "$1" "$root$2"
    mounts+=("$root$2")
    if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
}

tar -C "$root" -xf "$base"
mount -t proc proc "$root/proc"; mounts+=("$root/proc")
mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"; mounts+=("$root/dev")
mount -t sysfs sysfs "$root/sys"; mounts+=("$root/sys")
bind "$cache/apt-archives" /var/cache/apt/archives
bind "$cache/pip" /root/.cache/pip
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 "$@"; }

echo "check-fresh-debian: installing python3 and git only" >&2
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3 git >/dev/null
# A machine behind an intercepting proxy or a package mirror needs its CA bundle and pip config.
# The copy under /usr/local/share/ca-certificates survives the ca-certificates package
# rebuilding the bundle when setup.sh's apt-get pulls it in.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$root/etc/ssl/certs" "$root/usr/local/share/ca-certificates"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/host-bundle.crt"
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
[ -d /etc/xdg/pip ] && mkdir -p "$root/etc/xdg" && cp -r /etc/xdg/pip "$root/etc/xdg/pip"
if in_root python3 -c 'import ensurepip' 2>/dev/null; then
    echo "check-fresh-debian: python3-venv is present; the check would not be a fresh machine" >&2
    exit 1
fi

# The clone a newcomer makes: committed files only, beside a read-only ../shared when there is one.
git clone -q --no-hardlinks "file://$here" "$root/root/src/tls-smtp-report"
if [ -d "$here/../shared" ]; then
    bind "$(cd "$here/../shared" && pwd)" /root/src/shared ro
fi

status=0
for mode in "${modes[@]}"; do
    echo "check-fresh-debian: running: bash scripts/setup.sh $mode" >&2
    if in_root env CI="${CI:-}" bash -c "cd /root/src/tls-smtp-report && bash scripts/setup.sh $mode"; then
        echo "check-fresh-debian: setup.sh $mode: OK" >&2
    else
        rc=$?
        echo "check-fresh-debian: setup.sh $mode: FAILED (exit $rc)" >&2
        status=1
    fi
done
exit "$status"
