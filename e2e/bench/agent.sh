#!/usr/bin/env bash
# Reproduces the figures of docs/performance.md, "## Delivery agent":
# rule loading and routing in process, then the agent exec'd against the
# floor, each -count 10, summarised with benchstat. Results go to $OUT
# (default bin/bench). Needs Go and GNU time (/usr/bin/time, for peak RSS);
# installs benchstat if it is missing. Takes about 15 minutes on 2 cores.
#
#   e2e/bench/agent.sh            # or: OUT=/tmp/b e2e/bench/agent.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
OUT=${OUT:-bin/bench}
mkdir -p "$OUT"

benchstat=$(command -v benchstat || echo "$("$GO" env GOPATH)/bin/benchstat")
if [ ! -x "$benchstat" ]; then
	"$GO" install golang.org/x/perf/cmd/benchstat@latest
fi

# The machine's state belongs with the figures: ratios are stable under
# load, absolute times are not.
{ date -u; uname -r; nproc; uptime; cat /proc/pressure/cpu 2>/dev/null || true; } >"$OUT/agent-machine.txt"

"$GO" test -run '^$' -bench . -benchmem -count 10 ./internal/rules/ ./internal/route/ | tee "$OUT/agent-inproc.txt"
# Fixed iteration count: 200 interleaved execs of each variant per run.
"$GO" test -run '^$' -bench ExecDelivery -benchtime 200x -count 10 -timeout 60m ./cmd/altpostlocal/ | tee "$OUT/agent-exec.txt"
{ uptime; cat /proc/pressure/cpu 2>/dev/null || true; } >>"$OUT/agent-machine.txt"

"$benchstat" "$OUT/agent-inproc.txt"
"$benchstat" "$OUT/agent-exec.txt"
