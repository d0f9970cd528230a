package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCertbot stands in for the reaper's run: it records each call and,
// when gate is set, waits on it, as a slow certbot would.
type fakeCertbot struct {
	mu    sync.Mutex
	calls []string
	err   error
	gate  chan struct{}
}

func (f *fakeCertbot) run(name string, args ...string) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, name+" "+strings.Join(args, " "))
	gate, err := f.gate, f.err
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if err != nil {
		return "line 1\nAn unexpected error occurred:\nrate limited", err
	}
	return "ok", nil
}

// TestRenew: certonly until a lineage exists, then renew; the next run is
// 12 h after a success and 1 h after a failure.
func TestRenew(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		lineage bool
		err     error
		call    string
		after   time.Duration
		log     string
	}{
		{"first certificate", false, nil, "certbot --config cli.ini certonly", renewAfter, "quietmx: certbot certonly: ok"},
		{"renewal", true, nil, "certbot --config cli.ini renew", renewAfter, "quietmx: certbot renew: ok"},
		{"failure keeps the certificate", true, errors.New("exit status 1"), "certbot --config cli.ini renew", renewRetry,
			"quietmx: certbot renew failed (keeping the current certificate, retrying in 1h): line 1 | An unexpected error occurred: | rate limited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certbotDir := filepath.Join(dir, tt.name)
			if tt.lineage {
				if err := os.MkdirAll(filepath.Join(certbotDir, "live", "mail.example.com"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			out := &syncBuffer{}
			s := &Supervisor{opt: Options{Out: out}}
			f := &fakeCertbot{err: tt.err}
			r := newRenewer(f.run, s.logf, "cli.ini", certbotDir, time.Now())
			if got := r.renew("mail.example.com"); got != tt.after {
				t.Errorf("next run after %v, want %v", got, tt.after)
			}
			if len(f.calls) != 1 || f.calls[0] != tt.call {
				t.Errorf("calls %q, want %q", f.calls, tt.call)
			}
			if log := out.take(); strings.TrimSpace(log) != tt.log {
				t.Errorf("log %q, want %q", log, tt.log)
			}
		})
	}
}

// TestRenewNeverBlocks: poll starts certbot in its own goroutine and
// returns at once, so the main loop keeps handling signals while certbot
// runs; a second poll during the run starts nothing; the result arrives on
// done and sets the next run.
func TestRenewNeverBlocks(t *testing.T) {
	f := &fakeCertbot{gate: make(chan struct{})}
	s := &Supervisor{opt: Options{Out: &syncBuffer{}}}
	t0 := time.Now()
	r := newRenewer(f.run, s.logf, "cli.ini", t.TempDir(), t0)
	r.poll(t0, "mail.example.com") // not due yet
	if r.busy {
		t.Fatal("a run started before it was due")
	}
	due := t0.Add(renewFirst + time.Second)
	r.poll(due, "mail.example.com") // returns although certbot blocks
	r.poll(due, "mail.example.com") // busy: nothing more
	close(f.gate)
	after := <-r.done
	r.finished(due, after)
	if r.busy || !r.next.Equal(due.Add(renewAfter)) {
		t.Errorf("after the run: busy %v, next %v; want idle, %v", r.busy, r.next, due.Add(renewAfter))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 1 {
		t.Errorf("certbot ran %d times, want once", len(f.calls))
	}
}
