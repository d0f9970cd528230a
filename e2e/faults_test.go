//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tcexec "github.com/testcontainers/testcontainers-go/exec"

	"quietmx/e2e/harness"
	"quietmx/e2e/oracle"
)

// rescueMaildir is where these tests keep rescued mail: the new/ of a
// mailbox's Maildir on the normal mail volume, so a rescued message can be
// read over IMAPS like any other.
const rescueMaildir = "/var/mail/vmail/e2e.example/rescue/Maildir"

// neverBounceRules has no default (unknown recipients go to rescue), a
// filter that always fails, and a Maildir the test makes unwritable.
func neverBounceSpec(extra string) string {
	return specHeader("me", "rescue", "broken") + `rules:
  rescue: ` + rescueMaildir + `/new
  aliases:
    me@e2e.example:
      type: maildir
      value: ` + maildirOf("me") + `
    filter@e2e.example:
      type: pipe
      cmd: /bin/false
      args: ["${sender}", "${recipient}"]
      timeout: 10
    broken@e2e.example:
      type: maildir
      value: ` + maildirOf("broken") + `
` + extra
}

// TestNeverBounce (scenario 5): unknown recipients, a failing filter, an
// unwritable Maildir, an unwritable rescue directory, a live rule file
// replaced by invalid YAML and an invalid spec edit: every SMTP transaction
// succeeds, every message is rescued, delivered (with the last valid rules)
// or held and delivered once fixed, and no bounce is ever made.
func TestNeverBounce(t *testing.T) { forEachDelivery(t, testNeverBounce) }

