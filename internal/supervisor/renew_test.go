package supervisor

import (
	"sync"
	"testing"
	"time"
)

// blockingObtain stands in for a slow certbot run: it counts calls and
// waits on gate.
type blockingObtain struct {
	mu    sync.Mutex
	calls int
	gate  chan struct{}
}

func (b *blockingObtain) obtain(string) time.Duration {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	<-b.gate
	return RenewEvery
}

// TestRenewNeverBlocks: poll starts certbot in its own goroutine and
// returns at once, so the main loop keeps handling signals while certbot
// runs; a second poll during the run starts nothing; the result arrives on
// done and sets the next run.
func TestRenewNeverBlocks(t *testing.T) {
	f := &blockingObtain{gate: make(chan struct{})}
	t0 := time.Now()
	r := newRenewer(f.obtain, t0)
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
	if r.busy || !r.next.Equal(due.Add(RenewEvery)) {
		t.Errorf("after the run: busy %v, next %v; want idle, %v", r.busy, r.next, due.Add(RenewEvery))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls != 1 {
		t.Errorf("certbot ran %d times, want once", f.calls)
	}
}
