//go:build e2e

package e2e

// Issue 7, scenarios 6, 7 and 12: never an open relay, IMAPS only, and no
// path to backscatter. Every probe is a real client: go-smtp's client or a
// raw TCP dialogue from the host, bash /dev/tcp inside the appliance and inside
// another container on a Docker network, and verified TLS.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/network"

	"quietmx/e2e/harness"
)

// securitySpec: one real mailbox, and every other address of the domain
// delivered too (the generated rules), so a refusal is never a routing
// matter.
const securitySpec = `hostname: mail.e2e.example
domains:
  - d1.example
mailboxes:
  - login: me@d1.example
    password_file: pw
`

// relayTargets are addresses that a relay would send elsewhere: a foreign
// domain, and the old tricks that smuggle one behind a local domain
// (percent hack, source route, bang path, a second @, a quoted local part,
// an address literal).
var relayTargets = []string{
	"x@foreign.example",
	"x%foreign.example@d1.example",
	"@d1.example:x@foreign.example",
	"foreign.example!x@d1.example",
	"x@foreign.example@d1.example",
	`"x@foreign.example"@d1.example`,
	"x@[192.0.2.1]",
}

// smtpClient is the suite's SMTP client (go-smtp, harness.Dial) from the
// host through the published port, after EHLO.
func smtpClient(t *testing.T, a *Appliance) *smtp.Client {
	t.Helper()
	c, err := harness.Dial(a.SMTPAddr, helo)
	if err != nil {
		t.Fatalf("smtp dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantRelayDenied checks one RCPT reply: 554 5.7.1.
func wantRelayDenied(t *testing.T, what string, err error) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("%s: got %v, want 554 5.7.1", what, err)
	}
}

// relayAttempts tries every relay target in one session, then DATA (which
// must find no recipient), and asks for a local one as a control.
func relayAttempts(t *testing.T, c *smtp.Client) {
	t.Helper()
	if err := c.Mail("probe@outside.example", nil); err != nil {
		t.Fatalf("MAIL FROM: %v", err)
	}
	for _, rcpt := range relayTargets {
		wantRelayDenied(t, "RCPT TO:<"+rcpt+">", c.Rcpt(rcpt, nil))
	}
	if _, err := c.Data(); err == nil {
		t.Errorf("DATA accepted with no valid recipient")
	}
	if err := c.Reset(); err != nil {
		t.Fatalf("RSET: %v", err)
	}
	// Control: the same session may still send to a local address.
	if err := c.Mail("probe@outside.example", nil); err != nil {
		t.Fatalf("MAIL FROM: %v", err)
	}
	if err := c.Rcpt("me@d1.example", nil); err != nil {
		t.Errorf("RCPT TO:<me@d1.example> (local): %v", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatalf("RSET: %v", err)
	}
}

// TestNoOpenRelay: from the host (not loopback) every relay attempt gets
// 554 5.7.1, in clear and after a verified STARTTLS; nothing is queued;
// VRFY and EXPN reveal nothing.
func TestNoOpenRelay(t *testing.T) {
	a := Start(t, Options{Spec: securitySpec, Files: rtFiles(nil)})

	t.Run("plain", func(t *testing.T) {
		c := smtpClient(t, a)
		relayAttempts(t, c)
		c.Quit()
	})

	t.Run("starttls", func(t *testing.T) {
		if ok, _ := smtpClient(t, a).Extension("STARTTLS"); !ok {
			t.Fatal("no STARTTLS on port 25")
		}
		c, err := harness.DialStartTLS(a.SMTPAddr, helo, a.TLSConfig())
		if err != nil {
			t.Fatalf("STARTTLS (verified against the appliance's certificate): %v", err)
		}
		defer c.Close()
		st, ok := c.TLSConnectionState()
		if !ok || len(st.VerifiedChains) == 0 || st.Version < tls.VersionTLS12 {
			t.Fatalf("TLS state: ok %v, verified chains %d, version %x", ok, len(st.VerifiedChains), st.Version)
		}
		relayAttempts(t, c)
		c.Quit()
	})

	t.Run("starttls below TLS 1.2 refused", func(t *testing.T) {
		cfg := a.TLSConfig()
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if c, err := harness.DialStartTLS(a.SMTPAddr, helo, cfg); err == nil {
			c.Close()
			t.Errorf("STARTTLS with TLS 1.1 at most succeeded")
		}
	})

	t.Run("vrfy and expn", func(t *testing.T) {
		c := smtpClient(t, a)
		for _, addr := range []string{"me@d1.example", "me", "nobody@d1.example", "x@foreign.example"} {
			err := c.Verify(addr)
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != 502 {
				t.Errorf("VRFY %s: %v, want 502 (disabled)", addr, err)
				continue
			}
			if strings.Contains(se.Message, addr) || strings.Contains(se.Message, "@") {
				t.Errorf("VRFY %s reveals something: %q", addr, se.Message)
			}
		}
		c.Quit()
		// EXPN: no client library offers it; the raw dialogue does.
		s, _ := dialRawSMTP(t, a.SMTPAddr)
		s.cmd("EHLO " + helo)
		if r := s.cmd("EXPN me"); r.Code/100 != 5 || strings.Contains(r.Text, "@") {
			t.Errorf("EXPN me: %v, want a 5xx refusal", r)
		}
		s.cmd("QUIT")
	})

	// Nothing was queued, and the log shows why.
	if _, out := a.Exec("postqueue", "-p"); !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("postqueue -p:\n%s", out)
	}
	if code, out := a.Exec("quietmx", "health"); code != 0 || !strings.Contains(out, "queue 0;") {
		t.Errorf("quietmx health: exit %d: %s", code, out)
	}
	want := 2 * len(relayTargets)
	if n := strings.Count(a.Logs(), "Relay access denied"); n < want {
		t.Errorf("log: %d relay refusals, want %d", n, want)
	}
	if n := len(a.agentLines()); n != 0 {
		t.Errorf("the agent ran %d times, want 0", n)
	}
	a.AssertNoBounce()
}

// TestIMAPSOnly: the appliance listens on 25 and 993 only (143 refused from
// the host and inside the container); 993 speaks TLS 1.2 or later with the
// appliance's certificate, refuses a wrong password, and a client that
// skips TLS gets no IMAP at all.
func TestIMAPSOnly(t *testing.T) {
	a := Start(t, Options{Spec: securitySpec, Files: rtFiles(nil)})

	t.Run("listening sockets", func(t *testing.T) {
		ports := a.listeningPorts()
		if len(ports) != 2 || ports[0] != 25 || ports[1] != 993 {
			t.Errorf("listening TCP ports: %v, want exactly [25 993]", ports)
		}
	})

	t.Run("143 refused inside the container", func(t *testing.T) {
		for _, port := range []string{"143", "993"} {
			code, out := a.Exec("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+port)
			if port == "143" && (code == 0 || !strings.Contains(out, "refused")) {
				t.Errorf("connect 127.0.0.1:143: exit %d %s, want connection refused", code, out)
			}
			if port == "993" && code != 0 {
				t.Errorf("connect 127.0.0.1:993 (control): exit %d %s", code, out)
			}
		}
	})

	t.Run("143 refused from the host", func(t *testing.T) {
		ip, err := a.C.ContainerIP(context.Background())
		if err != nil || ip == "" {
			t.Fatalf("container IP: %q %v", ip, err)
		}
		// Control: the container's address is reachable from here.
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "993"), 5*time.Second)
		if err != nil {
			t.Fatalf("connect %s:993 (control): %v", ip, err)
		}
		c.Close()
		c, err = net.DialTimeout("tcp", net.JoinHostPort(ip, "143"), 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("connect %s:143 succeeded", ip)
		}
		if !strings.Contains(err.Error(), "refused") {
			t.Errorf("connect %s:143: %v, want connection refused", ip, err)
		}
	})

	t.Run("TLS 1.2 and 1.3 only", func(t *testing.T) {
		base := a.TLSConfig()
		for _, v := range []struct {
			name     string
			min, max uint16
			ok       bool
		}{
			{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, false},
			{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, false},
			{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
			{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
		} {
			cfg := base.Clone()
			cfg.MinVersion, cfg.MaxVersion = v.min, v.max
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", a.IMAPAddr, cfg)
			if err != nil {
				if v.ok {
					t.Errorf("%s: %v", v.name, err)
				}
				continue
			}
			st := c.ConnectionState()
			c.Close()
			if !v.ok {
				t.Errorf("%s: handshake succeeded (version %x)", v.name, st.Version)
			} else if len(st.VerifiedChains) == 0 || st.Version != v.max {
				t.Errorf("%s: version %x, verified chains %d", v.name, st.Version, len(st.VerifiedChains))
			}
		}
	})

	t.Run("wrong password refused", func(t *testing.T) {
		c, err := imapclient.DialTLS(a.IMAPAddr, &imapclient.Options{TLSConfig: a.TLSConfig()})
		if err != nil {
			t.Fatalf("imaps dial: %v", err)
		}
		defer c.Close()
		if err := c.Login("me@d1.example", "not-the-password").Wait(); err == nil {
			t.Fatal("login with a wrong password succeeded")
		} else if !strings.Contains(err.Error(), "AUTHENTICATIONFAILED") {
			t.Errorf("login with a wrong password: %v, want AUTHENTICATIONFAILED", err)
		}
		// Control: the right password works (over verified TLS).
		good := a.IMAP("me@d1.example", rtPassword)
		if err := good.Noop().Wait(); err != nil {
			t.Errorf("NOOP after a good login: %v", err)
		}
	})

	t.Run("no IMAP without TLS", func(t *testing.T) {
		// A client that sends IMAP in clear to 993 gets no greeting and no
		// answer: only a TLS alert, then the connection closes.
		c, err := net.DialTimeout("tcp", a.IMAPAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Write([]byte("a1 LOGIN me@d1.example " + rtPassword + "\r\n")); err != nil {
			t.Fatal(err)
		}
		reply, err := io.ReadAll(c)
		if bytes.Contains(reply, []byte("OK")) || bytes.Contains(reply, []byte("* ")) {
			t.Errorf("plaintext IMAP on 993 answered: %q", reply)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("993 kept a plaintext client waiting instead of closing: read %q", reply)
		}
	})

	// No login reached Dovecot without TLS.
	for _, l := range strings.Split(a.Logs(), "\n") {
		if strings.Contains(l, "imap-login") && strings.Contains(l, "Login: user=") && !strings.Contains(l, "TLS") {
			t.Errorf("a login without TLS: %s", l)
		}
	}
	a.AssertNoBounce()
}

// TestBackscatter: nothing the appliance accepts can make it write to a
// forged sender. DSN is not offered and a NOTIFY/RET request is refused,
// so no receipt is ever made; relay attempts are refused with 554 from the
// host, from another container on a Docker network and from loopback
// inside the appliance; bare-newline SMTP smuggling does not end the data.
func TestBackscatter(t *testing.T) {
	ctx := context.Background()
	nw, err := network.New(ctx)
	if err != nil {
		t.Fatalf("docker network: %v", err)
	}
	testcontainers.CleanupNetwork(t, nw) // registered first: removed after the containers
	a := Start(t, Options{Spec: securitySpec, Files: rtFiles(nil), Network: nw.Name})
	me := a.IMAP("me@d1.example", rtPassword)

	t.Run("no delivery receipts", func(t *testing.T) {
		// The raw dialogue: the DSN parameters go on the wire as written
		// (a client library adds them only when the server offers DSN).
		s, _ := dialRawSMTP(t, a.SMTPAddr)
		if r := s.cmd("EHLO " + helo); r.Code != 250 || slices.Contains(strings.Split(r.Text, "\n"), "DSN") {
			t.Errorf("EHLO: %v, want 250 without DSN", r)
		}
		for _, cmd := range []string{
			"MAIL FROM:<victim@outside.example> RET=FULL ENVID=e2e",
			"MAIL FROM:<victim@outside.example>",
			"RCPT TO:<me@d1.example> NOTIFY=SUCCESS",
			"RCPT TO:<me@d1.example> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;me@d1.example",
		} {
			r := s.cmd(cmd)
			dsn := strings.Contains(cmd, "NOTIFY=") || strings.Contains(cmd, "RET=")
			if dsn && r.Code/100 != 5 {
				t.Errorf("%s: %v, want a refusal (DSN is off)", cmd, r)
			}
			if !dsn && r.Code != 250 {
				t.Fatalf("%s: %v", cmd, r)
			}
		}
		// The client gives up on the receipt and sends plainly: the
		// message is delivered, and no notice of any kind is made.
		if r := s.cmd("RCPT TO:<me@d1.example>"); r.Code != 250 {
			t.Fatalf("RCPT: %v", r)
		}
		if r := s.cmd("DATA"); r.Code != 354 {
			t.Fatalf("DATA: %v", r)
		}
		// Message has CRLF line ends and no line starting with a dot.
		if r := s.cmd(string(Message("victim@outside.example", "me@d1.example", "receipt wanted", "please notify me")) + "."); r.Code != 250 {
			t.Fatalf("end of data: %v", r)
		}
		s.cmd("QUIT")
		got := waitFolder(t, me, "INBOX", 1, 30*time.Second)
		if len(got) != 1 || subjectOf(got[0]) != "receipt wanted" {
			t.Fatalf("INBOX: %d messages", len(got))
		}
		// The queue manager removes a message only after any notice for it
		// has been handed over: once "removed" is logged, a receipt would
		// already show.
		line := a.waitAgentLine("me@d1.example", 10*time.Second)
		a.waitLogMatch(regexp.MustCompile(regexp.QuoteMeta(line["queue_id"])+`: removed`), 10*time.Second)
		a.AssertNoBounce()
	})

	t.Run("relay refused from three origins", func(t *testing.T) {
		// 1. The host, through the published port.
		c := smtpClient(t, a)
		if err := c.Mail("probe@outside.example", nil); err != nil {
			t.Fatal(err)
		}
		wantRelayDenied(t, "from the host", c.Rcpt("x@foreign.example", nil))
		c.Quit()

		// 2. Another container on the same Docker network.
		side := sideContainer(t, nw.Name)
		applianceIP := ipOn(t, a.C, nw.Name)
		code, r, err := side.Exec(ctx, append([]string{"bash", "-c", bashSMTP, "bash", applianceIP}, relayProbe("x@foreign.example")...), tcexec.Multiplexed())
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(r)
		checkProbe(t, "from another container", code, string(out))

		// 3. Loopback inside the appliance (in mynetworks, and still no relay).
		code, out2 := a.Exec(append([]string{"bash", "-c", bashSMTP, "bash", "127.0.0.1"}, relayProbe("x@foreign.example")...)...)
		checkProbe(t, "from loopback inside", code, out2)

		// The log shows the three clients, each refused.
		logs := a.Logs()
		sideIP := ipOn(t, side, nw.Name)
		for _, client := range []string{"[" + sideIP + "]", "localhost[127.0.0.1]"} {
			re := regexp.MustCompile(`NOQUEUE: reject: RCPT from \S*` + regexp.QuoteMeta(client) + `: 554 5\.7\.1 <x@foreign\.example>: Relay access denied`)
			if !re.MatchString(logs) {
				t.Errorf("no relay refusal logged for the client %s", client)
			}
		}
		if n := strings.Count(logs, "<x@foreign.example>: Relay access denied"); n < 3 {
			t.Errorf("log: %d relay refusals, want 3", n)
		}
	})

	t.Run("bare newline smuggling", func(t *testing.T) {
		for i, smuggle := range []string{"\n.\r\n", "\r\n.\n", "\n.\n"} {
			marker := "SMUGGLED-" + string(rune('A'+i))
			s, _ := dialRawSMTP(t, a.SMTPAddr)
			for _, cmd := range []string{"EHLO smuggler.example", "MAIL FROM:<smuggler@outside.example>", "RCPT TO:<me@d1.example>", "DATA"} {
				if r := s.cmd(cmd); r.Code/100 != 2 && r.Code != 354 {
					t.Fatalf("%s: %v", cmd, r)
				}
			}
			// If a bare-LF dot ended the data, the rest would be a second
			// transaction from a forged local sender.
			s.write("Subject: carrier " + marker + "\r\n\r\nbody" + smuggle +
				"MAIL FROM:<spoofed@d1.example>\r\nRCPT TO:<me@d1.example>\r\nDATA\r\n" +
				"Subject: " + marker + "\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n")
			var replies []smtpReply
			for {
				r, err := s.read()
				if err != nil {
					break
				}
				replies = append(replies, r)
			}
			// smtpd_forbid_bare_newline = reject: the message is refused
			// (550 5.5.2), never split into a second transaction.
			if len(replies) == 0 || replies[0].Code != 550 || !strings.Contains(replies[0].Text, "5.5.2") {
				t.Errorf("smuggling %q: replies %v, want 550 5.5.2 (bare newline refused)", smuggle, replies)
			}
		}
		// A control message arrives; the spoofed sender never does.
		ctl := Message("control@outside.example", "me@d1.example", "after smuggling", "control")
		a.MustSend("control@outside.example", []string{"me@d1.example"}, ctl)
		waitFor(t, 30*time.Second, func() bool {
			return slices.ContainsFunc(readFolder(t, me, "INBOX"), func(m []byte) bool { return subjectOf(m) == "after smuggling" })
		}, func() string { return "the control message did not arrive" })
		// The control message went in after the smuggling attempts, on
		// the same path: once it is delivered and the queue is empty, a
		// smuggled transaction would have been delivered too.
		a.WaitQueueEmpty(10 * time.Second)
		for _, l := range a.agentLines() {
			if l["sender"] == "spoofed@d1.example" {
				t.Errorf("a smuggled transaction was delivered: %v", l)
			}
		}
		if strings.Contains(a.Logs(), "from=<spoofed@d1.example>") {
			t.Errorf("a smuggled transaction reached the queue")
		}
		for _, m := range readFolder(t, me, "INBOX") {
			if strings.HasPrefix(subjectOf(m), "SMUGGLED-") {
				t.Errorf("a smuggled message is in the INBOX:\n%s", head(m))
			}
		}
	})

	a.AssertNoBounce()
}

// checkProbe reads a bashSMTP transcript of relayProbe: the RCPT (the
// fourth reply) must be 554 5.7.1, and DATA must find no recipient.
func checkProbe(t *testing.T, origin string, code int, out string) {
	t.Helper()
	replies := parseBashSMTP(out)
	if code != 0 || len(replies) < 5 {
		t.Fatalf("%s: exit %d, transcript:\n%s", origin, code, out)
	}
	if !strings.HasPrefix(replies[3], "554 5.7.1 ") {
		t.Errorf("%s: RCPT TO:<x@foreign.example>: %q, want 554 5.7.1", origin, replies[3])
	}
	if !strings.HasPrefix(replies[4], "554 ") && !strings.HasPrefix(replies[4], "503 ") {
		t.Errorf("%s: DATA: %q, want no valid recipients", origin, replies[4])
	}
}
