#!/usr/bin/env bash
# build-base.sh: build the local base image quietmx-base:bookworm from Debian's
# archive alone (no container registry): mmdebstrap piped into `docker import`.
#
# Usage: docker/build-base.sh [--rebuild]
#   Exits 0 at once when quietmx-base:bookworm exists and was built from the
#   current docker/packages.txt and settings (recorded in an image label);
#   rebuilds when they changed, or always with --rebuild (QUIETMX_BASE_REBUILD=1).
# Environment:
#   QUIETMX_BASE_KEEP_APT=1   keep apt in the base (default: purged, -11 MB)
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR   archive URLs (deb.debian.org)
#
# The root is Debian bookworm (+ bookworm-updates, bookworm-security), variant
# minbase, trimmed like the official -slim images (no docs but copyright, no
# man pages, no locales), with the packages of docker/packages.txt installed
# (no Recommends), so docker/Dockerfile's package step is a no-op on top of it
# and `make image` needs no network inside `docker build`.
#
# Scrubbed: what bootstrapping copies from the build host (/etc/hostname,
# /etc/resolv.conf), what package installation derives from it (/etc/mailname,
# myhostname/mydestination in /etc/postfix/main.cf), and the snakeoil key pair
# (plus dovecot's links to it): no two containers may share a private key.
# Also dropped: apt lists and caches, logs, Python byte-code (~20 MB), and
# then apt itself with the libraries only it used (an appliance never runs it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE="${QUIETMX_BASE_IMAGE:-quietmx-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PACKAGES_FILE="$here/packages.txt"
KEEP_APT="${QUIETMX_BASE_KEEP_APT:-0}"
LABEL_KEY="org.quietmx.base.spec"

log() { printf 'build-base: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

rebuild="${QUIETMX_BASE_REBUILD:-0}"
case "${1:-}" in
  "") ;;
  --rebuild) rebuild=1 ;;
  -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

[ -r "$PACKAGES_FILE" ] || die "missing $PACKAGES_FILE"
packages="$(sed -e 's/#.*//' "$PACKAGES_FILE" | xargs)"   # space-separated
[ -n "$packages" ] || die "no packages listed in $PACKAGES_FILE"
# What the image is built from; stored as a label and compared on every run.
spec="bookworm minbase keep_apt=$KEEP_APT packages=$packages"

command -v docker >/dev/null 2>&1 || die "docker CLI not found"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  have="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$IMAGE" 2>/dev/null || true)"
  if [ "$rebuild" = 1 ]; then
    log "$IMAGE exists; rebuilding as requested"
  elif [ "$have" = "$spec" ]; then
    log "$IMAGE is up to date; nothing to do (--rebuild forces a rebuild, e.g. for security updates)"
    exit 0
  else
    log "$IMAGE was built from '${have:-unknown}'; rebuilding for '$spec'"
  fi
fi

# --- host tools -------------------------------------------------------------
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root (or have sudo) to install packages and bootstrap"
  SUDO="sudo"
fi

