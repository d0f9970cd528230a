#!/usr/bin/env bash
# build-base.sh: build the local base image quietmx-base:bookworm from Debian's
# archive alone (no container registry), with mmdebstrap piped into
# `docker import`.
#
# Usage: docker/build-base.sh [--rebuild]
#   Exits 0 at once when quietmx-base:bookworm already exists, unless
#   --rebuild (or QUIETMX_BASE_REBUILD=1) is given.
#
# The root is Debian bookworm (+ bookworm-updates, bookworm-security), variant
# minbase, trimmed like the official -slim images, with the appliance's
# packages (postfix, dovecot-imapd, certbot, ca-certificates) already
# installed, so that docker/Dockerfile's apt step is a no-op on top of it and
# `make image` needs no network from inside `docker build`.
#
# Host-specific or secret material that bootstrapping leaves behind is scrubbed:
# /etc/hostname, /etc/resolv.conf, /etc/mailname, myhostname/mydestination in
# /etc/postfix/main.cf, and the snakeoil key pair generated at install time
# (plus dovecot's links to it), so no two containers share a private key.
set -euo pipefail

IMAGE="${QUIETMX_BASE_IMAGE:-quietmx-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PACKAGES="postfix,dovecot-imapd,certbot,ca-certificates"

log() { printf 'build-base: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

rebuild="${QUIETMX_BASE_REBUILD:-0}"
case "${1:-}" in
  "") ;;
  --rebuild) rebuild=1 ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

command -v docker >/dev/null 2>&1 || die "docker CLI not found"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  if [ "$rebuild" != 1 ]; then
    log "$IMAGE already exists; nothing to do (use --rebuild to rebuild it)"
    exit 0
  fi
  log "$IMAGE exists; rebuilding as requested"
fi

# --- host tools -------------------------------------------------------------
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root (or have sudo) to install packages and bootstrap"
  SUDO="sudo"
fi

need_pkgs=()
command -v mmdebstrap >/dev/null 2>&1 || need_pkgs+=(mmdebstrap)
command -v mmtarfilter >/dev/null 2>&1 || need_pkgs+=(mmdebstrap)
[ -s /usr/share/keyrings/debian-archive-keyring.gpg ] || need_pkgs+=(debian-archive-keyring)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing host packages: ${need_pkgs[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# --- hooks (run by mmdebstrap; "$1" is the root being built) ----------------

# After the essential set, before our packages: preseed postfix so that its
# postinst writes no configuration (we render main.cf ourselves), and stop
# services from being started by maintainer scripts, now and in later
# `apt-get install`s (like the official images' policy-rc.d).
read -r -d '' ESSENTIAL_HOOK <<'HOOK' || true
set -e
echo "postfix postfix/main_mailer_type select No configuration" | chroot "$1" debconf-set-selections
printf '#!/bin/sh\n# no services started by maintainer scripts in containers\nexit 101\n' > "$1/usr/sbin/policy-rc.d"
chmod 0755 "$1/usr/sbin/policy-rc.d"
HOOK

# After all packages: scrub what leaks from the build host or must be unique
# per container, and trim caches.
read -r -d '' CUSTOMIZE_HOOK <<'HOOK' || true
set -e
r="$1"
rm -f "$r/etc/hostname" "$r/etc/resolv.conf" "$r/etc/mailname"
if [ -f "$r/etc/postfix/main.cf" ]; then
  sed -i -E '/^[[:space:]]*(myhostname|mydestination)[[:space:]]*=/d' "$r/etc/postfix/main.cf"
fi
rm -f "$r/etc/ssl/private/ssl-cert-snakeoil.key" "$r/etc/ssl/certs/ssl-cert-snakeoil.pem"
rm -f "$r/etc/dovecot/private/dovecot.key" "$r/etc/dovecot/private/dovecot.pem"
# no stale symlinks pointing at the removed snakeoil files
chroot "$r" find /etc/ssl/certs /etc/dovecot -xtype l -delete 2>/dev/null || true
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
       "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old \
       "$r"/var/log/apt/* "$r"/var/log/dpkg.log "$r"/var/log/alternatives.log
# rm -rf of globs above never fails; apt needs its partial dir back
mkdir -p "$r/var/lib/apt/lists/partial" "$r/var/cache/apt/archives/partial"
HOOK

# merged-usr hook: set up merged /usr the debootstrap way (usr-is-merged)
# instead of letting apt pull in usrmerge, which drags in full perl (~50 MB).
[ -d /usr/share/mmdebstrap/hooks/merged-usr ] || die "mmdebstrap's merged-usr hook is missing"

# --- build + import -----------------------------------------------------------
tmp_tag="${IMAGE%%:*}:building-$$"
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
cleanup() { docker image rm -f "$tmp_tag" >/dev/null 2>&1 || true; }
trap cleanup EXIT

log "bootstrapping Debian bookworm (minbase + ${PACKAGES//,/ }) from $MIRROR"
start=$(date +%s)
# The tarball is imported under a temporary tag and only re-tagged once the
# whole pipeline succeeded, so a failed bootstrap never leaves a half-built
# "$IMAGE" behind that later runs would accept.
mmdebstrap \
    --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --format=tar \
    --include="$PACKAGES" \
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
    --essential-hook="$ESSENTIAL_HOOK" \
    --customize-hook="$CUSTOMIZE_HOOK" \
    bookworm - \
    "deb $MIRROR bookworm main" \
    "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY_MIRROR bookworm-security main" \
  | mmtarfilter --path-exclude='/dev/*' \
  | docker import \
      --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --message "quietmx base: Debian bookworm minbase + postfix dovecot-imapd certbot ca-certificates (mmdebstrap)" \
      - "$tmp_tag" >/dev/null

docker tag "$tmp_tag" "$IMAGE"
if [ -n "$old_id" ]; then
  # drop the replaced base if nothing else uses it (fails quietly otherwise)
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
log "built $IMAGE in $(( $(date +%s) - start ))s, $(( size / 1000000 )) MB"
