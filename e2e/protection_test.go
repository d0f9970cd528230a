//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"quietmx/e2e/harness"
)

// The host's connections all reach the appliance from one address (Docker's
// gateway); other client addresses are containers on the test network
// running e2e/crowd.

// crowd is one client address on the test network.
type crowd struct {
	C  testcontainers.Container
	IP string
}

// startCrowd runs crowd with args in a container on netName; it returns
// once the container runs (not once crowd has reported).
func startCrowd(t *testing.T, bin, netName string, args ...string) *crowd {
	t.Helper()
	ctx := context.Background()
	req := testcontainers.ContainerRequest{
		Image:      Image,
		Entrypoint: append([]string{"/crowd/crowd"}, args...),
		Networks:   []string{netName},
		ConfigModifier: func(c *container.Config) {
			c.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
		},
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.Binds = append(hc.Binds, bin+":/crowd:ro")
		},
		WaitingFor: wait.ForExec([]string{"true"}).WithStartupTimeout(30 * time.Second),
	}
	c := startContainer(t, req, "crowd")
	ip, err := c.ContainerIP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &crowd{C: c, IP: ip}
}

// result waits for crowd's summary line and decodes it into v.
func (c *crowd) result(t *testing.T, within time.Duration, v any) {
	t.Helper()
	var line string
	waitFor(t, within, func() bool {
		r, err := c.C.Logs(context.Background())
		if err != nil {
			return false
		}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "crowd: "); ok {
				line = rest
				return true
			}
		}
		return false
	}, func() string { return "crowd " + c.IP + " did not report" })
	if err := json.Unmarshal([]byte(line), v); err != nil {
		t.Fatalf("crowd %s: %v: %s", c.IP, err, line)
	}
}

// protectedAppliance starts the appliance on a fresh network.
func protectedAppliance(t *testing.T, env map[string]string) (*Appliance, string, string) {
	t.Helper()
	nw, err := network.New(context.Background())
	if err != nil {
		t.Fatalf("docker network: %v", err)
	}
	t.Cleanup(func() { _ = nw.Remove(context.Background()) })
	a := Start(t, Options{Spec: specHeader("me"), Files: specFiles(), Network: nw.Name, Env: env, ClientLimits: true})
	ip, err := a.C.ContainerIP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return a, nw.Name, ip
}

// bannerTime dials addr and returns how long the whole banner took (its
// last line, "220 ..."), or the reply that was not a banner.
func bannerTime(addr string) (time.Duration, string, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, "", err
		}
		if len(line) >= 4 && line[3] == ' ' {
			d := time.Since(t0)
			fmt.Fprintf(c, "QUIT\r\n")
			if !strings.HasPrefix(line, "220 ") {
				return d, strings.TrimSpace(line), fmt.Errorf("not a banner: %q", strings.TrimSpace(line))
			}
			return d, strings.TrimSpace(line), nil
		}
	}
}

// memoryMiB is the container's memory as `docker stats` shows it: the
// cgroup's usage less its inactive file cache (cgroup v2 or v1).
func (a *Appliance) memoryMiB() float64 {
	a.t.Helper()
	out := a.MustExec("sh", "-c", `if [ -f /sys/fs/cgroup/memory.current ]; then cat /sys/fs/cgroup/memory.current /sys/fs/cgroup/memory.stat; else cat /sys/fs/cgroup/memory/memory.usage_in_bytes /sys/fs/cgroup/memory/memory.stat; fi`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	usage, err := strconv.ParseFloat(strings.TrimSpace(lines[0]), 64)
	if err != nil {
		a.t.Fatalf("memory usage: %q", lines[0])
	}
	inactive := 0.0
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		if k == "inactive_file" || k == "total_inactive_file" {
			inactive, _ = strconv.ParseFloat(v, 64)
		}
	}
	return (usage - inactive) / (1 << 20)
}

