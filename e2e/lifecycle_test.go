//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"quietmx/e2e/harness"
)

// TestLiveChanges (scenario 8): an alias added by editing the spec (inline
// rules, then a rules_file beside it) on the mounted spec directory routes
// the next message, with no restart; an invalid edit is rejected with a
// loud log line and mail keeps flowing with the old rules.
func TestLiveChanges(t *testing.T) {
	const me, other = "/var/mail/vmail/e2e.example/me/Maildir", "/var/mail/vmail/e2e.example/other/Maildir"
	rules := func(aliases string) string {
		return `  x-boxes:
    me: &me
      type: maildir
      value: ` + me + `
  extension: "\\+"
  aliases:
    me@e2e.example: *me
` + aliases + `  default:
    type: maildir
    value: ` + other + `
`
	}
	spec := func(aliases string) string {
		return specHeader("me", "other") + "rules:\n" + rules(aliases)
	}
	a := Start(t, Options{Spec: spec(""), Files: specFiles()})
	startedAt, _ := a.ContainerState()
	const from = "sender@outside.example"
	sent := map[string][]byte{}
	send := func(to, id string) {
		t.Helper()
		msg := MessageOfSize(from, to, id, 1024)
		sent["<"+id+">"] = msg
		a.MustSend(from, []string{to}, msg)
	}
	expect := func(box string, n int, ids ...string) {
		t.Helper()
		got := a.Mailbox(box, n, 30*time.Second)
		for _, id := range ids {
			id = "<" + id + ">"
			if len(got[id]) != 1 || !Intact(got[id][0], sent[id]) {
				t.Errorf("%s: %d copies of %s, want 1 intact", box, len(got[id]), id)
			}
		}
		if total := countAll(got); total != n {
			t.Errorf("%s: %d messages, want %d", box, total, n)
		}
	}

	// Before: new@ is unknown and goes to the default (other).
	send(addr("new"), "live-before@e2e")
	expect("other", 1, "live-before@e2e")

	// 1. Add the alias in the spec's inline rules.
	a.EditSpecAndWait(spec("    new@e2e.example: *me\n"), "applied")
	send(addr("new"), "live-inline@e2e")
	send(addr("new+tag"), "live-inline-ext@e2e")
	expect("me", 2, "live-inline@e2e", "live-inline-ext@e2e")

	// 2. Invalid edits are rejected loudly; the old rules stay.
	a.EditSpecAndWait(spec("    new@e2e.example: *me\n    bad@e2e.example:\n      type: maildir\n      value: relative/Maildir\n"), "REJECTED")
	a.EditSpecAndWait(spec("    new@e2e.example: *me\n")+"  rematch:\n    \"(?<=x)y\": me@e2e.example\n", "REJECTED")
	if l := lastLine(a.Logs(), "(?<="); l == "" {
		t.Errorf("the rejection does not say what is wrong (the lookbehind regexp)")
	}
	send(addr("new"), "live-after-reject@e2e")
	send(addr("bad"), "live-after-reject-bad@e2e") // unknown in the old rules: default
	expect("me", 3, "live-after-reject@e2e")
	expect("other", 2, "live-after-reject-bad@e2e")

	// 3. The rules in a file of their own beside the spec: switch to it,
	// then edit only that file.
	rulesFile := filepath.Join(a.SpecDir, "rules.yaml")
	writeAtomic(t, rulesFile, []byte(unindent(rules("    new@e2e.example: *me\n    file@e2e.example: *me\n"))), 0o644)
	a.EditSpecAndWait(specHeader("me", "other")+"rules_file: rules.yaml\n", "applied")
	send(addr("file"), "live-file@e2e")
	expect("me", 4, "live-file@e2e")
	const rulesApplied = "quietmx: applied: changed altpostlocal/altpostlocal.yaml"
	before := a.CountLog(rulesApplied)
	writeAtomic(t, rulesFile, []byte(unindent(rules("    new@e2e.example: *me\n    file@e2e.example: *me\n    file2@e2e.example: *me\n"))), 0o644)
	a.WaitLog(rulesApplied, before+1, 30*time.Second)
	send(addr("file2"), "live-file2@e2e")
	expect("me", 5, "live-file2@e2e")
	before = a.CountLog("quietmx: REJECTED")
	writeAtomic(t, rulesFile, []byte("aliases:\n  file3@e2e.example: {type: maildir, value: \"/var/mail\n"), 0o644)
	a.WaitLog("quietmx: REJECTED", before+1, 30*time.Second)
	send(addr("file2"), "live-file2-after-reject@e2e")
	send(addr("file3"), "live-file3@e2e") // not in the old rules: default
	expect("me", 6, "live-file2-after-reject@e2e")
	expect("other", 3, "live-file3@e2e")

	// One re-render per edit (six edits), none for nothing: a spurious
	// "applied" would fool anyone who waits for the log line.
	if n := a.CountLog("quietmx: change detected"); n != 6 {
		t.Errorf("%d changes detected for 6 edits", n)
	}
	// All of it without a restart.
	if now, restarts := a.ContainerState(); now != startedAt || restarts != 0 {
		t.Errorf("the container restarted: started %s, now %s (%d restarts)", startedAt, now, restarts)
	}
	a.AssertNoBounce()
}

