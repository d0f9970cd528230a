package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"strings"
	"testing"

	"quietmx/internal/rules"
)

// With -socket "" (delivery: pipe) serve answers the policy service only,
// from the rules: a reject address gets 550 5.1.1, any other DUNNO, and
// only the refusal is logged.
func TestServePolicyOnly(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	src := "aliases:\n  gone@x: {type: reject, text: \"No longer here\"}\ndefault: {type: maildir, value: " + dir + "/box}\n"
	if err := rules.Install(rulesFile, []byte(src)); err != nil {
		t.Fatal(err)
	}
	lmtpSocket, policySocket, logFile := filepath.Join(dir, "lmtp"), filepath.Join(dir, "policy"), filepath.Join(dir, "agent.log")
	var stderr maillogtest.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- serve([]string{"-c", rulesFile, "-socket", "", "-policy-socket", policySocket, "-log", logFile}, &stderr)
	}()
	conn := dialWait(t, policySocket, &stderr)
	r := bufio.NewReader(conn)
	for rcpt, want := range map[string]string{"gone@x": "action=550 5.1.1 No longer here", "me@x": "action=DUNNO"} {
		fmt.Fprintf(conn, "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=s@y\nrecipient=%s\n\n", rcpt)
		line, err := r.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != want {
			t.Errorf("%s: %q %v, want %q", rcpt, line, err, want)
		}
		if blank, _ := r.ReadString('\n'); blank != "\n" {
			t.Errorf("%s: reply not ended by an empty line: %q", rcpt, blank)
		}
	}
	conn.Close()
	if _, err := os.Stat(lmtpSocket); err == nil {
		t.Error("an LMTP socket with -socket \"\"")
	}
	stopServe(t, exited, &stderr)
	data, _ := os.ReadFile(logFile)
	if !strings.Contains(string(data), "decision=reject recipient=gone@x") || strings.Contains(string(data), "me@x") {
		t.Errorf("log = %q", data)
	}
	if !strings.Contains(stderr.String(), "answering the SMTPD access policy on "+policySocket) {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

func TestServeNothing(t *testing.T) {
	var stderr bytes.Buffer
	if code := serve([]string{"-socket", ""}, &stderr); code != 2 || !strings.Contains(stderr.String(), "nothing to serve") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
