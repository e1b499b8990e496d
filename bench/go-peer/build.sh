#!/usr/bin/env bash
# Builds the Go peer of `make bench` (a grpc-go ShippingService, see main.go)
# to OUT, offline: Debian's Go packages in GOPATH mode, no module proxy.
#
#   bench/go-peer/build.sh OUT
#
# The Go code generated from proto/ goes to a GOPATH of its own under
# ${GO_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shippy-go-peer}, with the
# build cache beside it; nothing generated is written into the repository.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUT" >&2
    exit 2
fi
case $1 in
/*) out=$1 ;;
*) out=$PWD/$1 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
protos=$repo/proto
cache=${GO_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shippy-go-peer}
gopath=$cache/gopath
system_gopath=/usr/share/gocode

packages=(golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc
    golang-google-grpc-dev golang-google-protobuf-dev golang-github-jackc-pgx-v4-dev)
missing=
for program in go protoc protoc-gen-go protoc-gen-go-grpc; do
    command -v "$program" >/dev/null || missing=1
done
for dir in google.golang.org/grpc google.golang.org/protobuf github.com/jackc/pgx/v4/pgxpool; do
    [ -d "$system_gopath/src/$dir" ] || missing=1
done
if [ -n "$missing" ]; then
    command -v apt-get >/dev/null || {
        echo "need ${packages[*]} (Debian packages) but apt-get is not available" >&2
        exit 1
    }
    sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    apt=($sudo env DEBIAN_FRONTEND=noninteractive apt-get)
    echo "installing ${packages[*]}" >&2
    "${apt[@]}" install -y -q "${packages[@]}" >&2 ||
        { "${apt[@]}" update -q >&2 && "${apt[@]}" install -y -q "${packages[@]}" >&2; }
fi

# Generated anew each time (it takes well under a second), so it always
# matches proto/.
generated=$gopath/src/shippygen
rm -rf "$generated"
mkdir -p "$gopath/src" "$cache/gocache"
go_opts=() grpc_opts=()
for name in consignment vessel user; do
    mapping=Mshippy/$name/v1/$name.proto=shippygen/$name/v1
    go_opts+=("--go_opt=$mapping")
    grpc_opts+=("--go-grpc_opt=$mapping")
done
(
    cd "$protos"
    protoc -I . -I /usr/include \
        --go_out="$gopath/src" "${go_opts[@]}" \
        --go-grpc_out="$gopath/src" "${grpc_opts[@]}" \
        shippy/consignment/v1/consignment.proto \
        shippy/vessel/v1/vessel.proto \
        shippy/user/v1/user.proto
)

cd "$here"
env GOPATH="$gopath:$system_gopath" GO111MODULE=off GOFLAGS= GOPROXY=off \
    GOCACHE="$cache/gocache" \
    go build -o "$out" .
