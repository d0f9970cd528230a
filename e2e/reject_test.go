//go:build e2e

package e2e

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"quietmx/e2e/harness"
)

// rejectSpec: me is delivered, gone is refused at RCPT time, and there is
// no default: a passed-over reject goes to rescue.
func rejectSpec(mode string) string {
	return specHeader("me", "rescue") + `rules:
  rescue: ` + rescueMaildir + `/new
` + mode + `  aliases:
    me@e2e.example:
      type: maildir
      value: ` + maildirOf("me") + `
    gone@e2e.example: {type: reject, text: "This address is no longer in use"}
`
}

// TestReject (issue 11): a reject address is refused at RCPT over real
// SMTP with 550 5.1.1 and its text, and nothing is queued for it, while
// the session's other recipient is accepted and delivered; with the policy
// service unreachable, or with reject_mode: log, it is accepted and
// delivery passes over the reject (to rescue here), never deferred or
// bounced. A stuck daemon (pipe mode, where it only answers the policy
// service) is waited for 10 s, twice, then the same. In both delivery
// modes: the policy service is the resident daemon's either way.
func TestReject(t *testing.T) { forEachDelivery(t, testReject) }

func testReject(t *testing.T, delivery string) {
	a := Start(t, Options{Spec: rejectSpec(""), Files: specFiles(), Delivery: delivery})
	const from = "sender@outside.example"
	gone, me := addr("gone"), addr("me")

	// explain says what RCPT does.
	if out := a.MustExec("quietmx", "explain", gone); !strings.Contains(out, "refused at RCPT (550 5.1.1 This address is no longer in use)") {
		t.Errorf("quietmx explain %s:\n%s", gone, out)
	}

	// 1. One session: RCPT gone refused, RCPT me accepted, the message
	// delivered to me only.
	c, err := harness.Dial(a.SMTPAddr, helo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt(gone, nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || !strings.Contains(se.Message, "This address is no longer in use") {
		t.Fatalf("RCPT TO:<%s>: %v, want 550 5.1.1 ... This address is no longer in use", gone, err)
	}
	if err := c.Rcpt(me, nil); err != nil {
		t.Fatalf("RCPT TO:<%s> after a refused one: %v", me, err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	both := MessageOfSize(from, gone+", "+me, "rj-both@e2e", 1024)
	if _, err := w.Write(both); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	// 2. A message for gone alone: refused, never queued.
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(gone, nil); err == nil {
		t.Fatalf("RCPT TO:<%s> accepted in a second transaction", gone)
	}
	c.Quit()

	got := a.Mailbox("me", 1, 30*time.Second)
	if c := got["<rj-both@e2e>"]; len(c) != 1 || !Intact(c[0], both) {
		t.Errorf("me: %d copies of the message, want 1 intact", len(c))
	}
	a.WaitQueueEmpty(30 * time.Second)
	logs := a.Logs()
	if n := strings.Count(logs, "NOQUEUE: reject: RCPT from"); n != 2 {
		t.Errorf("Postfix logged %d RCPT rejections, want 2", n)
	}
	if n := strings.Count(logs, "decision=reject recipient="+gone); n != 2 {
		t.Errorf("the policy service logged %d refusals of %s, want 2", n, gone)
	}
	// Nothing queued for it: no delivery record (only smtpd's NOQUEUE line
	// names it).
	if l := lastLine(logs, ": to=<"+gone+">"); l != "" {
		t.Errorf("a delivery record for %s, which was refused:\n%s", gone, l)
	}

	// 3. The policy service unreachable (its socket gone): Postfix asks
	// in vain, accepts, and delivery passes over the reject to rescue.
	// rescued sends a message to gone, which must be accepted and rescued
	// as the rescue mailbox's n-th message.
	rescued := func(id string, n int, why string) {
		t.Helper()
		msg := MessageOfSize(from, gone, id, 1024)
		if err := a.Send(from, []string{gone}, msg); err != nil {
			t.Fatalf("%s: %v (want accepted)", why, err)
		}
		got := a.Mailbox("rescue", n, 30*time.Second)
		if c := got["<"+id+">"]; len(c) != 1 || !Intact(c[0], msg) {
			t.Errorf("rescue: %d copies of the message sent %s, want 1 intact", len(c), why)
		}
	}
	a.MustExec("rm", "/run/altpostlocal/policy")
	rescued("rj-down@e2e", 1, "with the policy service down")
	if !strings.Contains(a.Logs(), "problem talking to server /run/altpostlocal/policy") {
		t.Error("Postfix did not log its failure to reach the policy service")
	}

	// 4. A new daemon (new socket), reject_mode: log: accepted, logged
	// "would reject", rescued.
	if err := a.killServe(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool {
		code, _ := a.Exec("test", "-S", "/run/altpostlocal/policy")
		return code == 0
	}, func() string { return "the restarted daemon has no policy socket" })
	if delivery == "pipe" {
		// 3b. The daemon stuck (SIGSTOP; under pipe it delivers nothing):
		// past the policy timeout Postfix accepts. About 20 s: two tries
		// of 10 s.
		ps, err := a.serveProcs()
		if err != nil || len(ps) != 1 {
			t.Fatalf("altpostlocal serve processes: %v (%v), want one", ps, err)
		}
		pid := strconv.Itoa(ps[0].pid)
		signal := func(sig string) int {
			code, _ := a.Exec("sh", "-c", `kill -"$1" "$2"`, "sh", sig, pid) // no kill(1) in the image
			return code
		}
		if code := signal("STOP"); code != 0 {
			t.Fatalf("kill -STOP %s: exit %d", pid, code)
		}
		t.Cleanup(func() { signal("CONT") })
		t0 := time.Now()
		rescued("rj-stuck@e2e", 2, "with the policy service stuck")
		t.Logf("accepted %v after RCPT with the policy service stuck", time.Since(t0).Round(time.Second))
		signal("CONT")
	}
	a.EditSpecAndWait(rejectSpec("  reject_mode: log\n"), "applied")
	n := 2
	if delivery == "pipe" {
		n = 3
	}
	rescued("rj-trial@e2e", n, "with reject_mode: log")
	a.WaitLog(`decision="would reject" recipient=`+gone, 1, 10*time.Second)

	a.WaitQueueEmpty(30 * time.Second)
	a.AssertNoBounce()
}
