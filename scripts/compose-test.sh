#!/usr/bin/env bash
# compose-test.sh: `docker compose up` for real, as a user's first shipment.
#
#   scripts/compose-test.sh        (make compose-test)
#
# 1. a Docker engine: the one that answers (DOCKER_HOST or the default socket),
#    else dockerd from Debian's docker.io, started here with its own data root,
#    socket and PID file under the cache, and stopped again at the end;
# 2. `docker compose` v2: the one installed, else the plugin from Debian
#    trixie's docker-compose package (the mirror is this machine's own);
# 3. every image docker-compose.yml and the Dockerfile name: kept or pulled
#    where a registry answers, else a stand-in from docker/standins/ (built from
#    Debian packages, tagged with the upstream name; see its README);
# 4. the project image, built by `docker compose build` from the real
#    Dockerfile; `docker compose up -d --wait` of the real compose file;
# 5. Consul's ACLs: a registration as vessel-service with no token or with
#    another service's is refused (403), every service is registered and
#    passing with its own token;
# 6. through compose: user-cli create and login, consignment-cli create and
#    list; the welcome mail in the mail container; spans of every service in
#    the tracing container; user-service restarted and the saved token still
#    accepted; the api-gateway; consignment-cli cancel (its room back); the
#    signing key rotated and the old one revoked on the jwt-keys volume (the
#    saved token refused, a new login working);
#    `docker compose down -v`.
#
# Each step prints a line; the last is `compose-test: PASS (…)` or `FAIL (…)`;
# the exit status is 0 only when every step passed.
#
# Environment:
#   SHIPPY_COMPOSE_CACHE   cache outside the clone (default /var/cache/shippy-rs/compose):
#                          dockerd's data root (images, build cache), the compose
#                          plugin, the debootstrap rootfs, the DocumentDB chroot
#   SHIPPY_STANDINS=always build stand-ins without trying a registry first
#   SHIPPY_PULL_TIMEOUT    seconds one `docker pull` may take (default 60)
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${SHIPPY_COMPOSE_CACHE:-/var/cache/shippy-rs/compose}
standins=$repo/docker/standins
documentdb_dir=${SHIPPY_DOCUMENTDB_DIR:-$repo/../shared/tools/documentdb}
[ -d "$documentdb_dir" ] || documentdb_dir=/work/shared/tools/documentdb
project=shippy-compose-test
started=$SECONDS
passed=0 failed=0
started_dockerd=

