// Command killer is the victim of maildir's TestSIGKILLNeverPartial: it
// delivers the message in MSGFILE into MAILDIR with maildir.Deliver, over
// and over, until it is killed. It prints "ready" once the message is
// mapped, so the test can time its kill from the first delivery.
//
// Usage: killer MAILDIR MSGFILE
package main

import (
	"fmt"
	"os"
	"syscall"

	"quietmx/internal/maildir"
)

// fail ends the run on a setup error. Like everything this project runs
// where Postfix might, it exits only 75 (EX_TEMPFAIL), never a code that
// bounces.
func fail(v any) {
	fmt.Fprintln(os.Stderr, v)
	os.Exit(75)
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: killer MAILDIR MSGFILE")
	}
	f, err := os.Open(os.Args[2])
	if err != nil {
		fail(err)
	}
	st, err := f.Stat()
	if err != nil {
		fail(err)
	}
	// Mapped from the page cache rather than read into fresh memory: page
	// faults on 20 MiB of new heap cost more than a delivery on slow VMs.
	msg, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		fail(err)
	}
	// Two parts, as the agent passes trace headers and message.
	split := min(40, len(msg))
	fmt.Println("ready")
	for {
		if _, err := maildir.Deliver(os.Args[1], false, msg[:split], msg[split:]); err != nil {
			fail(err)
		}
	}
}
