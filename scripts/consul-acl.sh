#!/bin/sh
# consul-acl.sh: gives each shippy-rs service a Consul ACL token of its own.
#
#   CONSUL_HTTP_ADDR=127.0.0.1:8500 CONSUL_HTTP_TOKEN=<management token> \
#   VESSEL_SERVICE_CONSUL_TOKEN=<uuid> USER_SERVICE_CONSUL_TOKEN=<uuid> … \
#       scripts/consul-acl.sh vessel-service user-service …
#
# For each service NAME, a policy NAME that may register (and deregister) only
# the service NAME and read the catalog:
#
#   service "NAME"    { policy = "write" }
#   service_prefix "" { policy = "read" }
#   node_prefix ""    { policy = "read" }
#
# (user-service's may also read its signing keys: key_prefix "shippy/jwt/".)
#
# and a token with that policy whose secret is $<NAME>_CONSUL_TOKEN (NAME in
# capitals, `-` as `_`): the value that service gets as CONSUL_HTTP_TOKEN.
# Consul wants a UUID there. Running it again changes nothing that exists (a
# policy's rules are brought up to date). It first waits (up to 60 s) for the
# agent to answer ACL requests: right after start it has no leader yet.
#
# The agent must run with ACLs on, default deny, and CONSUL_HTTP_TOKEN must be
# its management token (`acl.tokens.master` in Consul 1.8, `initial_management`
# from 1.11). `make dev` (cargo dev dev), docker-compose.yml (the
# consul-acl service) and the tests (shippy-testkit's ConsulAgent) all run
# this. CONSUL names the consul binary (default: `consul` on PATH). POSIX sh:
# it runs in the consul image too.
set -eu

consul=${CONSUL:-consul}
say() { printf 'consul-acl: %s\n' "$*" >&2; }

[ -n "${CONSUL_HTTP_TOKEN:-}" ] || { say "CONSUL_HTTP_TOKEN must be the agent's management token"; exit 2; }
[ $# -gt 0 ] || { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

tries=0
until "$consul" acl policy list >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 300 ]; then
        say "Consul at ${CONSUL_HTTP_ADDR:-127.0.0.1:8500} answers no ACL request with this token after 60 s:"
        "$consul" acl policy list >&2 || true
        exit 1
    fi
    sleep 0.2
done

for name in "$@"; do
    case $name in
        '' | *[!a-z0-9-]*) say "not a service name: '$name'"; exit 2 ;;
    esac
    variable=$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')_CONSUL_TOKEN
    eval "secret=\${$variable:-}"
    [ -n "$secret" ] || { say "$variable is not set: $name needs a token (a UUID)"; exit 2; }
    rules="service \"$name\" { policy = \"write\" }
service_prefix \"\" { policy = \"read\" }
node_prefix \"\" { policy = \"read\" }"
    # user-service reads its signing keys from KV (JWT_SIGNING_KEYS_CONSUL_KEY).
    [ "$name" != user-service ] || rules="$rules
key_prefix \"shippy/jwt/\" { policy = \"read\" }"
    if "$consul" acl policy read -name "$name" >/dev/null 2>&1; then
        "$consul" acl policy update -name "$name" -rules "$rules" >/dev/null
    else
        "$consul" acl policy create -name "$name" -rules "$rules" \
            -description "shippy-rs: registers $name only; reads the catalog" >/dev/null
    fi
    if CONSUL_HTTP_TOKEN=$secret "$consul" acl token read -self >/dev/null 2>&1; then
        say "$name: policy and token were there"
    else
        "$consul" acl token create -policy-name "$name" -secret "$secret" \
            -description "shippy-rs $name" >/dev/null
        say "$name: policy and token created"
    fi
done
