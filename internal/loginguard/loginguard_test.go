package loginguard

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time for the guard.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newGuard(t *testing.T, limit int) (*Guard, *clock, *strings.Builder) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	var log strings.Builder
	var mu sync.Mutex
	g := New(limit, func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&log, f+"\n", a...)
	})
	g.now = c.now
	return g, c, &log
}

// fail makes one failed attempt: allowed, then reported as a failure.
func fail(g *Guard, remote string) bool {
	if !g.Allow(remote) {
		g.Report(remote, false, true)
		return false
	}
	g.Report(remote, false, false)
	return true
}

func TestGuard(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, g *Guard, c *clock)
	}{
		{"limit failures pass, the next is refused", func(t *testing.T, g *Guard, c *clock) {
			for i := 0; i < 3; i++ {
				if !fail(g, "192.0.2.1") {
					t.Fatalf("attempt %d refused", i+1)
				}
			}
			if fail(g, "192.0.2.1") {
				t.Fatal("attempt 4 allowed")
			}
		}},
		{"another address is not affected", func(t *testing.T, g *Guard, c *clock) {
			for i := 0; i < 10; i++ {
				fail(g, "192.0.2.1")
			}
			if !g.Allow("192.0.2.2") {
				t.Fatal("192.0.2.2 refused for 192.0.2.1's failures")
			}
		}},
		{"failures age out of the window", func(t *testing.T, g *Guard, c *clock) {
			for i := 0; i < 3; i++ {
				fail(g, "192.0.2.1")
				c.advance(20 * time.Second)
			}
			// The first failure is now 60 s old: out of the window.
			if !fail(g, "192.0.2.1") {
				t.Fatal("refused although the first failure left the window")
			}
			if fail(g, "192.0.2.1") {
				t.Fatal("allowed with 3 failures in the last minute")
			}
		}},
		{"a success gives its charge back", func(t *testing.T, g *Guard, c *clock) {
			for i := 0; i < 20; i++ {
				if !g.Allow("192.0.2.1") {
					t.Fatalf("login %d refused", i+1)
				}
				g.Report("192.0.2.1", true, false)
			}
		}},
		{"parallel attempts are charged before their outcome", func(t *testing.T, g *Guard, c *clock) {
			// 20 connections ask at once; no report has come back yet.
			allowed := 0
			for i := 0; i < 20; i++ {
				if g.Allow("192.0.2.1") {
					allowed++
				}
			}
			if allowed != 3 {
				t.Fatalf("%d of 20 parallel attempts allowed, want 3", allowed)
			}
		}},
		{"refused attempts are not counted again", func(t *testing.T, g *Guard, c *clock) {
			for i := 0; i < 50; i++ {
				fail(g, "192.0.2.1")
			}
			c.advance(Window)
			if !fail(g, "192.0.2.1") {
				t.Fatal("still refused a window after the last counted failure")
			}
		}},
		{"IPv6 counts per /64", func(t *testing.T, g *Guard, c *clock) {
			fail(g, "2001:db8:1:2::1")
			fail(g, "2001:db8:1:2::ffff")
			fail(g, "2001:db8:1:2:abcd::9")
			if fail(g, "2001:db8:1:2::77") {
				t.Fatal("a fourth address of the same /64 allowed")
			}
			if !g.Allow("2001:db8:1:3::1") {
				t.Fatal("the next /64 refused")
			}
		}},
		{"IPv4-mapped IPv6 is the IPv4 address", func(t *testing.T, g *Guard, c *clock) {
			for i := 0; i < 3; i++ {
				fail(g, "::ffff:192.0.2.1")
			}
			if g.Allow("192.0.2.1") {
				t.Fatal("192.0.2.1 allowed after 3 failures as ::ffff:192.0.2.1")
			}
		}},
		{"no address: nothing to count", func(t *testing.T, g *Guard, c *clock) {
			for i := 0; i < 10; i++ {
				if !fail(g, "") || !fail(g, "not-an-ip") {
					t.Fatal("refused without an address")
				}
			}
		}},
		{"limit 0 is off", func(t *testing.T, g *Guard, c *clock) {
			g.SetLimit(0)
			for i := 0; i < 50; i++ {
				if !fail(g, "192.0.2.1") {
					t.Fatal("refused with the limit off")
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, c, _ := newGuard(t, 3)
			tc.run(t, g, c)
		})
	}
}

// TestLogsOnce: one line when an address goes over, not one per refusal.
func TestLogsOnce(t *testing.T) {
	g, _, log := newGuard(t, 2)
	for i := 0; i < 10; i++ {
		fail(g, "192.0.2.1")
	}
	want := "loginguard: 192.0.2.1: 2 failed logins within 1m0s: refusing its logins until they age out\n"
	if log.String() != want {
		t.Fatalf("log = %q, want %q", log.String(), want)
	}
}

// TestMemoryBound: a spray from many addresses never holds more than max
// of them, and an address still within its window survives a sweep.
func TestMemoryBound(t *testing.T) {
	g, c, _ := newGuard(t, 3)
	g.max = 100
	for i := 0; i < 1000; i++ {
		fail(g, fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		if n := g.Tracked(); n > g.max {
			t.Fatalf("%d addresses tracked, max %d", n, g.max)
		}
	}
	// Everything ages out: the next address sweeps the table.
	c.advance(Window)
	fail(g, "192.0.2.1")
	if n := g.Tracked(); n != 1 {
		t.Fatalf("%d addresses tracked after a window, want 1", n)
	}
	// Timestamps per address stay at the limit, however many attempts.
	for i := 0; i < 1000; i++ {
		g.Allow("192.0.2.9")
	}
	if n := len(g.clients[mustKey(t, "192.0.2.9")].times); n > 3 {
		t.Fatalf("%d timestamps kept for one address, limit 3", n)
	}
}

func mustKey(t *testing.T, s string) netip.Prefix {
	t.Helper()
	k, ok := key(s)
	if !ok {
		t.Fatalf("no key for %q", s)
	}
	return k
}

func post(t *testing.T, h http.Handler, command, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/?command="+command, strings.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, strings.TrimSpace(w.Body.String())
}

// TestProtocol: Dovecot's requests and the answers it understands.
func TestProtocol(t *testing.T) {
	g, _, log := newGuard(t, 1)
	allow := `{"login":"me@example.com","remote":"192.0.2.1","protocol":"imap"}`
	report := `{"login":"me@example.com","remote":"192.0.2.1","protocol":"imap","success":false,"policy_reject":false}`
	for _, tc := range []struct {
		command, body string
		code          int
		answer        string
	}{
		{"allow", allow, 200, `{"status":0}`},
		{"report", report, 200, `{"status":0}`},
		{"allow", allow, 200, `{"status":-1,"msg":"` + refusal + `"}`},
		{"allow", `{"remote":"192.0.2.2","extra":{"nested":[1,2]}}`, 200, `{"status":0}`},
		{"allow", `{"remote":`, 400, "bad request"},
		{"allow", `not json`, 400, "bad request"},
		{"allow", `{"remote":192}`, 400, "bad request"},
		{"frobnicate", allow, 400, "unknown command"},
	} {
		code, answer := post(t, g, tc.command, tc.body)
		if code != tc.code || answer != tc.answer {
			t.Errorf("%s %s: %d %s, want %d %s", tc.command, tc.body, code, answer, tc.code, tc.answer)
		}
	}
	if !strings.Contains(log.String(), "unreadable allow request") || !strings.Contains(log.String(), `unknown command "frobnicate"`) {
		t.Errorf("log does not name the bad requests:\n%s", log)
	}
	r := httptest.NewRequest(http.MethodGet, "/?command=allow", nil)
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
	// A body larger than any Dovecot request is cut, not read whole.
	big := `{"remote":"192.0.2.3","pad":"` + strings.Repeat("x", 2*maxBody) + `"}`
	if code, _ := post(t, g, "allow", big); code != 400 {
		t.Errorf("oversized body: %d, want 400", code)
	}
}

// TestServe runs the real server on loopback.
func TestServe(t *testing.T) {
	g, _, _ := newGuard(t, 1)
	s, err := g.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Dovecot's requests, over HTTP: one failure, then a refusal.
	ask := func(command, body string) string {
		t.Helper()
		resp, err := http.Post("http://"+s.Addr()+"/?command="+command, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	if got := ask("allow", `{"remote":"192.0.2.1"}`); got != `{"status":0}` {
		t.Fatalf("first allow: %s", got)
	}
	ask("report", `{"remote":"192.0.2.1","success":false,"policy_reject":false}`)
	if got := ask("allow", `{"remote":"192.0.2.1"}`); !strings.HasPrefix(got, `{"status":-1`) {
		t.Fatalf("allow over the limit: %s", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-s.Done(); err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := g.Serve("256.0.0.1:1"); err == nil {
		t.Fatal("listening on a bad address succeeded")
	}
}

func TestEnsureNonce(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secrets", "nonce")
	if err := EnsureNonce(p, bytes.NewReader(bytes.Repeat([]byte{0xab}, 32))); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != strings.Repeat("ab", 32) {
		t.Fatalf("nonce = %q", got)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	// Kept: a second call with other randomness changes nothing.
	if err := EnsureNonce(p, bytes.NewReader(bytes.Repeat([]byte{0xcd}, 32))); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(p); !bytes.Equal(again, got) {
		t.Fatal("the nonce changed")
	}
	// Too little randomness is an error, and no file.
	q := filepath.Join(dir, "short")
	if err := EnsureNonce(q, io.LimitReader(bytes.NewReader(make([]byte, 64)), 3)); err == nil {
		t.Fatal("a short random read succeeded")
	}
	if _, err := os.Stat(q); err == nil {
		t.Fatal("a nonce file was written after a failed random read")
	}
}

func FuzzServeHTTP(f *testing.F) {
	f.Add("allow", `{"remote":"192.0.2.1"}`)
	f.Add("report", `{"remote":"2001:db8::1","success":true}`)
	f.Add("allow", `{"remote":"::ffff:1.2.3.4%eth0"}`)
	f.Fuzz(func(t *testing.T, command, body string) {
		g, _, _ := newGuard(t, 2)
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		q := r.URL.Query()
		q.Set("command", command)
		r.URL.RawQuery = q.Encode()
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != 200 && w.Code != 400 {
			t.Fatalf("code %d", w.Code)
		}
	})
}
