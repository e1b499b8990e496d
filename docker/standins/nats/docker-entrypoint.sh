#!/bin/sh
# As nats:alpine's entrypoint: a first argument that is a flag runs nats-server.
set -e
if [ "${1#-}" != "$1" ]; then
    set -- nats-server "$@"
fi
exec "$@"