func testNeverBounce(t *testing.T, delivery string) {
	a := Start(t, Options{Spec: neverBounceSpec(""), Files: specFiles(), Delivery: delivery})
	const from = "sender@outside.example"
	sent := map[string][]byte{} // Message-ID → message
	send := func(to, id string) {
		t.Helper()
		msg := MessageOfSize(from, to, id, 2048)
		sent["<"+id+">"] = msg
		a.MustSend(from, []string{to}, msg)
	}

	// The mail volume has no broken/Maildir yet: make its parent belong to
	// root, 0755, so vmail (who runs the agent) cannot create it.
	brokenParent := "/var/mail/vmail/e2e.example/broken"
	a.MustExec("install", "-d", "-o", "vmail", "-g", "vmail", "-m", "0700", "/var/mail/vmail/e2e.example")
	a.MustExec("install", "-d", "-o", "root", "-g", "root", "-m", "0755", brokenParent)

	// 1. An unknown recipient (no default), a filter exiting 1 with no
	// onerror, an unwritable Maildir: all rescued.
	send(addr("nobody"), "nb-unknown@e2e")
	send(addr("filter"), "nb-filter@e2e")
	send(addr("broken"), "nb-broken@e2e")
	got := a.Mailbox("rescue", 3, 30*time.Second)
	for _, id := range []string{"<nb-unknown@e2e>", "<nb-filter@e2e>", "<nb-broken@e2e>"} {
		if len(got[id]) != 1 || !Intact(got[id][0], sent[id]) {
			t.Errorf("rescue mailbox: %s: %d copies, want 1 intact", id, len(got[id]))
		}
	}
	if n := a.CountLog("outcome=rescued"); n < 3 {
		t.Errorf("log: %d rescued deliveries, want 3", n)
	}

	// 2. The Maildir and the rescue directory both unwritable: the agent
	// defers (75), Postfix keeps the message (from the original sender,
	// never a bounce), and delivers it once the Maildir is fixed.
	a.MustExec("chown", "root:root", rescueMaildir+"/new", rescueMaildir+"/tmp")
	send(addr("broken"), "nb-held@e2e")
	held := a.WaitQueued(addr("broken"), 30*time.Second)
	if held.Sender != from {
		t.Errorf("held message: sender <%s>, want <%s>", held.Sender, from)
	}
	t.Logf("held while the Maildir and rescue are unwritable: %s", held)
	a.MustExec("chown", "-R", "vmail:vmail", brokenParent, rescueMaildir)
	a.FlushUntilEmpty(60 * time.Second)
	got = a.Mailbox("broken", 1, 30*time.Second)
	if id := "<nb-held@e2e>"; len(got[id]) != 1 || !Intact(got[id][0], sent[id]) {
		t.Errorf("broken mailbox after the fix: %d copies of %s, want 1 intact", len(got[id]), id)
	}

	// 3. The live rule file overwritten with truncated YAML: the agent
	// delivers with its last valid snapshot, and says so.
	live := "/etc/quietmx/live/altpostlocal/altpostlocal.yaml"
	good := a.MustExec("cat", live)
	truncated := good[:len(good)/2] + "\n  half@e2e.example: {type: maildir, value: \"/var/ma"
	code, _, err := a.C.Exec(context.Background(), []string{"sh", "-c", `printf '%s' "$1" > "$2"`, "sh", truncated, live}, tcexec.Multiplexed())
	if err != nil || code != 0 {
		t.Fatalf("overwrite %s: exit %d %v", live, code, err)
	}
	if code, out := a.Exec("altpostlocal", "check", "-c", live); code == 0 {
		t.Fatalf("the truncated rule file passes check, the test is wrong:\n%s", out)
	}
	staleBefore := a.CountLog("rules_stale=")
	send(addr("me"), "nb-stale-me@e2e")
	send(addr("nobody2"), "nb-stale-unknown@e2e")
	got = a.Mailbox("me", 1, 30*time.Second)
	if id := "<nb-stale-me@e2e>"; len(got[id]) != 1 || !Intact(got[id][0], sent[id]) {
		t.Errorf("me with a broken live rule file: %d copies of %s, want 1 intact", len(got[id]), id)
	}
	a.WaitLog("rules_stale=", staleBefore+2, 10*time.Second)
	a.MustExec("cp", live+".last-valid", live)

	// 4. Invalid spec edits (a YAML syntax error, then an unknown action
	// type): refused, the live rule file stays as it was, mail flows.
	ruleHash := a.MustExec("sha256sum", live)
	a.EditSpecAndWait(neverBounceSpec("    typo@e2e.example: {type: maildir, value: \"/var/mail\n"), "REJECTED")
	a.EditSpecAndWait(neverBounceSpec("    typo@e2e.example:\n      type: maildri\n      value: /var/mail/vmail/x/Maildir\n"), "REJECTED")
	if now := a.MustExec("sha256sum", live); now != ruleHash {
		t.Errorf("a rejected spec changed the live rule file: %s → %s", ruleHash, now)
	}
	send(addr("me"), "nb-after-reject-me@e2e")
	send(addr("typo"), "nb-after-reject-typo@e2e") // unknown under the old rules: rescued
	got = a.Mailbox("me", 2, 30*time.Second)
	if id := "<nb-after-reject-me@e2e>"; len(got[id]) != 1 || !Intact(got[id][0], sent[id]) {
		t.Errorf("me after rejected edits: %d copies of %s, want 1 intact", len(got[id]), id)
	}
	got = a.Mailbox("rescue", 5, 30*time.Second)
	for _, id := range []string{"<nb-stale-unknown@e2e>", "<nb-after-reject-typo@e2e>"} {
		if len(got[id]) != 1 || !Intact(got[id][0], sent[id]) {
			t.Errorf("rescue mailbox: %s: %d copies, want 1 intact", id, len(got[id]))
		}
	}

	// Nothing lost, nothing bounced, and the agent only ever exited 0 or 75.
	a.FlushUntilEmpty(30 * time.Second)
	a.AssertNoBounce()
	assertAgentExits(t, a)
}

// assertAgentExits checks every delivery line of the agent: its exit code
// was 0 or 75, the only two Postfix does not bounce on.
func assertAgentExits(t *testing.T, a *Appliance) {
	t.Helper()
	re := regexp.MustCompile(`msg=delivery .*?\bexit=(\d+)`)
	n := 0
	for _, m := range re.FindAllStringSubmatch(a.Logs(), -1) {
		n++
		if m[1] != "0" && m[1] != "75" {
			t.Errorf("agent exited %s: %s", m[1], m[0])
		}
	}
	if n == 0 {
		t.Errorf("no delivery line in the container log")
	}
}

