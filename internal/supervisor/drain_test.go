package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStopDrainsFirst: a stop drains within the grace time less what the
// services need to exit, then stops them, and logs how the drain went.
func TestStopDrainsFirst(t *testing.T) {
	tests := []struct {
		name   string
		report DrainReport
		log    string
	}{
		{"drained", DrainReport{InFlight: 3, Waited: 1200 * time.Millisecond}, "drained in 1.2s: no delivery in progress (3 messages were active when it began)"},
		{"outlived the grace", DrainReport{InFlight: 3, Left: 1, Waited: 20 * time.Second}, "1 messages still in delivery after 20s: stopping them"},
		{"drain failed", DrainReport{Err: errors.New("postfix reload: exit status 1")}, "drain failed (postfix reload: exit status 1): stopping anyway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &maillogtest.Buffer{}
			fake := &fakeServices{drain: tt.report}
			s := newSupervisor(Options{Out: out, StopGrace: 30 * time.Second})
			s.svc = fake
			t0 := time.Now()
			s.stop("terminated")
			if want := []string{"Drain", "Stop"}; !reflect.DeepEqual(fake.calls, want) {
				t.Errorf("calls = %v, want %v", fake.calls, want)
			}
			// 30 s of grace: 25 s to drain, 5 s for Postfix and Dovecot.
			if d := fake.deadline.Sub(t0); d < 25*time.Second || d > 25*time.Second+time.Second {
				t.Errorf("drain deadline %v after the stop began, want 25s", d)
			}
			log := out.Take()
			for _, want := range []string{"terminated: draining: port 25 closed", tt.log, "stopping Postfix and Dovecot", "stopped after"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
		})
	}
}

func TestStopReserve(t *testing.T) {
	for _, tt := range []struct{ grace, want time.Duration }{
		{8 * time.Second, 8 * time.Second / 3},
		{60 * time.Second, 5 * time.Second},
	} {
		if got := (Options{StopGrace: tt.grace}).StopReserve(); got != tt.want {
			t.Errorf("StopReserve(%v) = %v, want %v", tt.grace, got, tt.want)
		}
	}
}

// drainPostfix plays Postfix for the drainer: it records commands, and
// once the reload is asked for, finishes the deliveries in progress
// (removes the active queue files) after finish, or never when finish is 0.
type drainPostfix struct {
	mu     sync.Mutex
	cmds   []string
	active string
	finish time.Duration
	failOn string
}

func (p *drainPostfix) run(name string, args ...string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := name + " " + strings.Join(args, " ")
	p.cmds = append(p.cmds, line)
	if p.failOn != "" && name+" "+args[len(args)-1] == p.failOn {
		return "", errors.New(line + ": exit status 1")
	}
	if strings.HasSuffix(line, " reload") && p.finish > 0 {
		time.AfterFunc(p.finish, func() { os.RemoveAll(p.active) })
	}
	return "", nil
}

func TestDrainer(t *testing.T) {
	tests := []struct {
		name     string
		inFlight int
		finish   time.Duration // 0: the deliveries outlive the deadline
		failOn   string
		want     DrainReport // Waited is not compared
		cmds     int
	}{
		{"deliveries finish", 2, 100 * time.Millisecond, "", DrainReport{InFlight: 2}, 2},
		{"nothing in progress", 0, 0, "", DrainReport{}, 2},
		{"a delivery outlives the grace", 2, 0, "", DrainReport{InFlight: 2, Left: 2}, 2},
		{"reload fails", 1, 0, "postfix reload", DrainReport{InFlight: 1}, 2},
		{"postconf fails", 1, 0, "postconf defer_transports = altpostlocal, altpostlocal-lmtp, lmtp, smtp, relay", DrainReport{InFlight: 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := t.TempDir()
			pfDir := filepath.Join(t.TempDir(), "postfix")
			active := filepath.Join(q, "active", "A")
			if err := os.MkdirAll(active, 0o700); err != nil {
				t.Fatal(err)
			}
			for i := range tt.inFlight {
				if err := os.WriteFile(filepath.Join(active, "4F"+string(rune('A'+i))), nil, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			p := &drainPostfix{active: active, finish: tt.finish, failOn: tt.failOn}
			d := drainer{run: p.run, postfixDir: pfDir, queueDir: q, poll: 10 * time.Millisecond}
			t0 := time.Now()
			got := d.drain(t0.Add(500 * time.Millisecond))
			elapsed := time.Since(t0)
			t.Logf("%+v in %v", got, elapsed)
			if (got.Err != nil) != (tt.failOn != "") {
				t.Errorf("Err = %v, want an error: %v", got.Err, tt.failOn != "")
			}
			got.Err, got.Waited = nil, 0
			if got != tt.want {
				t.Errorf("drain = %+v, want %+v", got, tt.want)
			}
			if tt.want.Left > 0 && elapsed < 500*time.Millisecond {
				t.Errorf("gave up after %v, before the deadline", elapsed)
			}
			if tt.want.Left == 0 && tt.failOn == "" && elapsed > 400*time.Millisecond {
				t.Errorf("waited %v after the active queue emptied", elapsed)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.cmds) != tt.cmds {
				t.Fatalf("commands %q, want %d", p.cmds, tt.cmds)
			}
			want := []string{
				"postconf -c " + pfDir + " -e master_service_disable = inet defer_transports = altpostlocal, altpostlocal-lmtp, lmtp, smtp, relay",
				"postfix -c " + pfDir + " reload",
			}
			for i, c := range p.cmds {
				if c != want[i] {
					t.Errorf("command %d = %q, want %q", i, c, want[i])
				}
			}
		})
	}
}
