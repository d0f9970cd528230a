package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"quietmx/internal/rules"
)

// serve answers LMTP with the rules, delivers, logs the line to -log, and
// exits 0 on SIGTERM.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := rules.Install(rulesFile, []byte("default: {type: maildir, value: "+dir+"/box}\n")); err != nil {
		t.Fatal(err)
	}
	socket, logFile := filepath.Join(dir, "lmtp"), filepath.Join(dir, "agent.log")
	var stderr maillogtest.Buffer
	exited := make(chan int, 1)
	go func() { exited <- serve([]string{"-c", rulesFile, "-socket", socket, "-log", logFile}, &stderr) }()

	conn := dialWait(t, socket, &stderr)
	c := smtp.NewClientLMTP(conn)
	if err := c.SendMail("s@x", []string{"r@x"}, strings.NewReader("Received: by mx (Postfix) id QQ42\r\nSubject: s\r\n\r\nbody\r\n")); err != nil {
		t.Fatalf("LMTP: %v", err)
	}
	c.Close()
	stopServe(t, exited, &stderr)
	data, _ := os.ReadFile(logFile)
	if !strings.Contains(string(data), "msg=delivery queue_id=QQ42 sender=s@x recipient=r@x") || !strings.Contains(string(data), "outcome=delivered exit=0") {
		t.Errorf("log = %q", data)
	}
	if files, _ := os.ReadDir(filepath.Join(dir, "box", "new")); len(files) != 1 {
		t.Errorf("box/new holds %d files, want 1", len(files))
	}
	if !strings.Contains(stderr.String(), "answering LMTP on "+socket) || !strings.Contains(stderr.String(), "stopped") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

// dialWait connects to a unix socket once it answers.
func dialWait(t *testing.T, path string, stderr fmt.Stringer) net.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket %s: %v\n%s", path, err, stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stopServe sends SIGTERM and waits for serve to exit 0.
func stopServe(t *testing.T, exited <-chan int, stderr fmt.Stringer) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("exit %d, want 0\n%s", code, stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

func TestServeUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := serve([]string{"extra"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: altpostlocal serve") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
