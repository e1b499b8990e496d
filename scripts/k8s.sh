#!/usr/bin/env bash
# The Kubernetes manifests (deploy/kubernetes) without a cluster.
#
#   scripts/k8s.sh check [BIN_DIR]   render both overlays and check them against
#                                   the Kubernetes schemas and the binaries in
#                                   BIN_DIR (default target/debug); one
#                                   "ok - ..." / "not ok - ..." line per check
#   scripts/k8s.sh dev-key [--force] write the dev overlay's JWT signing key
#                                   (an Ed25519 PKCS#8 PEM, gitignored) if missing
#   scripts/k8s.sh kubectl           print the path of the kubectl used here
#
# kubectl comes from Debian trixie's kubernetes-client (its binary is in the
# `kubectl` package of the same source): bookworm carries none, and the
# `kubectl` that may be on PATH is whatever else installed it. Like Consul in
# scripts/infra.sh, the package is downloaded from that suite of this
# machine's own Debian mirror and only its binary unpacked, into a cache.
# kubernetes-validate (the Kubernetes OpenAPI schemas as JSON schemas) comes
# from PyPI, installed with pip when missing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/shippy-rs
kubectl_bin=$cache/kubernetes-client-trixie/kubectl
dev_key=$repo/deploy/kubernetes/overlays/dev/jwt-signing-key.pem

log() { printf 'k8s: %s\n' "$*" >&2; }
# In `check`, a failure to set up is a failed check too, counted by make test.
checking=
die() {
    log "error: $*"
    [ -z "$checking" ] || echo "not ok - kubernetes: $*" >&2  # stderr: it survives $(...)
    exit 1
}
# shellcheck source=lib/debian.sh
. "$repo/scripts/lib/debian.sh"

# kubectl is in trixie's `kubectl` package, which `kubernetes-client` depends on.
install_kubectl_from_trixie() {
    local target=$1 work
    work=$(mktemp -d)
    log "fetching kubectl (kubernetes-client) from Debian trixie"
    fetch_from_suite trixie "$work" kubernetes-client kubectl
    mkdir -p "$(dirname "$target")"
    install -m 0755 "$work/unpacked/usr/bin/kubectl" "$target"
    rm -rf "$work"
    log "kubectl $("$target" version --client 2>/dev/null | head -1) installed at $target"
}

kubectl_path() {
    [ -x "$kubectl_bin" ] || install_kubectl_from_trixie "$kubectl_bin"
    echo "$kubectl_bin"
}

# Sets $python to an interpreter that has kubernetes-validate: python3 itself,
# installing it with pip if missing, or (where pip may not install into it,
# as Debian's own python3) a virtualenv in the cache.
python=python3
ensure_kubernetes_validate() {
    local venv=$cache/k8s-venv wanted=('kubernetes-validate>=1.32' PyYAML)
    python3 -c 'import kubernetes_validate, yaml' 2>/dev/null && return
    if "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
        python=$venv/bin/python
        return
    fi
    log "installing kubernetes-validate from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check "${wanted[@]}" >/dev/null 2>&1 && return
    log "pip cannot install into python3; using a virtualenv in $venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed (apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${wanted[@]}" >&2 ||
        die "pip could not install kubernetes-validate"
    python=$venv/bin/python
}

dev_key() {
    if [ -f "$dev_key" ] && [ "${1:-}" != --force ]; then
        log "$dev_key exists (--force replaces it: tokens it signed stop verifying)"
        return
    fi
    command -v openssl >/dev/null || die "openssl is needed to make the key (apt-get install openssl)"
    (umask 077 && openssl genpkey -algorithm ed25519 -out "$dev_key.tmp") && mv "$dev_key.tmp" "$dev_key"
    log "wrote $dev_key (gitignored); the dev overlay's secretGenerator reads it"
}

case "${1:-}" in
    check)
        checking=1
        kubectl=$(kubectl_path) || exit 1
        ensure_kubernetes_validate
        exec "$python" "$repo/scripts/check_kubernetes.py" --kubectl "$kubectl" "${2:-${CARGO_TARGET_DIR:-$repo/target}/debug}"
        ;;
    dev-key) dev_key "${2:-}" ;;
    kubectl) kubectl_path ;;
    *)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
