#!/usr/bin/env bash
# diag.sh: where one delivery's time goes, inside the appliance container.
#
# The throughput benchmark (e2e/bench/throughput) compares whole runs; this
# splits one pipe(8) delivery. It starts one appliance container configured
# as the benchmark's variant b (2,000 aliases + 20 rematch regexps in the
# live, renderer-compiled rule file), adds a small rule file (the default
# generated one, compiled) next to it, and runs e2e/bench/execcost inside
# the container as vmail, the way pipe(8) runs the agent: one process per
# 4 KiB message on stdin, every variant once per round, rotating. Variants:
#
#   true               /bin/true: fork+exec of a C binary
#   go-noop            floor -noop: a static Go binary that only reads stdin
#   trivial            floor (agent argv form): + the durable Maildir write (variant c's agent)
#   agent-small        the agent, small rules, logging to /dev/log (variant a)
#   agent-small-nolog  the same with -log /dev/null
#   agent-large        the agent, 2,000 aliases + 20 rematch (variant b)
#   agent-large-nolog  the same with -log /dev/null
#   explain-small      `altpostlocal explain`: rules loaded and routed, nothing written
#   explain-large      the same with the large rules
#   agent-small-ext4   the agent binary and small rules copied to the mail
#                      volume (ext4), to see what fuse-overlayfs costs
#
# Usage: e2e/bench/diag.sh
# Environment: QUIETMX_IMAGE (default quietmx:latest), ROUNDS (default 300),
#   GO (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

IMAGE="${QUIETMX_IMAGE:-quietmx:latest}"
ROUNDS="${ROUNDS:-300}"
if [ -z "${GO:-}" ]; then
  if command -v go >/dev/null 2>&1; then GO=go; else GO=/usr/local/go/bin/go; fi
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

name="qmx-bench-diag-$$"
work="$(mktemp -d /tmp/quietmx-bench-diag.XXXXXX)"
cleanup() {
  docker rm -fv "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

image_id="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
echo "# e2e/bench/diag.sh  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "image: $IMAGE = ${image_id#sha256:}"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$work/bin" "$work/spec"
chmod 0755 "$work" "$work/bin" "$work/spec"
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$work/bin/" ./e2e/bench/execcost ./internal/maildir/testdata/floor
"$GO" run ./e2e/bench/throughput -print-spec > "$work/spec/quietmx.yaml"
printf 'bench-secret\n' > "$work/spec/password"
chmod 0644 "$work/spec/"*
# a 4 KiB message, CRLF
{
  printf 'From: <sender@outside.example>\r\nTo: <user0001@bench.example>\r\nSubject: diag\r\nMessage-ID: <diag@bench.example>\r\n\r\n'
  for _ in $(seq 1 50); do printf 'The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuv\r\n'; done
} | head -c 4096 > "$work/bin/msg.eml"
chmod 0644 "$work/bin/msg.eml"

# (no grep -q on a pipe: with pipefail, docker logs dying of SIGPIPE fails it)
is_ready() { docker logs "$1" 2>&1 | grep 'quietmx: ready' >/dev/null; }
caps=()
for c in CHOWN DAC_OVERRIDE FOWNER SETUID SETGID NET_BIND_SERVICE KILL SYS_CHROOT; do caps+=(--cap-add "$c"); done
docker run -d --name "$name" --cap-drop ALL "${caps[@]}" --hostname mail.bench.example \
  -e QUIETMX_HOSTNAME=mail.bench.example -e QUIETMX_DOMAINS=bench.example \
  -e QUIETMX_MAILBOX=me@bench.example -e QUIETMX_PASSWORD_FILE=/etc/quietmx/appliance/password \
  -v "$work/spec:/etc/quietmx/appliance:ro" -v "$work/bin:/bench:ro" \
  -v /var/mail -v /var/spool/postfix \
  "$image_id" >/dev/null
for _ in $(seq 1 600); do is_ready "$name" && break; sleep 0.2; done
is_ready "$name" || { docker logs "$name" 2>&1 | tail -30; exit 1; }

live=/etc/quietmx/live/altpostlocal/altpostlocal.yaml
docker exec "$name" sh -c '
  set -e
  mkdir -p /etc/quietmx/bench /var/mail/diag
  cat > /etc/quietmx/bench/small.yaml <<EOF
extension: "\\\\+"
rescue: /var/mail/vmail/rescue
aliases:
  "me@bench.example":
    type: maildir
    value: /var/mail/vmail/bench.example/me/Maildir
default:
  type: maildir
  value: /var/mail/vmail/bench.example/me/Maildir
EOF
  altpostlocal compile -c /etc/quietmx/bench/small.yaml
  cp /usr/local/bin/altpostlocal /etc/quietmx/bench/small.yaml /etc/quietmx/bench/small.yaml.compiled /var/mail/diag/
  chmod -R a+rX /etc/quietmx/bench /var/mail/diag
'
echo "rule files (bytes):"
docker exec "$name" ls -l /etc/quietmx/bench/ "$(dirname "$live")/" | awk 'NF>=9 {print "  " $5 "  " $NF}'
docker exec "$name" sh -c "altpostlocal check -c $live | tail -1; altpostlocal check -c /etc/quietmx/bench/small.yaml | tail -1" | sed 's/^/  /'

flags="-deadline 300s -q DIAG -f sender@outside.example"
cat > "$work/bin/spec.txt" <<EOF
true               /bin/true
go-noop            /bench/floor -noop
trivial            /bench/floor -c x $flags -- user0001@bench.example
agent-small        /usr/local/bin/altpostlocal -c /etc/quietmx/bench/small.yaml $flags -- user0001@bench.example
agent-small-nolog  /usr/local/bin/altpostlocal -c /etc/quietmx/bench/small.yaml -log /dev/null $flags -- user0001@bench.example
agent-large        /usr/local/bin/altpostlocal -c $live $flags -- user0001@bench.example
agent-large-nolog  /usr/local/bin/altpostlocal -c $live -log /dev/null $flags -- user0001@bench.example
explain-small      /usr/local/bin/altpostlocal explain -c /etc/quietmx/bench/small.yaml user0001@bench.example
explain-large      /usr/local/bin/altpostlocal explain -c $live user0001@bench.example
agent-small-ext4   /var/mail/diag/altpostlocal -c /var/mail/diag/small.yaml -log /dev/null $flags -- user0001@bench.example
EOF
echo
echo "## one exec per message, as vmail, inside the container ($ROUNDS rounds, interleaved)"
docker exec -u vmail "$name" /bench/execcost -n "$ROUNDS" -stdin /bench/msg.eml -spec /bench/spec.txt -base trivial
echo
echo "delivered: $(docker exec "$name" sh -c 'ls /var/mail/vmail/bench.example/me/Maildir/new | wc -l') messages; agent outcomes in the log:"
docker logs "$name" 2>&1 | sed -nE 's/.*msg=delivery .*outcome=([a-z]+).*/\1/p' | sort | uniq -c | sed 's/^/  /'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