// TestProtectionPregreet: a client that talks before its turn is refused
// at RCPT (postscreen logs PREGREET), and a sender that waits its turn is
// let through and delivered.
func TestProtectionPregreet(t *testing.T) {
	a := Start(t, Options{Spec: specHeader("me"), Files: specFiles(), ClientLimits: true})
	c, err := net.DialTimeout("tcp", a.SMTPAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	// EHLO before any banner: what spam bots do.
	fmt.Fprintf(c, "EHLO pregreet.example\r\n")
	r := bufio.NewReader(c)
	// reply reads one SMTP reply (its last line).
	reply := func() string {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading a reply: %v", err)
			}
			if len(line) >= 4 && line[3] == ' ' {
				return strings.TrimSpace(line)
			}
		}
	}
	if got := reply(); !strings.HasPrefix(got, "250") { // the banner's "220-" and the EHLO reply
		t.Fatalf("EHLO reply: %q", got)
	}
	fmt.Fprintf(c, "MAIL FROM:<bot@outside.example>\r\n")
	if got := reply(); !strings.HasPrefix(got, "250") {
		t.Fatalf("MAIL reply: %q", got)
	}
	fmt.Fprintf(c, "RCPT TO:<%s>\r\n", addr("me"))
	if got := reply(); !strings.HasPrefix(got, "550 5.5.1") {
		t.Fatalf("RCPT reply after a pregreet: %q, want 550 5.5.1 Protocol error", got)
	}
	a.WaitLog("PREGREET", 1, 10*time.Second)
	t.Logf("log: %s", lastLine(a.Logs(), "PREGREET"))

	// A sender that waits for its turn gets through.
	const from = "sender@outside.example"
	msg := MessageOfSize(from, addr("me"), "pregreet-ok@e2e", 1024)
	a.MustSend(from, []string{addr("me")}, msg)
	if got := a.Mailbox("me", 1, 30*time.Second); len(got["<pregreet-ok@e2e>"]) != 1 {
		t.Fatalf("the patient sender's message was not delivered once: %d copies", len(got["<pregreet-ok@e2e>"]))
	}
	a.AssertNoBounce()
}

// TestProtectionRateLimit: a client over its connection rate gets 421 4.7.0
// at the banner, and the message it sends when it retries is delivered.
func TestProtectionRateLimit(t *testing.T) {
	a := Start(t, Options{Spec: specHeader("me"), Files: specFiles(), Env: map[string]string{"QUIETMX_SMTP_CONNECTION_RATE": "5"}, ClientLimits: true})
	const from = "sender@outside.example"
	// First connection: passes postscreen once (the host is one address).
	a.MustSend(from, []string{addr("me")}, MessageOfSize(from, addr("me"), "rate-1@e2e", 512))
	var refused string
	for i := 0; i < 10 && refused == ""; i++ {
		_, line, err := bannerTime(a.SMTPAddr)
		if err != nil && strings.HasPrefix(line, "421") {
			refused = line
		} else if err != nil {
			t.Fatalf("connection %d: %v", i+2, err)
		}
	}
	if !strings.HasPrefix(refused, "421 4.7.0") {
		t.Fatalf("no 421 4.7.0 within 10 connections over a rate of 5 a minute (last %q)", refused)
	}
	t.Logf("over the rate: %s", refused)
	a.WaitLog("Connection rate limit exceeded", 1, 10*time.Second)

	// The sender retries, as real ones do, until the minute is over.
	msg := MessageOfSize(from, addr("me"), "rate-later@e2e", 2048)
	tries := 0
	var lastErr error
	err := harness.Until(75*time.Second, 2*time.Second, func() (bool, error) {
		tries++
		lastErr = a.Send(from, []string{addr("me")}, msg)
		if lastErr != nil && !strings.Contains(lastErr.Error(), "421") {
			return false, lastErr
		}
		return lastErr == nil, nil
	})
	if err != nil {
		t.Fatalf("the retried message: %v (last: %v)", err, lastErr)
	}
	t.Logf("accepted on try %d", tries)
	got := a.Mailbox("me", 2, 30*time.Second)
	if c := got["<rate-later@e2e>"]; len(c) != 1 || !Intact(c[0], msg) {
		t.Fatalf("the rate-limited message: %d copies, want 1 intact", len(c))
	}
	a.AssertNoBounce()
}

