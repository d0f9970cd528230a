//go:build e2e

package e2e

// Resilience: the appliance comes back by itself after a crash, drains
// before it stops, starts on its last valid configuration, shows rescued
// mail over IMAP, and offers no weak TLS on 25 or 993. Each test logs its
// figures on lines starting with "RESULT:".

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"quietmx/e2e/harness"
	"quietmx/e2e/oracle"
)

// docker runs the docker CLI (what an operator types) and returns its
// combined output.
func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// running reports whether the container runs, and its exit code if not.
func (a *Appliance) running() (bool, int) {
	a.t.Helper()
	info, err := a.C.Inspect(context.Background())
	if err != nil {
		a.t.Fatal(err)
	}
	return info.State.Running, info.State.ExitCode
}

// awaitReady waits until the log has n "ready" lines, or the container
// exits (an error naming the exit code and the log's tail).
func (a *Appliance) awaitReady(n int, within time.Duration) error {
	a.t.Helper()
	err := harness.Until(within, 100*time.Millisecond, func() (bool, error) {
		if a.CountLog("quietmx: ready") >= n {
			return true, nil
		}
		if up, code := a.running(); !up {
			return false, fmt.Errorf("exited %d", code)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%w:\n%s", err, tail(a.Logs(), 8))
	}
	a.SMTPAddr = a.addr("25/tcp")
	a.IMAPAddr = a.addr("993/tcp")
	return nil
}

// recreate is an upgrade's second half: a new container from the image
// with the same volumes and spec directory (the old one must be gone).
func recreate(t *testing.T, opts Options, specDir string, env map[string]string) *Appliance {
	t.Helper()
	o := opts
	o.Spec, o.Files, o.SpecDir = "", nil, specDir
	o.Env = map[string]string{"QUIETMX_SPEC": "/etc/quietmx/appliance/quietmx.yaml"}
	for k, v := range opts.Env {
		o.Env[k] = v
	}
	for k, v := range env {
		o.Env[k] = v
	}
	return Start(t, o)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestResilienceCrashRestarts: SIGKILL at random moments (during start-up
// as well as while running), then `docker start` with no restart policy:
// the appliance comes back every time, and mail still flows.
func TestResilienceCrashRestarts(t *testing.T) {
	a := Start(t, Options{
		Spec:    specHeader("me"),
		Files:   specFiles(),
		Volumes: map[string]string{Volume(t): "/var/mail", Volume(t): "/var/spool/postfix", Volume(t): "/var/lib/quietmx"},
	})
	id := a.C.GetContainerID()
	const tries = 20
	failed, early := 0, 0
	want := a.CountLog("quietmx: ready") // "ready" lines once the last start is up
	for i := range tries {
		// Half the kills land during start-up (before "ready"), the rest
		// while it runs; the delays spread over both.
		if rand.IntN(2) == 0 {
			early++
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		} else {
			if err := a.awaitReady(want, 90*time.Second); err != nil {
				failed++
				t.Errorf("kill %d: the start before it failed: %v", i, err)
			}
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Millisecond)
		}
		if out, err := docker("kill", "-s", "KILL", id); err != nil && !strings.Contains(out, "is not running") {
			t.Fatalf("docker kill: %v: %s", err, out)
		}
		want = a.CountLog("quietmx: ready") + 1
		if out, err := docker("start", id); err != nil {
			t.Fatalf("docker start: %v: %s", err, out)
		}
	}
	if err := a.awaitReady(want, 90*time.Second); err != nil {
		failed++
		t.Errorf("start after the last kill: %v", err)
	}
	stale := a.CountLog("already running")
	t.Logf("RESULT: crash restarts: %d SIGKILLs (%d during start-up), %d starts failed; %q in the log %d times",
		tries, early, failed, "already running", stale)
	if stale > 0 {
		t.Errorf("a start met a stale pid file")
	}
	msg := MessageOfSize("sender@outside.example", addr("me"), "after-crashes@e2e", 2048)
	a.MustSend("sender@outside.example", []string{addr("me")}, msg)
	if got := a.Mailbox("me", 1, 30*time.Second); len(got["<after-crashes@e2e>"]) != 1 {
		t.Errorf("after the crashes: %d copies of the test message", len(got["<after-crashes@e2e>"]))
	}
	a.AssertNoBounce()
}

// stream sends n messages from several clients, each retried until the
// appliance accepts it (as a sending MTA does), while interrupt runs once
// the first at messages are accepted. A retry after a failure that came
// after the message's data was sent (no reply to the final dot) may
// duplicate it on the client's side: such messages are remembered.
type stream struct {
	sent      map[string][]byte
	ambiguous map[string]bool // retried after the data went out
	retries   int
}

func runStream(t *testing.T, target func() *Appliance, prefix string, n, at int, interrupt func()) *stream {
	t.Helper()
	s := &stream{sent: map[string][]byte{}, ambiguous: map[string]bool{}}
	var mu sync.Mutex
	var accepted atomic.Int32
	var interrupted sync.Once
	interruptDone := make(chan struct{})
	ids := make(chan int)
	var wg sync.WaitGroup
	const from = "sender@outside.example"
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				id := fmt.Sprintf("%s-%03d@e2e", prefix, i)
				// 8 to 64 KiB: deliveries take long enough to be caught in
				// the middle.
				msg := MessageOfSize(from, addr("me"), id, 8192<<rand.IntN(4))
				mu.Lock()
				s.sent["<"+id+">"] = msg
				mu.Unlock()
				deadline := time.Now().Add(3 * time.Minute)
				for {
					dataSent, err := sendOnce(target().SMTPAddr, from, addr("me"), msg)
					if err == nil {
						break
					}
					mu.Lock()
					s.retries++
					if dataSent {
						s.ambiguous["<"+id+">"] = true
					}
					mu.Unlock()
					if time.Now().After(deadline) {
						t.Errorf("%s: not accepted within 3 minutes: %v", id, err)
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				if int(accepted.Add(1)) == at {
					go interrupted.Do(func() { interrupt(); close(interruptDone) })
				}
			}
		}()
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	<-interruptDone
	return s
}

// sendOnce is one SMTP transaction (the suite's sender); dataSent says
// the failure (if any) came once the message was written, when the server
// may have kept it. A reply with a queue id is success, whatever QUIT did.
func sendOnce(address, from, to string, msg []byte) (dataSent bool, err error) {
	reply, err := harness.Send(address, helo, from, []string{to}, msg)
	if err == nil || harness.QueueID(reply) != "" {
		return false, nil
	}
	// A reply code at the end of the data is a refusal; anything else
	// there (a reset, EOF) leaves the client not knowing.
	e := err.Error()
	return strings.HasPrefix(e, "end of DATA") && !replyCode.MatchString(e), err
}

var replyCode = regexp.MustCompile(`\b[45]\d\d\b`)

// tally compares what the mailbox holds with what was sent (the
// nothing-lost oracle, over this stream's messages) and counts the extra
// copies: the appliance's, and those of the client's own retries.
func (s *stream) tally(t *testing.T, a *Appliance, label string) (lost, dups, clientDups int) {
	t.Helper()
	a.FlushUntilEmpty(120 * time.Second)
	c := a.NewIMAP("me")
	defer c.Logout()
	var got map[string][][]byte
	ours := func() map[string][][]byte {
		all := oracle.ByMessageID(fetchAll(t, c, "INBOX"))
		mine := map[string][][]byte{}
		for id := range s.sent {
			if len(all[id]) > 0 {
				mine[id] = all[id]
			}
		}
		return mine
	}
	// Bounded: everything is delivered once the queue is empty; the wait
	// only covers the last Maildir links becoming visible.
	_ = harness.Until(30*time.Second, 500*time.Millisecond, func() (bool, error) {
		got = ours()
		return len(got) == len(s.sent), nil
	})
	for _, v := range oracle.Lost(s.sent, got) {
		if v.Why == "lost" {
			lost++
		}
		t.Errorf("%s: %s", label, v)
	}
	for id, copies := range got {
		if len(copies) > 1 {
			if s.ambiguous[id] {
				clientDups += len(copies) - 1
			} else {
				dups += len(copies) - 1
			}
		}
	}
	return lost, dups, clientDups
}

// stopStart is docker stop (SIGTERM, then SIGKILL after timeout) and
// docker start of the same container, until it is ready again.
func stopStart(t *testing.T, a *Appliance, timeout time.Duration) {
	ready := a.CountLog("quietmx: ready")
	if err := a.C.Stop(context.Background(), &timeout); err != nil {
		t.Errorf("docker stop: %v", err)
		return
	}
	if err := a.C.Start(context.Background()); err != nil {
		t.Errorf("docker start: %v", err)
		return
	}
	if err := a.awaitReady(ready+1, 90*time.Second); err != nil {
		t.Errorf("start: %v", err)
	}
}

// drainDeferrals: what a drain defers on purpose (the messages not yet
// handed to the agent, kept for the next start).
var drainDeferrals = oracle.Expect{Deferrals: []string{"deferred transport"}}

// TestResilienceDrain: a stop (docker stop, as compose and upgrades do)
// and a re-creation from the image, each in the middle of a 300-message
// stream: nothing lost, nothing delivered twice.
func TestResilienceDrain(t *testing.T) {
	opts := Options{
		Spec:  specHeader("me"),
		Files: specFiles(),
		Env:   map[string]string{"QUIETMX_STOP_GRACE": "25s"},
		Volumes: map[string]string{
			Volume(t): "/var/mail",
			Volume(t): "/var/spool/postfix",
			Volume(t): "/var/lib/quietmx",
		},
	}
	var cur atomic.Pointer[Appliance]
	cur.Store(Start(t, opts))
	target := func() *Appliance { return cur.Load() }
	const n = 300
	drainLine := regexp.MustCompile(`quietmx: (drained in .*|\d+ messages still in delivery after .*)`)
	stopTimeout := 30 * time.Second

	t.Run("stop and start", func(t *testing.T) {
		a := target()
		s := runStream(t, target, "stop", n, n/3, func() { stopStart(t, a, stopTimeout) })
		lost, dups, clientDups := s.tally(t, a, "stop/start")
		drained := drainLine.FindAllString(a.Logs(), -1)
		t.Logf("RESULT: stop/start mid-stream: %d sent, %d lost, %d duplicated (+%d the client's own retries after a lost reply, %d retries); %v",
			n, lost, dups, clientDups, s.retries, drained)
		if dups > 0 {
			t.Errorf("%d messages delivered twice across a graceful stop", dups)
		}
		a.AssertNoBounce(drainDeferrals)
	})

	t.Run("upgrade", func(t *testing.T) {
		a := target()
		var drained []string
		s := runStream(t, target, "upgrade", n, n/3, func() {
			// An upgrade: stop, remove, create from the image with the
			// same volumes and spec.
			if err := a.C.Stop(context.Background(), &stopTimeout); err != nil {
				t.Errorf("docker stop: %v", err)
				return
			}
			drained = drainLine.FindAllString(a.Logs(), -1)
			if err := a.C.Terminate(context.Background()); err != nil {
				t.Errorf("docker rm: %v", err)
			}
			cur.Store(recreate(t, opts, a.SpecDir, nil))
		})
		b := target()
		lost, dups, clientDups := s.tally(t, b, "upgrade")
		t.Logf("RESULT: upgrade mid-stream: %d sent, %d lost, %d duplicated (+%d the client's own retries, %d retries); old container: %v",
			n, lost, dups, clientDups, s.retries, drained[len(drained)-1:])
		if dups > 0 {
			t.Errorf("%d messages delivered twice across an upgrade", dups)
		}
		b.AssertNoBounce(drainDeferrals)
	})

	// A grace time too short for the deliveries in progress: what
	// remains is measured, not hidden. Nothing may be lost; a delivery
	// killed after the agent wrote the file is delivered again.
	t.Run("grace too short", func(t *testing.T) {
		// The container before is gone with the subtest that made it
		// (or is removed here): a new one with a short grace time.
		old := target()
		_ = old.C.Terminate(context.Background())
		a := recreate(t, opts, old.SpecDir, map[string]string{"QUIETMX_STOP_GRACE": "1s"})
		cur.Store(a)
		s := runStream(t, target, "short", n, n/3, func() { stopStart(t, a, stopTimeout) })
		lost, dups, clientDups := s.tally(t, a, "short grace")
		t.Logf("RESULT: stop/start mid-stream with a 1s grace: %d sent, %d lost, %d duplicated (+%d the client's own retries, %d retries); %v",
			n, lost, dups, clientDups, s.retries, drainLine.FindAllString(a.Logs(), -1))
		// Killed deliveries are deferred by Postfix, not by the agent.
		a.AssertNoBounce(oracle.Join(oracle.AgentDown, drainDeferrals))
	})
}

// TestResilienceLastValid: a refused live edit does not become an outage
// at the next start or upgrade: the appliance runs on the configuration
// applied last, degraded, until the spec is fixed. With nothing ever
// applied, an invalid spec still starts nothing.
func TestResilienceLastValid(t *testing.T) {
	good := specHeader("me")
	broken := good + "limits:\n  message_size: lots\n"
	opts := Options{
		Spec:    good,
		Files:   specFiles(),
		Volumes: map[string]string{Volume(t): "/var/mail", Volume(t): "/var/spool/postfix", Volume(t): "/var/lib/quietmx"},
	}
	a := Start(t, opts)
	a.EditSpecAndWait(broken, "REJECTED")

	flows := func(a *Appliance, id string) {
		t.Helper()
		msg := MessageOfSize("sender@outside.example", addr("me"), id, 2048)
		a.MustSend("sender@outside.example", []string{addr("me")}, msg)
		c := a.NewIMAP("me")
		defer c.Logout()
		waitFor(t, 30*time.Second, func() bool { return len(oracle.ByMessageID(fetchAll(t, c, "INBOX"))["<"+id+">"]) > 0 },
			func() string { return id + " not delivered" })
	}
	degradedHealth := func(a *Appliance) string {
		t.Helper()
		code, out := a.Exec("quietmx", "health")
		if code != 0 {
			t.Errorf("quietmx health: exit %d: %s", code, out)
		}
		return out
	}

	// Restart: degraded, serving.
	a.Restart()
	if !strings.Contains(a.Logs(), "DEGRADED: the spec on disk is invalid; running on the configuration applied") {
		t.Fatalf("no DEGRADED line after the restart:\n%s", tail(a.Logs(), 20))
	}
	if h := degradedHealth(a); !strings.Contains(h, "DEGRADED") {
		t.Errorf("health while degraded: %s", h)
	}
	flows(a, "degraded-restart@e2e")

	// Upgrade (a new container, same volumes): still degraded, serving.
	if err := a.C.Terminate(context.Background()); err != nil {
		t.Fatal(err)
	}
	a = recreate(t, opts, a.SpecDir, nil)
	if h := degradedHealth(a); !strings.Contains(h, "DEGRADED") {
		t.Errorf("health after an upgrade on a broken spec: %s", h)
	}
	flows(a, "degraded-upgrade@e2e")

	// Fixed: applied, no longer degraded.
	a.EditSpecAndWait(good, "applied")
	a.WaitLog("quietmx: no longer degraded", 1, 10*time.Second)
	if h := degradedHealth(a); strings.Contains(h, "DEGRADED") {
		t.Errorf("health after the fix: %s", h)
	}
	t.Logf("RESULT: last valid: restart and upgrade on a broken spec both served mail, degraded; the fix cleared it")

	// Never applied (a first start on a broken spec): nothing starts.
	dir := t.TempDir()
	writeFile(t, dir+"/quietmx.yaml", broken, 0o644)
	writeFile(t, dir+"/password", testPassword+"\n", 0o644)
	out, err := runOnce(dir)
	if err == nil || !strings.Contains(out, "invalid spec, nothing started (and no last valid configuration") {
		t.Errorf("first start on a broken spec: %v:\n%s", err, out)
	}
}

// runOnce runs the image once in the foreground with the spec directory
// dir, no volumes, and returns its output and exit error.
func runOnce(dir string, env ...string) (string, error) {
	args := []string{"run", "--rm", "--cap-drop", "ALL"}
	for _, c := range capAdd {
		args = append(args, "--cap-add", c)
	}
	args = append(args, "-v", dir+":/etc/quietmx/appliance:ro", "-e", "QUIETMX_SPEC=/etc/quietmx/appliance/quietmx.yaml")
	for _, e := range env {
		args = append(args, "-e", e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", append(args, Image)...).CombinedOutput()
	return string(out), err
}

// TestResilienceRescueVisible: with the generated rules, a message the
// agent cannot deliver (a forged Delivered-To for its recipient: a loop)
// is rescued into the first mailbox's Rescue folder, which every IMAP
// client lists; the log and `quietmx health` count it.
func TestResilienceRescueVisible(t *testing.T) {
	a := Start(t, Options{Spec: specHeader("me"), Files: specFiles()})
	c := a.NewIMAP("me")
	defer c.Logout()
	subscribed, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range subscribed {
		names = append(names, m.Mailbox)
	}
	if !slices.Contains(names, "Rescue") {
		t.Errorf("subscribed folders %v lack Rescue", names)
	}
	const from = "sender@outside.example"
	msg := []byte("Delivered-To: " + addr("me") + "\r\n" + string(MessageOfSize(from, addr("me"), "hidden@e2e", 1024)))
	a.MustSend(from, []string{addr("me")}, msg)
	a.WaitLog("outcome=rescued", 1, 30*time.Second)
	got := oracle.ByMessageID(WaitMessages(t, c, "Rescue", 1, 30*time.Second))
	if len(got["<hidden@e2e>"]) != 1 {
		t.Errorf("Rescue folder: %d copies of the looping message, want 1", len(got["<hidden@e2e>"]))
	}
	a.WaitLog("quietmx: RESCUED: 1 messages wait in the Rescue folder of "+addr("me"), 1, 30*time.Second)
	code, health := a.Exec("quietmx", "health")
	if code != 0 || !strings.Contains(health, "rescued 1 waiting in "+maildirOf("me")+"/.Rescue/new") {
		t.Errorf("quietmx health: exit %d: %s", code, health)
	}
	t.Logf("RESULT: rescue: the looping message is in the subscribed Rescue folder; health: %s", strings.TrimSpace(health))
	a.AssertNoBounce()
}

// TestResilienceTLS scans ports 25 (STARTTLS) and 993: from the host with
// every suite and version crypto/tls has, and from inside the container
// with OpenSSL for what Go cannot offer (anonymous, null, export and
// finite-field DH suites). It also checks that ETRN is neither
// advertised nor served.
func TestResilienceTLS(t *testing.T) {
	a := Start(t, Options{Spec: specHeader("me"), Files: specFiles()})
	versions := map[uint16]string{tls.VersionTLS10: "TLS1.0", tls.VersionTLS11: "TLS1.1", tls.VersionTLS12: "TLS1.2", tls.VersionTLS13: "TLS1.3"}
	suites := append(tls.CipherSuites(), tls.InsecureCipherSuites()...)
	scan := func(port string, dial func(cfg *tls.Config) error) []string {
		var ok []string
		for v, vname := range versions {
			if v == tls.VersionTLS13 {
				// TLS 1.3 suites are not configurable in Go: one probe.
				if dial(&tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v}) == nil {
					ok = append(ok, vname)
				}
				continue
			}
			for _, s := range suites {
				if !slices.Contains(s.SupportedVersions, v) {
					continue
				}
				cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v, CipherSuites: []uint16{s.ID}}
				if dial(cfg) == nil {
					ok = append(ok, vname+" "+s.Name)
					if s.Insecure && (strings.Contains(s.Name, "RC4") || strings.Contains(s.Name, "3DES")) {
						t.Errorf("port %s accepts %s %s", port, vname, s.Name)
					}
				}
			}
			if v < tls.VersionTLS12 && slices.ContainsFunc(ok, func(x string) bool { return strings.HasPrefix(x, vname+" ") }) {
				t.Errorf("port %s accepts %s", port, vname)
			}
		}
		slices.Sort(ok)
		return ok
	}
	smtpOK := scan("25", func(cfg *tls.Config) error { return startTLS(a.SMTPAddr, cfg) })
	imapOK := scan("993", func(cfg *tls.Config) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", a.IMAPAddr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	})
	if len(smtpOK) == 0 || len(imapOK) == 0 {
		t.Fatalf("nothing accepted: 25 %v, 993 %v", smtpOK, imapOK)
	}

	// OpenSSL, in the container, offers what Go cannot: every suite one
	// by one, TLS 1.2 (1.3 has no anonymous or DH-only suites).
	script := `
weak=$(openssl ciphers 'aNULL:eNULL:EXPORT:LOW:RC4:3DES:kDHE:kEDH:@SECLEVEL=0' | tr : ' ')
all=$(openssl ciphers 'ALL:COMPLEMENTOFALL:@SECLEVEL=0' | tr : ' ')
probe() { # port cipher
  if [ "$1" = 25 ]; then set -- "$@" -starttls smtp; fi
  port=$1; c=$2; shift 2
  out=$(echo QUIT | timeout 5 openssl s_client -connect 127.0.0.1:$port -tls1_2 -cipher "$c:@SECLEVEL=0" "$@" 2>&1)
  case "$out" in *"Cipher is (NONE)"*|*"no cipher"*|*"handshake failure"*) return 1;; esac
  echo "$out" | grep -q "Cipher is $c" || return 1
  key=$(echo "$out" | sed -n 's/^Server Temp Key: //p')
  echo "$port $c ${key:-none}"
}
for port in 25 993; do for c in $all; do probe $port $c; done; done
echo "weak: $weak"
`
	out := a.MustExec("bash", "-c", script)
	var accepted []string
	weak := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if w, ok := strings.CutPrefix(line, "weak: "); ok {
			for _, c := range strings.Fields(w) {
				weak[c] = true
			}
			continue
		}
		accepted = append(accepted, line)
	}
	counts := map[string]int{}
	for _, line := range accepted {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		port, cipher, key := f[0], f[1], strings.Join(f[2:], " ")
		counts[port]++
		if port == "25" && weak[cipher] {
			t.Errorf("port 25 accepts %s (anonymous, null, weak or finite-field DH)", cipher)
		}
		if port == "993" && weak[cipher] && !strings.HasPrefix(cipher, "DHE-") {
			t.Errorf("port 993 accepts %s", cipher)
		}
		if m := regexp.MustCompile(`^DH, (\d+) bits`).FindStringSubmatch(key); m != nil && atoi(m[1]) < 2048 {
			t.Errorf("port %s: %s with a %s-bit DH group", port, cipher, m[1])
		}
	}
	if counts["25"] == 0 || counts["993"] == 0 {
		t.Fatalf("the OpenSSL scan accepted nothing:\n%s", out)
	}
	t.Logf("RESULT: cipher scan, Go client: port 25 accepts %d (%s); port 993 accepts %d (%s)",
		len(smtpOK), strings.Join(smtpOK, ", "), len(imapOK), strings.Join(imapOK, ", "))
	t.Logf("RESULT: cipher scan, OpenSSL TLS1.2 suite by suite (port cipher key):\n%s", strings.Join(accepted, "\n"))

	// ETRN: not in EHLO, refused when sent.
	conn, err := net.DialTimeout("tcp", a.SMTPAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "EHLO client.e2e.example\r\nETRN %s\r\nQUIT\r\n", e2eDomain)
	var session strings.Builder
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		session.WriteString(line)
		if err != nil || strings.HasPrefix(line, "221") {
			break
		}
	}
	if strings.Contains(strings.ToUpper(session.String()), "250-ETRN") || strings.Contains(strings.ToUpper(session.String()), "250 ETRN") {
		t.Errorf("ETRN advertised:\n%s", session.String())
	}
	if !regexp.MustCompile(`(?m)^5\d\d .*[Ee]trn`).MatchString(session.String()) {
		t.Errorf("ETRN not refused with a 5xx:\n%s", session.String())
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// startTLS is EHLO and STARTTLS on port 25, then a handshake with cfg.
func startTLS(address string, cfg *tls.Config) error {
	c, err := harness.DialStartTLS(address, helo, cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

// TestResilienceFirstStartEnvOnly: `docker run` with QUIETMX_HOSTNAME,
// QUIETMX_DOMAINS and QUIETMX_MAILBOX alone starts as compose does: the
// password is generated into its file on the state volume, the log says
// how to read it and never shows it, and it logs in over IMAPS.
func TestResilienceFirstStartEnvOnly(t *testing.T) {
	a := Start(t, Options{Env: map[string]string{
		"QUIETMX_HOSTNAME": defaultHost,
		"QUIETMX_DOMAINS":  e2eDomain,
		"QUIETMX_MAILBOX":  addr("me"),
	}})
	pw := strings.TrimSpace(a.MustExec("cat", "/var/lib/quietmx/secrets/mailbox.password"))
	if len(pw) < 20 {
		t.Fatalf("generated password %q", pw)
	}
	log := a.Logs()
	if strings.Contains(log, pw) {
		t.Errorf("the container log shows the generated password")
	}
	if !strings.Contains(log, "generated the mailbox password into /var/lib/quietmx/secrets/mailbox.password; read it with:") {
		t.Errorf("the log does not say where the password is:\n%s", tail(log, 30))
	}
	c, err := imapclient.DialTLS(a.IMAPAddr, &imapclient.Options{TLSConfig: a.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(addr("me"), pw).Wait(); err != nil {
		t.Errorf("login with the generated password: %v", err)
	}
	t.Logf("RESULT: docker run with three variables: password generated into its file, not logged, IMAPS login ok")
}
