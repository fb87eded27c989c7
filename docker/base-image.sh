#!/usr/bin/env bash
# Builds a local stand-in for debian:bookworm-slim where no registry can be pulled from:
# debootstrap's minimal bookworm, trimmed the way the slim image is, imported as
# ${1:-emodistill/bookworm-slim:local}. Both Dockerfiles take it through their BASE_IMAGE
# build argument; the default there stays the real debian:bookworm-slim.
#
# The image also carries this machine's extra CA certificates (/usr/local/share/ca-certificates):
# where outbound TLS goes through an inspecting proxy, pip inside a build trusts only what the
# image's store trusts. On a host without such a proxy the folder is empty and nothing changes.
#
# Idempotent: an existing image of that name is kept (FORCE=1 rebuilds it).
set -euo pipefail

image=${1:-emodistill/bookworm-slim:local}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -z "${FORCE:-}" ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image exists (FORCE=1 rebuilds it)"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed" >&2; exit 1; }

rootfs=$(mktemp -d /tmp/bookworm-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm into $rootfs (a few minutes)"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"

# What debian:bookworm-slim does: no docs, man pages or locales from later installs, no apt cache.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates" "$rootfs/etc/ssl/certs"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    # Until the image installs ca-certificates (which then merges the folder above), the
    # bundle itself is this machine's.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi

tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$image" >/dev/null
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
