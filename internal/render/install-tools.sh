#!/usr/bin/env bash
# install-tools.sh: install the real Postfix and Dovecot binaries that the
# render tests feed the rendered files to (postconf, postfix, doveconf,
# doveadm). Exits 0 at once when they are all present.
#
# Usage: internal/render/install-tools.sh
#
# The packages' own services are never started: policy-rc.d refuses every
# start during the install, postfix is preseeded to "No configuration" so
# it writes no /etc/postfix/main.cf for this host, and the tests only run
# the configuration checkers (postconf -n, postfix check, doveconf -n).
set -euo pipefail

need=(postconf postfix doveconf doveadm)
missing=0
for b in "${need[@]}"; do
  command -v "$b" >/dev/null 2>&1 || missing=1
done
[ "$missing" = 0 ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-tools: need root (or sudo) to apt-get install postfix dovecot-imapd" >&2; exit 1; }
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections

# Refuse service starts while installing (there is no init system in CI
# containers, and we never want the host's own postfix/dovecot running).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 0755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postfix dovecot-imapd dovecot-core

for b in "${need[@]}"; do
  command -v "$b" >/dev/null 2>&1 || { echo "install-tools: $b still missing after install" >&2; exit 1; }
done
