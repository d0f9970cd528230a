// Command altpostlocal is the delivery agent Postfix runs through pipe(8),
// once per recipient, in place of local(8)/virtual(8):
//
//	altpostlocal [-c RULES] [-q QUEUEID] -f SENDER -- RECIPIENT...   (message on stdin)
//	altpostlocal [-c RULES] -j [DUMP.json...]                         (redeliver dumps)
//
// and the operator's tools for rule files:
//
//	altpostlocal check [-c RULES] [--json] [--install NEW.yaml]
//	altpostlocal explain [-c RULES] [-f SENDER] [--json] ADDRESS...
//	altpostlocal compile [-c RULES]
//
// and the same agent as a resident LMTP server for Postfix's lmtp(8) and
// SMTPD policy service for smtpd's RCPT-time check:
//
//	altpostlocal serve [-c RULES] [-socket PATH] [-policy-socket PATH] [-log DEST] [-deadline D]
//
// In delivery mode the only exit codes are 0 and 75 (EX_TEMPFAIL): every
// other code makes Postfix bounce, and this agent never bounces.
package main

import (
	"os"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