need_pkgs=()
{ command -v mmdebstrap && command -v mmtarfilter; } >/dev/null 2>&1 || need_pkgs+=(mmdebstrap)
[ -s /usr/share/keyrings/debian-archive-keyring.gpg ] || need_pkgs+=(debian-archive-keyring)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing host packages: ${need_pkgs[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# merged-usr hook: merged /usr the debootstrap way (usr-is-merged) instead of
# letting apt pull in usrmerge, which drags in full perl (~50 MB).
[ -d /usr/share/mmdebstrap/hooks/merged-usr ] || die "mmdebstrap's merged-usr hook is missing"

# --- hooks (run by mmdebstrap; "$1" is the root being built) ----------------

# After the essential set, before our packages: preseed postfix so that its
# postinst writes no configuration (quietmx renders main.cf itself), and stop
# maintainer scripts from starting services, now and in any later
# `apt-get install` (like the official images' policy-rc.d; mmdebstrap's own
# temporary one is skipped because its cleanup would delete ours).
read -r -d '' ESSENTIAL_HOOK <<'HOOK' || true
set -e
echo "postfix postfix/main_mailer_type select No configuration" | chroot "$1" debconf-set-selections
printf '#!/bin/sh\n# no services started by maintainer scripts in containers\nexit 101\n' > "$1/usr/sbin/policy-rc.d"
chmod 0755 "$1/usr/sbin/policy-rc.d"
HOOK

# After all packages: scrub what leaks from the build host or must be unique
# per container, and trim.
read -r -d '' CUSTOMIZE_HOOK <<'HOOK' || true
set -e
r="$1"
rm -f "$r/etc/hostname" "$r/etc/resolv.conf" "$r/etc/mailname"
if [ -f "$r/etc/postfix/main.cf" ]; then
  sed -i -E '/^[[:space:]]*(myhostname|mydestination)[[:space:]]*=/d' "$r/etc/postfix/main.cf"
fi
rm -f "$r/etc/ssl/private/ssl-cert-snakeoil.key" "$r/etc/ssl/certs/ssl-cert-snakeoil.pem"
rm -f "$r/etc/dovecot/private/dovecot.key" "$r/etc/dovecot/private/dovecot.pem"
# no stale symlinks left pointing at the removed snakeoil files
chroot "$r" find /etc/ssl/certs /etc/dovecot -xtype l -delete 2>/dev/null || true
# byte-compiled Python (~20 MB, written by postinst, not owned by dpkg);
# the image sets PYTHONDONTWRITEBYTECODE=1, certbot starts ~0.8 s slower.
find "$r"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
       "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old \
       "$r"/var/log/apt/* "$r"/var/log/dpkg.log "$r"/var/log/alternatives.log
mkdir -p "$r/var/lib/apt/lists/partial" "$r/var/cache/apt/archives/partial"
HOOK

# apt and the libraries nothing else uses (~11.6 MB). dpkg refuses to purge
# anything another installed package still depends on, so the list can only
# ever be too long, never break a dependency; rounds settle the order.
read -r -d '' PURGE_APT_HOOK <<'HOOK' || true
set -e
chroot "$1" dpkg --purge --force-remove-protected apt
for round in 1 2 3; do
  for p in libapt-pkg6.0 gpgv debian-archive-keyring libgnutls30 libseccomp2 \
           libp11-kit0 libtasn1-6 libnettle8 libhogweed6 libidn2-0 libunistring2 \
           libxxhash0 libgmp10 liblz4-1 libudev1; do
    chroot "$1" dpkg -s "$p" >/dev/null 2>&1 || continue
    chroot "$1" dpkg --purge "$p" >/dev/null 2>&1 || true
  done
done
rm -f "$1"/var/lib/dpkg/*-old
HOOK
purge_args=()
[ "$KEEP_APT" = 1 ] || purge_args=(--customize-hook="$PURGE_APT_HOOK")

# --- build + import -----------------------------------------------------------
# Imported under a temporary tag and re-tagged only when the whole pipeline
# succeeded: a failed bootstrap never leaves a half-built "$IMAGE" behind.
tmp_tag="${IMAGE%%:*}:building-$$"
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
cleanup() { docker image rm -f "$tmp_tag" >/dev/null 2>&1 || true; }
trap cleanup EXIT

log "bootstrapping Debian bookworm (minbase + $packages) from $MIRROR"
start=$(date +%s)
mmdebstrap \
    --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --skip=chroot/policy-rc.d \
    --format=tar \
    --include="${packages// /,}" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/groff/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/linda/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/bash-completion/*' \
    --dpkgopt='path-exclude=/usr/share/zoneinfo/right/*' \
    --essential-hook="$ESSENTIAL_HOOK" \
    --customize-hook="$CUSTOMIZE_HOOK" \
    "${purge_args[@]}" \
    bookworm - \
    "deb $MIRROR bookworm main" \
    "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY_MIRROR bookworm-security main" \
  | mmtarfilter --path-exclude='/dev/*' \
  | docker import \
      --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "LABEL $LABEL_KEY=\"$spec\"" \
      --message "quietmx base: $spec (mmdebstrap)" \
      - "$tmp_tag" >/dev/null

docker tag "$tmp_tag" "$IMAGE"
if [ -n "$old_id" ]; then
  # drop the replaced base if nothing else uses it (fails quietly otherwise)
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
log "built $IMAGE in $(( $(date +%s) - start ))s, $(( size / 1000000 )) MB"
