#!/usr/bin/env bash
# image.sh: the image figures of docs/performance.md (issue 6), measured.
#
#   1. image size: `docker image inspect -f '{{.Size}}'` (target <= 175 MB)
#   2. cold start: from `docker run` to port 25 answering EHLO with 250 AND
#      port 993 completing a TLS handshake, polled every 20 ms by
#      e2e/bench/coldstart (target <= 2 s); RUNS runs, median reported
#   3. idle memory: `docker stats --no-stream` of running containers
#      IDLE_SECONDS after they became ready (target <= 32 MiB)
#
# Each container runs exactly as e2e/harness_test.go starts one: cap-drop
# ALL plus the harness's cap-add list, hostname, and the
# smoke test's environment (QUIETMX_HOSTNAME, QUIETMX_DOMAINS,
# QUIETMX_MAILBOX, QUIETMX_PASSWORD_FILE pointing at a password file in the
# bind-mounted spec directory), no volumes. No assertions: it prints
# figures; comparing them with the targets is left to the reader.
#
# Usage: e2e/bench/image.sh            (from anywhere in the checkout)
# Environment:
#   QUIETMX_IMAGE   image to measure (default quietmx:latest; resolved to its
#                   ID once, so a concurrent rebuild cannot swap it mid-run)
#   RUNS            timed cold starts (default 10), after one untimed warm-up
#   QRUNS           diagnostic cold starts with an initialised queue volume,
#                   interleaved with the timed ones (default RUNS; 0 = none)
#   MEM_RUNS        containers measured for idle memory (default 3)
#   IDLE_SECONDS    how long they idle after "ready" (default 30)
#   INTERVAL        poll interval (default 20ms)
#   PAUSE           seconds between cold starts (default 2)
#   GO              go command (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

IMAGE="${QUIETMX_IMAGE:-quietmx:latest}"
RUNS="${RUNS:-10}"
QRUNS="${QRUNS:-$RUNS}"
MEM_RUNS="${MEM_RUNS:-3}"
IDLE_SECONDS="${IDLE_SECONDS:-30}"
INTERVAL="${INTERVAL:-20ms}"
PAUSE="${PAUSE:-2}"
if [ -z "${GO:-}" ]; then
  if command -v go >/dev/null 2>&1; then GO=go; else GO=/usr/local/go/bin/go; fi
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