// TestProtectionFlood: 300 idle connections from 6 addresses (50 each);
// the default per-client limit (5) refuses 45 of each with 421 before any
// smtpd process is spent, a sender that came before gets its whole banner within
// 2 s, its message is delivered, and the appliance stays within 128 MiB.
func TestProtectionFlood(t *testing.T) {
	a, netName, ip := protectedAppliance(t, nil)
	const from = "sender@outside.example"
	a.MustSend(from, []string{addr("me")}, MessageOfSize(from, addr("me"), "flood-before@e2e", 512))
	before := a.memoryMiB()

	bin := buildStatic(t, "crowd")
	crowds := make([]*crowd, 6)
	for i := range crowds {
		crowds[i] = startCrowd(t, bin, netName, "idle", "-to", ip+":25", "-n", "50")
	}
	held := 0
	for _, c := range crowds {
		var r struct{ Banner, Refused, Other int }
		c.result(t, 60*time.Second, &r)
		t.Logf("crowd %s: %d held, %d refused with 421, %d other", c.IP, r.Banner, r.Refused, r.Other)
		if r.Banner > 5 || r.Banner+r.Refused != 50 {
			t.Errorf("crowd %s: %d held, %d refused, %d other; want at most 5 held and the rest refused", c.IP, r.Banner, r.Refused, r.Other)
		}
		held += r.Banner
	}
	// Wait until the held connections passed postscreen (its greet wait)
	// and sit in smtpd processes: the worst moment for a new sender.
	connect := regexp.MustCompile(`postfix/smtpd\[\d+\]: connect from [^\[]*\[(172|192|10)\.`)
	inSmtpd := func() int { return len(connect.FindAllString(a.Logs(), -1)) }
	waitFor(t, 30*time.Second, func() bool { return inSmtpd() >= held }, func() string {
		return fmt.Sprintf("%d of %d held connections reached smtpd", inSmtpd(), held)
	})

	var worst time.Duration
	for i := 0; i < 5; i++ {
		d, line, err := bannerTime(a.SMTPAddr)
		if err != nil {
			t.Fatalf("banner during the flood: %v", err)
		}
		t.Logf("banner during the flood: %v (%s)", d.Round(time.Millisecond), line)
		worst = max(worst, d)
	}
	if worst > 2*time.Second {
		t.Errorf("a sender waited %v for its banner during the flood, want at most 2s", worst)
	}
	msg := MessageOfSize(from, addr("me"), "flood-during@e2e", 2048)
	a.MustSend(from, []string{addr("me")}, msg)
	got := a.Mailbox("me", 2, 30*time.Second)
	if c := got["<flood-during@e2e>"]; len(c) != 1 || !Intact(c[0], msg) {
		t.Errorf("the message sent during the flood: %d copies, want 1 intact", len(c))
	}
	mem := a.memoryMiB()
	t.Logf("memory: %.1f MiB before the flood, %.1f MiB with %d idle connections held", before, mem, held)
	if mem > 128 {
		t.Errorf("the appliance uses %.1f MiB during the flood, want at most 128", mem)
	}
	a.AssertNoBounce()
}

// TestProtectionIMAPGuessing: 20 parallel connections from one address
// guess passwords for 55 s; Dovecot checks at most 10 of them (the login
// guard refuses the rest before any password is checked), and the owner,
// from another address, logs in within 2 s throughout.
func TestProtectionIMAPGuessing(t *testing.T) {
	a, netName, ip := protectedAppliance(t, nil)
	bin := buildStatic(t, "crowd")
	const attack = 55 * time.Second
	c := startCrowd(t, bin, netName, "guess", "-to", ip+":993", "-user", addr("me"), "-pass", "wrong-guess", "-conns", "20", "-for", attack.String())
	start := time.Now()

	var worst time.Duration
	logins := 0
	pace := time.NewTicker(10 * time.Second)
	defer pace.Stop()
	for time.Since(start) < attack-5*time.Second {
		t0 := time.Now()
		cl := a.IMAP(addr("me"), testPassword)
		d := time.Since(t0)
		cl.Close()
		logins++
		worst = max(worst, d)
		t.Logf("owner's login at %v into the attack: %v", time.Since(start).Round(time.Second), d.Round(time.Millisecond))
		if d > 2*time.Second {
			t.Errorf("the owner's login took %v during the attack, want at most 2s", d)
		}
		<-pace.C // one login every 10 s: the owner is not the load
	}

	var r struct{ Attempts, Refused, Accepted, Reconnects, Errors int }
	c.result(t, attack+30*time.Second, &r)
	if r.Accepted != 0 {
		t.Fatalf("a wrong password was accepted %d times", r.Accepted)
	}
	mismatch := regexp.MustCompile(`\(` + regexp.QuoteMeta(addr("me")) + `,` + regexp.QuoteMeta(c.IP) + `,[^)]*\): Password mismatch`)
	checked := len(mismatch.FindAllString(a.Logs(), -1))
	t.Logf("attacker %s: %d guesses sent over %d connections in %v, %d refused; Dovecot checked %d passwords (limit 10 a minute); owner: %d logins, slowest %v",
		c.IP, r.Attempts, r.Reconnects, attack, r.Refused, checked, logins, worst.Round(time.Millisecond))
	if checked == 0 {
		t.Fatalf("no password check logged for %s: is auth_verbose on?", c.IP)
	}
	if checked > 10 {
		t.Errorf("Dovecot checked %d passwords from %s in %v, want at most 10", checked, c.IP, attack)
	}
	if r.Attempts < 50 {
		t.Errorf("only %d guesses answered: the attack did not run", r.Attempts)
	}
	if !strings.Contains(a.Logs(), "loginguard: "+c.IP+": 10 failed logins") {
		t.Errorf("the login guard did not log refusing %s", c.IP)
	}
}
