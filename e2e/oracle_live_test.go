//go:build e2e

package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// agentPath is the agent master.cf runs (the image installs it there).
const agentPath = "/usr/local/bin/altpostlocal"

// TestOracleFires shows that the never-bounce oracle can fail: the agent
// is swapped for one that exits 78 (EX_CONFIG, a code that bounces), a
// message is sent, and once Postfix has logged its verdict for that queue
// id the oracle must report it (soft_bounce turns the bounce into
// status=SOFTBOUNCE, a deferral). With the real agent back, the same
// message is delivered: the safety net kept it.
//
// It runs with delivery: pipe, where the exit code is the verdict (the
// resident daemon answers only 250 or 4xx).
func TestOracleFires(t *testing.T) {
	a := Start(t, Options{Spec: specHeader("me"), Files: specFiles(), Delivery: "pipe"})
	const from = "sender@outside.example"

	// A clean appliance first: the oracle has nothing to say.
	a.MustSend(from, []string{addr("me")}, MessageOfSize(from, addr("me"), "oracle-control@e2e", 1024))
	a.Mailbox("me", 1, 30*time.Second)
	a.WaitQueueEmpty(10 * time.Second)
	if v := a.Violations(); len(v) != 0 {
		t.Fatalf("the oracle fires on a clean delivery: %v", v)
	}

	// Swap the agent by rename (the real one may be running): a script
	// that exits 78 whatever its arguments.
	a.MustExec("cp", "-p", agentPath, agentPath+".real")
	a.MustExec("sh", "-c", `printf '#!/bin/sh\nexit 78\n' > "$1.78" && chmod 0755 "$1.78" && mv "$1.78" "$1"`, "sh", agentPath)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			a.MustExec("mv", agentPath+".real", agentPath)
		}
	}
	t.Cleanup(restore)

	msg := MessageOfSize(from, addr("me"), "oracle-78@e2e", 1024)
	id := a.SendQueued(from, []string{addr("me")}, msg)
	verdict := a.waitLogMatch(regexp.MustCompile(`postfix/pipe\[\d+\]: `+id+`: to=<[^>]*>, .* status=(\S+) \((.*)\)`), 60*time.Second)
	t.Logf("Postfix's verdict on the agent's exit 78: status=%s (%s)", verdict[1], verdict[2])

	for _, l := range strings.Split(a.Logs(), "\n") {
		if strings.Contains(l, " "+id+": ") {
			t.Logf("log: %s", l)
		}
	}
	v := a.Violations()
	if len(v) == 0 {
		t.Fatalf("the oracle did not fire on an agent that exits 78")
	}
	for _, x := range v {
		t.Logf("oracle: %s", x)
		if !strings.Contains(x.Line, id) {
			t.Errorf("a violation that is not the swapped agent's (%s): %s", id, x)
		}
	}
	if !strings.Contains(v[0].Why, "soft_bounce") {
		t.Errorf("first violation: %q, want the SOFTBOUNCE one", v[0].Why)
	}

	// The real agent back: the deferred message is delivered, intact.
	restore()
	a.FlushUntilEmpty(60 * time.Second)
	got := a.Mailbox("me", 2, 30*time.Second)
	if c := got["<oracle-78@e2e>"]; len(c) != 1 || !Intact(c[0], msg) {
		t.Errorf("after the real agent is back: %d copies of the message, want 1 intact", len(c))
	}
}
