//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"quietmx/e2e/oracle"
)

const (
	smarthostName = "smarthost.relay.test"
	relayUser     = "relay-user"
	relayPass     = "relay-pass-e2e"
)

// Smarthost is the test smarthost (e2e/smarthost): STARTTLS, AUTH PLAIN
// required, every accepted message recorded.
type Smarthost struct {
	t    *testing.T
	C    testcontainers.Container
	mode string
}

// SmarthostMessage is one message the smarthost accepted.
type SmarthostMessage struct {
	AuthUser string   `json:"auth_user"`
	TLS      bool     `json:"tls"`
	From     string   `json:"from"`
	Rcpts    []string `json:"rcpts"`
	Data     []byte   `json:"data"`
}

// buildSmarthost compiles e2e/smarthost as a static binary into a fresh
// directory and returns the directory.
func buildSmarthost(t *testing.T) string { return buildCommand(t, "smarthost") }

// buildCommand compiles the e2e command in ./name as a static binary
// (named name) into a fresh directory and returns the directory.
func buildCommand(t *testing.T, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cmd := exec.Command(goBin, "build", "-tags", "e2e", "-trimpath", "-o", filepath.Join(dir, name), "./"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return dir
}

// StartSmarthost runs the smarthost on the network as smarthostName:587,
// in a container of the appliance image (no registry needed) with the
// binary bind-mounted and the entrypoint overridden.
func StartSmarthost(t *testing.T, netName string) *Smarthost {
	t.Helper()
	bin := buildSmarthost(t)
	req := testcontainers.ContainerRequest{
		Image:          Image,
		Entrypoint:     []string{"/smarthost/smarthost", "-listen", ":587", "-user", relayUser, "-pass", relayPass, "-dir", "/tmp/smarthost", "-hostname", smarthostName},
		Networks:       []string{netName},
		NetworkAliases: map[string][]string{netName: {smarthostName}},
		WaitingFor:     wait.ForLog("smarthost: ").WithStartupTimeout(30 * time.Second),
		ConfigModifier: func(c *container.Config) {
			c.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
		},
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.Binds = append(hc.Binds, bin+":/smarthost:ro")
		},
	}
	c, err := testcontainers.GenericContainer(context.Background(), testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	removeAtEnd(t, c)
	if err != nil {
		t.Fatalf("start smarthost: %v", err)
	}
	return &Smarthost{t: t, C: c}
}

func (s *Smarthost) exec(cmd ...string) string {
	s.t.Helper()
	code, r, err := s.C.Exec(context.Background(), cmd, tcexec.Multiplexed())
	if err != nil {
		s.t.Fatalf("smarthost exec %v: %v", cmd, err)
	}
	out, _ := io.ReadAll(r)
	if code != 0 {
		s.t.Fatalf("smarthost exec %v: exit %d: %s", cmd, code, out)
	}
	return string(out)
}

// SetMode switches the smarthost: "accept", "down" (connection refused) or
// an SMTP code its RCPT replies give ("451", "550"). Going down or back
// up, it waits for the smarthost's event that the listener closed or
// opened, so the next message meets the new mode.
func (s *Smarthost) SetMode(mode string) {
	s.t.Helper()
	event := ""
	switch {
	case mode == "down" && s.mode != "down":
		event = "down: listener closed"
	case mode != "down" && s.mode == "down":
		event = "listening on"
	}
	before := strings.Count(s.Events(), event)
	s.exec("sh", "-c", `printf '%s\n' "$1" > /tmp/smarthost/mode.tmp && mv /tmp/smarthost/mode.tmp /tmp/smarthost/mode`, "sh", mode)
	s.mode = mode
	if event != "" {
		waitFor(s.t, 10*time.Second, func() bool { return strings.Count(s.Events(), event) > before },
			func() string { return fmt.Sprintf("the smarthost did not log %q; events:\n%s", event, s.Events()) })
	}
}

// Messages returns what the smarthost accepted, in order.
func (s *Smarthost) Messages() []SmarthostMessage {
	s.t.Helper()
	out := s.exec("sh", "-c", `for f in /tmp/smarthost/msg-*.json; do [ -e "$f" ] && cat "$f" && echo; done; true`)
	var msgs []SmarthostMessage
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 16<<20), 16<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			var m SmarthostMessage
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				s.t.Fatalf("smarthost record: %v", err)
			}
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// Events is the smarthost's event log.
func (s *Smarthost) Events() string {
	s.t.Helper()
	return s.exec("sh", "-c", "cat /tmp/smarthost/events.log 2>/dev/null; true")
}

