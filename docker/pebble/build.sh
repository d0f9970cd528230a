#!/usr/bin/env bash
# build.sh: build the Pebble test image (quietmx-pebble:<version>) without a
# container registry: `go install` of github.com/letsencrypt/pebble/v2 from
# the Go module proxy into a temporary GOBIN (outside the project's
# go.mod), then a classic `docker build` FROM quietmx-base:bookworm.
#
# Environment:
#   PEBBLE_VERSION  module version (default v2.10.3)
#   PEBBLE_IMAGE    tag to build (default quietmx-pebble:<version>)
#   GO              go command (default: `go` on PATH, else /usr/local/go/bin/go)
# Exits at once when the image exists (delete it to rebuild).
set -euo pipefail

version="${PEBBLE_VERSION:-v2.10.3}"
image="${PEBBLE_IMAGE:-quietmx-pebble:${version#v}}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "pebble: $image exists" >&2
  exit 0
fi
if [ -z "${GO:-}" ]; then
  if command -v go >/dev/null 2>&1; then GO=go; else GO=/usr/local/go/bin/go; fi
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
echo "pebble: go install github.com/letsencrypt/pebble/v2/cmd/pebble@$version" >&2
CGO_ENABLED=0 GOBIN="$ctx" GOFLAGS=-trimpath "$GO" install "github.com/letsencrypt/pebble/v2/cmd/pebble@$version"
cp "$here/Dockerfile" "$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >/dev/null
echo "pebble: built $image" >&2
