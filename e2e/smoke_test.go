//go:build e2e

package e2e

import (
	"bytes"
	"testing"
	"time"
)

// TestSmoke is the image's smoke test: configured by environment variables
// alone (the one-mailbox shortcut), it accepts a message over SMTP from the
// host and shows it over IMAPS.
func TestSmoke(t *testing.T) {
	a := Start(t, Options{
		Files: map[string]string{"password": "smoke-secret\n"},
		Env: map[string]string{
			"QUIETMX_HOSTNAME":      defaultHost,
			"QUIETMX_DOMAINS":       "e2e.example,e2e.example.org",
			"QUIETMX_MAILBOX":       "me@e2e.example",
			"QUIETMX_PASSWORD_FILE": "/etc/quietmx/appliance/password",
		},
	})
	msg := Message("sender@outside.example", "anyone@e2e.example.org", "smoke", "hello from the host")
	a.MustSend("sender@outside.example", []string{"anyone@e2e.example.org"}, msg)
	c := a.IMAP("me@e2e.example", "smoke-secret")
	got := WaitMessages(t, c, "INBOX", 1, 30*time.Second)
	if !bytes.Contains(got[0], []byte("hello from the host")) ||
		!bytes.Contains(got[0], []byte("Return-Path: <sender@outside.example>")) ||
		!bytes.Contains(got[0], []byte("Delivered-To: anyone@e2e.example.org")) {
		t.Errorf("delivered message:\n%s", got[0])
	}
	// The delivery line reached the container log.
	a.WaitLog("msg=delivery", 1, 10*time.Second)
	if code, out := a.Exec("quietmx", "health"); code != 0 {
		t.Errorf("quietmx health: exit %d: %s", code, out)
	}
	a.AssertNoBounce()
}