// unindent removes the two-space indent of an inline rules block, making it
// a rule file of its own.
func unindent(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		b.WriteString(strings.TrimPrefix(l, "  "))
	}
	return b.String()
}

func countAll(m map[string][][]byte) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// TestRestarts (scenario 9): with named volumes for the Maildirs, the
// Postfix queue and the state, a stop/start and a re-creation from the
// image keep every delivered message and the certificate, and a message
// queued while the agent deferred is delivered after the fix and restart.
func TestRestarts(t *testing.T) {
	// No default and no rescue: mail for an unknown address is deferred
	// (75) and stays in the queue until the rules know it.
	spec := func(aliases string) string {
		return specHeader("me") + `rules:
  aliases:
    me@e2e.example:
      type: maildir
      value: ` + maildirOf("me") + `
` + aliases
	}
	alias := func(local string) string {
		return "    " + addr(local) + ":\n      type: maildir\n      value: " + maildirOf("me") + "\n"
	}
	opts := Options{
		Spec:  spec(""),
		Files: specFiles(),
		Volumes: map[string]string{
			Volume(t): "/var/mail",
			Volume(t): "/var/spool/postfix",
			Volume(t): "/var/lib/quietmx",
		},
	}
	a := Start(t, opts)
	const from = "sender@outside.example"
	sent := map[string][]byte{}
	send := func(to, id string) {
		t.Helper()
		msg := MessageOfSize(from, to, id, 4096)
		sent["<"+id+">"] = msg
		a.MustSend(from, []string{to}, msg)
	}
	expectAll := func(n int) {
		t.Helper()
		got := a.Mailbox("me", n, 30*time.Second)
		for id, msg := range sent {
			if len(got[id]) != 1 || !Intact(got[id][0], msg) {
				t.Errorf("me: %d copies of %s, want 1 intact", len(got[id]), id)
			}
		}
		if total := countAll(got); total != n {
			t.Errorf("me: %d messages, want %d", total, n)
		}
	}
	fingerprints := func() (string, string) {
		t.Helper()
		cfg := a.TLSConfig() // the appliance's own certificate, verified
		imaps, err := IMAPSCertFingerprint(a.IMAPAddr, cfg)
		if err != nil {
			t.Fatalf("imaps: %v", err)
		}
		smtp, err := SMTPCertFingerprint(a.SMTPAddr, cfg)
		if err != nil {
			t.Fatalf("smtp starttls: %v", err)
		}
		return imaps, smtp
	}

	send(addr("me"), "rs-1@e2e")
	send(addr("me"), "rs-2@e2e")
	expectAll(2)
	fpIMAP, fpSMTP := fingerprints()
	if fpIMAP != fpSMTP {
		t.Errorf("ports 993 and 25 serve different certificates: %s / %s", fpIMAP, fpSMTP)
	}
	// Deferred: no rule for held@.
	heldMsg := MessageOfSize(from, addr("held"), "rs-held@e2e", 4096)
	a.MustSend(from, []string{addr("held")}, heldMsg)
	held := a.WaitQueued(addr("held"), 30*time.Second)

	// 1. Stop and start the same container: mail and queue kept.
	a.Restart()
	expectAll(2)
	if again := a.WaitQueued(addr("held"), 10*time.Second); again.QueueID != held.QueueID {
		t.Errorf("the held message changed queue id across the restart: %s → %s", held.QueueID, again.QueueID)
	}
	if i, s := fingerprints(); i != fpIMAP || s != fpSMTP {
		t.Errorf("certificate changed across a restart: %s → %s", fpIMAP, i)
	}

	// 2. Fix the rules while it is stopped; after the start the held
	// message is delivered (postqueue -f instead of waiting for the
	// queue run).
	a.Stop()
	a.EditSpec(spec(alias("held")))
	a.StartAgain()
	a.FlushUntilEmpty(60 * time.Second)
	sent["<rs-held@e2e>"] = heldMsg
	expectAll(3)

	// 3. Another deferred message, then the container is re-created from
	// the image (as an upgrade does) with the same volumes, and the rules
	// fixed: everything is still there, the held message is delivered,
	// and the certificate is the same.
	held2 := MessageOfSize(from, addr("held2"), "rs-held2@e2e", 4096)
	a.MustSend(from, []string{addr("held2")}, held2)
	a.WaitQueued(addr("held2"), 30*time.Second)
	a.AssertNoBounce()
	if err := a.C.Terminate(context.Background()); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	opts.Spec, opts.Files, opts.SpecDir = spec(alias("held")+alias("held2")), nil, a.SpecDir
	a = Start(t, opts)
	if strings.Contains(a.Logs(), "generated a self-signed certificate") {
		t.Errorf("the re-created container generated a new certificate instead of keeping the one on the state volume")
	}
	if i, s := fingerprints(); i != fpIMAP || s != fpSMTP {
		t.Errorf("certificate changed across re-creation: imaps %s → %s, smtp %s → %s", fpIMAP, i, fpSMTP, s)
	}
	a.FlushUntilEmpty(60 * time.Second)
	sent["<rs-held2@e2e>"] = held2
	expectAll(4)
	a.AssertNoBounce()
}