// killLoop SIGKILLs every running agent (found by argv[0] in /proc; the
// image has no pkill) at random intervals of 5-60 ms until /tmp/stop-kills
// exists, and prints how many it killed.
const killLoop = `
n=0; end=$((SECONDS+240))
while [ ! -e /tmp/stop-kills ] && [ $SECONDS -lt $end ]; do
  for p in /proc/[0-9]*; do
    read -r -d '' a0 2>/dev/null < "$p/cmdline" || continue
    if [ "$a0" = /usr/local/bin/altpostlocal ]; then
      kill -KILL "${p#/proc/}" 2>/dev/null && n=$((n+1))
    fi
  done
  sleep "0.0$((RANDOM % 55 + 5))"
done
echo "kills=$n"
`

// TestFaultInjection (scenario 11): the agent SIGKILLed at random points
// during a stream of deliveries loses nothing and shows nothing partial;
// a full filesystem (a tiny tmpfs, real ENOSPC) rescues or defers, and a
// deferred message is delivered once space returns.
func TestFaultInjection(t *testing.T) { forEachDelivery(t, testFaultInjection) }

func testFaultInjection(t *testing.T, delivery string) {
	const tinyDir = "/var/mail/vmail/tiny"
	spec := func(rescue string) string {
		return specHeader("me", "rescue", "tiny="+tinyDir+"/Maildir") + `rules:
  rescue: ` + rescue + `
  aliases:
    me@e2e.example:
      type: maildir
      value: ` + maildirOf("me") + `
    tiny@e2e.example:
      type: maildir
      value: ` + tinyDir + `/Maildir
`
	}
	a := Start(t, Options{
		Spec:     spec(rescueMaildir + "/new"),
		Files:    specFiles(),
		Tmpfs:    map[string]string{tinyDir: "size=64k,nr_inodes=64,uid=5000,gid=5000,mode=0700"},
		Delivery: delivery,
	})
	const from = "sender@outside.example"

	t.Run("sigkill", func(t *testing.T) {
		// The kill loop runs in the container while we send.
		type result struct {
			out string
			err error
		}
		killed := make(chan result, 1)
		go func() {
			code, r, err := a.C.Exec(context.Background(), []string{"bash", "-c", killLoop}, tcexec.Multiplexed())
			var out []byte
			if r != nil {
				out, _ = io.ReadAll(r)
			}
			if err == nil && code != 0 {
				err = fmt.Errorf("kill loop exit %d", code)
			}
			killed <- result{string(out), err}
		}()
		stopKills := func() result {
			a.MustExec("touch", "/tmp/stop-kills")
			select {
			case r := <-killed:
				return r
			case <-time.After(30 * time.Second):
				t.Fatal("kill loop did not stop")
			}
			return result{}
		}

		const n = 150
		sent := make(map[string][]byte, n)
		ids := make(chan int)
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range ids {
					id := fmt.Sprintf("kill-%03d@e2e", i)
					// 1 KiB to 256 KiB: big ones take long enough to be
					// killed in the middle of the Maildir write.
					size := 1024 << rand.IntN(9)
					msg := MessageOfSize(from, addr("me"), id, size)
					mu.Lock()
					sent["<"+id+">"] = msg
					mu.Unlock()
					if err := a.Send(from, []string{addr("me")}, msg); err != nil {
						t.Errorf("send %s: %v", id, err)
					}
				}
			}()
		}
		for i := 0; i < n; i++ {
			ids <- i
		}
		close(ids)
		wg.Wait()
		t.Logf("sent %d messages in %v", n, time.Since(start).Round(time.Millisecond))
		// Keep killing while Postfix retries what was killed: three
		// rounds of a flush and a wait (up to 3 s) for the queue to drain.
		for i := 0; i < 3; i++ {
			a.Exec("postqueue", "-f")
			_ = harness.Until(3*time.Second, 200*time.Millisecond, func() (bool, error) { return len(a.Queue()) == 0, nil })
		}
		r := stopKills()
		if r.err != nil {
			t.Fatalf("kill loop: %v: %s", r.err, r.out)
		}
		kills := 0
		if m := regexp.MustCompile(`kills=(\d+)`).FindStringSubmatch(r.out); m != nil {
			kills, _ = strconv.Atoi(m[1])
		}
		died := a.CountLog("died with signal 9")
		t.Logf("agents killed: %d (Postfix saw %d die with signal 9)", kills, died)
		if kills < 10 {
			t.Errorf("only %d agents killed: the test did not exercise the fault", kills)
		}

		// Everything retried and delivered; nothing partial, nothing lost.
		a.FlushUntilEmpty(120 * time.Second)
		c := a.NewIMAP("me")
		msgs := WaitMessages(t, c, "INBOX", n, 60*time.Second)
		c.Logout()
		got := ByMessageID(msgs)
		for _, v := range oracle.Lost(sent, got) {
			t.Errorf("INBOX: %s", v)
		}
		t.Logf("%d messages, %d complete duplicates (allowed: Postfix delivers at least once)", len(msgs), oracle.Duplicates(got))
		_, tmp := a.Exec("sh", "-c", "ls "+maildirOf("me")+"/tmp | wc -l")
		t.Logf("orphans left in tmp/ by killed agents (invisible to IMAP): %s", strings.TrimSpace(tmp))
		a.AssertNoBounce(killedAgents)
	})

	t.Run("enospc", func(t *testing.T) {
		// A message bigger than the whole tmpfs: the Maildir write fails
		// with ENOSPC and the message is rescued on the normal volume.
		big := MessageOfSize(from, addr("tiny"), "enospc-big@e2e", 100<<10)
		rescuedBefore := a.CountLog("outcome=rescued")
		a.MustSend(from, []string{addr("tiny")}, big)
		a.WaitLog("outcome=rescued", rescuedBefore+1, 30*time.Second)
		if !strings.Contains(lastLine(a.Logs(), "outcome=rescued"), "no space left on device") {
			t.Errorf("rescue line does not give ENOSPC as the cause: %s", lastLine(a.Logs(), "outcome=rescued"))
		}
		got := a.Mailbox("rescue", 1, 30*time.Second)
		if c := got["<enospc-big@e2e>"]; len(c) != 1 || !Intact(c[0], big) {
			t.Errorf("rescue mailbox: %d copies of the big message, want 1 intact", len(c))
		}
		if out := a.MustExec("sh", "-c", "ls -A "+tinyDir+"/Maildir/new "+tinyDir+"/Maildir/tmp | grep -v : | grep -c . || true"); strings.TrimSpace(out) != "0" {
			t.Errorf("the failed write left %s file(s) in the tiny Maildir", strings.TrimSpace(out))
		}

		// Rescue on the full tmpfs too (a live spec edit), and the tmpfs
		// filled up: the agent defers, Postfix keeps the message; once a
		// filler file is deleted it is delivered.
		a.MustExec("install", "-d", "-o", "vmail", "-g", "vmail", "-m", "0700", tinyDir+"/rescue")
		a.EditSpecAndWait(spec(tinyDir+"/rescue"), "applied")
		a.Exec("dd", "if=/dev/zero", "of="+tinyDir+"/filler", "bs=1k", "count=128") // stops at ENOSPC
		if code, out := a.Exec("sh", "-c", "echo x > "+tinyDir+"/probe"); code == 0 {
			t.Fatalf("the tmpfs is not full: %s", out)
		}
		msg := MessageOfSize(from, addr("tiny"), "enospc-held@e2e", 20<<10)
		deferredBefore := a.CountLog("outcome=deferred")
		a.MustSend(from, []string{addr("tiny")}, msg)
		held := a.WaitQueued(addr("tiny"), 30*time.Second)
		t.Logf("held while the tmpfs is full: %s", held)
		a.WaitLog("outcome=deferred", deferredBefore+1, 10*time.Second)
		if l := lastLine(a.Logs(), "outcome=deferred"); !strings.Contains(l, "no space left on device") {
			t.Errorf("defer line does not give ENOSPC as the cause: %s", l)
		}
		a.MustExec("rm", "-f", tinyDir+"/filler", tinyDir+"/probe")
		a.FlushUntilEmpty(60 * time.Second)
		got = a.Mailbox("tiny", 1, 30*time.Second)
		if c := got["<enospc-held@e2e>"]; len(c) != 1 || !Intact(c[0], msg) {
			t.Errorf("tiny mailbox once space returned: %d copies, want 1 intact", len(c))
		}
		a.AssertNoBounce(killedAgents) // the same log as sigkill's
		assertAgentExits(t, a)
	})
}

// killedAgents is what TestFaultInjection provokes: the agent killed by
// the kill loop (pipe(8) sees it die; lmtp(8) cannot reach the daemon).
var killedAgents = oracle.AgentDown

// lastLine is the last line of log containing s.
func lastLine(log, s string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
