//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"quietmx/e2e/oracle"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tcexec "github.com/testcontainers/testcontainers-go/exec"

	"quietmx/e2e/harness"
)

type serveProc struct{ pid, uid, rssKB int }

// serveProcs lists the running daemons. It may run outside the test's
// goroutine: it reports errors instead of failing the test.
func (a *Appliance) serveProcs() ([]serveProc, error) {
	out, err := a.shell(harness.FindServe)
	var ps []serveProc
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var p serveProc
		if n, _ := fmt.Sscan(l, &p.pid, &p.uid, &p.rssKB); n == 3 {
			ps = append(ps, p)
		}
	}
	return ps, err
}

func (a *Appliance) shell(script string, args ...string) (string, error) {
	code, r, err := a.C.Exec(context.Background(), append([]string{"bash", "-c", script, "bash"}, args...), tcexec.Multiplexed())
	if err != nil {
		return "", err
	}
	out, _ := io.ReadAll(r)
	if code != 0 {
		return string(out), fmt.Errorf("exit %d: %s", code, out)
	}
	return string(out), nil
}

// killServe SIGKILLs the running daemon, waiting for one to run first
// (it may be restarting).
func (a *Appliance) killServe() error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps, err := a.serveProcs()
		if err != nil {
			return err
		}
		if len(ps) > 0 {
			_, err := a.shell(`kill -KILL "$1"`, strconv.Itoa(ps[0].pid))
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no altpostlocal serve to kill")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLMTPDaemon (delivery: lmtp, the default): the resident agent runs as
// vmail and is small when idle; SIGKILLed several times in the middle of
// a 300-message stream, with an invalid rule file written mid-stream, it
// loses nothing, stores nothing partial and bounces nothing (whole
// duplicates are allowed: Postfix delivers at least once), and the
// deliveries after the bad write use the last valid rules.
func TestLMTPDaemon(t *testing.T) {
	a := Start(t, Options{Spec: specHeader("me", "rescue") + `rules:
  rescue: ` + rescueMaildir + `/new
  aliases:
    me@e2e.example:
      type: maildir
      value: ` + maildirOf("me") + `
`, Files: specFiles()})
	const from = "sender@outside.example"

	ps, err := a.serveProcs()
	if err != nil || len(ps) != 1 {
		t.Fatalf("altpostlocal serve processes: %v (%v), want one", ps, err)
	}
	if ps[0].uid != 5000 {
		t.Errorf("altpostlocal serve runs as uid %d, want vmail (5000)", ps[0].uid)
	}
	t.Logf("idle daemon: pid %d, RSS %d KiB", ps[0].pid, ps[0].rssKB)
	if ps[0].rssKB > 16<<10 {
		t.Errorf("idle daemon RSS %d KiB: more than 16 MiB", ps[0].rssKB)
	}
	if master := a.MustExec("cat", "/etc/quietmx/live/postfix/main.cf"); !strings.Contains(master, "local_transport = altpostlocal-lmtp:unix:") {
		t.Fatalf("main.cf does not deliver over LMTP")
	}

	const n = 300
	sent := make(map[string][]byte, n)
	var mu sync.Mutex
	var count atomic.Int32
	ids := make(chan int)
	var wg sync.WaitGroup
	live := "/etc/quietmx/live/altpostlocal/altpostlocal.yaml"
	killed := 0
	faults := make(chan struct{})
	go func() {
		// The faults, at points of the stream: three kills, an invalid
		// rule file, and a kill while it is invalid (the restarted daemon
		// starts on the snapshot).
		defer close(faults)
		at := func(k int32) {
			for count.Load() < k {
				time.Sleep(10 * time.Millisecond)
			}
		}
		kill := func() {
			if err := a.killServe(); err != nil {
				t.Errorf("kill the daemon: %v", err)
				return
			}
			killed++
		}
		for _, k := range []int32{40, 100, 150} {
			at(k)
			kill()
		}
		at(180)
		if _, err := a.shell(`printf 'aliases: [\n  me@e2e.example: {type: maildir, value: "/var/ma' > "$1"`, live); err != nil {
			t.Errorf("overwrite %s: %v", live, err)
		}
		at(230)
		kill()
	}()
	start := time.Now()
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				id := fmt.Sprintf("lmtp-%03d@e2e", i)
				msg := MessageOfSize(from, addr("me"), id, 4096)
				mu.Lock()
				sent["<"+id+">"] = msg
				mu.Unlock()
				if err := a.Send(from, []string{addr("me")}, msg); err != nil {
					t.Errorf("send %s: %v", id, err)
				}
				count.Add(1)
			}
		}()
	}
	for i := 0; i < n; i++ {
		ids <- i
	}
	close(ids)
	wg.Wait()
	<-faults
	t.Logf("sent %d messages in %v, daemon killed %d times", n, time.Since(start).Round(time.Millisecond), killed)

	a.FlushUntilEmpty(180 * time.Second)
	c := a.NewIMAP("me")
	msgs := WaitMessages(t, c, "INBOX", n, 60*time.Second)
	c.Logout()
	got := ByMessageID(msgs)
	dups := 0
	for id, msg := range sent {
		copies := got[id]
		if len(copies) == 0 {
			t.Errorf("%s: lost", id)
		}
		for _, cp := range copies {
			if !Intact(cp, msg) {
				t.Errorf("%s: a partial or altered copy (%d bytes, sent %d)", id, len(cp), len(msg))
			}
		}
		dups += max(len(copies)-1, 0)
	}
	for id := range got {
		if _, ok := sent[id]; !ok {
			t.Errorf("unexpected message %q in INBOX", id)
		}
	}
	t.Logf("%d messages stored, %d whole duplicates", len(msgs), dups)
	a.AssertNoBounce(oracle.AgentDown)

	logs := a.Logs()
	if got := strings.Count(logs, "altpostlocal serve exited (killed by killed)"); got < killed {
		t.Errorf("the supervisor reported %d daemon deaths, want %d", got, killed)
	}
	if ps, err := a.serveProcs(); err != nil || len(ps) != 1 {
		t.Errorf("after the faults: daemons %v (%v), want one", ps, err)
	}
	// After the bad write every delivery used the last valid rules, and
	// said so; none went to rescue.
	if !strings.Contains(logs, "rules_stale=") {
		t.Error("no delivery line says the rules were stale")
	}
	if n := strings.Count(logs, "outcome=rescued"); n > 0 {
		t.Errorf("%d messages rescued: the last valid rules were not used", n)
	}
	// Each line names its queue id (lmtp(8) sends none: it comes from
	// Postfix's Received: line).
	re := regexp.MustCompile(`msg=delivery queue_id=(\S*)`)
	for _, m := range re.FindAllStringSubmatch(logs, -1) {
		if m[1] == "" || m[1] == `""` {
			t.Errorf("a delivery line without a queue id: %s", m[0])
			break
		}
	}
}
