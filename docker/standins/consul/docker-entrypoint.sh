#!/bin/sh
# As hashicorp/consul's entrypoint: flags or a consul subcommand run consul;
# `agent` gets the image's data and config directories.
set -e
if [ "${1#-}" != "$1" ]; then
    set -- agent "$@"
fi
if [ "$1" = agent ]; then
    shift
    set -- consul agent -data-dir=/consul/data -config-dir=/consul/config "$@"
elif consul --help "$1" 2>&1 | grep -q "consul $1"; then
    set -- consul "$@"
fi
exec "$@"
