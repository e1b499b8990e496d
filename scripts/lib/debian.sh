# Sourced by the scripts that take a program from another Debian suite than
# the machine's own (Consul from bullseye, kubectl and compose v2 from
# trixie): the suite's address is derived from this machine's own Debian
# source, and apt runs with private state in a temporary directory, so the
# machine's apt sources and package database are never changed.
#
# The sourcing script provides `die MESSAGE` (and may provide `log`).

# This machine's Debian mirror, read from its apt sources.
debian_mirror() {
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

# fetch_from_suite SUITE DIR PACKAGE...: downloads the .deb of each PACKAGE
# from Debian SUITE (main) into DIR and unpacks them all into DIR/unpacked.
# An empty dpkg status is used, so a package of the same name installed from
# elsewhere (with a higher epoch, say) cannot shadow the suite's version.
fetch_from_suite() {
    local suite=$1 dir=$2
    shift 2
    command -v apt-get >/dev/null || die "apt-get is not available to fetch $* from Debian $suite"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) $suite main" \
        >"$dir/sources.list"
    : >"$dir/status"
    local opts=(-q -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$dir/lists" -o "Dir::State::status=$dir/status"
        -o "Dir::Cache=$dir/cache" -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update >"$dir/update.log" 2>&1 ||
        die "apt-get update for Debian $suite failed: $(tail -3 "$dir/update.log")"
    (cd "$dir" && apt-get "${opts[@]}" download "$@" >"$dir/download.log" 2>&1) ||
        die "downloading $* from Debian $suite failed: $(tail -3 "$dir/download.log")"
    local deb
    for deb in "$dir"/*.deb; do
        dpkg-deb -x "$deb" "$dir/unpacked"
    done
}
