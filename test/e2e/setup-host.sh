#!/usr/bin/env bash
# Installs the Debian packages the image and node e2e tests need, when any is missing:
# podman and buildah (image builds, no Docker engine), debootstrap (the stand-in base image),
# containerd and runc (the node's container runtime), containernetworking-plugins (bridge CNI),
# busybox-static (the busybox test image), docker-registry (the local image registries) and
# openssl (the API server's kubelet client certificate).
# Needs root for apt-get; does nothing when everything is there.
set -euo pipefail

declare -A need=(
  [podman]=podman [buildah]=buildah [debootstrap]=debootstrap [containerd]=containerd
  [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins [/bin/busybox]=busybox-static
  [docker-registry]=docker-registry [unshare]=util-linux [nsenter]=util-linux [ip]=iproute2
  [mount]=mount [openssl]=openssl [ctr]=containerd
)
missing=()
for what in "${!need[@]}"; do
  if [[ "$what" == /* ]]; then [[ -x "$what" ]] && continue; else command -v "$what" >/dev/null 2>&1 && continue; fi
  # busybox (the dynamic one) may be installed; the image needs the static one.
  missing+=("${need[$what]}")
done
if [[ -x /bin/busybox ]] && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
  missing+=(busybox-static)
fi
((${#missing[@]} == 0)) && exit 0

mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "setup-host.sh: installing ${missing[*]}" >&2
[[ "$(id -u)" == 0 ]] || { echo "setup-host.sh: need root to install ${missing[*]}" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# policy-rc.d keeps the packages' services (containerd, docker-registry) from starting.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[[ -z "$created_policy" ]] || rm -f "$policy"' EXIT
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
