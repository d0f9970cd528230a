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

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: killer MAILDIR MSGFILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	st, err := f.Stat()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Mapped from the page cache rather than read into fresh memory: page
	// faults on 20 MiB of new heap cost more than a delivery on slow VMs.
	msg, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Two parts, as the agent passes trace headers and message.
	split := min(40, len(msg))
	fmt.Println("ready")
	for {
		if _, err := maildir.Deliver(os.Args[1], false, msg[:split], msg[split:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
}
