package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"quietmx/internal/health"
)

// DrainTransports are the delivery transports a drain stops: the agent's
// (pipe, or LMTP), and the SMTP client's that forwards leave through. Each may be killed
// halfway by `postfix stop`, after the agent linked the Maildir file but
// before Postfix recorded it: Postfix then delivers the message again.
var DrainTransports = []string{"altpostlocal", "altpostlocal-lmtp", "lmtp", "smtp", "relay"}

// DrainReport says how a drain went.
type DrainReport struct {
	InFlight int           // messages in the active queue when it began
	Left     int           // messages there at the deadline (some may have come in since): Stop kills their deliveries and Postfix retries them
	Waited   time.Duration // until the active queue was empty, or the deadline
	Err      error         // the drain could not be set up; Stop still follows
}

func (r DrainReport) String() string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("drain failed (%v): stopping anyway", r.Err)
	case r.Left > 0:
		return fmt.Sprintf("%d messages still in delivery after %v: stopping them (Postfix retries them after the restart; one the agent had already written may arrive twice)", r.Left, r.Waited.Round(time.Millisecond))
	}
	return fmt.Sprintf("drained in %v: no delivery in progress (%d messages were active when it began)", r.Waited.Round(time.Millisecond), r.InFlight)
}

// drainer is the graceful half of a stop, on the running Postfix.
type drainer struct {
	run        func(name string, args ...string) (string, error)
	postfixDir string // the live tree's postfix/, which the running master reads
	queueDir   string // /var/spool/postfix
	poll       time.Duration
}

// drain stops accepting mail and starting deliveries, then waits until
// the deliveries in progress have finished (the active queue is empty) or
// deadline passes. Postfix itself does the stopping, through its own
// configuration: master_service_disable closes port 25 (sessions in
// progress finish), and defer_transports makes the queue manager defer
// every message not yet handed to a delivery agent, rather than start
// it. The deferred ones wait in the queue for the next start, which
// flushes it (Flush). The live main.cf is edited in place: every start
// renders a fresh tree, so the edit never outlives this run.
func (d drainer) drain(deadline time.Time) DrainReport {
	start := time.Now()
	active := filepath.Join(d.queueDir, "active")
	r := DrainReport{InFlight: countFiles(active)}
	if _, err := d.run("postconf", "-c", d.postfixDir, "-e",
		"master_service_disable = inet",
		"defer_transports = "+strings.Join(DrainTransports, ", ")); err != nil {
		r.Err = err
		return r
	}
	// A main.cf modified within the last second makes every Postfix
	// program wait until it is "stable" (see render.backdate): seconds
	// the grace time cannot spare.
	old := time.Now().Add(-time.Minute)
	_ = os.Chtimes(filepath.Join(d.postfixDir, "main.cf"), old, old)
	if _, err := d.run("postfix", "-c", d.postfixDir, "reload"); err != nil {
		r.Err = err
		return r
	}
	poll := d.poll
	if poll == 0 {
		poll = 50 * time.Millisecond
	}
	for {
		r.Left = countFiles(active)
		r.Waited = time.Since(start)
		if r.Left == 0 || !time.Now().Before(deadline) {
			return r
		}
		time.Sleep(min(poll, time.Until(deadline)))
	}
}

// countFiles is health.CountFiles; an unreadable queue counts what was
// read (the drain then waits until the deadline at worst).
func countFiles(dir string) int {
	n, _ := health.CountFiles(dir)
	return n
}