// WaitMessage waits until the smarthost has accepted a message whose data
// contains the Message-ID id.
func (s *Smarthost) WaitMessage(id string, within time.Duration) SmarthostMessage {
	s.t.Helper()
	var found SmarthostMessage
	waitFor(s.t, within, func() bool {
		for _, m := range s.Messages() {
			if strings.Contains(string(m.Data), "Message-ID: <"+id+">") {
				found = m
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("the smarthost did not receive %s; events:\n%s", id, s.Events()) })
	return found
}

// TestForward (scenario 13): a forward action re-injects through Postfix
// to a smarthost that requires AUTH over STARTTLS, with our local envelope
// sender; while the smarthost is away or answers 4xx, the forwarded copy
// waits in the queue and leaves once it is back; when it rejects (5xx) the
// rejection comes back to our own postmaster, never to the original
// sender, and no message from the null sender ever leaves.
func TestForward(t *testing.T) {
	ctx := context.Background()
	nw, err := network.New(ctx)
	if err != nil {
		t.Fatalf("docker network: %v", err)
	}
	t.Cleanup(func() { _ = nw.Remove(context.Background()) })
	sh := StartSmarthost(t, nw.Name)

	const far = "someone@far.example"
	spec := specHeader("me", "postmaster", "rescue") + `rules:
  rescue: ` + rescueMaildir + `/new
  forward_sender: postmaster@e2e.example
  aliases:
    me@e2e.example:
      type: maildir
      value: ` + maildirOf("me") + `
    postmaster@e2e.example:
      type: maildir
      value: ` + maildirOf("postmaster") + `
    fwd@e2e.example:
      - type: maildir
        value: ` + maildirOf("me") + `
      - type: forward
        value: ` + far + `
outbound:
  relayhost: "[` + smarthostName + `]:587"
  username: ` + relayUser + `
  password_file: /etc/quietmx/appliance/relay-password
`
	files := specFiles()
	files["relay-password"] = relayPass + "\n"
	a := Start(t, Options{Spec: spec, Files: files, Network: nw.Name})

	const origin = "alice@origin.example" // the original sender, never to be written to
	sent := map[string][]byte{}
	send := func(id string) {
		t.Helper()
		msg := MessageOfSize(origin, addr("fwd"), id, 2048)
		sent[id] = msg
		a.MustSend(origin, []string{addr("fwd")}, msg)
	}
	checkForwarded := func(m SmarthostMessage, id string) {
		t.Helper()
		if m.From != "postmaster@e2e.example" {
			t.Errorf("%s: smarthost got MAIL FROM:<%s>, want our local sender <postmaster@e2e.example> (never the original <%s>)", id, m.From, origin)
		}
		if len(m.Rcpts) != 1 || m.Rcpts[0] != far {
			t.Errorf("%s: smarthost got RCPT %v, want [%s]", id, m.Rcpts, far)
		}
		if m.AuthUser != relayUser || !m.TLS {
			t.Errorf("%s: smarthost session: auth %q, tls %v; want AUTH as %s over TLS", id, m.AuthUser, m.TLS, relayUser)
		}
		if !strings.HasSuffix(string(m.Data), string(sent[id])) {
			t.Errorf("%s: the forwarded message is not the original, intact:\n%s", id, m.Data)
		}
		if !strings.Contains(string(m.Data), "Delivered-To: fwd@e2e.example") {
			t.Errorf("%s: the forwarded copy lacks Delivered-To (loop protection)", id)
		}
	}

	// 1. Accepted: the smarthost receives the copy from our local sender,
	// authenticated, over TLS; the local copy lands too.
	send("fw-1@e2e")
	checkForwarded(sh.WaitMessage("fw-1@e2e", 30*time.Second), "fw-1@e2e")
	if got := a.Mailbox("me", 1, 30*time.Second); len(got["<fw-1@e2e>"]) != 1 {
		t.Errorf("local copy of fw-1: %d", len(got["<fw-1@e2e>"]))
	}

	// 2. The smarthost refuses connections: the copy waits in the queue,
	// from our local sender; once it listens again, it leaves.
	sh.SetMode("down")
	send("fw-down@e2e")
	q := a.WaitQueued(far, 30*time.Second)
	if q.Sender != "postmaster@e2e.example" {
		t.Errorf("queued forward: sender <%s>, want <postmaster@e2e.example>", q.Sender)
	}
	t.Logf("while the smarthost is down: %s", q)
	sh.SetMode("accept")
	a.FlushUntilEmpty(60 * time.Second)
	checkForwarded(sh.WaitMessage("fw-down@e2e", 10*time.Second), "fw-down@e2e")

	// 3. The smarthost container stopped (its name no longer resolves):
	// the same, and the copy leaves once it is started again.
	stop := 10 * time.Second
	if err := sh.C.Stop(ctx, &stop); err != nil {
		t.Fatalf("stop smarthost: %v", err)
	}
	send("fw-stopped@e2e")
	q = a.WaitQueued(far, 30*time.Second)
	t.Logf("while the smarthost is stopped: %s", q)
	if err := sh.C.Start(ctx); err != nil {
		t.Fatalf("start smarthost again: %v", err)
	}
	a.FlushUntilEmpty(60 * time.Second)
	checkForwarded(sh.WaitMessage("fw-stopped@e2e", 10*time.Second), "fw-stopped@e2e")

	// 4. A temporary rejection (451): queued, then delivered.
	sh.SetMode("451")
	send("fw-451@e2e")
	q = a.WaitQueued(far, 30*time.Second)
	if !strings.Contains(q.Recipients[0].DelayReason, "451") {
		t.Errorf("queued after 451: reason %q", q.Recipients[0].DelayReason)
	}
	sh.SetMode("accept")
	a.FlushUntilEmpty(60 * time.Second)
	checkForwarded(sh.WaitMessage("fw-451@e2e", 10*time.Second), "fw-451@e2e")
	// Nothing bounced so far, for anyone; the deferrals were the
	// smarthost's.
	a.AssertNoBounce(oracle.Expect{Outbound: []string{far}})

	// 5. A permanent rejection (550): the rejection comes back to our own
	// postmaster (the forward's envelope sender), with the message, and is
	// delivered locally by the rules. Nothing goes to the original sender.
	sh.SetMode("550")
	send("fw-550@e2e")
	dsn := a.Mailbox("postmaster", 1, 60*time.Second)
	var notice []byte
	for _, msgs := range dsn {
		for _, m := range msgs {
			if strings.Contains(string(m), "fw-550@e2e") {
				notice = m
			}
		}
	}
	if notice == nil {
		t.Fatalf("the 550 did not come back to postmaster@e2e.example with the message")
	}
	if !strings.Contains(string(notice), far) || !strings.Contains(string(notice), "550") {
		t.Errorf("the returned notice does not name %s and the 550:\n%s", far, notice)
	}
	a.WaitQueueEmpty(30 * time.Second)

	// The oracle: the one bounce is the forwarded copy's, its one notice
	// went to our postmaster and nowhere else, nothing was relayed.
	a.AssertNoBounce(oracle.Expect{Outbound: []string{far}, Rejected: []string{far}, NoticeTo: "postmaster@e2e.example"})
	for _, l := range strings.Split(a.Logs(), "\n") {
		if strings.Contains(l, "to=<"+origin+">") {
			t.Errorf("a message to the original sender: %s", l)
		}
	}
	for _, m := range sh.Messages() {
		if m.From == "" || m.From == origin {
			t.Errorf("the smarthost received a message from <%s> for %v", m.From, m.Rcpts)
		}
		for _, r := range m.Rcpts {
			if r == origin {
				t.Errorf("the smarthost received a message for the original sender")
			}
		}
	}
	if ev := sh.Events(); strings.Contains(ev, "MAIL FROM:<>") {
		t.Errorf("the smarthost saw a null sender:\n%s", ev)
	}
	if n := len(sh.Messages()); n != 4 {
		t.Errorf("smarthost accepted %d messages, want 4 (no duplicates, nothing else)", n)
	}
}
