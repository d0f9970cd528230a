package supervisor

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"quietmx/internal/spec"
)

// fakeDaemon records starts and signals; the test decides when a
// "process" exits.
type fakeDaemon struct {
	mu      sync.Mutex
	starts  chan agentCmd
	signals chan string // "SIGTERM 3"
	procs   map[int]chan syscall.WaitStatus
	next    int
	fail    bool
}

func newFakeDaemon() *fakeDaemon {
	return &fakeDaemon{starts: make(chan agentCmd, 16), signals: make(chan string, 16), procs: map[int]chan syscall.WaitStatus{}}
}

func (f *fakeDaemon) start(c agentCmd) (int, <-chan syscall.WaitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		f.starts <- agentCmd{}
		return 0, nil, fmt.Errorf("exec failed")
	}
	f.next++
	ch := make(chan syscall.WaitStatus, 1)
	f.procs[f.next] = ch
	f.starts <- c
	return f.next, ch, nil
}

// exit makes pid exit with ws.
func (f *fakeDaemon) exit(pid int, ws syscall.WaitStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs[pid] <- ws
}

func (f *fakeDaemon) kill(pid int, sig syscall.Signal) {
	f.signals <- fmt.Sprintf("%v %d", sig, pid)
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL {
		f.exit(pid, syscall.WaitStatus(sig)) // a signalled exit
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

func testAgentd(f *fakeDaemon) (*agentd, *strings.Builder) {
	var mu sync.Mutex
	var log strings.Builder
	logf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&log, format+"\n", a...)
	}
	d := newAgentd(f.start, time.Second, logf, func(err error) { panic(err) })
	d.kill = f.kill
	d.min, d.max = time.Millisecond, 4*time.Millisecond
	return d, &log
}

func TestAgentdRestartsWhenItDies(t *testing.T) {
	f := newFakeDaemon()
	d, _ := testAgentd(f)
	restarted := make(chan struct{}, 8)
	d.restarted = func() { restarted <- struct{}{} }
	cmd := agentCmdFor(&spec.Spec{Limits: spec.Limits{MessageSize: 10}, Vmail: spec.Vmail{UID: 5000, GID: 5001}}, "/bin/agent", "/live")
	d.set(cmd)
	if got := recv(t, f.starts, "start"); got != cmd {
		t.Fatalf("started %+v, want %+v", got, cmd)
	}
	// Killed (SIGKILL from outside), three times: restarted each time,
	// and each restart is reported (the supervisor flushes the queue).
	for pid := 1; pid <= 3; pid++ {
		f.exit(pid, syscall.WaitStatus(syscall.SIGKILL))
		if got := recv(t, f.starts, "restart"); got != cmd {
			t.Fatalf("restart %d: %+v", pid, got)
		}
		recv(t, restarted, "restart report")
	}
	// The same command again: nothing happens; stop: SIGTERM to the live one.
	d.set(cmd)
	d.stop()
	if got := recv(t, f.signals, "signal"); got != "terminated 4" {
		t.Errorf("signal %q, want SIGTERM to 4", got)
	}
	select {
	case c := <-f.starts:
		t.Errorf("started after stop: %+v", c)
	case <-restarted:
		t.Error("a restart reported too many (the first start or the stop)")
	default:
	}
}

func TestAgentdFollowsTheSpec(t *testing.T) {
	f := newFakeDaemon()
	d, _ := testAgentd(f)
	sp := &spec.Spec{Limits: spec.Limits{MessageSize: 10}, Vmail: spec.Vmail{UID: 5000, GID: 5000}}
	d.set(agentCmdFor(sp, "/bin/agent", "/live"))
	recv(t, f.starts, "start")
	// A new message size: the daemon is replaced.
	sp.Limits.MessageSize = 20
	bigger := agentCmdFor(sp, "/bin/agent", "/live")
	d.set(bigger)
	if got := recv(t, f.signals, "signal"); got != "terminated 1" {
		t.Errorf("signal %q", got)
	}
	if got := recv(t, f.starts, "restart"); got != bigger || !strings.Contains(strings.Join(got.argv(), " "), "-max-size 1048616") {
		t.Errorf("restarted with %q", got.argv())
	}
	// delivery: pipe: the daemon answers the policy service only.
	sp.Delivery = spec.DeliveryPipe
	policyOnly := agentCmdFor(sp, "/bin/agent", "/live")
	d.set(policyOnly)
	if got := recv(t, f.signals, "signal"); got != "terminated 2" {
		t.Errorf("signal %q", got)
	}
	if got := recv(t, f.starts, "restart"); got != policyOnly || got.lmtp != "" || !strings.Contains(strings.Join(got.argv(), " "), "-socket  -policy-socket /run/altpostlocal/policy") {
		t.Errorf("pipe mode started with %q", got.argv())
	}
	// And back: started again with LMTP.
	sp.Delivery = spec.DeliveryLMTP
	d.set(agentCmdFor(sp, "/bin/agent", "/live"))
	if got := recv(t, f.signals, "signal"); got != "terminated 3" {
		t.Errorf("signal %q", got)
	}
	if got := recv(t, f.starts, "restart"); got.lmtp != "/run/altpostlocal/lmtp" {
		t.Errorf("lmtp mode started with %q", got.argv())
	}
	d.stop()
}

func TestAgentdRetriesFailedStart(t *testing.T) {
	f := newFakeDaemon()
	f.fail = true
	d, log := testAgentd(f)
	d.set(agentCmdFor(&spec.Spec{}, "/bin/agent", "/live"))
	recv(t, f.starts, "attempt")
	recv(t, f.starts, "second attempt")
	f.mu.Lock()
	f.fail = false
	f.mu.Unlock()
	for got := recv(t, f.starts, "start"); got.none(); got = recv(t, f.starts, "start") {
	}
	d.stop()
	if !strings.Contains(log.String(), "exec failed: retrying in") {
		t.Errorf("log:\n%s", log.String())
	}
}

func TestAgentCmd(t *testing.T) {
	sp := &spec.Spec{Limits: spec.Limits{MessageSize: 50 << 20}, Vmail: spec.Vmail{UID: 5000, GID: 5000}}
	got := strings.Join(agentCmdFor(sp, "/usr/local/bin/altpostlocal", "/etc/quietmx/live").argv(), " ")
	want := "/usr/local/bin/altpostlocal serve -c /etc/quietmx/live/altpostlocal/altpostlocal.yaml -socket /run/altpostlocal/lmtp -policy-socket /run/altpostlocal/policy -deadline 300s -max-size 105906176"
	if got != want {
		t.Errorf("argv\n%s\nwant\n%s", got, want)
	}
}