label="quietmx.bench=image-$$"
work="$(mktemp -d /tmp/quietmx-bench-image.XXXXXX)"
cleanup() {
  local ids
  ids="$(docker ps -aq --filter "label=$label" 2>/dev/null || true)"
  [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1 || true
  ids="$(docker volume ls -q --filter "label=$label" 2>/dev/null || true)"
  [ -n "$ids" ] && docker volume rm -f $ids >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "n/a"; exit} if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { sort -n | awk 'NR==1 {lo=$1} {hi=$1} END {print lo "–" hi}'; }

image_id="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
created="$(docker image inspect -f '{{.Created}}' "$image_id")"
size="$(docker image inspect -f '{{.Size}}' "$image_id")"

say "# e2e/bench/image.sh  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "host: $(nproc) cores, $(uname -r), docker $(docker version --format '{{.Server.Version}}'), storage $(docker info --format '{{.Driver}}' 2>/dev/null)"
say "image: $IMAGE = ${image_id#sha256:} (created $created)"
say "load average at start: $(load)"
say
say "## size"
awk -v b="$size" 'BEGIN {printf "size: %d bytes = %.1f MB (%.1f MiB)\n", b, b/1e6, b/1048576}'
say

# The spec directory, as the harness makes it: 0755, password 0644.
spec="$work/spec"
mkdir -p "$spec"
chmod 0755 "$spec"
printf 'bench-secret\n' > "$spec/password"
chmod 0644 "$spec/password"

"$GO" build -o "$work/coldstart" ./e2e/bench/coldstart

# (no grep -q on a pipe: with pipefail, docker logs dying of SIGPIPE fails it)
is_ready() { docker logs "$1" 2>&1 | grep 'quietmx: ready' >/dev/null; }
caps=()
for c in CHOWN DAC_OVERRIDE FOWNER SETUID SETGID NET_BIND_SERVICE KILL SYS_CHROOT; do caps+=(--cap-add "$c"); done
run_args() { # name smtp-publish imaps-publish
  printf '%s\n' docker run -d --label "$label" --name "$1" \
    --cap-drop ALL "${caps[@]}" \
    --hostname mail.bench.example \
    -e QUIETMX_HOSTNAME=mail.bench.example \
    -e QUIETMX_DOMAINS=bench.example,bench.example.org \
    -e QUIETMX_MAILBOX=me@bench.example \
    -e QUIETMX_PASSWORD_FILE=/etc/quietmx/appliance/password \
    -v "$spec:/etc/quietmx/appliance:ro" \
    -p "$2:25" -p "$3:993" \
    "$image_id"
}

# Where the time goes, on the coldstart clock (start_ns): when Docker says
# the container started, and when the supervisor's own phase lines reached
# the container log (docker logs -t). All in ms since `docker run` began.
#   started    .State.StartedAt (the container's PID 1 was exec'd)
#   first_log  the supervisor's first line (spec loaded)
#   rendered   "configuration rendered and verified" (certificate + render
#              + postconf/doveconf checks done)
#   answering  "Postfix and Dovecot answering" (both checked from inside)
#   ready_log  "quietmx: ready"
ns() { date -d "$1" +%s%N; }
phases() { # container start_ns
  local log started t first rendered answering ready
  log="$(docker logs -t "$1" 2>&1)"
  started="$(ns "$(docker inspect -f '{{.State.StartedAt}}' "$1")")"
  t() { grep -m1 -E "$1" <<<"$log" | cut -d' ' -f1; }
  first="$(t 'Z quietmx: ')"
  rendered="$(t 'configuration rendered and verified')"
  answering="$(t 'Postfix and Dovecot answering')"
  ready="$(t 'quietmx: ready')"
  rel() { if [ -n "$1" ]; then echo $(( ($(ns "$1") - $2) / 1000000 )); else echo -1; fi; }
  printf 'started=%s first_log=%s rendered=%s answering=%s ready_log=%s' \
    "$(( (started - $2) / 1000000 ))" "$(rel "$first" "$2")" "$(rel "$rendered" "$2")" "$(rel "$answering" "$2")" "$(rel "$ready" "$2")"
  # and the durations the supervisor measured itself
  printf ' render_ms=%s services_ms=%s' \
    "$(sed -nE 's/.*configuration rendered and verified in ([0-9.]+)(m?s).*/\1 \2/p' <<<"$log" | awk '{v=$1; if ($2=="s") v*=1000; printf "%.0f", v}')" \
    "$(sed -nE 's/.*Postfix and Dovecot answering after ([0-9.]+)(m?s).*/\1 \2/p' <<<"$log" | awk '{v=$1; if ($2=="s") v*=1000; printf "%.0f", v}')"
}

say "## cold start (docker run -> EHLO 250 on 25 and TLS handshake on 993; poll $INTERVAL)"
say "(all times in ms since docker run began; started..ready_log: see phases() in this script;"
say " render_ms/services_ms: the durations the supervisor logs itself)"
if [ "$QRUNS" -gt 0 ]; then
  say "Interleaved with it (diagnostic, 'qvol'): the same container plus a named volume on"
  say "/var/spool/postfix that one earlier start already initialised, as compose.yaml's queue"
  say "volume is on every start after the first."
  qvol="qmx-bench-queue-$$"
  docker volume create --label "$label" "$qvol" >/dev/null
  mapfile -t cmd < <(run_args "qmx-bench-qinit-$$" "127.0.0.1:" "127.0.0.1:")
  cmd=("${cmd[@]:0:${#cmd[@]}-1}" -v "$qvol:/var/spool/postfix" "${cmd[@]: -1}")
  "${cmd[@]}" >/dev/null
  for _ in $(seq 1 600); do is_ready "qmx-bench-qinit-$$" && break; sleep 0.1; done
  docker stop -t 30 "qmx-bench-qinit-$$" >/dev/null
  docker rm -f "qmx-bench-qinit-$$" >/dev/null
fi
results="$work/cold.txt"
qresults="$work/cold-qvol.txt"
: > "$results"
: > "$qresults"
cold() { # name label results-file extra-docker-args...
  local name="$1" what="$2" out="$3" l line start_ns ph
  shift 3
  mapfile -t cmd < <(run_args "$name" "127.0.0.1:{smtp}" "127.0.0.1:{imaps}")
  cmd=("${cmd[@]:0:${#cmd[@]}-1}" "$@" "${cmd[@]: -1}")
  l="$(load)"
  line="$("$work/coldstart" -interval "$INTERVAL" -- "${cmd[@]}" || true)"
  # the ready line is logged once both answered inside; give it a moment
  for _ in $(seq 1 50); do is_ready "$name" && break; sleep 0.1; done
  start_ns="$(sed -nE 's/.*start_ns=([0-9]+).*/\1/p' <<<"$line")"
  line="${line% start_ns=*}"
  ph="$(phases "$name" "${start_ns:-0}")"
  say "$what: $line $ph load=$l"
  [ -n "$out" ] && printf '%s %s\n' "$line" "$ph" >> "$out"
  # stop cleanly (a killed Postfix would leave its pid files on the queue volume)
  docker stop -t 30 "$name" >/dev/null 2>&1 || true
  docker rm -f "$name" >/dev/null
  sleep "$PAUSE"
}
for i in $(seq 0 "$RUNS"); do
  if [ "$i" = 0 ]; then
    cold "qmx-bench-cold-$$-$i" "warm-up (not counted)" ""
    continue
  fi
  cold "qmx-bench-cold-$$-$i" "run $i" "$results"
  if [ "$i" -le "$QRUNS" ]; then
    cold "qmx-bench-qvol-$$-$i" "run $i qvol" "$qresults" -v "$qvol:/var/spool/postfix"
  fi
done
field() { sed -nE "s/.*(^| )$1=(-?[0-9.]+).*/\2/p" "$2"; }
summarize() { # results-file
  for f in run_ms started first_log rendered answering ready_log smtp_ms imaps_ms ready_ms render_ms services_ms; do
    printf 'median %-12s %8s ms   (min–max %s, n=%s)\n' "$f" "$(field "$f" "$1" | median)" "$(field "$f" "$1" | minmax)" "$(field "$f" "$1" | wc -l)"
  done
}
say
say "cold start as the e2e harness runs it:"
summarize "$results"
if [ "$QRUNS" -gt 0 ]; then
  say
  say "diagnostic, queue volume already initialised (qvol):"
  summarize "$qresults"
fi
say "load average after cold starts: $(load)"
say

say "## idle memory ($MEM_RUNS containers, ${IDLE_SECONDS}s after ready)"
names=()
for i in $(seq 1 "$MEM_RUNS"); do
  name="qmx-bench-mem-$$-$i"
  mapfile -t cmd < <(run_args "$name" "127.0.0.1:" "127.0.0.1:")
  "${cmd[@]}" >/dev/null
  names+=("$name")
done
for name in "${names[@]}"; do
  for _ in $(seq 1 600); do is_ready "$name" && break; sleep 0.1; done
  is_ready "$name" || { say "$name never became ready"; docker logs "$name" 2>&1 | tail -20; exit 1; }
done
sleep "$IDLE_SECONDS"
say "load average at the sample: $(load)"
memfile="$work/mem.txt"
: > "$memfile"
for name in "${names[@]}"; do
  usage="$(docker stats --no-stream --format '{{.MemUsage}}' "$name" | cut -d/ -f1 | tr -d ' ')"
  mib="$(awk -v u="$usage" 'BEGIN {v=u+0; if (u ~ /GiB$/) v*=1024; else if (u ~ /KiB$/) v/=1024; else if (u ~ /[^i]B$/ && u !~ /MiB$/) v/=1048576; printf "%.1f", v}')"
  echo "$mib" >> "$memfile"
  stat="$(docker exec "$name" cat /sys/fs/cgroup/memory/memory.stat 2>/dev/null || true)"
  rss="$(awk '$1=="total_rss" {printf "%.1f", $2/1048576}' <<<"$stat")"
  cache="$(awk '$1=="total_cache" {printf "%.1f", $2/1048576}' <<<"$stat")"
  inact="$(awk '$1=="total_inactive_file" {printf "%.1f", $2/1048576}' <<<"$stat")"
  nproc="$(docker top "$name" -o pid | tail -n +2 | wc -l)"
  say "$name: docker stats $usage (= $mib MiB); cgroup rss $rss MiB, cache $cache MiB (inactive_file $inact MiB); $nproc processes"
done
say "median idle memory: $(median < "$memfile") MiB (n=$MEM_RUNS)"
say
say "processes (PID, RSS KiB; RSS double-counts shared pages) in ${names[0]}:"
docker top "${names[0]}" -o pid,rss,args | tail -n +2 | sort -k2,2rn | sed 's/^/  /' || true
say
say "load average at end: $(load)"
