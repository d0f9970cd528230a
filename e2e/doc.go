// Package e2e is the end-to-end suite: the real image (built by `make
// image`), real SMTP in from the host through the published port, real
// IMAPS out. Its tests carry the e2e build tag; `make test` runs them.
//
// Every scenario ends with Appliance.AssertNoBounce, the one never-bounce
// and no-relay oracle (package quietmx/e2e/oracle, a pure function over the
// container log and the queue, unit-tested without containers); the
// scenario names what it provokes on purpose (oracle.Expect).
// TestOracleFires shows the oracle failing on an agent that exits 78.
// Mail goes in through the one sender (package quietmx/e2e/harness, also
// used by e2e/bench), and every wait polls for the event itself: a log
// line, the queue, a mailbox; never a fixed sleep.
package e2e
