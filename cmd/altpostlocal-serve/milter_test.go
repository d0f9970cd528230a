package main

import (
	"net"
	"os"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"strings"
	"syscall"
	"testing"
	"time"

	"quietmx/internal/milter"
	"quietmx/internal/rules"
)

// With the settings file beside the rules the daemon answers the milter
// protocol on its socket; a broken settings file turns the checks off
// with a warning and delivery goes on.
func TestServeMilter(t *testing.T) {
	for _, tc := range []struct {
		name, settings string
		want           string
		listens        bool
	}{
		{"settings", `{"hostname":"mx.example.com","default":{"dkim":true,"dmarc":true}}`, "answering smtpd's milter on", true},
		{"broken settings", `{"hostname":`, "warning: milter settings", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rulesFile := filepath.Join(dir, "rules.yaml")
			if err := rules.Install(rulesFile, []byte("default: {type: maildir, value: "+dir+"/box}\n")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(milter.SettingsPath(rulesFile), []byte(tc.settings), 0o644); err != nil {
				t.Fatal(err)
			}
			socket, msock := filepath.Join(dir, "lmtp"), filepath.Join(dir, "milter")
			var stderr maillogtest.Buffer
			exited := make(chan int, 1)
			go func() {
				exited <- serve([]string{"-c", rulesFile, "-socket", socket, "-milter-socket", msock, "-log", filepath.Join(dir, "log")}, &stderr)
			}()
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(stderr.String(), "answering LMTP") {
				if time.Now().After(deadline) {
					t.Fatalf("not started:\n%s", stderr.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr.String())
			}
			c, err := net.Dial("unix", msock)
			if (err == nil) != tc.listens {
				t.Errorf("dial milter socket: %v, want listening=%v", err, tc.listens)
			}
			if err == nil {
				c.Close()
				if st, err := os.Stat(msock); err != nil || st.Mode().Perm() != 0o666 {
					t.Errorf("socket mode: %v %v (smtpd runs as postfix and must connect)", st.Mode(), err)
				}
			}
			if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case code := <-exited:
				if code != 0 {
					t.Errorf("exit %d\n%s", code, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no stop")
			}
		})
	}
}
