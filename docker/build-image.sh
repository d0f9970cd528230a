#!/usr/bin/env bash
# build-image.sh: build quietmx:latest without any container registry.
# This is what `make image` runs.
#
#   1. docker/build-base.sh      -> quietmx-base:bookworm (skipped if present)
#   2. go build on the host      -> docker/bin/{quietmx,altpostlocal,altpostlocal-serve} (static)
#   3. classic `docker build` of docker/Dockerfile from the repository root,
#      with the local base standing in for both debian:bookworm-slim and the
#      Go builder image, and PREBUILT=1 so the binaries from step 2 are used.
#
# Usage: docker/build-image.sh [--no-go-build]
#   --no-go-build   use the binaries already in docker/bin/ (skip step 2)
# Environment:
#   QUIETMX_IMAGE   tag to build (default quietmx:latest)
#   GO              go command (default: `go` on PATH, else /usr/local/go/bin/go)
#   GO_LDFLAGS      linker flags (default "-s -w": stripped, ~30% smaller;
#                   set GO_LDFLAGS= for unstripped binaries)
set -euo pipefail

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

IMAGE="${QUIETMX_IMAGE:-quietmx:latest}"
BASE_IMAGE="quietmx-base:bookworm"
go_build=1
case "${1:-}" in
  "") ;;
  --no-go-build) go_build=0 ;;
  -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
[ -f go.mod ] && [ -f docker/Dockerfile ] || die "run from a quietmx checkout (no go.mod or docker/Dockerfile in $root)"

# 1. base image -------------------------------------------------------------
QUIETMX_BASE_IMAGE="$BASE_IMAGE" "$here/build-base.sh"

# 2. host binaries ----------------------------------------------------------
bins=(quietmx altpostlocal altpostlocal-serve)
mkdir -p docker/bin
if [ "$go_build" = 1 ]; then
  if [ -z "${GO:-}" ]; then
    if command -v go >/dev/null 2>&1; then GO=go
    elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
    else die "no Go toolchain (not on PATH, not at /usr/local/go/bin/go); set GO="
    fi
  fi
  log "building ${bins[*]} with $("$GO" version | cut -d' ' -f3) (CGO_ENABLED=0)"
  CGO_ENABLED=0 "$GO" build -trimpath -ldflags="${GO_LDFLAGS--s -w}" -o docker/bin/ ./cmd/quietmx ./cmd/altpostlocal ./cmd/altpostlocal-serve
else
  log "--no-go-build: using existing docker/bin/{$(IFS=,; echo "${bins[*]}")}"
fi
for b in "${bins[@]}"; do
  [ -x "docker/bin/$b" ] || die "docker/bin/$b missing or not executable"
  # the image has no Go toolchain or libc guarantees: insist on static binaries
  if command -v readelf >/dev/null 2>&1 && readelf -l "docker/bin/$b" 2>/dev/null | grep -q 'INTERP'; then
    die "docker/bin/$b is dynamically linked; build it with CGO_ENABLED=0"
  fi
done

# 3. image ------------------------------------------------------------------
log "building $IMAGE (classic builder, base $BASE_IMAGE, prebuilt binaries)"
start=$(date +%s)
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
DOCKER_BUILDKIT=0 docker build \
  -f docker/Dockerfile \
  --build-arg BASE="$BASE_IMAGE" \
  --build-arg GO_IMAGE="$BASE_IMAGE" \
  --build-arg PREBUILT=1 \
  -t "$IMAGE" \
  .
new_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")

# The classic builder leaves the replaced image and each build's "build" stage
# behind as <none> images (~25 MB each). Drop the replaced one (unless a
# container still uses it), and build-stage leftovers older than an hour:
# a younger one may belong to a concurrent build still running (its final
# stage COPYs --from it by ID), and the newest is the cache for the next run.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
docker image prune -f --filter label=org.quietmx.stage=build --filter until=1h >/dev/null 2>&1 || true

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
log "built $IMAGE in $(( $(date +%s) - start ))s, $(( size / 1000000 )) MB"
