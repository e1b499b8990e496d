#!/usr/bin/env bash
# The one shell script of the harness: Debian packages for a fresh machine.
# shippy-dev (src/provision.rs) decides what is missing and calls this.
#
#   scripts/provision.sh apt PACKAGE...              apt-get install them
#   scripts/provision.sh from-suite SUITE DIR PKG... download PKG from Debian
#                                                    SUITE into DIR and unpack
#                                                    them into DIR/unpacked
#
# from-suite is how a program comes from another suite than the machine's own
# (Consul 1.8.7 from bullseye, kubectl and compose v2 from trixie): the mirror
# is this machine's own, apt runs with private state in DIR and an empty dpkg
# status, so the machine's sources and package database are never changed.
set -euo pipefail
die() { printf 'provision: %s\n' "$*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get is not available: install ${*:2} by hand"
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo

apt() {
    local install=($sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
        --no-install-recommends -o DPkg::Lock::Timeout=600 "$@")
    printf 'provision: apt-get install %s\n' "$*" >&2
    "${install[@]}" >&2 || { $sudo apt-get update -q >&2 && "${install[@]}" >&2; } ||
        die "apt-get could not install $*"
}

mirror() {
    local uri=
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ { u = $2 } /^Suites:/ { if (u !~ /security/) { print u; exit } }' \
            /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
            /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || die "cannot find this machine's Debian mirror in /etc/apt"
    echo "$uri"
}

from_suite() {
    local suite=$1 dir=$2 deb
    shift 2
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) $suite main" >"$dir/sources.list"
    : >"$dir/status"
    local opts=(-q -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$dir/lists" -o "Dir::State::status=$dir/status"
        -o "Dir::Cache=$dir/cache" -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update >"$dir/update.log" 2>&1 ||
        die "apt-get update for Debian $suite failed: $(tail -3 "$dir/update.log")"
    (cd "$dir" && apt-get "${opts[@]}" download "$@" >"$dir/download.log" 2>&1) ||
        die "downloading $* from Debian $suite failed: $(tail -3 "$dir/download.log")"
    for deb in "$dir"/*.deb; do dpkg-deb -x "$deb" "$dir/unpacked"; done
}

case ${1:-} in
    apt) shift; apt "$@" ;;
    from-suite) shift; from_suite "$@" ;;
    *) die "usage: $0 apt PACKAGE... | from-suite SUITE DIR PACKAGE..." ;;
esac