log() { printf 'compose-test: %s\n' "$*" >&2; }
die() {
    log "FAILED: $*"
    failed=$((failed + 1))
    finish
}
# shellcheck source=lib/debian.sh
. "$repo/scripts/lib/debian.sh"
step() { printf '\n== compose-test [%4ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
ok() {
    passed=$((passed + 1))
    printf 'ok - %s\n' "$*" >&2
}
# run WHAT COMMAND...: runs it, output to a log; on failure prints the tail and dies.
run() {
    local what=$1 logfile
    shift
    logfile=$cache/logs/$(echo "$what" | tr -c 'a-zA-Z0-9\n' '-').log
    if "$@" >"$logfile" 2>&1; then
        return 0
    fi
    tail -n 30 "$logfile" >&2
    die "$what (log: $logfile)"
}

compose() { docker compose -p "$project" --project-directory "$repo" -f "$repo/docker-compose.yml" "$@"; }

finish() {
    trap - EXIT INT TERM
    if [ -n "${compose_up:-}" ]; then
        step "docker compose down -v"
        if [ "$failed" -gt 0 ]; then
            compose ps -a >&2 2>/dev/null || true
            compose logs --no-color --tail 40 >"$cache/logs/compose-failure.log" 2>&1 || true
            log "the containers' last log lines: $cache/logs/compose-failure.log"
            tail -n 60 "$cache/logs/compose-failure.log" >&2
        fi
        if compose --profile cli down -v --remove-orphans >"$cache/logs/down.log" 2>&1; then
            ok "docker compose down -v"
        else
            tail -n 20 "$cache/logs/down.log" >&2
            log "FAILED: docker compose down -v"
            failed=$((failed + 1))
        fi
    fi
    stop_dockerd
    printf '\ncompose-test took %ss\n' "$((SECONDS - started))" >&2
    # Not the "N passed, N failed" form: make test's line stays the suite's count.
    if [ "$failed" -eq 0 ]; then
        echo "compose-test: PASS ($passed steps ok)"
    else
        echo "compose-test: FAIL ($failed step(s) failed, $passed ok)"
    fi
    [ "$failed" -eq 0 ] && exit 0
    exit 1
}
trap 'die "interrupted"' INT TERM

mkdir -p "$cache/logs" || { echo "cannot create $cache" >&2; exit 1; }

# ---- 1. the engine ------------------------------------------------------------

need_packages() { # PACKAGE... : apt-get installs those whose program is missing
    [ $# -eq 0 ] && return 0
    log "installing $* from Debian"
    run "apt-get update" apt-get update -q
    DEBIAN_FRONTEND=noninteractive run "apt-get install $*" \
        apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"
}

engine_answers() { timeout 20 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start_dockerd() {
    local missing=() dir=$cache/engine
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v docker >/dev/null || missing+=(docker.io)
    need_packages "${missing[@]}"
    mkdir -p "$dir"
    export DOCKER_HOST=unix://$dir/docker.sock
    if engine_answers; then
        log "reusing the engine at $DOCKER_HOST"
        return 0
    fi
    if [ -s "$dir/dockerd.pid" ] && kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null; then
        die "a dockerd (pid $(cat "$dir/dockerd.pid")) holds $dir but does not answer"
    fi
    rm -f "$dir/docker.sock" "$dir/dockerd.pid"
    # Short exec-root: containerd's socket paths have a length limit.
    setsid dockerd --data-root "$dir/data" --exec-root "/run/shippy-dockerd" \
        --pidfile "$dir/dockerd.pid" -H "$DOCKER_HOST" </dev/null >"$cache/logs/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 120); do
        engine_answers && return 0
        kill -0 "$started_dockerd" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 20 "$cache/logs/dockerd.log" >&2
    die "dockerd did not answer on $DOCKER_HOST (log: $cache/logs/dockerd.log)"
}

stop_dockerd() {
    [ -n "$started_dockerd" ] || return 0
    step "stopping the dockerd this run started (pid $started_dockerd)"
    kill -TERM "$started_dockerd" 2>/dev/null || true
    for _ in $(seq 60); do
        kill -0 "$started_dockerd" 2>/dev/null || { started_dockerd=; return 0; }
        sleep 0.5
    done
    log "dockerd $started_dockerd did not stop within 30s"
}

# ---- 2. compose v2 ----------------------------------------------------------------

ensure_compose() {
    if docker compose version >/dev/null 2>&1; then
        return 0
    fi
    local plugins=$cache/docker-config/cli-plugins
    export DOCKER_CONFIG=$cache/docker-config
    if [ ! -x "$plugins/docker-compose" ]; then
        local work
        work=$(mktemp -d)
        mkdir -p "$plugins"
        log "fetching docker-compose (v2) from Debian trixie"
        fetch_from_suite trixie "$work" docker-compose
        install -m 0755 "$work/unpacked/usr/libexec/docker/cli-plugins/docker-compose" "$plugins/docker-compose"
        rm -rf "$work"
    fi
    docker compose version >/dev/null 2>&1 || die "docker compose does not run from $plugins"
}

# ---- 3. images ----------------------------------------------------------------------

key_of() { # WORDS-OR-FILES...: a short hash of the words and of the files' names and contents
    local f
    for f in "$@"; do
        if [ -f "$f" ]; then basename "$f"; cat "$f"; else printf '%s\n' "$f"; fi
    done | sha256sum | cut -c1-16
}

label_of() { docker image inspect -f '{{ index .Config.Labels "org.shippy-rs.standin" }}' "$1" 2>/dev/null; }

# The bookworm base every Debian stand-in starts from: debootstrap minbase,
# imported. The rootfs tarball stays in the cache.
base_image() {
    local mirror key image tarball
    mirror=$(debian_mirror)
    key=$(key_of bookworm minbase "$mirror" v1)
    image=shippy-standin/bookworm:$key
    BASE=$image
    docker image inspect "$image" >/dev/null 2>&1 && return 0
    tarball=$cache/rootfs/bookworm-minbase-$key.tar
    if [ ! -s "$tarball" ]; then
        local root=$cache/rootfs/bookworm-$key.tmp
        mkdir -p "$cache/rootfs"
        rm -rf --one-file-system "$root"
        mkdir -p "$root"
        log "debootstrap bookworm (minbase) from $mirror"
        run "debootstrap bookworm" debootstrap --variant=minbase bookworm "$root" "$mirror"
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf --one-file-system "$root"
    fi
    run "docker import bookworm" docker import "$tarball" "$image"
}

# MongoDB's stand-in starts from shared/tools/documentdb's chroot (Debian sid,
# PostgreSQL 18 + documentdb), prepared by its own `up`, then imported.
documentdb_image() {
    local key image dd_cache=$cache/documentdb
    key=$(key_of documentdb "$documentdb_dir/documentdb.sh" "$documentdb_dir/bin/documentdb_gateway")
    image=shippy-standin/documentdb:$key
    BASE=$image
    docker image inspect "$image" >/dev/null 2>&1 && return 0
    mkdir -p "$cache/rootfs"
    [ -x "$documentdb_dir/documentdb.sh" ] || die "no $documentdb_dir/documentdb.sh to build mongo:7's stand-in"
    log "preparing the DocumentDB chroot with documentdb.sh (first use only)"
    local port pgport
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    DOCUMENTDB_CACHE=$dd_cache run "documentdb.sh up" "$documentdb_dir/documentdb.sh" up --port "$port" --pg-port "$pgport"
    DOCUMENTDB_CACHE=$dd_cache run "documentdb.sh down" "$documentdb_dir/documentdb.sh" down
    [ -z "$(awk -v r="$dd_cache/root/" 'index($2, r) == 1' /proc/mounts)" ] ||
        die "something is still mounted under $dd_cache/root"
    tar --numeric-owner -C "$dd_cache/root" --exclude=./proc/* --exclude=./dev/shm/* \
        --exclude=./var/lib/documentdb/postgres.log -cf "$cache/rootfs/documentdb-$key.tar" . ||
        die "cannot pack the DocumentDB chroot"
    run "docker import documentdb" docker import "$cache/rootfs/documentdb-$key.tar" "$image"
    rm -f "$cache/rootfs/documentdb-$key.tar"
}

# rust:1.95-slim-bookworm's stand-in carries this machine's toolchain.
rust_context() {
    local toolchain
    CONTEXT=$cache/context/rust
    local ctx=$CONTEXT
    toolchain=$(rustc +1.95.0 --print sysroot 2>/dev/null || rustc --print sysroot)
    "$toolchain/bin/rustc" --version | grep -q '^rustc 1\.95\.' ||
        die "the host's Rust toolchain at $toolchain is not 1.95"
    rm -rf "$ctx"
    mkdir -p "$ctx/toolchain"
    cp "$standins/rust/Dockerfile" "$ctx/"
    cp -a "$toolchain/bin" "$toolchain/lib" "$ctx/toolchain/"
    if [ -d "$toolchain/libexec" ]; then cp -a "$toolchain/libexec" "$ctx/toolchain/"; fi
}

# ensure_image IMAGE STANDIN-DIR: the image as the registry has it, else the stand-in.
ensure_image() {
    local image=$1 name=$2 key label
    case $name in
        debian) key=$(key_of "$(debian_mirror)" bookworm minbase v1) ;;
        mongo) key=$(key_of "$documentdb_dir/documentdb.sh" "$documentdb_dir/bin/documentdb_gateway" "$standins/$name"/*) ;;
        rust) key=$(key_of "$(rustc +1.95.0 --version 2>/dev/null || rustc --version)" "$(debian_mirror)" "$standins/$name"/*) ;;
        *) key=$(key_of "$(debian_mirror)" "$standins/$name"/*) ;;
    esac
    label=$(label_of "$image")
    if docker image inspect "$image" >/dev/null 2>&1; then
        if [ -z "$label" ]; then ok "$image: present (not a stand-in)"; return 0; fi
        if [ "$label" = "$key" ]; then ok "$image: stand-in present (key $key)"; return 0; fi
    fi
    if [ "${SHIPPY_STANDINS:-}" != always ] && [ -z "$label" ]; then
        if timeout "${SHIPPY_PULL_TIMEOUT:-60}" docker pull -q "$image" >"$cache/logs/pull.log" 2>&1; then
            ok "$image: pulled"
            return 0
        fi
        log "$image: no registry answered ($(tail -n 1 "$cache/logs/pull.log" | cut -c1-120)); building the stand-in"
    fi
    local t0=$SECONDS
    case $name in
        debian)
            base_image
            # bookworm-slim is a debootstrap minbase too: the base itself.
            run "docker build $image" docker build -q -t "$image" --label "org.shippy-rs.standin=$key" - <<EOF
FROM $BASE
CMD ["bash"]
EOF
            ;;
        mongo)
            documentdb_image
            run "docker build $image" docker build -q -t "$image" --label "org.shippy-rs.standin=$key" \
                --build-arg "BASE=$BASE" "$standins/mongo"
            ;;
        rust)
            base_image
            rust_context
            run "docker build $image" docker build -q -t "$image" --label "org.shippy-rs.standin=$key" \
                --build-arg "BASE=$BASE" "$CONTEXT"
            rm -rf "$CONTEXT"
            ;;
        *)
            base_image
            run "docker build $image" docker build -q -t "$image" --label "org.shippy-rs.standin=$key" \
                --build-arg "BASE=$BASE" "$standins/$name"
            ;;
    esac
    ok "$image: stand-in built in $((SECONDS - t0))s (key $key)"
}

# ---- 5. what a user does -------------------------------------------------------------

spare_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

http_get() { python3 - "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.write(r.read().decode())
EOF
}

# until SECONDS WHAT COMMAND...: retries COMMAND every second until it succeeds.
until_ok() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    while ! "$@" >"$cache/logs/until.log" 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$cache/logs/until.log" >&2
            die "$what"
        fi
        sleep 1
    done
}

saved_token_refused() { # the CLI's saved token is UNAUTHENTICATED now
    local said
    if said=$(compose run --rm -T consignment-cli list 2>&1); then return 1; fi
    printf '%s\n' "$said"
    grep -qi 'unknown key\|unauthenticated\|log in' <<<"$said"
}

mail_arrived() { # EMAIL
    http_get "http://127.0.0.1:$SHIPPY_MAIL_UI_PORT/api/v1/messages" | python3 -c '
import json, sys
want = sys.argv[1]
messages = json.load(sys.stdin)["messages"]
hits = [m for m in messages if any(t["Address"] == want for t in m["To"])]
print(json.dumps(hits[:1]))
sys.exit(0 if hits else 1)' "$1"
}

spans_arrived() {
    http_get "http://127.0.0.1:$SHIPPY_JAEGER_UI_PORT/api/services" | python3 -c '
import json, sys
services = json.load(sys.stdin)["data"] or []
print(services)
missing = {"consignment-service", "vessel-service", "user-service", "email-service"} - set(services)
sys.exit(1 if missing else 0)'
}

main() {
    step "a Docker engine"
    if ! command -v docker >/dev/null || ! engine_answers; then
        start_dockerd
        ok "dockerd started: $(docker version --format 'engine {{.Server.Version}}') at $DOCKER_HOST"
    else
        ok "engine answers: $(docker version --format 'engine {{.Server.Version}}')"
    fi

    step "docker compose v2"
    ensure_compose
    ok "$(docker compose version)"

    step "images named by docker-compose.yml and the Dockerfile"
    ensure_image debian:bookworm-slim debian
    ensure_image rust:1.95-slim-bookworm rust
    ensure_image postgres:15 postgres
    ensure_image nats:2.10-alpine nats
    ensure_image hashicorp/consul:1.18 consul
    ensure_image jaegertracing/all-in-one:1.57 jaeger
    ensure_image axllent/mailpit:v1.20 mailpit
    ensure_image mongo:7 mongo
    # Every image the files name is one of the above.
    local named missing=()
    # (FROM lines that name an earlier stage are not images.)
    named=$( { grep -E '^\s+image:' "$repo/docker-compose.yml" | awk '{ print $2 }'
        awk 'toupper($1) == "FROM" { if (!($2 in stage)) print $2; if (toupper($3) == "AS") stage[$4] = 1 }' "$repo/Dockerfile"
    } | sort -u | grep -v '^shippy-rs:')
    for image in $named; do docker image inspect "$image" >/dev/null 2>&1 || missing+=("$image"); done
    [ ${#missing[@]} -eq 0 ] || die "images named but not available: ${missing[*]}"
    ok "every image named is available: $(echo $named)"

    step "the project image: docker compose build (the real Dockerfile)"
    # Containers reach crates.io through the same network as this machine. Where
    # that network inspects TLS, this machine trusts the proxy's CA beyond
    # Debian's bundle; the build gets those certificates (and only those).
    local extra
    extra=$(python3 - <<'EOF'
import glob, os, re
pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
norm = lambda block: "".join(block.split())
bundle = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
try:
    host = pem.findall(open(bundle).read())
except OSError:
    host = []
debian = {norm(b) for f in glob.glob("/usr/share/ca-certificates/**/*.crt", recursive=True)
          for b in pem.findall(open(f).read())}
print("\n".join(b for b in host if norm(b) not in debian))
EOF
)
    if [ -n "$extra" ]; then
        export SHIPPY_BUILD_EXTRA_CA_CERTS=$extra
        log "this machine trusts $(grep -c BEGIN <<<"$extra") CA certificate(s) beyond Debian's bundle (a TLS-inspecting proxy); the build trusts them too"
    fi
    local t0=$SECONDS
    compose build vessel-service >"$cache/logs/build.log" 2>&1 || {
        tail -n 40 "$cache/logs/build.log" >&2
        die "docker compose build (log: $cache/logs/build.log)"
    }
    ok "shippy-rs:dev built in $((SECONDS - t0))s"
    # Each rebuild leaves the previous image and its layers behind; on a
    # machine that runs this often they fill the disk (14 GB was seen). Keep
    # the images in use and a bounded build cache.
    docker image prune -f --filter "label!=org.shippy-rs.standin" >/dev/null 2>&1 || true
    docker builder prune -f --keep-storage "${SHIPPY_BUILD_CACHE_KEEP:-8GB}" >/dev/null 2>&1 ||
        log "docker builder prune failed (the build cache stays as it is)"
    log "the engine's data root now takes $(du -sh "$cache/engine/data" 2>/dev/null | cut -f1)"
    [ "$(docker image inspect -f '{{.Config.User}}' shippy-rs:dev)" = shippy ] || die "the image does not run as the non-root user"
    ok "the image runs as user shippy"

    step "docker compose up -d --wait"
    local var
    for var in SHIPPY_MONGO_PORT SHIPPY_POSTGRES_PORT SHIPPY_NATS_PORT SHIPPY_CONSUL_PORT SHIPPY_JAEGER_UI_PORT \
        SHIPPY_MAIL_UI_PORT SHIPPY_VESSEL_PORT SHIPPY_USER_PORT SHIPPY_CONSIGNMENT_PORT SHIPPY_EMAIL_PORT \
        SHIPPY_GATEWAY_PORT; do
        export "$var=$(spare_port)"
    done
    compose_up=1
    compose --profile cli down -v --remove-orphans >/dev/null 2>&1 || true
    t0=$SECONDS
    compose up -d --wait --wait-timeout 300 >"$cache/logs/up.log" 2>&1 || {
        tail -n 40 "$cache/logs/up.log" >&2
        die "docker compose up -d --wait (log: $cache/logs/up.log)"
    }
    ok "every service healthy (or running, where it has no healthcheck) in $((SECONDS - t0))s"
    compose ps --format 'table {{.Service}}\t{{.Status}}' >&2

    step "Consul: ACLs on; only a service's own token registers its name"
    local consul_url="http://127.0.0.1:$SHIPPY_CONSUL_PORT" management email_token token who code service i
    # shellcheck disable=SC2016 # expanded in the container
    management=$(compose exec -T consul sh -c 'echo "$CONSUL_HTTP_TOKEN"') || die "the consul container has no CONSUL_HTTP_TOKEN"
    # shellcheck disable=SC2016
    email_token=$(compose exec -T email-service sh -c 'echo "$CONSUL_HTTP_TOKEN"') || die "email-service has no CONSUL_HTTP_TOKEN"
    for token in "" "$email_token"; do
        code=$(curl -s -o "$cache/logs/consul-impostor.log" -w '%{http_code}' -X PUT -H "X-Consul-Token: $token" \
            --data '{"ID": "impostor", "Name": "vessel-service", "Address": "127.0.0.1", "Port": 9}' \
            "$consul_url/v1/agent/service/register")
        who="no token"
        [ -z "$token" ] || who="email-service's token"
        [ "$code" = 403 ] || die "Consul answered $code, not 403, to a vessel-service registration with $who"
    done
    for service in user-service vessel-service consignment-service email-service api-gateway; do
        for ((i = 0; i < 60; i++)); do
            curl -fs -H "X-Consul-Token: $management" "$consul_url/v1/health/service/$service?passing=true" |
                grep -q '"ServiceID"' && break
            sleep 1
        done
        ((i < 60)) || die "$service is not registered and passing in Consul (its token? see: compose logs consul-acl $service)"
    done
    ok "Consul refuses vessel-service's name without its token (403); all five services registered and passing with theirs"

    local email name password
    email="first-$(date +%s)@example.com" name="Ewan" password="correct horse battery"
    step "docker compose run --rm user-cli create"
    run "user-cli create" compose run --rm -T user-cli create --name "$name" --email "$email" --password "$password"
    cat "$cache/logs/user-cli-create.log" >&2
    local user_id
    user_id=$(grep -o 'with id [0-9a-f-]*' "$cache/logs/user-cli-create.log" | awk '{ print $3 }')
    [ -n "$user_id" ] || die "user-cli create printed no user id"
    ok "user-cli create $email (id $user_id)"

    step "docker compose run --rm user-cli login"
    run "user-cli login" compose run --rm -T user-cli login --email "$email" --password "$password"
    cat "$cache/logs/user-cli-login.log" >&2
    ok "user-cli login: token saved on the cli-config volume"

    step "docker compose run --rm consignment-cli create consignment.json"
    run "consignment-cli create" compose run --rm -T consignment-cli create consignment.json
    cat "$cache/logs/consignment-cli-create.log" >&2
    ok "consignment-cli create"

    step "docker compose run --rm consignment-cli list"
    run "consignment-cli list" compose run --rm -T consignment-cli --json list
    cat "$cache/logs/consignment-cli-list.log" >&2
    python3 - "$cache/logs/consignment-cli-list.log" "$repo/consignment.json" <<'EOF' || die "the list does not show the sample consignment"
import json, sys
text = open(sys.argv[1]).read()
sample = json.load(open(sys.argv[2]))
assert sample["description"] in text, "description missing"
EOF
    ok "consignment-cli list shows the sample consignment"

    step "the welcome mail reached the mail container"
    until_ok 60 "no mail to $email in the mail container" mail_arrived "$email"
    cat "$cache/logs/until.log" >&2
    ok "mail to $email in the mail container"

    step "spans reached the tracing container"
    until_ok 60 "the tracing container did not receive spans of every service" spans_arrived
    cat "$cache/logs/until.log" >&2
    ok "spans from every service in the tracing container"

    step "restart user-service; the saved token still works"
    run "restart user-service" compose restart user-service
    run "wait for user-service" compose up -d --wait --wait-timeout 120 user-service
    # user-service checks the token with its own key (no cached public key):
    # reading one's own profile works only if the key survived the restart.
    run "user-cli get after restart" compose run --rm -T user-cli get "$user_id"
    cat "$cache/logs/user-cli-get-after-restart.log" >&2
    grep -q "$email" "$cache/logs/user-cli-get-after-restart.log" || die "user-cli get did not show $email"
    run "consignment-cli list after restart" compose run --rm -T consignment-cli list
    ok "the token saved before the restart is still accepted (user-cli get, consignment-cli list)"

    step "the api-gateway: the JSON API and the web UI through compose"
    run "api-gateway login" curl -fsS -H 'content-type: application/json' \
        -d "{\"email\": \"$email\", \"password\": \"$password\"}" \
        "http://127.0.0.1:$SHIPPY_GATEWAY_PORT/api/v1/login"
    local api_token
    api_token=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["token"])' \
        "$cache/logs/api-gateway-login.log") || die "the gateway's login answered no token"
    run "api-gateway consignments" curl -fsS -H "authorization: Bearer $api_token" \
        "http://127.0.0.1:$SHIPPY_GATEWAY_PORT/api/v1/consignments"
    grep -q '"vessel_id"' "$cache/logs/api-gateway-consignments.log" ||
        die "GET /api/v1/consignments through the gateway does not show the consignment"
    run "api-gateway web UI" curl -fsS "http://127.0.0.1:$SHIPPY_GATEWAY_PORT/"
    grep -qi '<html' "$cache/logs/api-gateway-web-UI.log" || die "the gateway serves no web UI at /"
    ok "api-gateway: POST /api/v1/login, GET /api/v1/consignments (the consignment), GET / (the web UI)"

    step "docker compose run --rm consignment-cli cancel ID: gone from the list, its room back"
    local consignment_id
    consignment_id=$(python3 - "$cache/logs/consignment-cli-list.log" <<'EOF'
import json, sys
# The pretty JSON array, among whatever docker compose printed around it.
lines = open(sys.argv[1]).read().splitlines()
start, end = lines.index("["), len(lines) - lines[::-1].index("]")
print(json.loads("\n".join(lines[start:end]))[0]["id"])
EOF
) || die "no consignment id in consignment-cli's list"
    run "consignment-cli cancel" compose run --rm -T consignment-cli cancel "$consignment_id"
    grep -q "cancelled consignment $consignment_id" "$cache/logs/consignment-cli-cancel.log" ||
        die "consignment-cli cancel did not say it cancelled $consignment_id"
    run "api-gateway consignments after cancel" curl -fsS -H "authorization: Bearer $api_token" \
        "http://127.0.0.1:$SHIPPY_GATEWAY_PORT/api/v1/consignments"
    run "api-gateway vessels after cancel" curl -fsS -H "authorization: Bearer $api_token" \
        "http://127.0.0.1:$SHIPPY_GATEWAY_PORT/api/v1/vessels"
    python3 - "$cache/logs/api-gateway-consignments-after-cancel.log" \
        "$cache/logs/api-gateway-vessels-after-cancel.log" <<'EOF' || die "the cancelled consignment is listed or still holds room"
import json, sys
assert json.load(open(sys.argv[1]))["consignments"] == [], "still listed"
used = {v["id"]: v["used_capacity"] for v in json.load(open(sys.argv[2]))["vessels"]}
assert not any(used.values()), f"room still used: {used}"
EOF
    ok "consignment-cli cancel: the consignment is gone and every vessel's room is free again"

    step "rotate the signing key on the jwt-keys volume, revoke the old one: the saved token fails, a new login works"
    local key_file=/keys/jwt-signing-key.pem old_kid
    run "keys list" compose exec -T user-service user-service keys list --file "$key_file"
    old_kid=$(awk 'NR == 1 { print $1 }' "$cache/logs/keys-list.log")
    [ -n "$old_kid" ] || die "user-service keys list printed no key"
    run "keys rotate" compose exec -T user-service user-service keys rotate --file "$key_file"
    run "keys revoke" compose exec -T user-service user-service keys revoke --kid "$old_kid" --file "$key_file"
    # Within KEYS_REFRESH_INTERVAL (30 s) and user-service's reload (1 s).
    until_ok 60 "the saved token still works after its key was revoked" saved_token_refused
    cat "$cache/logs/until.log" >&2
    run "user-cli login after revocation" compose run --rm -T user-cli login --email "$email" --password "$password"
    run "consignment-cli list after revocation" compose run --rm -T consignment-cli list
    ok "key $old_kid revoked without a restart: the saved token is refused, a new login's token works"

    finish
}

main "$@"