// TestCertRotation (scenario 10): in files mode, replacing the certificate
// and key files on the mounted directory makes ports 25 (STARTTLS) and 993
// serve the new certificate within seconds, by a reload: the container and
// the Postfix master keep running.
func TestCertRotation(t *testing.T) {
	certA, certB := NewCert(t, defaultHost), NewCert(t, defaultHost)
	const tlsDir = "/etc/quietmx/appliance/tls"
	spec := specHeader("me") + "tls:\n  mode: files\n  cert: " + tlsDir + "/cert.pem\n  key: " + tlsDir + "/key.pem\n"
	files := specFiles()
	files["tls/cert.pem"] = string(certA.CertPEM)
	files["tls/key.pem"] = string(certA.KeyPEM)
	a := Start(t, Options{Spec: spec, Files: files, Modes: map[string]os.FileMode{"tls/key.pem": 0o600}})
	// Both certificates are trusted: the test reads which one is served.
	pool := PinnedTLS(defaultHost, certA.X509, certB.X509)
	serving := func() (string, string, error) {
		s, err := SMTPCertFingerprint(a.SMTPAddr, pool)
		if err != nil {
			return "", "", err
		}
		i, err := IMAPSCertFingerprint(a.IMAPAddr, pool)
		return s, i, err
	}
	s, i, err := serving()
	if err != nil {
		t.Fatal(err)
	}
	if s != certA.Fingerprint || i != certA.Fingerprint {
		t.Fatalf("before: smtp %s, imaps %s, want A %s", s, i, certA.Fingerprint)
	}
	startedAt, _ := a.ContainerState()
	masterPID := strings.TrimSpace(a.MustExec("cat", "/var/spool/postfix/pid/master.pid"))
	pfReloads, dcReloads := a.CountLog("quietmx: postfix reloaded"), a.CountLog("quietmx: dovecot reloaded")

	// Replace the files the way an operator (or an ACME client) does:
	// key then certificate, each renamed into place.
	begin := time.Now()
	writeAtomic(t, filepath.Join(a.SpecDir, "tls/key.pem"), certB.KeyPEM, 0o600)
	writeAtomic(t, filepath.Join(a.SpecDir, "tls/cert.pem"), certB.CertPEM, 0o644)
	waitFor(t, 30*time.Second, func() bool {
		s, i, err = serving()
		return err == nil && s == certB.Fingerprint && i == certB.Fingerprint
	}, func() string {
		return fmt.Sprintf("smtp %s, imaps %s (err %v), want B %s", s, i, err, certB.Fingerprint)
	})
	t.Logf("both ports serve the new certificate %v after the files were replaced", time.Since(begin).Round(100*time.Millisecond))

	a.WaitLog("quietmx: postfix reloaded", pfReloads+1, 10*time.Second)
	a.WaitLog("quietmx: dovecot reloaded", dcReloads+1, 10*time.Second)
	if now, restarts := a.ContainerState(); now != startedAt || restarts != 0 {
		t.Errorf("the container restarted: started %s, now %s (%d restarts)", startedAt, now, restarts)
	}
	if pid := strings.TrimSpace(a.MustExec("cat", "/var/spool/postfix/pid/master.pid")); pid != masterPID {
		t.Errorf("the Postfix master was restarted (pid %s → %s), not reloaded", masterPID, pid)
	}

	// Mail still flows, over STARTTLS verified against the new certificate
	// only, and IMAPS with it too.
	onlyB := PinnedTLS(defaultHost, certB.X509)
	if err := harness.SendStartTLS(a.SMTPAddr, helo, onlyB, "sender@outside.example", []string{addr("me")},
		MessageOfSize("sender@outside.example", addr("me"), "rot-after@e2e", 1024)); err != nil {
		t.Fatalf("send over STARTTLS with the new certificate: %v", err)
	}
	got := a.Mailbox("me", 1, 30*time.Second)
	if len(got["<rot-after@e2e>"]) != 1 {
		t.Errorf("message sent after the rotation: %d copies", len(got["<rot-after@e2e>"]))
	}
	a.AssertNoBounce()
}
