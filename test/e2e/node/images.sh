#!/usr/bin/env bash
# Builds the node tests' images without any base image (`buildah from scratch`) into the
# project's image store (test/e2e/image/build.sh env):
#   localhost/imageshift-e2e/pause:1    a static Go pause program (pause.go), containerd's sandbox image
#   localhost/imageshift-e2e/busybox:1  Debian's busybox-static with its applet links
#   localhost/imageshift-e2e/busybox-mirror:1  the same with a label, so another image ID (the
#                                       mirror registry's copy, told apart from the first)
#   localhost/imageshift-e2e/busybox-upstream:1  the same with another label (the copy of an
#                                       "upstream" registry, told apart from both)
# Does nothing for an image already in the store. Needs Go (as test/e2e/controlplane/build.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "node/images.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

while IFS='=' read -r key value; do
  export "$key=$value"
done < <(bash "$here/../image/build.sh" env)

work="$(mktemp -d "$TMPDIR/node-images.XXXXXX")"
container=""
cleanup() {
  [[ -z "$container" ]] || buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; elif command -v go >/dev/null 2>&1; then command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go
  else die "Go is needed to build the pause image (see test/e2e/controlplane/build.sh)"; fi
}

# commit <rootfs dir> <tag> <entrypoint json> <cmd json>
commit() {
  local rootfs="$1" tag="$2" entrypoint="$3" cmd="$4"
  container="$(buildah from scratch)"
  buildah copy --quiet "$container" "$rootfs" / >/dev/null
  buildah config --entrypoint "$entrypoint" --cmd "$cmd" --label org.imageshift.e2e=true "$container"
  buildah commit --quiet --rm "$container" "$tag" >/dev/null
  container=""
  log "built $tag"
}

if ! podman image exists localhost/imageshift-e2e/pause:1; then
  mkdir -p "$work/pause"
  (cd "$here" && GOTOOLCHAIN=local CGO_ENABLED=0 GO111MODULE=off "$(find_go)" build -trimpath -ldflags=-s\ -w -o "$work/pause/pause" pause.go)
  commit "$work/pause" localhost/imageshift-e2e/pause:1 '["/pause"]' '[]'
fi

if ! podman image exists localhost/imageshift-e2e/busybox:1; then
  [[ -x /bin/busybox ]] || die "/bin/busybox is missing (Debian's busybox-static)"
  if ldd /bin/busybox >/dev/null 2>&1; then die "/bin/busybox is dynamically linked; the image needs busybox-static"; fi
  mkdir -p "$work/busybox/bin" "$work/busybox/tmp" "$work/busybox/etc"
  cp /bin/busybox "$work/busybox/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$work/busybox/bin/$applet"
  done
  chmod 1777 "$work/busybox/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/busybox/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$work/busybox/etc/group"
  commit "$work/busybox" localhost/imageshift-e2e/busybox:1 '[]' '["/bin/sh"]'
fi

# variant <copy>: busybox-<copy>:1, busybox with the label org.imageshift.e2e.copy=<copy>
variant() {
  local copy="$1"
  podman image exists "localhost/imageshift-e2e/busybox-$copy:1" && return 0
  container="$(buildah from --pull-never localhost/imageshift-e2e/busybox:1)"
  buildah config --label "org.imageshift.e2e.copy=$copy" "$container"
  buildah commit --quiet --rm "$container" "localhost/imageshift-e2e/busybox-$copy:1" >/dev/null
  container=""
  log "built localhost/imageshift-e2e/busybox-$copy:1"
}
variant mirror
variant upstream
