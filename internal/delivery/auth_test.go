package delivery_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"quietmx/internal/delivery"
)

// TestDMARCFailAtDelivery: the appliance's own verdict and the recipient's
// dmarc_fail: decide the Junk folder; a refusal that reaches delivery
// (another recipient did not ask for it) is Junk; a verdict written by
// anyone else, a pass, or p=none changes nothing.
func TestDMARCFailAtDelivery(t *testing.T) {
	const rulesSrc = `
aliases:
  me: {type: maildir, value: DIR/me}
  you: {type: maildir, value: DIR/you}
  them: {type: maildir, value: DIR/them}
  shared: [{type: maildir, value: DIR/s1}, {type: maildir, value: DIR/s2, junk: true}]
dmarc_fail:
  me: junk
  you: refuse
  shared: junk
  default: deliver
`
	ar := func(host, results string) string {
		return "Authentication-Results: " + host + "; " + results + "\nFrom: x@bank.example\nSubject: s\n\nbody\n"
	}
	fail := "spf=fail smtp.mailfrom=x@bank.example; dkim=none; dmarc=fail policy.dmarc=reject header.from=bank.example"
	for _, tc := range []struct {
		name, msg, rcpt, dir string
		junk                 bool
		note                 string
	}{
		{"junk", ar("mx.example.com", fail), "me@example.com", "me", true, "dmarc:fail→junk"},
		{"refuse becomes junk", ar("mx.example.com", fail), "you@example.com", "you", true, "dmarc:fail→junk"},
		{"default deliver", ar("mx.example.com", fail), "them@example.com", "them", false, "dmarc:fail→deliver"},
		{"quarantine: junk", ar("mx.example.com", strings.Replace(fail, "reject", "quarantine", 1)), "you@example.com", "you", true, "dmarc:fail→junk"},
		{"p=none", ar("mx.example.com", strings.Replace(fail, "reject", "none", 1)), "me@example.com", "me", false, "dmarc:fail→deliver"},
		{"pass", ar("mx.example.com", "spf=pass smtp.mailfrom=x@bank.example; dmarc=pass header.from=bank.example"), "me@example.com", "me", false, ""},
		{"someone else's verdict", ar("mx.evil.example", fail), "me@example.com", "me", false, ""},
		{"no verdict", "From: x@bank.example\n\nbody\n", "me@example.com", "me", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, rulesSrc)
			var log bytes.Buffer
			cfg := delivery.Config{RulesPath: e.path, Sendmail: "/nonexistent/sendmail", Deadline: 30 * time.Second, Hostname: "MX.example.com"}
			res := delivery.Run(context.Background(), cfg, delivery.Request{Sender: "x@bank.example", Recipients: []string{tc.rcpt}, Message: []byte(tc.msg)})
			if res.Outcome != delivery.Delivered {
				t.Fatalf("outcome %v: %v", res.Outcome, res.Err)
			}
			junk, inbox := e.files(tc.dir+"/.Junk"), e.files(tc.dir+"/new")
			if tc.junk != (len(junk) == 1) || len(junk)+len(inbox) != 1 {
				t.Errorf("junk %v, inbox %v; want junk=%v", junk, inbox, tc.junk)
			}
			if got := res.Records[0].Auth; got != tc.note {
				t.Errorf("auth = %q, want %q", got, tc.note)
			}
			delivery.Log(slog.New(slog.NewTextHandler(&log, nil)), res, 0)
			if tc.note != "" && !strings.Contains(log.String(), "auth=dmarc:fail→") {
				t.Errorf("log line lacks auth: %s", log.String())
			}
		})
	}

	// Several maildirs under one key: each goes to its Junk, and the shared
	// rule set is not changed for the next message.
	e := newEnv(t, rulesSrc)
	cfg := delivery.Config{RulesPath: e.path, Deadline: 30 * time.Second, Hostname: "mx.example.com"}
	loaded := delivery.Run(context.Background(), cfg, delivery.Request{Recipients: []string{"shared@example.com"}, Message: []byte(ar("mx.example.com", fail))})
	if loaded.Outcome != delivery.Delivered || len(e.files("s1/.Junk")) != 1 || len(e.files("s2/.Junk")) != 1 {
		t.Fatalf("shared: %v, s1 junk %v, s2 junk %v", loaded.Outcome, e.files("s1/.Junk"), e.files("s2/.Junk"))
	}
	delivery.Run(context.Background(), cfg, delivery.Request{Recipients: []string{"shared@example.com"}, Message: []byte("From: a@b.example\n\nok\n")})
	if len(e.files("s1/new")) != 1 {
		t.Errorf("the second message did not reach s1's inbox: %v", e.files("s1"))
	}
}
